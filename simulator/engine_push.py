"""Per-node (push) dispatch: an event per arrival, a router decision, per-node queues.

A mixin of :class:`simulator.engine.Simulation`.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
import simpy

from simulator.policies.views import BatchDecision
from simulator.queues import NodeQueue
from simulator.requests import DROPPED


class PushDispatch:
    """Route each arriving request to a node's queue; nodes serve their own queue."""

    def _arrivals(self) -> Generator[simpy.Event, Any, None]:
        """Per-node dispatch: route each arriving request to a node's queue."""
        env = self.env
        tab = self.table
        gid = 0
        while tab.ensure(gid):
            t = float(tab.t[gid - tab.base])
            if t > env.now:
                yield env.timeout(t - env.now)
            self._route(gid)
            gid += 1
            self._next_gid = gid

    def _route(self, gid: int, requeue: bool = False) -> None:
        tab = self.table
        nodes = self.nodes
        now = self.env.now
        i = gid - tab.base
        if not self._any_ready():
            tab.outcome[i] = DROPPED
            tab.finish[i] = now
            return
        j = self.router.choose(nodes.view, self.route_rng, now)
        if nodes.queue_len[j] >= nodes.view.capacity and not requeue:
            tab.outcome[i] = DROPPED
            tab.finish[i] = now
            return
        self.node_q[j].ids.append(gid)
        nodes.queue_len[j] += 1
        nodes.queued_work_s[j] += self._svc[j].mean_time(1, int(tab.size[i]))
        if self._waiting[j]:
            self._wait_items[j] += int(tab.size[i])
            if (nodes.queue_len[j] >= self._wake_size[j]
                    or self._wait_items[j] >= self._wake_items[j]):
                self._wake_node(j)

    def _wake_node(self, j: int) -> None:
        self._waiting[j] = False
        self._node_timer_gen[j] += 1
        ev = self._wake[j]
        if ev is not None and not ev.triggered:
            ev.succeed(None)

    def _take_node(self, j: int) -> range | np.ndarray | None:
        q = self.node_q[j]
        nodes = self.nodes
        now = self.env.now
        if self.has_timeouts:
            self._expire_node(j, q, now)
        while len(q):
            if self._fast:
                gid = q.ids.popleft()
                batch: range | np.ndarray = range(gid, gid + 1)
                taken = [gid]
            else:
                dec = self._ask(self.batchers[j], q, now)
                if dec.take <= 0:
                    return self._wait_node(j, dec)
                batch = q.take(min(dec.take, self.batchers[j].max_batch))
                taken = batch.tolist()
            tab = self.table
            svc = self._svc[j]
            nodes.queue_len[j] -= len(taken)
            for gid in taken:
                nodes.queued_work_s[j] -= svc.mean_time(1, int(tab.size[gid - tab.base]))
            if nodes.queue_len[j] == 0:
                nodes.queued_work_s[j] = 0.0
            if self.has_timeouts:
                batch = self._drop_expired(batch, now)
                if not len(batch):
                    continue
            return batch
        self._waiting[j] = True
        self._wake_size[j] = 1
        self._wake_items[j] = 10**18
        return None

    def _wait_node(self, j: int, dec: BatchDecision) -> None:
        self._waiting[j] = True
        self._wake_size[j] = dec.wake_at_size or 10**18
        self._wake_items[j] = 10**18 if dec.wake_at_items is None else dec.wake_at_items
        if dec.wake_at_items is not None:  # items waiting now; pushes add theirs
            tab = self.table
            q = self.node_q[j]
            self._wait_items[j] = int(tab.size[np.asarray(q.ids) - tab.base].sum())
            if self._wait_items[j] >= dec.wake_at_items:
                self._wake_items[j] = 10**18  # already met (a lone oversized request): ignored
        if dec.wait_until_s is not None and dec.wait_until_s < self.duration_s:
            self._node_timer_gen[j] += 1
            gen = self._node_timer_gen[j]
            ev = self.env.timeout(max(dec.wait_until_s - self.env.now, 0.0))
            ev.callbacks.append(
                lambda _e: self._wake_node(j) if self._node_timer_gen[j] == gen else None)
        return None

    def _expire_node(self, j: int, q: NodeQueue, now: float) -> None:
        gone = q.expire(now, self.timeout_s, self.table)
        if gone:
            tab = self.table
            self.nodes.queue_len[j] -= len(gone)
            for gid in gone:
                self.nodes.queued_work_s[j] -= self._svc[j].mean_time(
                    1, int(tab.size[gid - tab.base]))
            if self.nodes.queue_len[j] == 0:
                self.nodes.queued_work_s[j] = 0.0
