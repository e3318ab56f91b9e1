"""Graceful degradation under overload: answer a share of requests from a cache, serve a
share of batches with a cheaper model variant, or score a share of requests on fewer items,
while the queue is too long.

``policy.degradation`` is on while the oldest request waiting in the queue a request joins
(central dispatch: the shared queue; per-node dispatch: the node's own queue) has waited longer
than ``queue_delay_ms``. Cache mode answers a share of the arrivals at once
(``cache_latency_ms``); variant mode serves a share of the batches with ``fallback_variant``;
shrink mode cuts a share of the arrivals to ``ceil(items * shrink_to)`` items (at least 1) as
they join the queue, before anything reads their items (:meth:`Degradation.shrink`). Each
counts the quality it costs (:meth:`Degradation.quality_loss_per_degraded`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from simulator.engine.clock import Clock
from simulator.engine.nodes import Pool
from simulator.engine.priority_queue import admitted
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
        self.on_shrink: Callable[[np.ndarray, np.ndarray], None] | None = None

    @property
    def enabled(self) -> bool:
        return self.cfg.enabled

    @property
    def caches(self) -> bool:
        """Cache mode: arrivals may be answered from a cache."""
        return self.cfg.enabled and self.cfg.mode == "cache"

    @property
    def shrinks(self) -> bool:
        """Shrink mode: arrivals may be scored on fewer items."""
        return self.cfg.enabled and self.cfg.mode == "shrink"

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

    def shrink(self, ids: np.ndarray, queued: int, oldest_wait_s: float,
               admits: np.ndarray | None = None) -> np.ndarray:
        """Shrink mode: the arriving ``ids`` (consecutive, in order) are about to join a queue
        (``queued`` long, its oldest request waiting ``oldest_wait_s`` s; ``admits``: which of
        them it takes, the rest rejected, None: all); a share of those it takes is cut to
        ``ceil(items * shrink_to)`` items (at least 1) and marked degraded. Returns an
        all-False mask (none leaves: :meth:`divert`'s contract). ``on_shrink(ids, items)``,
        when set, hears of each cut (a cascade passes the cut count on)."""
        first, end = int(ids[0]), int(ids[-1]) + 1
        tab = self.table
        keep = np.zeros(len(ids), dtype=bool)
        if not queued or not self._on(oldest_wait_s):
            tab.resize(first, end)
            return keep
        mask = self.rng.random(len(ids)) < self.cfg.share
        if admits is not None:
            mask &= admits
        if not mask.any():
            tab.resize(first, end)
            return keep
        loc = slice(first - tab.base, end - tab.base)
        size = tab.size[loc].copy()
        # (less a hair: 100 * 0.07 is 7.000000000000001 in floating point, and keeps 7)
        cut = np.maximum(np.ceil(size[mask] * self.cfg.shrink_share - 1e-9), 1).astype(np.int64)
        size[mask] = cut
        tab.resize(first, end, size)
        tab.degraded[loc][mask] = 1
        if self.on_shrink is not None:
            self.on_shrink(ids[mask], cut)
        return keep

    def degrade(self, wait_s: float) -> bool:
        """Variant mode: serve the next batch with the fallback? (``wait_s``: the oldest wait
        in the queue the batch comes from, s)."""
        if not self._on(wait_s):
            return False
        return bool(self.rng.random() < self.cfg.share)

    def quality_loss_per_degraded(self) -> float:
        """AUC lost per degraded request (configured, else measured for the variant; cache
        mode: 0.05; shrink mode requires it)."""
        if self.cfg.quality_loss is not None:
            return self.cfg.quality_loss
        if self.cfg.mode == "cache":
            return 0.05
        svc = self.fallback[0] if self.fallback else None
        q = getattr(getattr(svc, "variant", None), "quality", None)
        return abs(q.auc_delta) if q is not None and q.auc_delta is not None else 0.0


def central_admits(queue: Any, ids: np.ndarray) -> np.ndarray:
    """Which of the arriving ``ids`` the central ``queue`` will take (its admission rule:
    total room, and each class's under priority levels), as a mask (shrink mode cuts only
    those: a request rejected at arrival is not degraded)."""
    total = queue.max_len - queue.len
    classes = getattr(queue, "classes", None)
    if classes is None:
        return np.arange(len(ids)) < total
    tab = queue.table
    return admitted(tab.cls[ids - tab.base].astype(np.int64), classes.room(), total)


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
