"""Overload behaviour: priority classes, shedding by priority, graceful degradation."""

from __future__ import annotations

from pathlib import Path

from simulator import run, scenario_from_dict
from simulator.testing import check_invariants
from tests.conftest import mmc_dict


def _two_classes(**policy) -> dict:
    d = mmc_dict(c=2, lam=50.0, mean_ms=50.0, duration_s=300, warmup_s=20,
                 simulation={"records": "all"})  # offered load 2.5 nodes on 2: overload
    d["workload"]["classes"] = [
        {"name": "search", "share": 0.3, "priority": 2, "slo_ms": 200},
        {"name": "ads", "share": 0.7, "priority": 0, "slo_ms": 200, "max_queue_length": 50},
    ]
    d["policy"].update(policy)
    return d


def test_higher_priority_is_served_first_under_overload() -> None:
    res = run(scenario_from_dict(_two_classes()), seed=1)
    check_invariants(res)
    c = res.summary["classes"]
    assert c["search"]["latency_ms"]["p99"] < 0.2 * c["ads"]["latency_ms"]["p99"]
    assert c["search"]["requests"]["dropped"] == 0
    # ads are shed by their own queue limit of 50
    assert c["ads"]["requests"]["dropped"] > 0
    assert res.summary["overloaded"]


def test_cache_degradation_answers_a_share_and_is_counted() -> None:
    deg = {"enabled": True, "mode": "cache", "queue_delay_ms": 100, "share": 0.5,
           "cache_latency_ms": 2.0, "quality_loss": 0.01}
    base = run(scenario_from_dict(_two_classes()), seed=2).summary
    d = _two_classes(degradation=deg)
    d["sla"]["penalty_usd_per_degraded"] = 0.001
    res = run(scenario_from_dict(d), seed=2)
    check_invariants(res)
    s = res.summary
    assert s["degradation"]["degraded"] > 0
    assert s["sla"]["violation_rate"] < base["sla"]["violation_rate"]
    assert s["degradation"]["mean_auc_loss"] == (
        s["degradation"]["degraded"] * 0.01 / s["requests"]["arrived"])
    assert s["cost_usd"]["sla_penalty"] >= 0.001 * s["degradation"]["degraded"]
    rec = res.records
    cached = rec[(rec["outcome"] == "completed") & (rec["latency_ms"].round(6) == 2.0)]
    assert len(cached) >= s["degradation"]["degraded"] * 0.9


def _profile(tmp_path: Path) -> Path:
    """A two-variant profile: 'fast' is half the latency of 'fp32' and loses 0.003 AUC."""
    import json

    def var(scale: float, auc_delta: float) -> dict:
        x = [1, 16, 64, 256]
        y = [scale * (5.0 + 0.5 * b) for b in x]
        return {"batch_sizes": x, "latency_ms": {"median": y, "p99": [v * 1.2 for v in y]},
                "fit": {"x": x, "y_ms": y, "max_rel_error": 0.0}, "residuals": [1.0],
                "model_bytes": 10**8, "load_time_s": 1.0,
                "quality": {"auc": 0.8 + auc_delta, "auc_delta": auc_delta}}

    path = tmp_path / "p.json"
    path.write_text(json.dumps({"schema_version": 1, "name": "t", "source": "placeholder",
                                "device": {"kind": "cpu", "name": "test"},
                                "variants": {"fp32": var(1.0, 0.0),
                                             "fast": var(0.5, -0.003)}}))
    return path


def test_variant_degradation_switches_to_the_cheaper_model(tmp_path: Path) -> None:
    # capacity at batch 16: fp32 16 / 13 ms = 1,230/s; fast 2,460/s; offered 1,600/s
    d = mmc_dict(c=1, lam=1600.0, duration_s=30, warmup_s=2)
    d["service"] = {"profile": str(_profile(tmp_path)), "variant": "fp32"}
    d["policy"]["batching"] = {"name": "dynamic", "max_batch": 16, "max_wait_ms": 1.0}
    base = run(scenario_from_dict(d), seed=3).summary
    assert base["overloaded"]
    d["policy"]["degradation"] = {"enabled": True, "mode": "variant", "share": 1.0,
                                  "queue_delay_ms": 5, "fallback_variant": "fast"}
    s = run(scenario_from_dict(d), seed=3).summary
    assert s["degradation"]["degraded"] > 0
    assert s["degradation"]["auc_loss_per_degraded"] == 0.003  # from the profile
    assert s["latency_ms"]["p99"] < base["latency_ms"]["p99"]
