"""Dynamic batching: unit properties of the pure batcher and batching in whole runs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator import run, scenario_from_dict
from simulator.policies import QueueView, create
from simulator.testing import check_invariants
from tests.conftest import mmc_dict


@given(
    n=st.integers(0, 100), max_batch=st.integers(1, 32), wait_ms=st.sampled_from([0.0, 1.0, 5.0]),
    age_ms=st.floats(0, 10), items_cap=st.one_of(st.none(), st.integers(1, 100)),
    preferred=st.lists(st.integers(1, 32), max_size=3),
)
def test_dynamic_batcher_decisions(n, max_batch, wait_ms, age_ms, items_cap, preferred) -> None:
    preferred = [p for p in preferred if p <= max_batch]
    b = create("batcher", "dynamic", max_batch=max_batch, max_wait_ms=wait_ms,
               max_batch_items=items_cap, preferred_sizes=preferred)
    now = 100.0
    k = min(n, max_batch)
    arrivals = np.sort(now - age_ms / 1000 + np.linspace(0, age_ms / 1000, k))
    items = np.full(k, 3)
    d = b.next_batch(QueueView(n_waiting=n, arrival_s=arrivals, items=items), now)
    if n == 0:
        assert d.take == 0
        return
    assert 0 <= d.take <= max_batch
    if d.take:
        if items_cap is not None and d.take > 1:
            assert d.take * 3 <= items_cap
    else:
        # waiting never goes past the oldest request's deadline
        assert d.wait_until_s is not None
        assert d.wait_until_s <= arrivals[0] + wait_ms / 1000 + 1e-12
        assert d.wait_until_s > now
    if age_ms >= wait_ms and d.take == 0:
        pytest.fail("deadline passed but the batcher still waits")


def test_full_batch_taken_immediately() -> None:
    b = create("batcher", "dynamic", max_batch=4, max_wait_ms=100.0)
    d = b.next_batch(QueueView(6, np.zeros(4), np.ones(4)), 0.001)
    assert d.take == 4


@pytest.mark.parametrize("dispatch", ["central", "per_node"])
def test_batching_in_a_run_respects_max_batch_and_wait(dispatch: str) -> None:
    d = mmc_dict(c=2, lam=400.0, mean_ms=20.0, duration_s=60, warmup_s=5,
                 simulation={"records": "all"},
                 service={"time": {"distribution": "deterministic", "mean_ms": 5.0,
                                   "per_request_ms": 0.5}},
                 policy={"dispatch": dispatch, "routing": {"name": "round_robin"},
                         "batching": {"name": "dynamic", "max_batch": 16, "max_wait_ms": 4.0}})
    res = run(scenario_from_dict(d), seed=3)
    check_invariants(res)
    rec = res.records
    done = rec[rec["outcome"] == "completed"]
    sizes = done.groupby(["node", "start_s"]).size()
    assert sizes.max() <= 16
    # batching really happens: ~0.8-1.6 extra arrivals land in each 4 ms wait (200-400 QPS)
    assert sizes.mean() > 1.2 and sizes.max() > 3
    # a request never waits longer than max_wait while a node is idle: with 2 nodes able to
    # serve a 16-batch in 12.5 ms, waits stay near max_wait
    assert res.summary["queue_wait_ms"]["p99"] < 4.0 + 13.0


def test_batching_raises_throughput_under_load() -> None:
    base = mmc_dict(c=1, lam=250.0, duration_s=60, warmup_s=5,
                    service={"time": {"distribution": "deterministic", "mean_ms": 5.0,
                                      "per_request_ms": 0.5}})
    no = run(scenario_from_dict(base), seed=1).summary
    d = dict(base)
    d["policy"] = {"dispatch": "central",
                   "batching": {"name": "dynamic", "max_batch": 32, "max_wait_ms": 2.0}}
    yes = run(scenario_from_dict(d), seed=1).summary
    assert no["overloaded"]  # 250 QPS x 5 ms = 1.25 > 1 without batching
    assert not yes["overloaded"]
    assert yes["latency_ms"]["p99"] < 100


@pytest.mark.parametrize("dispatch", ["central", "per_node"])
def test_item_cap_dispatches_at_the_overflowing_arrival(dispatch: str) -> None:
    """40 items a request, at most 100 a batch: the third arrival overflows the cap, so the
    first two leave at that instant although max_wait (1 s) is far off and the node is idle."""
    d = mmc_dict(c=1, lam=10.0, duration_s=300, warmup_s=10,
                 simulation={"records": "all"},
                 workload={"classes": [{"name": "a", "share": 1.0,
                                        "size": {"distribution": "constant", "mean": 40}}]},
                 service={"time": {"distribution": "deterministic", "mean_ms": 1.0}},
                 policy={"dispatch": dispatch, "routing": {"name": "round_robin"},
                         "batching": {"name": "dynamic", "max_batch": 32,
                                      "max_batch_items": 100, "max_wait_ms": 1000.0}})
    res = run(scenario_from_dict(d), seed=5)
    check_invariants(res)
    rec = res.records.sort_values("arrival_s")
    done = rec[rec["outcome"] == "completed"]
    sizes = done.groupby("start_s").size()
    assert (sizes == 2).mean() > 0.95  # 3 x 40 > 100: pairs
    # each pair starts exactly when the next request arrives (not at its 1 s deadline)
    arrivals = rec["arrival_s"].to_numpy()
    starts = sizes.index.to_numpy()
    hit = np.isin(starts, arrivals)
    assert hit.mean() > 0.95
    assert res.summary["queue_wait_ms"]["p99"] < 800  # 2 gaps of 100 ms mean, never 1 s + ...


def test_batcher_waiting_for_a_met_condition_is_a_clear_error() -> None:
    """A batcher that waits for a queue size already reached would be asked again forever at
    the same instant: the engine stops with a message naming the batcher, not a hang."""
    from simulator.policies import BatchDecision, register
    from simulator.policies.registry import unregister

    @register("batcher", "test_stuck")
    class Stuck:
        max_batch = 4

        def __init__(self, **_: object) -> None:
            pass

        def next_batch(self, queue: QueueView, now_s: float) -> BatchDecision:
            return BatchDecision(wake_at_size=max(queue.n_waiting, 1))

    d = mmc_dict(c=1, lam=5.0, duration_s=10, warmup_s=1,
                 policy={"dispatch": "central", "batching": {"name": "test_stuck"}})
    try:
        with pytest.raises(RuntimeError, match="Stuck decided to wait"):
            run(scenario_from_dict(d), seed=1)
    finally:
        unregister("batcher", "test_stuck")  # keep it out of other tests' generated scenarios
