"""Model instances per node (cluster.pools.instances): concurrency, slowdown, the node's life
and queueing theory with c = nodes x instances."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.queueing import erlang_c, mmc_mean_wait, t_interval
from simulator import run, scenario_from_dict
from simulator.engine.simulation import Simulation
from simulator.hardware.instances import InstancesError, slowdown_table
from simulator.scenario import ScenarioError
from simulator.testing.invariants import InvariantError, check_capacity, check_invariants
from tests.conftest import deep_merge, mmc_dict


def _trace(tmp: Path, times: list[float]) -> str:
    p = tmp / "arrivals.csv"
    p.write_text("time_s\n" + "".join(f"{t}\n" for t in times))
    return str(p)


def _golden(tmp: Path, times: list[float], **pool: Any) -> dict[str, Any]:
    return {
        "name": "instances",
        "simulation": {"duration_s": 6.0, "seed": 1, "records": "all",
                       "timeseries_interval_s": 1.0},
        "workload": {"arrival": {"process": "trace", "trace": {"path": _trace(tmp, times)}}},
        "service": {"time": {"distribution": "deterministic", "mean_ms": 1000.0}},
        "cluster": {"pools": [{"name": "p", "nodes": 1, "min_billing_s": 0, **pool}]},
        "policy": {"dispatch": "central", "batching": {"name": "none"}},
        "sla": {"slo_ms": 10000.0},
    }


def _batches(res: Any) -> list[tuple[float, float, int, int, int]]:
    """(start, finish, node, instance, id) per served request, rounded to the microsecond."""
    rec = res.records
    rec = rec[rec["start_s"].notna()]
    return sorted((round(r.start_s, 6), round(r.finish_s, 6), int(r.node), int(r.instance),
                   int(r.id)) for r in rec.itertuples())


# ----------------------------------------------------------------------------- exact sequence
def test_two_instances_exact_sequence(tmp_path: Path) -> None:
    """1 node x 2 instances, 1 s alone, x1.5 when both serve (fixed when a batch starts)."""
    res = run(scenario_from_dict(_golden(tmp_path, [0, 0, 0.5, 3.0], instances=2,
                                         instance_slowdown={2: 1.5})))
    assert _batches(res) == [
        (0.0, 1.0, 0, 0, 0),   # id 0 starts alone: 1.0 s
        (0.0, 1.5, 0, 1, 1),   # id 1 starts while instance 0 serves: 1.5 s
        (1.0, 2.5, 0, 0, 2),   # id 2 waited (both busy); instance 1 still serves: 1.5 s
        (3.0, 4.0, 0, 1, 3),   # alone again: 1.0 s, on the instance idle the longest
    ]
    ev = res.extras["events"]
    assert list(ev["detail"].unique()) == ["node 0"]  # one node in the fleet's log
    s = res.summary
    # node busy time = instance-seconds / instances: (1 + 1.5 + 1.5 + 1) / 2 over 6 s
    assert s["utilization"] == pytest.approx(5.0 / 2 / 6.0, rel=1e-9)
    assert s["nodes"]["max"] == 1


def test_slowdown_interpolates_between_measured_counts() -> None:
    assert slowdown_table({2: 1.2, 4: 2.0}, 4) == pytest.approx((1.0, 1.2, 1.6, 2.0))
    assert slowdown_table({1: 1.0}, 1) == (1.0,)
    with pytest.raises(InstancesError, match="up to 4"):
        slowdown_table({2: 1.2, 4: 2.0}, 8)


# ----------------------------------------------------------------------------- theory
@pytest.mark.parametrize(("nodes", "k", "rho"), [(2, 4, 0.8), (1, 4, 0.7)])
def test_mmc_with_c_from_nodes_times_instances(nodes: int, k: int, rho: float) -> None:
    """No contention (factor 1): nodes x instances behave as an M/M/c with c = nodes x k."""
    c = nodes * k
    lam = rho * c
    d = mmc_dict(c=nodes, lam=lam, duration_s=6000, warmup_s=500,
                 cluster={"pools": [{"name": "gpu", "nodes": nodes, "instances": k,
                                     "instance_slowdown": {k: 1.0}}]})
    sc = scenario_from_dict(d)
    runs = [run(sc, seed=200 + r).summary for r in range(8)]
    waits = [s["queue_wait_ms"]["mean"] / 1000 for s in runs]
    _, lo, hi = t_interval(waits)
    theory = mmc_mean_wait(c, lam, 1.0)
    assert lo <= theory <= hi, f"Erlang C (c={c}) {theory:.4f} s outside [{lo:.4f}, {hi:.4f}]"
    # a node's utilisation is its instances' busy share: rho
    util = np.mean([s["utilization"] for s in runs])
    assert util == pytest.approx(rho, rel=0.03)
    # and it is not the single-server-per-node answer
    assert not lo <= mmc_mean_wait(nodes, lam / k, 1.0) <= hi
    assert erlang_c(c, lam) < 1


def test_contention_slows_service_as_measured() -> None:
    """With every instance busy a batch takes factor(k) x as long: the utilisation of a
    saturated-enough node follows lambda x E[S] x factor / (c)."""
    k, f = 4, 1.6
    lam = 1.0  # 1 node, 4 instances, E[S] = 1 s: at k busy, S = 1.6 s
    d = mmc_dict(c=1, lam=lam, duration_s=20000, warmup_s=500,
                 cluster={"pools": [{"name": "gpu", "nodes": 1, "instances": k,
                                     "instance_slowdown": {k: f}}]})
    s0 = run(scenario_from_dict(d), seed=3).summary
    d1 = deep_merge(d, {"cluster": {"pools": [{"name": "gpu", "nodes": 1, "instances": k,
                                                "instance_slowdown": {k: 1.0}}]}})
    s1 = run(scenario_from_dict(d1), seed=3).summary
    # contention costs: busier nodes and longer latency than without it
    assert s0["utilization"] > 1.1 * s1["utilization"]
    assert s0["latency_ms"]["mean"] > 1.1 * s1["latency_ms"]["mean"]
    # mean factor between 1 and f: utilisation = lam x E[S x factor] / k
    assert lam * 1.0 / k < s0["utilization"] < lam * f / k


# ----------------------------------------------------------------------------- the node's life
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_preempted_and_failing_multi_instance_nodes_conserve_requests(seed: int) -> None:
    """Spot preemptions and failures hit a whole node: every instance's batch is requeued;
    nothing is lost or served twice, and no node serves more than its instances at once."""
    d = mmc_dict(c=3, lam=5.0, mean_ms=500, duration_s=1500, warmup_s=0, seed=seed,
                 simulation={"records": "all"},
                 cluster={"pools": [{"name": "gpu", "nodes": 3, "min_nodes": 1, "max_nodes": 5,
                                     "instances": 3, "instance_slowdown": {3: 1.3},
                                     "purchase": "spot",
                                     "spot": {"preemptions_per_hour": 12, "notice_s": 5},
                                     "failures": {"mtbf_h": 0.1},
                                     "provisioning": {"mean_s": 20}}]},
                 policy={"autoscaling": {"name": "hpa", "target": 0.6}})
    res = run(scenario_from_dict(d))
    s = res.summary
    assert s["pools"]["gpu"]["preemptions"] + s["pools"]["gpu"]["failures"] > 0
    check_invariants(res)
    rec = res.records
    assert set(rec.loc[rec["node"] >= 0, "instance"]) <= {0, 1, 2}


def test_capacity_check_catches_a_node_over_its_instances(tmp_path: Path) -> None:
    res = run(scenario_from_dict(_golden(tmp_path, [0, 0, 0], instances=3,
                                         instance_slowdown={3: 1.0})))
    check_capacity(res.records, 1, {"p": 3})
    with pytest.raises(InvariantError, match="3 batches at once"):
        check_capacity(res.records, 1, {"p": 2})


def test_two_nodes_four_instances_take_four_requests_at_once(tmp_path: Path) -> None:
    """Four arrivals at once on 2 nodes x 2 instances: all four start at 0 on four slots."""
    times = [0, 0, 0, 0]
    d = _golden(tmp_path, times, nodes=2, instances=2, instance_slowdown={2: 1.0},
                min_nodes=1, max_nodes=2)
    res = run(scenario_from_dict(d))
    assert res.summary["requests"]["completed"] == 4
    assert {(b[2], b[3]) for b in _batches(res)} == {(0, 0), (0, 1), (2, 0), (2, 1)}


# ----------------------------------------------------------------------------- validation
def _build(d: dict[str, Any]) -> None:
    Simulation(scenario_from_dict(d))


def test_instances_need_their_slowdown() -> None:
    d = mmc_dict(cluster={"pools": [{"name": "gpu", "nodes": 2, "instances": 4}]})
    with pytest.raises(ScenarioError, match=r"cluster\.pools\.gpu\.instance_slowdown.*"
                       r"instances = 4"):
        _build(d)


def test_instances_beyond_the_measured_counts_are_refused() -> None:
    d = mmc_dict(cluster={"pools": [{"name": "gpu", "nodes": 2, "instances": 8,
                                     "instance_slowdown": {2: 1.1, 4: 1.5}}]})
    with pytest.raises(ScenarioError, match=r"instance_slowdown.*up to 4.*not 8"):
        _build(d)


def test_instances_need_central_dispatch() -> None:
    d = mmc_dict(cluster={"pools": [{"name": "gpu", "nodes": 2, "instances": 2,
                                     "instance_slowdown": {2: 1.1}}]},
                 policy={"dispatch": "per_node"})
    with pytest.raises(ScenarioError, match=r"cluster\.pools\.gpu\.instances.*central"):
        _build(d)


def test_profile_without_instance_factors_is_refused(root: Path) -> None:
    d = mmc_dict(service={"profile": str(root / "scenarios/profiles/placeholder.json"),
                          "variant": "fp32"},
                 cluster={"pools": [{"name": "gpu", "nodes": 2, "instances": 2}]})
    d["service"].pop("time", None)
    with pytest.raises(ScenarioError, match=r"calibrate-instances"):
        _build(d)


def test_instance_bounds_are_refused() -> None:
    with pytest.raises(ScenarioError, match=r"max_nodes x instances.*at most 100,000"):
        scenario_from_dict(mmc_dict(cluster={"pools": [
            {"name": "gpu", "nodes": 100_000, "instances": 64,
             "instance_slowdown": {64: 2.0}}]}))
    with pytest.raises(ScenarioError, match=r"instance_slowdown\.64.*less than or equal to 1000"):
        scenario_from_dict(mmc_dict(cluster={"pools": [
            {"name": "gpu", "nodes": 2, "instances": 64, "instance_slowdown": {64: 1e9}}]}))
    with pytest.raises(ScenarioError, match=r"instance_slowdown counts.*1 to 64 \(got 0\)"):
        scenario_from_dict(mmc_dict(cluster={"pools": [
            {"name": "gpu", "nodes": 2, "instances": 2, "instance_slowdown": {0: 1.0}}]}))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(k=st.integers(1, 4), nodes=st.integers(1, 3), factor=st.floats(1.0, 3.0),
       spot=st.booleans(), fail=st.booleans(), lend=st.integers(0, 3),
       seed=st.integers(0, 2**31))
def test_conservation_with_instances_spot_failures_and_loans(
        k: int, nodes: int, factor: float, spot: bool, fail: bool, lend: int,
        seed: int) -> None:
    """Random mixes of instances, preemptions, failures and a borrowed pool whose loan ends
    mid-run: every invariant holds (conservation, capacity per instance and per node,
    billing, readiness, bounds)."""
    pool: dict[str, Any] = {"name": "gpu", "nodes": nodes, "min_nodes": 1,
                            "max_nodes": nodes + 1, "instances": k,
                            "instance_slowdown": {k: factor} if k > 1 else None}
    if spot:
        pool.update(purchase="spot", spot={"preemptions_per_hour": 30, "notice_s": 3})
    if fail:
        pool["failures"] = {"mtbf_h": 0.05}
    pools = [pool, {"name": "lent", "purchase": "borrowed", "nodes": min(lend, 2),
                    "min_nodes": 0, "max_nodes": 2, "instances": k,
                    "instance_slowdown": {k: factor} if k > 1 else None,
                    "borrow": {"calendar": [{"from": 0, "to": 150, "nodes": lend}],
                               "reclaim_notice_s": 2,
                               "borrow_delay": {"distribution": "deterministic",
                                                "mean_s": 5}}}]
    d = mmc_dict(c=nodes, lam=3.0 * nodes, mean_ms=400, duration_s=300, warmup_s=0,
                 seed=seed % 1000, simulation={"records": "all"},
                 cluster={"pools": pools},
                 policy={"autoscaling": {"name": "hpa", "target": 0.5,
                                         "sync_period_s": 5}})
    check_invariants(run(scenario_from_dict(d)))
