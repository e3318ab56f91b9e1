"""The server: what a ready node does, batch after batch, and the batches in service.

A node's serving loop asks its dispatcher for a batch (:meth:`Dispatcher.take`), serves it for
the time its service model draws, logs it and asks again. When the dispatcher has nothing for
it, the node waits on an event the server owns; the dispatcher hands it a batch later through
:meth:`Server.resume` (from a timer callback, at once) or :meth:`Server.wake`.

The server owns the batches in service (one per node slot, i.e. per model instance), their
start times and the per-pool busy-time accounting; it knows nothing of queues or routing.
This loop is the hot path: per batch it touches no request column (the request table's
served log takes the batch as one tuple and writes the columns per chunk).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import simpy

from simulator.engine.clock import Clock, resume_now
from simulator.engine.nodes import NodeTable, Pool
from simulator.engine.requests import RequestTable

Batch = range | np.ndarray  # global request ids: consecutive (range) or any (array)


class _Stop:
    """What :meth:`Dispatcher.take` returns when the node must stop serving."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "STOP"


STOP: Any = _Stop()


class Server:
    """The serving loops of all nodes and the batches they hold (see the module docstring)."""

    def __init__(self, env: Clock, table: RequestTable, nodes: NodeTable, pools: list[Pool],
                 services: list[Any]) -> None:
        self.env = env
        self.table = table
        self.nodes = nodes
        n = nodes.n
        self.pool_of = [pools[p] for p in nodes.pool_of.tolist()]
        self.services = services  # per node: its pool's service model
        self.current: list[Batch | None] = [None] * n  # the batch in service per node
        self.started_s = [0.0] * n  # start of the batch in service, s
        self._wake: list[simpy.Event | None] = [None] * n  # a waiting node's event
        self.max_batch_seen = 0
        self.max_items_seen = 0  # the most items in one batch (counted when a service needs them)
        # batches in service per device group (indexed by the group's first slot): instances
        # sharing a device slow each other down; counted, not scanned, per batch
        self.device_busy = [0] * n
        # set by connect()
        self._take: Callable[[int], Batch | None] = _unconnected
        self._shows_busy = False
        self._fallback: list[Any] | None = None
        self._degrade: Callable[[int], bool] | None = None

    def connect(self, take: Callable[[int], Batch | None], *, shows_busy: bool,
                fallback: list[Any] | None = None,
                degrade: Callable[[int], bool] | None = None) -> None:
        """Wire the server to its dispatcher.

        ``take(j)``: a batch for node j, None (then the dispatcher wakes it later) or STOP.
        ``shows_busy``: keep the node table's busy and busy-until columns (routers read them).
        ``fallback`` (per pool) and ``degrade(j)``: serve node j's next batch with the pool's
        fallback service while ``degrade(j)`` says so (graceful degradation, variant mode).
        """
        self._take = take
        self._shows_busy = shows_busy
        self._fallback = fallback
        self._degrade = degrade

    # ------------------------------------------------------------------ the serving loop
    def serve(self, j: int) -> Generator[simpy.Event, Any, None]:
        """Serve batches on node j until its dispatcher says STOP (draining, nothing left)."""
        env = self.env
        tab = self.table
        nodes = self.nodes
        svc = self.services[j]
        pool = self.pool_of[j]
        take = self._take
        current = self.current
        started = self.started_s
        shows_busy = self._shows_busy
        fallback = self._fallback[pool.index] if self._fallback is not None else None
        degrade = self._degrade
        needs_items = svc.needs_items or fallback is not None
        served, served_ids = tab.served, tab.served_ids
        # instances on one device share it: a batch starting while n of them serve (itself
        # included) takes slowdown[n - 1] times as long (fixed at its start)
        mates = pool.device_mates(j) if pool.instances > 1 else range(j, j + 1)
        shared = len(mates) > 1
        dev = mates.start
        device_busy = self.device_busy
        slowdown = pool.slowdown
        comm = pool.comm_s  # a sharded replica's all-to-all (and cache misses) per batch
        while True:
            batch = take(j)
            if batch is None:
                ev = env.pending()
                self._wake[j] = ev
                batch = yield ev
                self._wake[j] = None
                if batch is None:
                    continue
            elif batch is STOP:
                return
            now = env._now
            base = tab.base
            k = len(batch)
            if type(batch) is range:
                if needs_items:
                    ib = tab.items_before
                    a = batch.start - base
                    items = ib[a + k] - ib[a]
                else:
                    items = k  # ignored by the service model
            else:
                items = int(tab.size[batch - base].sum())
            if items > self.max_items_seen and needs_items:
                self.max_items_seen = items
            if fallback is not None and degrade is not None and degrade(j):
                dt = fallback.sample(k, items)
                tab.mark_degraded(batch)
            else:
                dt = svc.sample(k, items)
            if shared:
                n_dev = device_busy[dev]
                device_busy[dev] = n_dev + 1
                dt *= slowdown[n_dev]
            if comm is not None:
                dt += comm(items)
            if shows_busy:
                nodes.busy[j] = 1
                nodes.busy_until_s[j] = now + dt
            started[j] = now
            pool.n_busy += 1
            pool.busy_start_sum_s += now
            current[j] = batch
            if k > self.max_batch_seen:
                self.max_batch_seen = k
            yield env.sleep(dt)
            current[j] = None
            if shared:
                device_busy[dev] -= 1
            t0 = now
            now = env._now
            if type(batch) is range:
                served((batch.start, batch.stop, t0, now, j))
            else:
                served_ids((batch, t0, now, j))
            if shows_busy:
                nodes.busy[j] = 0
            pool.n_busy -= 1
            pool.busy_start_sum_s -= t0
            pool.busy_done_s += now - t0
            pool.batches += 1
            pool.served += k

    # ------------------------------------------------------------------ handing work over
    def waiting(self, j: int) -> bool:
        """Whether node j's loop waits for the dispatcher."""
        ev = self._wake[j]
        return ev is not None and not ev.triggered

    def resume(self, j: int, batch: Batch) -> None:
        """Hand a waiting node a batch now, from a timer callback (no process is running):
        its loop starts the batch at this same instant (see :func:`resume_now`)."""
        ev = self._wake[j]
        assert ev is not None
        resume_now(ev, batch)

    def wake(self, j: int, batch: Batch | None = None) -> None:
        """Wake a waiting node (with a batch, or None to make it ask its dispatcher again)."""
        ev = self._wake[j]
        if ev is not None and not ev.triggered:
            ev.succeed(batch)

    # ------------------------------------------------------------------ interruptions
    def serving(self, j: int) -> bool:
        """Whether node j has a batch in service."""
        return self.current[j] is not None

    def abort(self, j: int) -> np.ndarray | None:
        """Node j stops abruptly (preemption, failure): its batch in service, if any, leaves it
        unfinished. Records where the batch started and returns its ids; busy time up to now
        counts."""
        batch = self.current[j]
        if batch is None:
            return None
        self.current[j] = None
        p = self.pool_of[j]
        if p.instances > 1:
            mates = p.device_mates(j)
            if len(mates) > 1:
                self.device_busy[mates.start] -= 1
        ids = np.arange(batch.start, batch.stop) if type(batch) is range else batch
        started = self.started_s[j]
        self.table.begin(ids, j, started)
        self.nodes.busy[j] = 0
        p.n_busy -= 1
        p.busy_start_sum_s -= started
        p.busy_done_s += self.env.now - started
        return ids

    # ------------------------------------------------------------------ observation
    def in_service(self, p: Pool | None = None) -> int:
        """Requests in the batches being served (by pool p's nodes, or by all)."""
        cur = self.current if p is None else self.current[p.slots.start:p.slots.stop]
        return sum(len(b) for b in cur if b is not None)

    def finish(self) -> None:
        """End of run: batches still in service started, and are in flight."""
        for j, batch in enumerate(self.current):
            if batch is not None:
                self.table.begin(batch, j, self.started_s[j])


def _unconnected(j: int) -> None:
    raise RuntimeError("Server.connect() was not called")
