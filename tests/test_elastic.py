"""Elastic cluster: lifecycle, billing, fleet bounds, preemption, failures, predictive scaling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator import run, scenario_from_dict
from simulator.testing import check_invariants
from tests.conftest import mmc_dict


def _elastic(**pool) -> dict:
    d = mmc_dict(c=2, lam=20.0, mean_ms=50.0, duration_s=1800, warmup_s=0,
                 simulation={"records": "all", "timeseries_interval_s": 10.0})
    d["cluster"]["pools"][0].update(pool)
    return d


def _node_events(res) -> pd.DataFrame:
    ev = res.extras["events"]
    ev = ev[ev["detail"].str.startswith("node ")].copy()
    ev["node"] = ev["detail"].str.slice(5).astype(int)
    return ev


def test_billing_includes_provisioning_and_loading() -> None:
    # 1 node at t=0; static policy wants 3: two more requested at the first sync (60 s), each
    # provisioning 100 s (deterministic) then loading 30 s. All are billed from request.
    d = _elastic(nodes=1, max_nodes=3, container_start_s=30.0,
                 provisioning={"distribution": "deterministic", "mean_s": 100.0})
    d["policy"]["autoscaling"] = {"name": "static", "nodes": 3, "sync_period_s": 60.0}
    res = run(scenario_from_dict(d), seed=1)
    s = res.summary
    assert s["nodes"]["node_seconds"] == pytest.approx(1800 + 2 * (1800 - 60))
    ev = _node_events(res)
    ready = ev[ev["kind"] == "ready"]
    late = ready[ready["t_s"] > 0]
    assert len(late) == 2 and np.allclose(late["t_s"], 60 + 100 + 30)
    # compute cost = billed node-hours x price
    assert s["cost_usd"]["compute"] == pytest.approx(
        s["nodes"]["node_seconds"] / 3600 * d["cluster"]["pools"][0].get("price_per_hour_usd",
                                                                          1.006))


def test_no_request_is_served_by_a_node_that_is_not_ready() -> None:
    d = _elastic(nodes=1, min_nodes=1, max_nodes=6,
                 provisioning={"distribution": "lognormal", "mean_s": 40.0, "cv": 0.5})
    d["workload"]["peaks"] = [{"start_s": 600, "ramp_s": 60, "hold_s": 300, "decay_s": 200,
                               "decay": "linear", "multiplier": 4.0}]
    d["policy"]["autoscaling"] = {"name": "hpa", "metric": "utilization", "target": 0.5}
    res = run(scenario_from_dict(d), seed=2)
    check_invariants(res)
    ev = _node_events(res)
    rec = res.records[res.records["start_s"].notna()]
    assert res.summary["pools"]["gpu"]["scale_ups"] > 0
    for node, g in rec.groupby("node"):
        e = ev[ev["node"] == node].sort_values("t_s")
        # intervals during which the node was ready
        ready_from = e[e["kind"] == "ready"]["t_s"].to_numpy()
        ends = e[e["kind"].isin(["draining", "terminated", "failed"])]["t_s"].to_numpy()
        for t in g["start_s"].to_numpy():
            starts_before = ready_from[ready_from <= t + 1e-9]
            assert len(starts_before), f"node {node} served at {t} before ever being ready"
            last_ready = starts_before.max()
            assert not np.any((ends > last_ready) & (ends < t - 1e-9)), (
                f"node {node} served at {t} after it stopped being ready")


@given(st.sampled_from(["hpa", "kpa", "target_tracking"]), st.integers(1, 3),
       st.integers(3, 8), st.floats(0.5, 6.0), st.integers(0, 10_000))
def test_fleet_stays_within_bounds(policy: str, lo: int, hi: int, peak: float, seed: int) -> None:
    d = _elastic(nodes=lo, min_nodes=lo, max_nodes=hi,
                 provisioning={"distribution": "exponential", "mean_s": 20.0})
    d["simulation"]["duration_s"] = 900
    d["workload"]["peaks"] = [{"start_s": 200, "ramp_s": 30, "hold_s": 200, "decay_s": 100,
                               "decay": "linear", "multiplier": 1.0 + peak}]
    d["policy"]["autoscaling"] = {"name": policy}
    res = run(scenario_from_dict(d), seed=seed)
    check_invariants(res)
    ps = res.extras["timeseries_pools"]
    billed = ps[["provisioning", "loading", "ready", "draining", "failed"]].sum(axis=1)
    assert (ps["desired"] >= lo).all() and (ps["desired"] <= hi).all()
    assert (billed <= hi).all()
    assert res.summary["nodes"]["max"] <= hi


@pytest.mark.parametrize("on_preempt", ["requeue", "lose"])
def test_spot_preemption_keeps_conservation(on_preempt: str) -> None:
    d = _elastic(nodes=3, purchase="spot", price_per_hour_usd=0.3,
                 spot={"preemptions_per_hour": 20.0, "notice_s": 5.0, "on_preempt": on_preempt},
                 provisioning={"distribution": "deterministic", "mean_s": 30.0})
    d["workload"]["arrival"]["rate_qps"] = 40.0
    res = run(scenario_from_dict(d), seed=4)
    check_invariants(res)  # every request ends exactly once
    pool = res.summary["pools"]["gpu"]
    assert pool["preemptions"] > 5
    ev = res.extras["events"]
    assert (ev["kind"] == "preemption").sum() > 0
    if on_preempt == "lose":
        assert res.summary["requests"]["dropped"] >= pool["requests_lost"]
        assert pool["requests_requeued"] == 0
    else:
        assert pool["requests_lost"] == 0
    # preempted nodes are replaced by the static policy: capacity comes back
    assert res.extras["timeseries_pools"]["ready"].iloc[-20:].max() >= 2


def test_failures_are_repaired_and_requests_requeued() -> None:
    d = _elastic(nodes=3, failures={"mtbf_h": 0.1, "repair": {"distribution": "deterministic",
                                                               "mean_s": 60.0}})
    res = run(scenario_from_dict(d), seed=5)
    check_invariants(res)
    pool = res.summary["pools"]["gpu"]
    assert pool["failures"] > 5
    ev = _node_events(res)
    failed = ev[ev["kind"] == "failed"]
    ready = ev[ev["kind"] == "ready"]
    # each failed node comes back ready after repair (60 s) + load time
    for _, f in failed.iterrows():
        back = ready[(ready["node"] == f["node"]) & (ready["t_s"] > f["t_s"])]
        if f["t_s"] < 1800 - 120:
            assert len(back) and back["t_s"].min() >= f["t_s"] + 60 - 1e-9


def test_predictive_provisions_before_a_known_peak_and_reactive_after() -> None:
    peak_start = 3600.0

    def first_rise(policy: dict) -> float:
        d = _elastic(nodes=3, min_nodes=1, max_nodes=12,  # starts stable: rho = 1/3
                     provisioning={"distribution": "deterministic", "mean_s": 60.0})
        d["simulation"].update(duration_s=5400, records="none")
        d["workload"]["peaks"] = [{"start_s": peak_start, "ramp_s": 60, "hold_s": 900,
                                   "decay_s": 300, "decay": "linear", "multiplier": 6.0}]
        d["policy"]["autoscaling"] = policy
        ps = run(scenario_from_dict(d), seed=6).extras["timeseries_pools"]
        above = ps[ps["desired"] >= 6]  # off-peak needs 2-3 nodes (1 node-load, target 0.5)
        return float(above["t_s"].min()) if len(above) else np.inf

    predictive = first_rise({"name": "predictive", "scheduling_buffer_s": 300.0, "lead_s": 60.0})
    reactive = first_rise({"name": "hpa", "metric": "utilization", "target": 0.5})
    assert predictive < peak_start, predictive
    assert reactive >= peak_start, reactive


def test_scale_down_drains_without_losing_work() -> None:
    d = _elastic(nodes=6, min_nodes=1, max_nodes=6)
    d["policy"]["autoscaling"] = {"name": "hpa", "metric": "utilization", "target": 0.7}
    res = run(scenario_from_dict(d), seed=7)
    check_invariants(res)
    s = res.summary
    assert s["pools"]["gpu"]["scale_downs"] > 0
    assert s["requests"]["dropped"] == 0 and s["pools"]["gpu"]["requests_lost"] == 0
    assert res.extras["timeseries_pools"]["ready"].iloc[-1] < 6
