"""Central dispatch: the shared queue, the batcher's decisions and the dispatcher's timer.

A mixin of :class:`simulator.engine.Simulation`. Requests are not events here: the queue admits
arrivals lazily from the sorted arrival array; a timer event exists only while some node is
idle, armed at the wake-up the batcher's decision asks for. Per batch at low load: one timer
(the batcher's deadline, known in advance thanks to :class:`UpcomingHead`) and one service
timeout; the woken node resumes inside the timer's callback (:func:`resume_now`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import simpy

from simulator.clock import resume_now
from simulator.policies.views import BatchDecision, QueueView
from simulator.queues import UpcomingHead


class CentralDispatch:
    """The central queue's decisions and timer (see the module docstring)."""

    def _decide_central(self) -> tuple[range | np.ndarray | None, float]:
        """Apply the batcher to the central queue: (batch, inf) or (None, wake-up time)."""
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
            _, head_arrays, fit_items = self._q_methods
            dec = batcher.next_batch(QueueView.lazy(q.len, oldest_s(), limit, head_arrays,
                                                    fit_items), now)
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
                batch = self._drop_expired(batch, now)
            if len(batch):
                return batch, math.inf

    def _wake_when_empty(self) -> float:
        """When to look at the empty central queue again (s).

        The next arrival time, or, when the batcher would wait anyway once it arrives (and
        nothing but that arrival can change an empty FIFO queue), the time that batcher would
        wait for. Asking it now saves a timer event per batch at low load; the answer is the
        same one it would give at the arrival, and is kept until the queue moves on.
        """
        q = self.queue
        if self._wait_head == q.tail:  # asked already, for this same next arrival
            return self._wait_t
        t1 = q.fill_time(1)
        if not self._lookahead or t1 == math.inf:
            return t1
        head = UpcomingHead(self.table, q.tail, t1)
        if head.n > q.max_len:
            return t1
        limit = self.batcher.max_batch
        view = QueueView.lazy(head.n, t1, limit, head.head_arrays, head.fit_items)
        dec = self.batcher.next_batch(view, t1)
        wake = t1
        if dec.take <= 0:
            wake = max(t1, self._wake_time(dec, q))
        self._wait_head, self._wait_t = q.tail, wake  # holds until that arrival is served
        return wake

    @staticmethod
    def _wake_time(dec: BatchDecision, q: Any) -> float:
        """When a decision to wait on central queue ``q`` expires (s): its deadline, or the
        arrival that brings ``wake_at_size`` requests or ``wake_at_items`` items."""
        t = dec.wait_until_s if dec.wait_until_s is not None else math.inf
        if dec.wake_at_size:
            f = q.fill_time(dec.wake_at_size)
            t = f if f < t else t
        if dec.wake_at_items is not None and q.next_arrival_s < t:
            f = q.items_fill_time(dec.wake_at_items)  # an arrival: none before the next one
            t = f if f < t else t
        return t

    def _drop_expired(self, batch: range | np.ndarray, now: float) -> range | np.ndarray:
        """Requests of a batch whose queue timeout passed leave as timed out."""
        tab = self.table
        if (type(batch) is range
                and now - tab.arrival_s[batch.start - tab.base] <= self.min_timeout_s):
            return batch  # the oldest request has not waited long enough to expire
        if type(batch) is range:
            batch = np.arange(batch.start, batch.stop)
        loc = batch - tab.base
        deadline = tab.t[loc] + self.timeout_s[tab.cls[loc]]
        late = deadline < now
        if late.any():
            tab.outcome[loc[late]] = 3
            tab.finish[loc[late]] = deadline[late]
            return batch[~late]
        return batch

    def _arm(self, t: float) -> None:
        """Make sure the central dispatcher wakes at time ``t`` (earliest request wins)."""
        if t >= self.duration_s or t >= self._timer_at:
            return
        self._timer_at = t
        d = t - self.env._now
        self._timer = self.env.timer(d if d > 0.0 else 0.0, self._on_timer)

    def _on_timer(self, ev: simpy.Event) -> None:
        """The dispatcher's timer: idle nodes take what the batcher now allows."""
        if ev is not self._timer:
            return  # superseded by an earlier timer
        self._timer = None
        self._timer_at = math.inf
        while self._n_idle:
            batch, wake_t = self._decide_central()
            if batch is None:
                self._arm(wake_t)
                return
            j = self._pop_idle()
            ev = self._wake[j]
            assert ev is not None
            resume_now(ev, batch)
