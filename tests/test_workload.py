"""Arrival processes, rate curves, classes and sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from simulator import scenario_from_dict
from simulator.workload import Workload
from tests.conftest import SHARED_TRACES, mmc_dict


def _times(raw: dict) -> tuple[Workload, np.ndarray, np.ndarray, np.ndarray]:
    w = Workload(scenario_from_dict(raw))
    chunks = list(w.chunks())
    t = np.concatenate([c.time for c in chunks])
    return w, t, np.concatenate([c.cls for c in chunks]), np.concatenate([c.size for c in chunks])


def test_poisson_counts_and_gaps() -> None:
    _, t, _, _ = _times(mmc_dict(lam=50.0, duration_s=2000, warmup_s=0))
    assert np.all(np.diff(t) >= 0)
    assert len(t) == pytest.approx(100_000, rel=0.02)
    gaps = np.diff(t)
    assert stats.kstest(gaps, "expon", args=(0, 1 / 50.0)).pvalue > 0.01


def test_peak_and_diurnal_curve_is_followed() -> None:
    raw = mmc_dict(lam=20.0, duration_s=7200, warmup_s=0,
                   simulation={"timeseries_interval_s": 60.0})
    raw["workload"]["diurnal"] = {"kind": "sinusoid", "amplitude": 0.5, "peak_hour": 1.0}
    raw["workload"]["peaks"] = [{"start_s": 3600, "ramp_s": 120, "hold_s": 300,
                                 "decay_s": 600, "multiplier": 30.0}]
    w, t, _, _ = _times(raw)
    edges = np.arange(0, 7201, 60.0)
    counts = np.histogram(t, edges)[0]
    expected = np.array([np.trapezoid(w.curve.rate(np.linspace(a, a + 60, 61)),
                                      np.linspace(a, a + 60, 61)) for a in edges[:-1]])
    z = (counts - expected) / np.sqrt(expected)
    assert np.abs(z).max() < 5
    assert np.mean(z**2) == pytest.approx(1.0, abs=0.4)  # Poisson dispersion
    # the hold level is 30x the mean rate
    assert w.curve.rate(np.array([3600 + 200.0]))[0] == pytest.approx(600.0)


def test_gamma_renewal_cv() -> None:
    raw = mmc_dict(lam=10.0, duration_s=5000, warmup_s=0)
    raw["workload"]["arrival"] = {"process": "gamma", "rate_qps": 10.0, "cv": 2.5}
    _, t, _, _ = _times(raw)
    g = np.diff(t)
    assert g.mean() == pytest.approx(0.1, rel=0.05)
    assert g.std() / g.mean() == pytest.approx(2.5, rel=0.1)


def test_mmpp_mean_rate_and_burstiness() -> None:
    raw = mmc_dict(lam=10.0, duration_s=20000, warmup_s=0)
    raw["workload"]["arrival"] = {"process": "mmpp", "rate_qps": 10.0, "states": [
        {"multiplier": 1.0, "mean_sojourn_s": 20.0}, {"multiplier": 8.0, "mean_sojourn_s": 5.0}]}
    _, t, _, _ = _times(raw)
    assert len(t) / 20000 == pytest.approx(10.0, rel=0.08)
    counts = np.histogram(t, np.arange(0, 20001, 10.0))[0]
    assert counts.var() / counts.mean() > 5  # far more bursty than Poisson (dispersion 1)


def test_classes_shares_and_capped_heavy_tailed_sizes() -> None:
    raw = mmc_dict(lam=100.0, duration_s=500, warmup_s=0)
    raw["workload"]["classes"] = [
        {"name": "feed", "share": 3, "size": {"distribution": "lognormal", "mean": 165,
                                              "sigma": 1.0, "max": 1024}},
        {"name": "ads", "share": 1, "size": {"distribution": "pareto", "mean": 20, "alpha": 1.3,
                                             "max": 200}},
    ]
    _, _, cls, size = _times(raw)
    assert np.mean(cls == 0) == pytest.approx(0.75, abs=0.01)
    feed, ads = size[cls == 0], size[cls == 1]
    assert feed.max() <= 1024 and feed.min() >= 1 and ads.max() <= 200
    assert np.median(feed) == pytest.approx(165 * np.exp(-0.5), rel=0.05)
    assert (ads == 200).mean() > 0.005  # the cap binds on a heavy tail


def test_trace_counts_replay(tmp_path: Path) -> None:
    csv = tmp_path / "counts.csv"
    csv.write_text("n\n" + "\n".join(str(x) for x in [5, 0, 12, 3]) + "\n")
    raw = mmc_dict(duration_s=40, warmup_s=0)
    raw["workload"]["arrival"] = {"process": "trace", "trace": {
        "path": str(csv), "format": "counts", "column": "n", "interval_s": 10.0}}
    _, t, _, _ = _times(raw)
    assert np.histogram(t, [0, 10, 20, 30, 40])[0].tolist() == [5, 0, 12, 3]


def test_trace_timestamps_loop_and_scale(tmp_path: Path) -> None:
    csv = tmp_path / "ts.csv"
    csv.write_text("t\n" + "\n".join(f"{x:.3f}" for x in np.arange(0, 10, 0.5)) + "\n")
    raw = mmc_dict(duration_s=30, warmup_s=0)
    raw["workload"]["arrival"] = {"process": "trace", "trace": {
        "path": str(csv), "column": "t", "loop": True, "rate_scale": 2.0}}
    _, t, _, _ = _times(raw)
    assert len(t) == 3 * 20 * 2


@pytest.mark.skipif(not (SHARED_TRACES / "azure_llm_2023").is_dir(), reason="traces absent")
def test_azure_trace_replay_is_bursty() -> None:
    raw = mmc_dict(duration_s=3400, warmup_s=0)
    raw["workload"]["arrival"] = {"process": "trace", "trace": {
        "path": str(SHARED_TRACES / "azure_llm_2023/AzureLLMInferenceTrace_code.csv"),
        "column": "TIMESTAMP", "time_unit": "datetime"}}
    _, t, _, _ = _times(raw)
    assert 8000 < len(t) <= 8819
    per_s = np.histogram(t, np.arange(0, 3401))[0]
    assert per_s.max() / per_s.mean() > 10  # the README measures 26x at 1 s bins
