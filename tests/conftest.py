"""Shared helpers for PeakSim tests."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[1]
SHARED_TRACES = ROOT.parent / "shared" / "data" / "traces"

# quick (default, `make test`): derandomized, so a run is reproducible and CI never flakes;
# thorough (PEAKSIM_HYPOTHESIS_PROFILE=thorough): many random examples, for nightly runs.
settings.register_profile(
    "quick", max_examples=25, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough", max_examples=400, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("PEAKSIM_HYPOTHESIS_PROFILE", "quick"))


def mmc_dict(c: int = 8, lam: float = 7.2, mean_ms: float = 1000.0, duration_s: float = 20000,
             warmup_s: float = 2000, seed: int = 7, **extra: Any) -> dict[str, Any]:
    """The issue's M/M/c scenario as a raw dict, with optional deep overrides."""
    d: dict[str, Any] = {
        "name": "mmc-check",
        "simulation": {"duration_s": duration_s, "warmup_s": warmup_s, "seed": seed,
                       "records": "none"},
        "workload": {"arrival": {"process": "poisson", "rate_qps": lam}},
        "service": {"time": {"distribution": "exponential", "mean_ms": mean_ms}},
        "cluster": {"pools": [{"name": "gpu", "nodes": c}]},
        "policy": {"dispatch": "central", "batching": {"name": "none"}},
        "sla": {"slo_ms": 3000},
    }
    return deep_merge(d, extra)


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


@pytest.fixture
def root() -> Path:
    return ROOT
