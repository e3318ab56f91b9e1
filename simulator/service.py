"""Service models: the time one node needs for one batch (s).

``AnalyticService`` draws from a distribution; ``ProfileService`` evaluates a calibrated
profile (fitted latency by items per batch, plus serving overheads) times an empirical
residual. Both draw their randomness in blocks from their own seeded stream, so the per-batch
cost is a list lookup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from simulator.distributions import Distribution, make_distribution
from simulator.profiles import VariantProfile, get_variant, load_profile, service_ms
from simulator.scenario import ServiceCfg

_BLOCK = 8192


class ServiceModel(Protocol):
    """Batch service time and the facts about the model a node runs."""

    model_bytes: int
    load_time_s: float
    needs_items: bool  # False when the batch time ignores how many items it holds

    def sample(self, n_requests: int, n_items: int) -> float:
        """Service time of one batch, s."""
        ...

    def mean_time(self, n_requests: int, n_items: int) -> float:
        """Expected service time of one batch, s."""
        ...


class AnalyticService:
    """Batch time = base draw + per_request x (n - 1) + per_item x items, divided by speed."""

    def __init__(self, cfg: ServiceCfg, rng: np.random.Generator) -> None:
        t = cfg.time
        assert t is not None
        self.dist: Distribution = make_distribution(t.distribution, t.mean_ms / 1000.0, t.cv)
        self.per_request_s = t.per_request_ms / 1000.0
        self.per_item_s = t.per_item_ms / 1000.0
        self.speed = cfg.speed
        self.needs_items = self.per_item_s > 0  # batch time depends on items per batch
        self.model_bytes = 0
        self.load_time_s = 0.0
        self._rng = rng
        self._buf: list[float] = []
        self._i = 0

    def _base(self) -> float:
        if self._i >= len(self._buf):
            self._buf = self.dist.sample(self._rng, _BLOCK).tolist()
            self._i = 0
        v = self._buf[self._i]
        self._i += 1
        return v

    def sample(self, n_requests: int, n_items: int) -> float:
        extra = self.per_request_s * (n_requests - 1) + self.per_item_s * n_items
        i = self._i  # the next base draw (inlined _base: called once per batch)
        if i >= len(self._buf):
            return (self._base() + extra) / self.speed
        self._i = i + 1
        return (self._buf[i] + extra) / self.speed

    def mean_time(self, n_requests: int, n_items: int) -> float:
        extra = self.per_request_s * (n_requests - 1) + self.per_item_s * n_items
        return (self.dist.mean + extra) / self.speed


class ProfileService:
    """Batch time from a calibration profile: service_ms(items) x residual / speed."""

    _TABLE_MAX = 4096

    def __init__(self, variant: VariantProfile, speed: float, rng: np.random.Generator) -> None:
        self.variant = variant
        self.speed = speed
        self.needs_items = True
        self.model_bytes = variant.model_bytes
        self.load_time_s = variant.load_time_s + variant.first_call_ms / 1000.0
        # residuals seen in serving (GIL, collation jitter, stalls) when the profile has them
        self._resid = np.asarray(variant.serving_residuals or variant.residuals, dtype=float)
        self._resid_mean = float(self._resid.mean())
        # mean-free time per items count, s, precomputed for the common range
        self._table = (service_ms(variant, np.arange(self._TABLE_MAX + 1)) / 1000.0).tolist()
        self._rng = rng
        self._buf: list[float] = []
        self._i = 0

    def _base_s(self, n_items: int) -> float:
        if n_items <= self._TABLE_MAX:
            return self._table[n_items]
        return float(service_ms(self.variant, n_items)) / 1000.0

    def _residual(self) -> float:
        if self._i >= len(self._buf):
            self._buf = self._rng.choice(self._resid, _BLOCK).tolist()
            self._i = 0
        v = self._buf[self._i]
        self._i += 1
        return v

    def sample(self, n_requests: int, n_items: int) -> float:
        """One batch's service time, s (inlined: called once per batch)."""
        i = self._i
        if i >= len(self._buf):
            self._buf = self._rng.choice(self._resid, _BLOCK).tolist()
            i = 0
        self._i = i + 1
        base = (self._table[n_items] if n_items <= self._TABLE_MAX
                else float(service_ms(self.variant, n_items)) / 1000.0)
        return base * self._buf[i] / self.speed

    def mean_time(self, n_requests: int, n_items: int) -> float:
        return self._base_s(n_items) * self._resid_mean / self.speed


def build_service(
    cfg: ServiceCfg, rng: np.random.Generator, profile_path: Path | None = None,
    serving_path: Path | None = None,
) -> AnalyticService | ProfileService:
    """The service model a pool runs; ``profile_path`` and ``serving_path`` are the resolved
    model profile and serving-stack profile (``cfg.serving``) files."""
    if cfg.time is not None:
        return AnalyticService(cfg, rng)
    assert cfg.profile is not None and cfg.variant is not None
    path = profile_path or Path(cfg.profile)
    prof = load_profile(path)
    variant = get_variant(prof, cfg.variant, path)
    if cfg.serving is not None:  # the model's forward fit, the serving stack's overheads
        from simulator.serving_profile import load_serving_profile
        from simulator.stack_service import stack_service

        stack = load_serving_profile(serving_path or Path(cfg.serving))
        return stack_service(variant, stack, cfg.variant, cfg.speed, rng)
    return ProfileService(variant, cfg.speed, rng)
