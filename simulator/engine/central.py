"""Central dispatch: one shared queue; free nodes pull batches from it.

Requests are not events here: the queue admits arrivals lazily from the sorted arrival array
whenever it is looked at. A timer event exists only while some node is idle, armed at the
wake-up the batcher's decision asks for. Per batch at low load: one timer (the batcher's
deadline, known in advance thanks to :class:`UpcomingHead`) and one service timeout; the woken
node resumes inside the timer's callback (:meth:`Server.resume`).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
import simpy

from simulator.engine.clock import Clock
from simulator.engine.dispatch import drop_expired, requeue_or_lose
from simulator.engine.nodes import NodeTable, Pool, ready_share
from simulator.engine.queues import UpcomingHead
from simulator.engine.requests import RequestTable
from simulator.engine.server import STOP, Batch, Server
from simulator.policies.views import BatchDecision, QueueView


class CentralDispatcher:
    """The shared queue's decisions and the dispatcher's timer (see the module docstring).

    ``queue``: a central queue (FIFO or priority levels); ``batcher``: the batching policy;
    ``timeout_s``: queue timeout per class (s, inf = none); ``pool_order``: pool indices in
    the order their idle nodes take work, or ``weights`` (per pool) with ``choice_rng`` to pick
    a pool at random in proportion to them.
    """

    shows_busy = False

    def __init__(self, env: Clock, table: RequestTable, server: Server, pools: list[Pool],
                 nodes: NodeTable, queue: Any, batcher: Any, timeout_s: np.ndarray,
                 duration_s: float, pool_order: list[int], weights: list[float] | None = None,
                 choice_rng: np.random.Generator | None = None) -> None:
        self.env = env
        self.table = table
        self.server = server
        self.pools = pools
        self.nodes = nodes
        self.queue = queue
        self.batcher = batcher
        self.timeout_s = timeout_s
        self.has_timeouts = bool(np.isfinite(timeout_s).any())
        self.min_timeout_s = float(timeout_s.min())
        queue.min_timeout_s = self.min_timeout_s
        self.duration_s = duration_s
        self._fast = bool(getattr(batcher, "takes_one", False))  # one request, never waits
        self.idle: list[deque[int]] = [deque() for _ in pools]
        self._n_idle = 0
        self._pool_order = pool_order
        self._weights = weights
        self._choice_rng = choice_rng
        self._timer_at = math.inf
        self._timer: simpy.Event | None = None  # the live timer
        self._fifo = queue.fifo  # its head is the oldest request; only arrivals fill it
        # the queue's bound methods, made once (called per batch)
        self._q_methods = (queue.oldest_s, queue.head_arrays, queue.fit_items, queue.fill)
        self._lookahead = self._fifo and queue.divert is None and not self._fast
        # the batcher's last decision to wait: (head id then, wake-up time); it stands until
        # that time or until the head of the queue changes (FIFO queue only)
        self._wait_head, self._wait_t = -1, -math.inf
        self._ready = nodes.ready_py
        self._pool_index = nodes.pool_of.tolist()

    def start(self) -> None:
        """Nothing to start: requests are admitted when the queue is looked at."""

    # ------------------------------------------------------------------ serving loop
    def take(self, j: int) -> Batch | None:
        """A batch for node j now, or None after adding it to the idle nodes."""
        if not self._ready[j]:
            return STOP
        batch, wake_t = self._decide()
        if batch is None:
            self.idle[self._pool_index[j]].append(j)
            self._n_idle += 1
            self._arm(wake_t)
        return batch

    def _decide(self) -> tuple[Batch | None, float]:
        """Apply the batcher to the queue: (batch, inf) or (None, wake-up time)."""
        now = self.env._now
        q = self.queue
        batcher = self.batcher
        limit = batcher.max_batch
        fifo = self._fifo
        oldest_s = self._q_methods[0]
        while True:
            if now >= q.next_arrival_s:
                q.materialize(now)
            if self.has_timeouts and q.len and (not fifo or now - oldest_s() > q.min_timeout_s):
                q.expire(now, self.timeout_s)  # (a FIFO head younger than that cannot expire)
            if q.len == 0:  # nothing to batch: any batcher waits for the next arrival
                return None, self._wake_when_empty()
            if self._fast:
                gid = q.pop_one()
                return range(gid, gid + 1), math.inf
            if self._lookahead and now < self._wait_t and q.runs[0][0] == self._wait_head:
                return None, self._wait_t  # the last decision to wait still stands
            _, head_arrays, fit_items, fill = self._q_methods
            dec = batcher.next_batch(QueueView.lazy(q.len, oldest_s(), limit, head_arrays,
                                                    fit_items, fill), now)
            if dec.take <= 0:
                wake = self._wake_time(dec, q)
                if wake <= now:
                    raise RuntimeError(
                        f"batcher {type(batcher).__name__} decided to wait ({dec}) for a "
                        f"condition already met at t={now!r} s with {q.len} request(s) "
                        "waiting: it would be asked again forever")
                if self._lookahead:
                    self._wait_head, self._wait_t = q.runs[0][0], wake
                return None, wake
            batch = q.take(dec.take if dec.take < limit else limit)
            if self.has_timeouts:
                batch = drop_expired(self.table, batch, now, self.timeout_s,
                                     self.min_timeout_s)
            if len(batch):
                return batch, math.inf

    def _wake_when_empty(self) -> float:
        """When to look at the empty queue again (s).

        The next arrival time, or, when the batcher would wait anyway once it arrives (and
        nothing but that arrival can change an empty FIFO queue), the time that batcher would
        wait for. Asking it now saves a timer event per batch at low load; the answer is the
        same one it would give at the arrival, and is kept until the queue moves on.
        """
        q = self.queue
        if self._wait_head == q.tail:  # asked already, for this same next arrival
            return self._wait_t
        horizon = self.env._now + q.table.lookahead_s
        t1 = q.fill_time(1, horizon)
        if t1 == math.inf and not q.table.exhausted and q.table.loaded_until > horizon:
            # none within the look-ahead (a cascade stage): look again when the arrivals
            # read so far run out
            return q.table.loaded_until
        if not self._lookahead or t1 == math.inf:
            return t1
        head = UpcomingHead(self.table, q.tail, t1)
        if head.n > q.max_len:
            return t1
        limit = self.batcher.max_batch
        view = QueueView.lazy(head.n, t1, limit, head.head_arrays, head.fit_items, head.fill)
        dec = self.batcher.next_batch(view, t1)
        wake = t1
        if dec.take <= 0:
            wake = max(t1, self._wake_time(dec, q))
        self._wait_head, self._wait_t = q.tail, wake  # holds until that arrival is served
        return wake

    @staticmethod
    def _wake_time(dec: BatchDecision, q: Any) -> float:
        """When a decision to wait on queue ``q`` expires (s): its deadline, or the arrival
        that brings ``wake_at_size`` requests or ``wake_at_items`` items."""
        t = dec.wait_until_s if dec.wait_until_s is not None else math.inf
        # arrivals after the deadline t cannot wake it earlier: they are not read (in a
        # cascade reading them would run the stages before ahead, holding their rows)
        if dec.wake_at_size:
            f = q.fill_time(dec.wake_at_size, t)
            t = f if f < t else t
        if dec.wake_at_items is not None and q.next_arrival_s < t:
            f = q.items_fill_time(dec.wake_at_items, t)  # an arrival: none before the next
            t = f if f < t else t
        return t

    # ------------------------------------------------------------------ the timer
    def _arm(self, t: float) -> None:
        """Make sure the dispatcher wakes at time ``t`` (earliest request wins)."""
        if t >= self.duration_s or t >= self._timer_at:
            return
        self._timer_at = t
        d = t - self.env._now
        self._timer = self.env.timer(d if d > 0.0 else 0.0, self._on_timer)

    def _on_timer(self, ev: simpy.Event) -> None:
        """The timer: idle nodes take what the batcher now allows."""
        if ev is not self._timer:
            return  # superseded by an earlier timer
        self._timer = None
        self._timer_at = math.inf
        while self._n_idle:
            batch, wake_t = self._decide()
            if batch is None:
                self._arm(wake_t)
                return
            self.server.resume(self._pop_idle(), batch)

    def _pop_idle(self) -> int:
        """An idle ready node, from the preferred pool."""
        self._n_idle -= 1
        idle = self.idle
        if len(idle) == 1:
            return idle[0].popleft()
        if self._weights is not None:
            cand = [i for i in range(len(idle)) if idle[i]]
            w = np.asarray([self._weights[i] for i in cand])
            assert self._choice_rng is not None
            u = self._choice_rng.random() * w.sum()
            return idle[cand[int(np.searchsorted(np.cumsum(w), u, side="right"))]].popleft()
        for i in self._pool_order:
            if idle[i]:
                return idle[i].popleft()
        raise RuntimeError("no idle node")

    # ------------------------------------------------------------------ fleet
    def node_ready(self, j: int) -> None:
        """A node became ready: idle nodes look at the queue now."""
        self._arm(self.env.now)

    def _unidle(self, j: int) -> None:
        dq = self.idle[self._pool_index[j]]
        if j in dq:
            dq.remove(j)
            self._n_idle -= 1

    def stop_taking(self, j: int) -> None:
        """Node j takes no new work: out of the idle nodes; woken to leave if it waits."""
        self._unidle(j)
        if self.server.waiting(j):
            self.server.wake(j)

    def release(self, j: int, lose: bool) -> None:
        """Node j stopped abruptly: its batch goes back to the head of the queue, or is lost."""
        self._unidle(j)
        ids = self.server.abort(j)
        if ids is not None and requeue_or_lose(self.table, ids, lose, self.server.pool_of[j],
                                               self.env.now):
            self.observe(self.env.now)  # arrivals up to now enter first (they came first)
            self.queue.requeue(ids, self.env.now)
        self._arm(self.env.now)

    # ------------------------------------------------------------------ observation
    def observe(self, now_s: float) -> None:
        self.queue.materialize(now_s)
        if self.has_timeouts:
            self.queue.expire(now_s, self.timeout_s)

    def queue_length(self) -> int:
        return self.queue.len

    def queue_length_for(self, p: Pool) -> float:
        """Pool p's share of the shared queue (its share of the ready nodes)."""
        return self.queue.len * ready_share(self.pools, p)

    def arrivals_so_far(self) -> int:
        self.queue.materialize(self.env.now)
        return self.queue.tail

    def oldest_wait_s(self, j: int) -> float:
        """How long the oldest request in the queue node j serves from has waited (s)."""
        return self.queue.max_wait_s(self.env.now)

    def finish(self, end_s: float) -> None:
        self.observe(end_s)

    def queue_peaks(self) -> tuple[int, int, list[int] | None]:
        q = self.queue
        classes = getattr(q, "classes", None)
        return q.peak, q.rejected, None if classes is None else classes.peak.tolist()
