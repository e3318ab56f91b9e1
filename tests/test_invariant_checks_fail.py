"""The invariant checks catch broken runs (each check must be able to fail)."""

from __future__ import annotations

import copy

import pytest

from simulator import run, scenario_from_dict
from simulator.testing import InvariantError, check_invariants
from tests.conftest import mmc_dict


@pytest.fixture(scope="module")
def result():
    d = mmc_dict(c=2, lam=1.8, duration_s=400, warmup_s=20,
                 simulation={"records": "all"},
                 policy={"batching": {"name": "dynamic", "max_batch": 4, "max_wait_ms": 50}},
                 workload={"classes": [{"name": "a", "share": 1, "timeout_ms": 2000}]})
    res = run(scenario_from_dict(d), seed=1)
    check_invariants(res)  # the genuine run is clean
    return res


def _broken(result, mutate):
    r = copy.copy(result)
    r.records = result.records.copy()
    r.summary = copy.deepcopy(result.summary)
    mutate(r)
    return r


def test_catches_lost_request(result) -> None:
    r = _broken(result, lambda r: r.summary["requests"].__setitem__(
        "completed", r.summary["requests"]["completed"] - 1))
    with pytest.raises(InvariantError, match="conservation"):
        check_invariants(r)


def test_catches_start_before_arrival(result) -> None:
    def mutate(r):
        i = r.records.index[r.records["outcome"] == "completed"][5]
        r.records.loc[i, "start_s"] = r.records.loc[i, "arrival_s"] - 1.0
    with pytest.raises(InvariantError, match=r"causality|before it arrived"):
        check_invariants(_broken(result, mutate))


def test_catches_overlapping_batches(result) -> None:
    def mutate(r):
        rec = r.records
        done = rec[(rec["outcome"] == "completed") & (rec["node"] == 0)]
        i, j = done.index[10], done.index[30]
        # the earlier request i now starts inside request j's batch on the same node
        rec.loc[i, "start_s"] = rec.loc[j, "start_s"] + 1e-6
        rec.loc[i, "finish_s"] = rec.loc[j, "finish_s"] + 1.0
    with pytest.raises(InvariantError, match="before finishing"):
        check_invariants(_broken(result, mutate))


def test_catches_oversized_batch(result) -> None:
    with pytest.raises(InvariantError, match="max_batch"):
        check_invariants(result, max_batch=1)
