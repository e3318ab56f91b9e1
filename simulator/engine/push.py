"""Per-node (push) dispatch: an event per arrival, a router decision, one queue per node.

Each arrival is routed to a ready node (the router sees the node table's read-only view) and
joins that node's queue; each node batches from its own queue with its own batcher. A node
that waits for a fuller batch is woken when its queue reaches the size or item count its
batcher asked for, or by a timer at its deadline.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
import simpy

from simulator.engine.clock import Clock
from simulator.engine.degradation import Degradation
from simulator.engine.dispatch import drop_expired, requeue_or_lose
from simulator.engine.nodes import READY, NodeTable, Pool
from simulator.engine.requests import DROPPED, RequestTable
from simulator.engine.server import STOP, Batch, Server
from simulator.policies.views import BatchDecision, QueueView
from simulator.rng import BufferedRandom


class PushDispatcher:
    """Route each arriving request to a node's queue; nodes serve their own queue.

    ``queues``: one queue per node (plain FIFO, or priority levels with class limits; the
    node's total limit is the router view's ``capacity``); ``batchers``: one batching policy
    per node; ``router`` and ``route_rng``: the routing policy and its random source;
    ``timeout_s``: queue timeout per class (s, inf = none); ``degradation``: cache-mode
    diversion at routing, or shrink mode's cut as a request joins a node's queue, if any;
    ``max_in_system``: the memory cap (None: none).

    A request routed to a node whose queue (or its class's share of it) is full is rejected;
    a request requeued from a node that stopped is routed again under the same rule. The memory
    cap: a waiting request is shed once ``max_in_system`` later requests have arrived, looked
    for at the node an arrival is routed to, when a node takes work and at each observation
    (a requeued request already past it is shed at once).
    """

    shows_busy = True

    def __init__(self, env: Clock, table: RequestTable, server: Server, pools: list[Pool],
                 nodes: NodeTable, queues: list[Any], batchers: list[Any], router: Any,
                 route_rng: BufferedRandom, timeout_s: np.ndarray, duration_s: float,
                 degradation: Degradation, max_in_system: int | None = None) -> None:
        self.env = env
        self.table = table
        self.server = server
        self.pools = pools
        self.nodes = nodes
        self.batchers = batchers
        self.router = router
        self.route_rng = route_rng
        self.timeout_s = timeout_s
        self.has_timeouts = bool(np.isfinite(timeout_s).any())
        self.min_timeout_s = float(timeout_s.min())
        self._timeouts = timeout_s if self.has_timeouts else None
        self.cap = 2**62 if max_in_system is None else max_in_system
        self.duration_s = duration_s
        n = nodes.n
        self.node_q = queues
        self._capacity = nodes.view.capacity
        self.peak = 0  # the most requests queued at one node at once
        self.rejected = 0
        counts = getattr(queues[0], "count", None)  # priority queues count per class
        self._class_peak = None if counts is None else [0] * len(counts)
        self._diverts = degradation.caches
        self._shrinks = degradation.shrinks
        self.degradation = degradation
        self._fast = bool(getattr(batchers[0], "takes_one", False))  # one request, never waits
        self._svc = server.services
        self._waiting = [False] * n
        self._wake_size = [0] * n
        self._wake_items = [10**18] * n  # wake a waiting node at this many queued items
        self._wait_items = [0] * n  # items queued at a waiting node
        self._node_timer_gen = [0] * n
        self._next_gid = 0

    def start(self) -> None:
        """Start routing arrivals."""
        self.env.process(self._arrivals())

    # ------------------------------------------------------------------ routing
    def _arrivals(self) -> Generator[simpy.Event, Any, None]:
        """Route each arriving request to a node's queue at its arrival time."""
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

    def _any_ready(self) -> bool:
        return any(p.counts[READY] for p in self.pools)

    def _route(self, gid: int) -> None:
        """Push request ``gid`` (arriving, or requeued) into the queue of the node the router
        picks; it is rejected when no node is ready or that queue has no room for it."""
        tab = self.table
        nodes = self.nodes
        now = self.env.now
        i = gid - tab.base
        if gid + self.cap < self._next_gid:  # requeued, and cap later requests came: shed
            tab.shed(np.asarray([gid]), self.cap, self._timeouts, now)
            return
        if not self._any_ready():
            self._reject(gid, now)
            return
        j = self.router.choose(nodes.view, self.route_rng, now)
        q = self.node_q[j]
        if gid >= self.cap and len(q):  # this arrival passes those cap arrivals older
            self._shed_node(j, q, gid - self.cap + 1)
        if self._diverts and self._divert(gid, q):
            return
        ql = int(nodes.queue_len[j])
        c = int(tab.cls[i])
        if ql >= self._capacity or not q.has_room(c):
            self._reject(gid, now)
            return
        if self._shrinks and gid == self._next_gid:  # an arrival (not a requeue): cut?
            self.degradation.shrink(np.asarray([gid], dtype=np.int64), len(q),
                                    self._oldest_wait(q))
        q.push(gid, c)
        nodes.queue_len[j] = ql + 1
        if ql >= self.peak:
            self.peak = ql + 1
        if self._class_peak is not None and q.count[c] > self._class_peak[c]:
            self._class_peak[c] = q.count[c]
        nodes.queued_work_s[j] += self._svc[j].mean_time(1, int(tab.size[i]))
        if self._waiting[j]:
            self._wait_items[j] += int(tab.size[i])
            if (nodes.queue_len[j] >= self._wake_size[j]
                    or self._wait_items[j] >= self._wake_items[j]):
                self._wake_node(j)

    def _reject(self, gid: int, now: float) -> None:
        self.table.end(gid, DROPPED, now)
        self.rejected += 1

    def _divert(self, gid: int, q: Any) -> bool:
        """Cache mode: answer ``gid`` from the cache instead of joining queue ``q``?"""
        mask = self.degradation.divert(np.asarray([gid], dtype=np.int64), len(q),
                                       self._oldest_wait(q))
        return bool(mask[0])

    def _oldest_wait(self, q: Any) -> float:
        return self.env.now - q.oldest_s() if len(q) else 0.0

    def _wake_node(self, j: int) -> None:
        self._waiting[j] = False
        self._node_timer_gen[j] += 1
        self.server.wake(j)

    # ------------------------------------------------------------------ serving loop
    def take(self, j: int) -> Batch | None:
        """A batch from node j's own queue; None while its batcher waits; STOP once the node
        is not ready and nothing is left for it."""
        q = self.node_q[j]
        if not self.nodes.ready_py[j] and not len(q):
            return STOP
        batch = self._take_node(j)
        if batch is None and not self.nodes.ready_py[j] and not len(q):
            return STOP  # (a draining node with requests left waits for its batcher)
        return batch

    def _take_node(self, j: int) -> Batch | None:
        q = self.node_q[j]
        nodes = self.nodes
        now = self.env.now
        if self.has_timeouts:
            self._expire_node(j, q, now)
        if self._next_gid > self.cap and len(q):
            self._shed_node(j, q, self._next_gid - self.cap)
        while len(q):
            if self._fast:
                gid = q.pop_one()
                batch: Batch = range(gid, gid + 1)
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
                batch = drop_expired(self.table, batch, now, self.timeout_s,
                                     self.min_timeout_s)
                if not len(batch):
                    continue
            return batch
        self._waiting[j] = True
        self._wake_size[j] = 1
        self._wake_items[j] = 10**18
        return None

    def _ask(self, batcher: Any, q: Any, now: float) -> BatchDecision:
        """Build the batcher's read-only view of node queue ``q`` and ask for a decision."""
        tab = self.table
        oldest = float(tab.t[q.head_id() - tab.base]) if len(q) else None
        view = QueueView.lazy(len(q), oldest, batcher.max_batch, q.head_arrays, q.fit_items,
                              q.fill)
        return batcher.next_batch(view, now)

    def _wait_node(self, j: int, dec: BatchDecision) -> None:
        self._waiting[j] = True
        self._wake_size[j] = dec.wake_at_size or 10**18
        self._wake_items[j] = 10**18 if dec.wake_at_items is None else dec.wake_at_items
        if dec.wake_at_items is not None:  # items waiting now; pushes add theirs
            tab = self.table
            q = self.node_q[j]
            self._wait_items[j] = int(tab.size[q.peek(len(q)) - tab.base].sum())
            if self._wait_items[j] >= dec.wake_at_items:
                self._wake_items[j] = 10**18  # already met (a lone oversized request): ignored
        if dec.wait_until_s is not None and dec.wait_until_s < self.duration_s:
            self._node_timer_gen[j] += 1
            gen = self._node_timer_gen[j]
            ev = self.env.timeout(max(dec.wait_until_s - self.env.now, 0.0))
            ev.callbacks.append(
                lambda _e: self._wake_node(j) if self._node_timer_gen[j] == gen else None)
        return None

    def _expire_node(self, j: int, q: Any, now: float) -> None:
        gone = q.expire(now, self.timeout_s)
        if gone:
            self._unqueue(j, gone)

    def _shed_node(self, j: int, q: Any, limit: int) -> None:
        """Node j's waiting requests below id ``limit`` (passed by ``cap`` later arrivals)
        leave, shed by the memory cap (or timed out, if their deadline came first)."""
        gone = q.pop_older(limit)
        if gone:
            self._unqueue(j, gone)
            self.table.shed(np.asarray(gone, dtype=np.int64), self.cap, self._timeouts)

    def _unqueue(self, j: int, gone: list[int]) -> None:
        """Requests ``gone`` left node j's queue without service: its counts follow."""
        tab = self.table
        self.nodes.queue_len[j] -= len(gone)
        for gid in gone:
            self.nodes.queued_work_s[j] -= self._svc[j].mean_time(
                1, int(tab.size[gid - tab.base]))
        if self.nodes.queue_len[j] == 0:
            self.nodes.queued_work_s[j] = 0.0

    # ------------------------------------------------------------------ fleet
    def _kick(self) -> None:
        """Wake ready nodes that wait while work is queued for them."""
        for j in np.flatnonzero(self.nodes.ready).tolist():
            if self._waiting[j] and len(self.node_q[j]):
                self._wake_node(j)

    def node_ready(self, j: int) -> None:
        self._kick()

    def stop_taking(self, j: int) -> None:
        """Node j gets no new arrivals; woken (if it waits) to serve what is left and leave."""
        self._waiting[j] = False
        if self.server.waiting(j):
            self.server.wake(j)

    def release(self, j: int, lose: bool) -> None:
        """Node j stopped abruptly: its batch in service and its queue are routed again (to
        other nodes) or lost."""
        self._waiting[j] = False
        pool = self.server.pool_of[j]
        now = self.env.now
        ids = self.server.abort(j)
        if ids is not None and requeue_or_lose(self.table, ids, lose, pool, now):
            for gid in ids.tolist():
                self._route(gid)
        q = self.node_q[j]
        if len(q):
            ids = q.clear()
            self.nodes.queue_len[j] = 0
            self.nodes.queued_work_s[j] = 0.0
            if requeue_or_lose(self.table, ids, lose, pool, now):
                for gid in ids.tolist():
                    self._route(gid)
        self._kick()

    # ------------------------------------------------------------------ observation
    def observe(self, now_s: float) -> None:
        if self.has_timeouts:
            for j, q in enumerate(self.node_q):
                self._expire_node(j, q, now_s)
        self._shed_capped()

    def _shed_capped(self) -> None:
        """The memory cap's look at every node's queue."""
        if self._next_gid > self.cap:
            limit = self._next_gid - self.cap
            for j, q in enumerate(self.node_q):
                if len(q):
                    self._shed_node(j, q, limit)

    def queue_length(self) -> int:
        return int(self.nodes.queue_len.sum())

    def queue_length_for(self, p: Pool) -> float:
        return float(self.nodes.queue_len[p.slots.start:p.slots.stop].sum())

    def arrivals_so_far(self) -> int:
        return self._next_gid

    def oldest_wait_s(self, j: int) -> float:
        """How long the oldest request queued at node j has waited (s; 0 when none)."""
        return self._oldest_wait(self.node_q[j])

    def finish(self, end_s: float) -> None:
        """Nothing to admit: arrivals were routed as they came; the memory cap looks last."""
        self._shed_capped()

    def queue_peaks(self) -> tuple[int, int, list[int] | None]:
        return self.peak, self.rejected, self._class_peak
