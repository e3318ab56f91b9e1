"""Overload behaviour of the engine: priority queues with shedding, graceful degradation.

A mixin of :class:`simulator.engine.Simulation` (it uses the engine's state).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator.cluster import Pool
from simulator.queues import CentralQueue
from simulator.queues_priority import PriorityQueue
from simulator.requests import COMPLETED
from simulator.rng import stream
from simulator.scenario import ScenarioError
from simulator.service import build_service


class Overload:
    """Priority levels, shedding and degradation (cache answers or a cheaper variant)."""

    def _make_queue(self) -> Any:
        """The central queue: plain FIFO, or priority levels when classes differ."""
        sc = self.sc
        adm = sc.policy.admission
        classes = sc.workload.classes
        prios = sorted({c.priority for c in classes}, reverse=True)
        if len(prios) == 1 and all(c.max_queue_length is None for c in classes):
            q: Any = CentralQueue(self.table, adm.max_queue_length)
        else:
            level = np.asarray([prios.index(c.priority) for c in classes])
            limits = [max((c.max_queue_length or adm.max_queue_length) for c in classes
                          if c.priority == pr) for pr in prios]
            q = PriorityQueue(self.table, adm.max_queue_length, level, limits)
        deg = sc.policy.degradation
        self._fallback = None
        self._deg_rng = stream(self.seed, "degradation")
        if deg.enabled and deg.mode == "cache":
            q.divert = self._divert_to_cache
        elif deg.enabled:
            self._fallback = [self._fallback_service(p) for p in self.pools]
        return q

    def _fallback_service(self, p: Pool) -> Any:
        """The cheaper variant a pool switches to while degraded (variant mode)."""
        deg = self.sc.policy.degradation
        cfg = self.sc.pool_service(p.cfg)
        if cfg.profile is None or deg.fallback_variant is None:
            raise ScenarioError(f"{self.sc.source}: field 'policy.degradation.fallback_variant':"
                                " variant mode needs pools with a profile and a fallback_variant")
        vcfg = cfg.model_copy(update={"variant": deg.fallback_variant})
        try:
            return build_service(vcfg, stream(self.seed, f"fallback:{p.name}"),
                                 self.sc.resolve_path(cfg.profile))
        except ValueError as exc:
            raise ScenarioError(f"{self.sc.source}: field 'policy.degradation."
                                f"fallback_variant': {exc}") from None

    def _overloaded_now(self) -> bool:
        deg = self.sc.policy.degradation
        return self.queue.max_wait_s(self.env.now) * 1000.0 > deg.queue_delay_ms

    def _divert_to_cache(self, ids: np.ndarray) -> np.ndarray:
        """Cache mode: while degraded, a share of arrivals get the cached default list."""
        if not self.queue.len or not self._overloaded_now():
            return np.zeros(len(ids), dtype=bool)
        deg = self.sc.policy.degradation
        mask = self._deg_rng.random(len(ids)) < deg.share
        tab = self.table
        loc = ids[mask] - tab.base
        tab.start[loc] = tab.t[loc]
        tab.finish[loc] = tab.t[loc] + deg.cache_latency_ms / 1000.0
        tab.outcome[loc] = COMPLETED
        tab.degraded[loc] = 1
        return mask

    def _degrade_batch(self) -> bool:
        """Variant mode: serve this batch with the fallback variant?"""
        if not self.central or not self._overloaded_now():
            return False
        return bool(self._deg_rng.random() < self.sc.policy.degradation.share)

    def quality_loss_per_degraded(self) -> float:
        """AUC lost per degraded request (configured, else measured for the variant)."""
        deg = self.sc.policy.degradation
        if deg.quality_loss is not None:
            return deg.quality_loss
        if deg.mode == "cache":
            return 0.05
        svc = self._fallback[0] if self._fallback else None
        q = getattr(getattr(svc, "variant", None), "quality", None)
        return abs(q.auc_delta) if q is not None and q.auc_delta is not None else 0.0
