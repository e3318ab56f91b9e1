"""Invariants as hypothesis properties over random small scenarios."""

from __future__ import annotations

import numpy as np
from hypothesis import given

from simulator import run, scenario_from_dict
from simulator.testing import check_invariants
from simulator.testing import strategies as st_peaksim


@given(st_peaksim.scenarios())
def test_invariants_hold_on_random_scenarios(raw: dict) -> None:
    res = run(scenario_from_dict(raw))
    check_invariants(res)


@given(st_peaksim.scenarios(max_duration_s=20.0))
def test_same_seed_gives_identical_results(raw: dict) -> None:
    sc = scenario_from_dict(raw)
    a, b = run(sc), run(sc)
    sa = {k: v for k, v in a.summary.items() if k != "wall_s"}
    sb = {k: v for k, v in b.summary.items() if k != "wall_s"}
    assert repr(sa) == repr(sb)
    assert a.records is not None and b.records is not None
    assert a.records.equals(b.records)


@given(st_peaksim.scenarios(max_duration_s=30.0))
def test_central_queue_is_work_conserving(raw: dict) -> None:
    """Without a wait budget, a request waits only while every node is busy."""
    raw["policy"]["dispatch"] = "central"
    raw["policy"].pop("routing", None)
    raw["policy"]["batching"] = {"name": "none"}
    for c in raw["workload"]["classes"]:
        c.pop("timeout_ms", None)
    res = run(scenario_from_dict(raw))
    rec = res.records
    assert rec is not None
    n_nodes = raw["cluster"]["pools"][0]["nodes"]
    served = rec[rec["start_s"].notna()]
    starts = np.sort(served["start_s"].to_numpy())
    finishes = np.sort(served["finish_s"].fillna(np.inf).to_numpy())
    waited = served[served["start_s"] > served["arrival_s"] + 1e-9]
    t = waited["arrival_s"].to_numpy()
    # batches in service just after arrival t: started at or before t, finishing after t
    busy = np.searchsorted(starts, t, side="right") - np.searchsorted(finishes, t, side="right")
    assert np.all(busy >= n_nodes), "a request waited while a node was idle"
