"""Graceful degradation under overload: answer a share of requests from a cache, or serve a
share of batches with a cheaper model variant, while the queue is too long.

``policy.degradation`` is on while the oldest request waiting in the queue a request joins
(central dispatch: the shared queue; per-node dispatch: the node's own queue) has waited longer
than ``queue_delay_ms``. Cache mode answers a share of the arrivals at once
(``cache_latency_ms``); variant mode serves a share of the batches with ``fallback_variant``.
Either counts the quality it costs (:meth:`Degradation.quality_loss_per_degraded`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator.engine.clock import Clock
from simulator.engine.nodes import Pool
from simulator.engine.requests import RequestTable
from simulator.scenario import DegradationCfg, Scenario, ScenarioError
from simulator.service import build_service


class Degradation:
    """The degradation rule of a run (see the module docstring).

    ``rng``: its own stream (which requests or batches degrade); ``fallback``: per pool, the
    fallback service (variant mode), else None.
    """

    def __init__(self, cfg: DegradationCfg, env: Clock, table: RequestTable,
                 rng: np.random.Generator, fallback: list[Any] | None) -> None:
        self.cfg = cfg
        self.env = env
        self.table = table
        self.rng = rng
        self.fallback = fallback
        self.threshold_s = cfg.queue_delay_ms / 1000.0

    @property
    def enabled(self) -> bool:
        return self.cfg.enabled

    @property
    def caches(self) -> bool:
        """Cache mode: arrivals may be answered from a cache."""
        return self.cfg.enabled and self.cfg.mode == "cache"

    def _on(self, wait_s: float) -> bool:
        return wait_s * 1000.0 > self.cfg.queue_delay_ms

    def divert(self, ids: np.ndarray, queued: int, oldest_wait_s: float) -> np.ndarray:
        """Cache mode: which of the arriving ``ids`` get the cached answer now (a boolean
        mask); they end completed and degraded. ``queued`` and ``oldest_wait_s`` (s) describe
        the queue they are about to join."""
        if not queued or not self._on(oldest_wait_s):
            return np.zeros(len(ids), dtype=bool)
        mask = self.rng.random(len(ids)) < self.cfg.share
        self.table.answer(ids[mask], self.cfg.cache_latency_ms / 1000.0)
        return mask

    def degrade(self, wait_s: float) -> bool:
        """Variant mode: serve the next batch with the fallback? (``wait_s``: the oldest wait
        in the queue the batch comes from, s)."""
        if not self._on(wait_s):
            return False
        return bool(self.rng.random() < self.cfg.share)

    def quality_loss_per_degraded(self) -> float:
        """AUC lost per degraded request (configured, else measured for the variant; cache
        mode: 0.05)."""
        if self.cfg.quality_loss is not None:
            return self.cfg.quality_loss
        if self.cfg.mode == "cache":
            return 0.05
        svc = self.fallback[0] if self.fallback else None
        q = getattr(getattr(svc, "variant", None), "quality", None)
        return abs(q.auc_delta) if q is not None and q.auc_delta is not None else 0.0


def fallback_services(sc: Scenario, pools: list[Pool], seed_stream: Any) -> list[Any]:
    """The cheaper variant each pool switches to while degraded (variant mode).

    ``seed_stream(name)`` gives the random stream of each fallback service.
    """
    deg = sc.policy.degradation
    out = []
    for p in pools:
        cfg = sc.pool_service(p.cfg)
        if cfg.profile is None or deg.fallback_variant is None:
            raise ScenarioError(f"{sc.source}: field 'policy.degradation.fallback_variant':"
                                " variant mode needs pools with a profile and a fallback_variant")
        vcfg = cfg.model_copy(update={"variant": deg.fallback_variant})
        try:
            out.append(build_service(vcfg, seed_stream(f"fallback:{p.name}"),
                                     sc.resolve_path(cfg.profile),
                                     sc.resolve_path(cfg.serving) if cfg.serving else None))
        except ValueError as exc:
            raise ScenarioError(f"{sc.source}: field 'policy.degradation."
                                f"fallback_variant': {exc}") from None
    return out
