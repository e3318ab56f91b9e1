"""Serving calibration: overheads from pooled serving runs, serving residuals, pooled rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from simulator.calibration.fidelity import compare
from simulator.calibration.serving import ServingResult, fit_serving
from simulator.profiles import get_variant, load_profile
from simulator.service import ProfileService

ISO = np.array([0.4, 0.5, 0.55, 0.62, 0.77, 1.06])  # isolated forward, ms, at 1, 2, 4, ... 32


def iso_ms(k: np.ndarray) -> np.ndarray:
    return np.interp(k, [1, 2, 4, 8, 16, 32], ISO)


def fake_run(ks: np.ndarray, a: float, b: float, rng: np.random.Generator,
             noise: float = 0.05) -> ServingResult:
    """A serving run whose batches take iso(k) + a + b k, times lognormal noise (median 1)."""
    ms = (iso_ms(ks) + a + b * ks) * rng.lognormal(0.0, noise, len(ks))
    start = np.linspace(1.0, 9.0, len(ks))
    lat = np.full(10, 3.0)
    return ServingResult(rate_qps=100.0, duration_s=10.0, warmup_s=1.0, latency_ms=lat,
                         batch_items=ks.astype(int), batch_start=start, batch_ms=ms,
                         timer_overshoot_ms=np.full(5, 0.1), utilization=0.3, achieved_qps=100.0)


def test_pooled_loads_separate_per_batch_and_per_item_costs() -> None:
    rng = np.random.default_rng(3)
    a, b = 0.5, 0.012
    low = fake_run(rng.integers(1, 4, 800), a, b, rng)  # small batches only
    high = fake_run(rng.integers(14, 33, 800), a, b, rng)  # large batches only
    cal = fit_serving([low, high], iso_ms)
    assert cal.overhead_ms_per_batch == pytest.approx(a, abs=0.03)
    assert cal.overhead_ms_per_item == pytest.approx(b, abs=0.002)
    assert cal.timer_slack_ms == pytest.approx(0.1)
    r = np.asarray(cal.residuals)
    assert np.median(r) == pytest.approx(1.0, abs=0.02)
    assert np.std(np.log(r)) == pytest.approx(0.05, abs=0.01)


def test_profile_service_draws_serving_residuals_when_present(tmp_path: Path) -> None:
    raw = json.loads(Path("scenarios/profiles/cpu-x86.json").read_text())
    v = raw["variants"]["fp32"]
    v["residuals"] = [1.0]
    v.pop("serving_residuals", None)
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(raw))
    v["serving_residuals"] = [2.0, 2.0]
    served = tmp_path / "served.json"
    served.write_text(json.dumps(raw))
    rng = np.random.default_rng(0)
    s1 = ProfileService(get_variant(load_profile(plain), "fp32"), 1.0, rng)
    s2 = ProfileService(get_variant(load_profile(served), "fp32"), 1.0, rng)
    assert s2.sample(4, 4) == pytest.approx(2.0 * s1.sample(4, 4))
    v["serving_residuals"] = [1.0, -1.0]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="residuals must be positive"):
        load_profile(bad)


def test_compare_pools_real_runs_and_reports_their_spread() -> None:
    rng = np.random.default_rng(1)
    runs = [fake_run(np.ones(10, dtype=int), 0.5, 0.0, rng) for _ in range(2)]
    runs[0].latency_ms = np.full(100, 2.0)
    runs[1].latency_ms = np.full(100, 3.0)
    row = compare(runs, {"p50": 2.5, "p95": 3.0, "p99": 3.0, "util": 0.3}, 0.3)
    assert len(row.real_runs) == 2
    assert row.real["p99"] == pytest.approx(3.0)
    assert row.run_spread("p50") == pytest.approx((3.0 - 2.0) / row.real["p50"])
    assert row.error("p99") == pytest.approx(0.0)
