"""A cascade's end-to-end time series (timeseries_e2e): per interval, arrivals, completions,
violations and latency of what the funnel's caller saw, against the exact per-request values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analysis import cascade_plots as cp
from analysis.results import load_run
from simulator import run, scenario_from_dict
from simulator.cascade import stats as cstats
from tests.test_cascade import cascade, exp_service

STAGES = [{"name": "recall", "pools": ["r"], "candidates_out": 200, "expands": True},
          {"name": "rank", "pools": ["k"], "service": exp_service(8.0),
           "budget_ms": 60, "degrade": {"skip_below_ms": 5},
           "admission": {"max_queue_length": 6}},  # some are lost here
          {"name": "rerank", "pools": ["x"], "service": exp_service(4.0)}]


def _raw() -> dict[str, Any]:
    # busy enough that intervals differ, some requests are late and some skip ranking
    return cascade(STAGES, [("r", 2), ("k", 1), ("x", 1)], 95.0, duration=200.0, warmup=20.0,
                   slo_ms=80.0, service=exp_service(3.0),
                   simulation={"duration_s": 200.0, "warmup_s": 20.0, "seed": 5,
                               "timeseries_interval_s": 10.0})


def test_series_matches_the_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    orig = cstats.EndToEnd.complete

    def spy(self: Any, rows: Any) -> None:
        seen.append((rows.t0.copy(), (rows.t - rows.t0) * 1e3))
        orig(self, rows)

    monkeypatch.setattr(cstats.EndToEnd, "complete", spy)
    res = run(scenario_from_dict(_raw()))
    e2e = res.extras["timeseries_e2e"]
    s = res.summary
    assert list(e2e["t_s"]) == [10.0 * k for k in range(20)]
    t0 = np.concatenate([a for a, _ in seen])
    lat = np.concatenate([b for _, b in seen])
    assert e2e["arrivals"].sum() == s["requests"]["arrived_incl_warmup"]
    assert e2e["completions"].sum() == len(t0)
    measured = e2e["t_s"] >= s["warmup_s"]
    assert e2e.loc[measured, "violations"].sum() == s["sla"]["violations"]
    assert s["sla"]["violations"] > 0 and s["requests"]["dropped"] > 0
    b = (t0 // 10.0).astype(int)
    for k in range(20):
        x = lat[b == k]
        p99, mean = e2e.loc[k, "p99_latency_ms"], e2e.loc[k, "mean_latency_ms"]
        if len(x) == 0:
            assert np.isnan(p99)
            continue
        assert mean == pytest.approx(x.mean(), rel=1e-9)
        # the sketch's p99 lies between the two requests around rank 0.99 (n - 1), within
        # its bucket error (0.5%)
        xs = np.sort(x)
        r = 0.99 * (len(xs) - 1)
        lo, hi = xs[int(np.floor(r))], xs[int(np.ceil(r))]
        assert lo * 0.994 <= p99 <= hi * 1.006, (k, lo, p99, hi)
    # intervals differ: the series is per interval, not the run's figure repeated
    assert e2e["p99_latency_ms"].nunique() > 5


def test_written_and_drawn_in_the_whole_run_timeline(tmp_path: Path) -> None:
    import tomli_w
    from click.testing import CliRunner

    from simulator.cli import main

    scen = tmp_path / "c.toml"
    scen.write_bytes(tomli_w.dumps(_raw()).encode())
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["run", str(scen), "--out", str(out)])
    assert r.exit_code == 0, r.output
    loaded = load_run(out)
    assert loaded.e2e_series is not None
    ts = cp.end_to_end_series(loaded.timeseries, loaded.e2e_series)
    assert ts["p99_latency_ms"].notna().sum() >= 18
    np.testing.assert_array_equal(ts["violations"].to_numpy(),
                                  loaded.e2e_series["violations"].to_numpy())
    # without it (an older run folder) the end-to-end latency is unknown, not the units'
    assert cp.end_to_end_series(loaded.timeseries)["p99_latency_ms"].isna().all()


@pytest.mark.parametrize("mode", ["cache", "variant"])
def test_stage_degradation_adds_its_quality_loss_end_to_end(mode: str, root: Path) -> None:
    """A stage's own queue-driven degradation (a cached answer, or a cheaper variant) costs the
    request its quality loss end to end, as budget-driven skips and shrinks do."""
    loss = 0.03
    deg: dict[str, Any] = {"enabled": True, "queue_delay_ms": 5, "share": 0.5,
                           "mode": mode, "quality_loss": loss}
    rank: dict[str, Any] = {"name": "rank", "pools": ["k"], "degradation": deg}
    if mode == "variant":
        deg["fallback_variant"] = "int8_emb"
        rank["service"] = {"profile": str(root / "scenarios/profiles/cpu-x86.json"),
                           "variant": "fp32"}
        rank["batching"] = {"name": "dynamic", "max_batch": 4, "max_wait_ms": 1}
    else:
        rank["service"] = exp_service(9.0)
    stages = [{"name": "recall", "pools": ["r"], "candidates_out": 100, "expands": True},
              rank]
    raw = cascade(stages, [("r", 2), ("k", 1)], 380.0 if mode == "variant" else 105.0,
                  duration=120.0, warmup=10.0, slo_ms=300.0, service=exp_service(3.0))
    s = run(scenario_from_dict(raw), seed=2).summary
    unit = s["units"]["rank"]["degradation"]["degraded"]
    assert unit > 50
    got = s["degradation"]["quality_loss_total"]
    # every request the unit degraded that completed end to end in the window carries it
    assert loss * (unit - s["requests"]["in_flight"] - 5) <= got <= loss * (unit + 5)
    assert s["degradation"]["degraded"] == pytest.approx(got / loss, abs=1e-6)


def test_worst_window_as_a_single_stage_run() -> None:
    """sla.worst_window (and each class's): a window as long as the measured run is the run's
    own violation rate; a shorter one is the worst of the per-interval rates recomputed from
    the per-request records (violations and their denominator by arrival interval)."""
    raw = _raw()
    raw["sla"]["worst_window_s"] = 180.0  # the whole measured window (200 s - 20 s warm-up)
    s = run(scenario_from_dict(raw)).summary
    ww = s["sla"]["worst_window"]
    assert ww["violation_rate"] == pytest.approx(s["sla"]["violation_rate"], rel=1e-12)
    assert ww["violations"] == s["sla"]["violations"] and ww["start_s"] == 20.0
    raw["sla"]["worst_window_s"] = 20.0
    res = run(scenario_from_dict(raw), records="all")
    rec = res.records
    rec = rec[rec["arrival_s"] >= 20.0]
    late = (rec["outcome"] != "completed") & ~((rec["outcome"] == "in_flight")
                                               & (200.0 - rec["arrival_s"] <= 0.08))
    late |= rec["latency_ms"] > 80.0
    counted = (rec["outcome"] != "in_flight") | late
    b = (rec["arrival_s"] // 10.0).astype(int)
    v = np.bincount(b[late], minlength=20)
    n = np.bincount(b[counted], minlength=20)
    rates = [(v[k] + v[k + 1]) / (n[k] + n[k + 1]) for k in range(2, 19)]
    got = res.summary["sla"]["worst_window"]
    assert got["violation_rate"] == pytest.approx(max(rates), rel=1e-12)
    assert got["start_s"] == 10.0 * (2 + int(np.argmax(rates)))
    for name, c in res.summary["classes"].items():
        assert 0 <= c["sla"]["worst_window"]["violation_rate"] <= 1, name
