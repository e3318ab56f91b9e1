"""The engine side of the fleet: idle-node choice across pools, draining, requeueing, and
the observations autoscalers see. A mixin of :class:`simulator.engine.Simulation`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator.cluster import DRAINING, READY, Pool
from simulator.requests import DROPPED


class FleetHooks:
    """What the fleet asks of the engine (and how nodes leave cleanly)."""

    def _preference_order(self) -> list[int]:
        """Pool indices in the order idle nodes take work (central dispatch)."""
        pref = self.sc.policy.pool_preference
        idx = list(range(len(self.pools)))
        if pref == "cheapest":
            return sorted(idx, key=lambda i: self.pools[i].cfg.price_per_hour_usd)
        if pref == "fastest":
            return sorted(idx, key=lambda i: self.pools[i].service.mean_time(1, 1))
        return idx

    def _pop_idle(self) -> int:
        """An idle ready node, from the preferred pool."""
        self._n_idle -= 1
        if len(self.idle) == 1:
            return self.idle[0].popleft()
        if self.sc.policy.pool_preference == "weighted":
            cand = [i for i in range(len(self.pools)) if self.idle[i]]
            w = np.asarray([self.pools[i].cfg.weight for i in cand])
            u = self.fleet.rng[self.pools[0].name].random() * w.sum()
            return self.idle[cand[int(np.searchsorted(np.cumsum(w), u, side="right"))]
                             ].popleft()
        for i in self._pool_order:
            if self.idle[i]:
                return self.idle[i].popleft()
        raise RuntimeError("no idle node")

    def _kick(self) -> None:
        """A node became ready or work was requeued: let idle nodes look at the queue."""
        if self.central:
            self._arm(self.env.now)
        else:
            for j in np.flatnonzero(self.nodes.ready).tolist():
                if self._waiting[j] and len(self.node_q[j]):
                    self._wake_node(j)

    def _unidle(self, j: int) -> bool:
        """Remove node j from the idle structures; True if it was waiting."""
        if self.central:
            dq = self.idle[self.nodes.pool_of[j]]
            if j in dq:
                dq.remove(j)
                self._n_idle -= 1
        else:
            self._waiting[j] = False
        ev = self._wake[j]
        return ev is not None and not ev.triggered

    def stop_taking(self, p: Pool, j: int) -> None:
        """Node j takes no new work (draining, or a preemption notice)."""
        if self.nodes.state[j] not in (READY,):
            return
        self.fleet.set_state(p, j, DRAINING)
        if self._unidle(j):
            ev = self._wake[j]
            assert ev is not None
            ev.succeed(None)

    def drain_ready(self, p: Pool, k: int) -> int:
        """Drain up to k ready nodes of pool p, idle ones first; returns how many."""
        if k <= 0:
            return 0
        ready = [j for j in p.slots if self.nodes.state[j] == READY]
        ready.sort(key=lambda j: (self._current[j] is not None, -p.birth_s.get(j, 0.0)))
        for j in ready[:k]:
            self.stop_taking(p, j)
        return min(k, len(ready))

    def _release(self, j: int, cause: str) -> None:
        """Node j stops abruptly: its batch in service is requeued or lost."""
        p = self._pool_of[j]
        self._unidle(j)
        tab = self.table
        nodes = self.nodes
        batch = self._current[j]
        lose = False
        if cause == "preempt" and p.cfg.spot is not None:
            lose = p.cfg.spot.on_preempt == "lose"
        elif cause == "fail" and p.cfg.failures is not None:
            lose = p.cfg.failures.on_failure == "lose"
        now = self.env.now
        if batch is not None:
            self._current[j] = None
            ids = np.arange(batch.start, batch.stop) if type(batch) is range else batch
            started = self._bstart[j]
            tab.start[ids - tab.base] = started  # ranges log it only when they finish
            nodes.busy[j] = 0
            p.n_busy -= 1
            p.busy_start_sum_s -= started
            p.busy_done_s += now - started
            self._requeue_or_lose(ids, lose, p)
        if not self.central and len(self.node_q[j]):
            q = self.node_q[j]
            ids = np.fromiter(q.ids, dtype=np.int64, count=len(q))
            q.ids.clear()
            nodes.queue_len[j] = 0
            nodes.queued_work_s[j] = 0.0
            self._requeue_or_lose(ids, lose, p)
        self._kick()

    def _requeue_or_lose(self, ids: np.ndarray, lose: bool, p: Pool) -> None:
        tab = self.table
        loc = ids - tab.base
        if lose:
            tab.outcome[loc] = DROPPED
            tab.finish[loc] = self.env.now
            p.lost_requests += len(ids)
            return
        p.requeued_requests += len(ids)
        tab.start[loc] = np.nan
        tab.node[loc] = -1
        if self.central:
            self.queue.push_front(ids)
        else:
            for gid in ids.tolist():
                self._route(gid, requeue=True)

    def _any_ready(self) -> bool:
        return any(p.counts[READY] for p in self.pools)

    def arrivals_so_far(self) -> int:
        """Requests arrived up to now (all classes, including rejected ones)."""
        if self.central:
            self.queue.materialize(self.env.now)
            return self.queue.tail
        return self._next_gid

    def pool_share(self, p: Pool) -> float:
        """Pool p's share of the traffic: its share of ready nodes (1 for a lone pool)."""
        if len(self.pools) == 1:
            return 1.0
        total = sum(q.counts[READY] for q in self.pools)
        return p.counts[READY] / total if total else 1.0 / len(self.pools)

    def queue_length_for(self, p: Pool) -> float:
        if self.central:
            return self.queue.len * self.pool_share(p)
        return float(self.nodes.queue_len[p.slots.start:p.slots.stop].sum())

    @staticmethod
    def in_service(batches: list[Any]) -> int:
        """Requests in the batches being served (None: an idle node)."""
        return sum(len(b) for b in batches if b is not None)

    def in_service_for(self, p: Pool) -> int:
        """Requests being served by pool p's nodes."""
        return self.in_service(self._current[p.slots.start:p.slots.stop])

    def mean_items(self) -> int:
        """Mean items per request (share-weighted class means, capped)."""
        cl = self.sc.workload.classes
        tot = sum(c.share for c in cl)
        return max(1, round(sum(c.share * min(c.size.mean, c.size.max) for c in cl) / tot))

    def forecast_for(self, p: Pool) -> Any:
        """The prior rate curve (last season's shape) for predictive policies, or None."""
        if self.workload.trace is not None:
            return None
        curve = self.workload.curve

        def f(t: float) -> float:
            return float(curve.rate(np.array([t]))[0]) * self.pool_share(p)

        return f
