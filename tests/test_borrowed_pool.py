"""Borrowed training GPUs in the engine: a pool capped by what training lends, the borrow
delay, reclaims after a notice (the batch in service requeued), borrowing ahead of scheduled
peaks, and what the loan costs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from simulator import run, scenario_from_dict
from simulator.engine.simulation import Simulation
from simulator.scenario import ScenarioError
from simulator.testing.invariants import check_invariants
from tests.conftest import mmc_dict


def _trace(tmp: Path, times: list[float]) -> str:
    p = tmp / "arrivals.csv"
    p.write_text("time_s\n" + "".join(f"{t}\n" for t in times))
    return str(p)


def _lent(**borrow: Any) -> dict[str, Any]:
    return {"name": "lent", "purchase": "borrowed", "nodes": 1, "min_nodes": 0, "max_nodes": 1,
            "borrow": {"calendar": [{"from": 0, "to": 2, "nodes": 1}],
                       "reclaim_notice_s": 0.5,
                       "borrow_delay": {"distribution": "deterministic", "mean_s": 0.0},
                       **borrow}}


def _golden(tmp: Path, times: list[float], lent: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "borrowed",
        "simulation": {"duration_s": 5.0, "seed": 1, "records": "all",
                       "timeseries_interval_s": 1.0},
        "workload": {"arrival": {"process": "trace", "trace": {"path": _trace(tmp, times)}}},
        "service": {"time": {"distribution": "deterministic", "mean_ms": 1000.0}},
        "cluster": {"pools": [{"name": "base", "nodes": 1, "min_billing_s": 0}, lent]},
        "policy": {"dispatch": "central", "batching": {"name": "none"}},
        "sla": {"slo_ms": 10000.0},
    }


def test_reclaim_requeues_the_batch_in_service_exact(tmp_path: Path) -> None:
    """Lent from 0 to 2 s; at 2 s the notice (0.5 s); the lent node's batch (started at 1.6)
    is still in service at 2.5 and goes back to the queue; the base node takes it at 2.6."""
    res = run(scenario_from_dict(_golden(tmp_path, [0, 0, 1.6, 1.6], _lent())))
    rec = res.records.set_index("id")
    served = {i: (round(r.start_s, 6), round(r.finish_s, 6), r.pool) for i, r in rec.iterrows()}
    assert served == {0: (0.0, 1.0, "base"), 1: (0.0, 1.0, "lent"),
                      2: (1.6, 2.6, "base"), 3: (2.6, 3.6, "base")}
    ev = res.extras["events"]
    lent = [(round(e.t_s, 6), e.kind, e.detail) for e in ev.itertuples() if e.pool == "lent"]
    assert lent == [(0.0, "ready", "node 1"), (0.0, "lendable", "1"),
                    (2.0, "lendable", "0"), (2.0, "reclaim_notice", "node 1"),
                    (2.0, "draining", "node 1"), (2.0, "desired", "1->0"),
                    (2.5, "reclaim", "node 1"), (2.5, "terminated", "node 1")]
    s = res.summary
    assert s["pools"]["lent"]["borrow"]["reclaims"] == 1
    assert s["pools"]["lent"]["requests_requeued"] == 1
    assert s["requests"]["completed"] == 4
    check_invariants(res)


def test_loan_cost_is_lost_training_gpu_hours(tmp_path: Path) -> None:
    res = run(scenario_from_dict(_golden(tmp_path, [0.0], _lent(
        gpus_per_node=4, training_value_usd_per_gpu_hour=3.0, checkpoint_overhead_s=90.0))))
    p = res.summary["pools"]["lent"]
    ns = p["nodes"]["node_seconds"]
    assert ns == pytest.approx(2.0)  # lent from 0; idle at the notice at 2 s, it leaves then
    lent_usd = ns * 4 * 3.0 / 3600
    checkpoint_usd = 90.0 * 4 * 1 * 3.0 / 3600  # one borrow
    assert p["cost_usd"]["compute"] == pytest.approx(lent_usd + checkpoint_usd, rel=1e-12)
    assert p["borrow"]["lost_training_gpu_hours"] == pytest.approx((ns + 90.0) * 4 / 3600)
    assert p["hardware"]["gpus"]["max"] == 4


def _peak_scenario(seed: int = 1, **borrow: Any) -> dict[str, Any]:
    return mmc_dict(
        c=2, lam=1.0, mean_ms=1000, duration_s=3000, warmup_s=0, seed=seed,
        simulation={"records": "all"},
        workload={"peaks": [{"name": "p", "start_s": 1000, "ramp_s": 60, "hold_s": 300,
                             "decay": "linear", "decay_s": 120, "multiplier": 4.0,
                             "relative_to": "curve"}]},
        cluster={"pools": [
            {"name": "gpu", "nodes": 2},
            {"name": "lent", "purchase": "borrowed", "nodes": 0, "min_nodes": 0,
             "max_nodes": 6,
             "borrow": {"calendar": [{"from": 0, "to": 1300, "nodes": 6},
                                     {"from": 1300, "to": 3000, "nodes": 2}],
                        "lead_s": 200, "return_after_s": 100, "reclaim_notice_s": 30,
                        "borrow_delay": {"distribution": "deterministic", "mean_s": 60},
                        **borrow}}]})


def test_borrows_ahead_of_the_peak_and_is_capped_by_the_loan() -> None:
    res = run(scenario_from_dict(_peak_scenario()))
    ev = res.extras["events"]
    lent = ev[ev["pool"] == "lent"]
    first = lent[lent["kind"] == "provisioning"]["t_s"].min()
    assert first == pytest.approx(800.0)  # 200 s before the peak's ramp at 1000 s
    ready = lent[lent["kind"] == "ready"]["t_s"]
    assert ready.min() >= 800.0 + 60.0 - 1e-9  # the borrow delay, then the (zero) load
    # at 1300 s training lends only 2: four are reclaimed after the 30-s notice
    s = res.summary["pools"]["lent"]
    assert s["borrow"]["reclaims"] == 4
    assert s["nodes"]["max"] == 6
    # billed borrowed nodes never exceed what is lent, except those under notice
    alive = 0
    under_notice: set[str] = set()
    for t, at_t in lent.groupby("t_s", sort=True):  # after all of an instant's events
        for e in at_t.itertuples():
            if e.kind == "provisioning":
                alive += 1
            elif e.kind == "terminated":
                alive -= 1
                under_notice.discard(e.detail)
            elif e.kind == "reclaim_notice":
                under_notice.add(e.detail)
        lendable = 6 if t < 1300 else 2
        assert alive - len(under_notice) <= lendable, t
    # the window closes 100 s after the linear decay ends (1000 + 60 + 300 + 120 + 100):
    # every borrowed node is given back then, although training still lends 2
    closed = lent[(lent["kind"] == "borrow_window") & (lent["detail"] == "closed")]["t_s"]
    assert list(closed) == [pytest.approx(1580.0)]
    gone = lent[lent["kind"] == "terminated"]["t_s"]
    assert gone.max() == pytest.approx(1580.0, abs=30.0)  # drained: its last batch ends
    assert res.summary["pools"]["lent"]["nodes"]["final_desired"] == 0
    check_invariants(res)


@pytest.mark.parametrize("seed", [1, 2])
def test_reclaims_mid_batch_conserve_requests(seed: int) -> None:
    d = _peak_scenario(seed, reclaim_notice_s=0.5)
    d["service"] = {"time": {"distribution": "exponential", "mean_ms": 4000}}
    d["workload"]["arrival"]["rate_qps"] = 0.6
    res = run(scenario_from_dict(d))
    assert res.summary["pools"]["lent"]["requests_requeued"] > 0
    check_invariants(res)


# ----------------------------------------------------------------------------- validation
def _build(d: dict[str, Any]) -> None:
    Simulation(scenario_from_dict(d))


def test_borrowed_pool_without_a_capacity_source_is_refused() -> None:
    d = mmc_dict(cluster={"pools": [{"name": "gpu", "nodes": 1},
                                    {"name": "lent", "purchase": "borrowed", "nodes": 0,
                                     "max_nodes": 2}]})
    with pytest.raises(ScenarioError, match=r"cluster\.pools\.lent.*borrow\.calendar.*"
                       r"borrow\.trace"):
        scenario_from_dict(d)
    d["cluster"]["pools"][1]["borrow"] = {"lead_s": 10}
    with pytest.raises(ScenarioError, match=r"calendar.*trace"):
        scenario_from_dict(d)


def test_more_first_nodes_than_lent_are_refused() -> None:
    d = _peak_scenario()
    d["cluster"]["pools"][1]["nodes"] = 7
    d["cluster"]["pools"][1]["max_nodes"] = 8
    with pytest.raises(ScenarioError, match=r"cluster\.pools\.lent\.nodes.*lends 6"):
        _build(d)


def test_price_and_provisioning_do_not_apply_to_a_borrowed_pool() -> None:
    d = _peak_scenario()
    d["cluster"]["pools"][1]["price_per_hour_usd"] = 1.0
    with pytest.raises(ScenarioError, match=r"price_per_hour_usd does not apply"):
        scenario_from_dict(d)
    d = _peak_scenario()
    d["cluster"]["pools"][1]["provisioning"] = {"mean_s": 5}
    with pytest.raises(ScenarioError, match=r"borrow_delay"):
        scenario_from_dict(d)


def test_missing_loan_trace_names_the_field(tmp_path: Path) -> None:
    d = _peak_scenario()
    d["cluster"]["pools"][1]["borrow"] = {"trace": str(tmp_path / "nope.csv")}
    with pytest.raises(ScenarioError,
                       match=r"cluster\.pools\.lent\.borrow\.trace.*(not found|cannot read)"):
        _build(d)


def test_dumped_scenario_reloads() -> None:
    sc = scenario_from_dict(_peak_scenario())
    again = scenario_from_dict(sc.model_dump(mode="json", by_alias=True))
    assert again.cluster.pools[1].price_per_hour_usd == sc.cluster.pools[1].price_per_hour_usd


def test_loan_trace_is_an_input_of_the_run(tmp_path: Path) -> None:
    """The loan's trace is read by the run: provenance lists it with its SHA-256, so kept runs
    (keyed by input content) are not reused when it changes."""
    from simulator.provenance import input_files

    trace = tmp_path / "loan.csv"
    trace.write_text("time_s,nodes\n0,6\n1300,2\n")
    d = _peak_scenario()
    d["cluster"]["pools"][1]["borrow"] = {"trace": str(trace)}
    sc = scenario_from_dict(d)
    Simulation(sc)
    files = {f["field"]: f for f in input_files(sc)}
    entry = files["cluster.pools.lent.borrow.trace"]
    before = entry["sha256"]
    trace.write_text("time_s,nodes\n0,6\n1200,2\n")
    assert {f["field"]: f for f in input_files(sc)}[
        "cluster.pools.lent.borrow.trace"]["sha256"] != before
