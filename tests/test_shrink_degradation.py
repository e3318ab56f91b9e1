"""Queue-driven candidate shrinking: ``policy.degradation`` mode "shrink" (issue 17, item 3).

While the oldest request in the queue an arrival joins has waited over ``queue_delay_ms``, a
share of the arrivals is scored on ``ceil(items * shrink_to)`` of their items: cut before they
queue, so the service time, the batchers' item counts and the records all see the cut size,
and a cascade stage passes the cut count on.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from simulator import run, scenario_from_dict
from simulator.scenario import ScenarioError
from simulator.testing import check_invariants
from tests.conftest import mmc_dict
from tests.test_cascade import cascade, exp_service

BASE_MS, PER_REQ_MS, PER_ITEM_MS = 1.0, 0.5, 3.0


def _single(dispatch: str, batching: dict[str, Any], share: float = 0.5,
            shrink_to: float | None = None) -> dict[str, Any]:
    """Two nodes, 10 items per request, deterministic 1 + 0.5 (n - 1) + 3 x items ms per batch,
    60/s (about 0.95 of the capacity at full size: queues build up and drain)."""
    d = mmc_dict(c=2, lam=60.0, mean_ms=BASE_MS, duration_s=40, warmup_s=0,
                 simulation={"records": "all"})
    d["service"] = {"time": {"distribution": "deterministic", "mean_ms": BASE_MS,
                             "per_request_ms": PER_REQ_MS, "per_item_ms": PER_ITEM_MS}}
    d["workload"]["classes"] = [{"name": "q", "share": 1.0,
                                 "size": {"distribution": "constant", "mean": 10, "max": 10}}]
    d["policy"]["dispatch"] = dispatch
    d["policy"]["batching"] = batching
    deg = {"enabled": True, "mode": "shrink", "share": share, "queue_delay_ms": 20,
           "quality_loss": 0.01}
    if shrink_to is not None:
        deg["shrink_to"] = shrink_to
    d["policy"]["degradation"] = deg
    return d


BATCHING = {"none": {"name": "none"},
            "items": {"name": "dynamic", "params": {"max_batch": 8, "max_batch_items": 40,
                                                    "max_wait_ms": 5}}}


@pytest.mark.parametrize("dispatch", ["central", "per_node"])
@pytest.mark.parametrize("batching", ["none", "items"])
def test_a_shrunk_request_is_served_on_its_shrunk_items(dispatch: str, batching: str) -> None:
    res = run(scenario_from_dict(_single(dispatch, BATCHING[batching])), seed=1)
    check_invariants(res)
    rec = res.records
    # the records hold the cut size: ceil(10 x 0.4) = 4, or the full 10
    assert set(rec["items"].unique()) == {4, 10}
    cut = int((rec["items"] == 4).sum())
    deg = res.summary["degradation"]
    assert deg["mode"] == "shrink"
    assert deg["degraded"] == cut > 50  # every cut request counts once, and the queue cut some
    assert deg["auc_loss_per_degraded"] == 0.01
    assert deg["mean_auc_loss"] == pytest.approx(cut * 0.01 / res.summary["requests"]["arrived"])
    # each batch (one node, one start) took exactly its requests' cut items of service time
    done = rec[rec["outcome"] == "completed"]
    b = done.groupby(["node", "start_s"]).agg(n=("items", "size"), items=("items", "sum"),
                                              finish=("finish_s", "first"))
    took_ms = (b["finish"] - b.index.get_level_values("start_s")) * 1e3
    want_ms = BASE_MS + PER_REQ_MS * (b["n"] - 1) + PER_ITEM_MS * b["items"]
    assert np.abs(took_ms - want_ms).max() < 1e-6
    if batching == "items":  # the batcher counted the cut items: some batch mixes sizes
        assert b["items"].max() <= 40
        assert ((b["items"] % 10) != 0).any()


def test_shrink_to_sets_the_cut_and_no_queue_means_no_cut() -> None:
    res = run(scenario_from_dict(_single("central", BATCHING["none"], share=1.0,
                                         shrink_to=0.25)), seed=2)
    assert set(res.records["items"].unique()) == {math.ceil(10 * 0.25), 10}
    quiet = _single("central", BATCHING["none"], share=1.0)
    quiet["workload"]["arrival"]["rate_qps"] = 5.0  # the queue never waits 20 ms
    res = run(scenario_from_dict(quiet), seed=2)
    assert set(res.records["items"].unique()) == {10}
    assert res.summary["degradation"]["degraded"] == 0


def _cascade(rate: float) -> dict[str, Any]:
    """recall hands 500 candidates to rank (1 + 0.02 ms per candidate on one node, shrink
    mode on its own queue, candidates_out: what it received), then rerank."""
    stages = [{"name": "recall", "pools": ["r"], "candidates_out": 500, "expands": True},
              {"name": "rank", "pools": ["k"],
               "service": {"time": {"distribution": "deterministic", "mean_ms": 1.0,
                                    "per_item_ms": 0.02}},
               "degradation": {"enabled": True, "mode": "shrink", "share": 1.0,
                               "queue_delay_ms": 40, "quality_loss": 0.002}},
              {"name": "rerank", "pools": ["x"], "service": exp_service(1.0)}]
    return cascade(stages, [("r", 4), ("k", 1), ("x", 4)], rate, duration=20.0, warmup=0.0,
                   slo_ms=5000.0, service=exp_service(2.0))


def test_a_cascade_stage_passes_fewer_candidates_only_while_its_queue_is_long() -> None:
    quiet = run(scenario_from_dict(_cascade(10.0)), seed=1).summary
    assert quiet["degradation"]["degraded"] == 0
    assert quiet["stages"]["rank"]["candidates"]["out_mean"] == 500
    assert quiet["stages"]["rerank"]["candidates"]["in_mean"] == 500
    busy = run(scenario_from_dict(_cascade(120.0)), seed=1).summary
    rank = busy["stages"]["rank"]
    passed = rank["requests"]["passed"]
    out = round(rank["candidates"]["out_mean"] * passed)
    cut, rest = divmod(500 * passed - out, 500 - 200)  # each passed on 500 or ceil(500 x .4)
    assert rest == 0 and 0.2 * passed < cut < passed
    # the stage counts its queue-driven cuts as shrinks (cut and passed on, plus the cut
    # ones still in the stage or lost there)
    assert cut <= rank["requests"]["shrunk"] <= cut + rank["requests"]["entered"] - passed
    assert quiet["stages"]["rank"]["requests"]["shrunk"] == 0
    assert busy["stages"]["rerank"]["candidates"]["in_mean"] < 450
    deg = busy["degradation"]
    # the cut ones that finished count their loss end to end (a few may be in flight)
    assert cut - busy["requests"]["in_flight"] <= deg["degraded"] <= cut
    assert deg["quality_loss_total"] == pytest.approx(0.002 * deg["degraded"])


@pytest.mark.parametrize(("deg", "message"), [
    ({"mode": "cache", "shrink_to": 0.5}, "shrink_to applies to mode 'shrink' only "
                                          "(mode = 'cache')"),
    ({"mode": "variant", "fallback_variant": "fast", "shrink_to": 0.5},
     "shrink_to applies to mode 'shrink' only (mode = 'variant')"),
    ({"enabled": True, "mode": "shrink"}, "mode 'shrink' needs quality_loss"),
    ({"mode": "shrink", "fallback_variant": "fast", "quality_loss": 0.01},
     "fallback_variant applies to mode 'variant' only (mode = 'shrink')"),
    ({"mode": "shrink", "shrink_to": 1.0, "quality_loss": 0.01}, "shrink_to"),
])
def test_validation_names_the_fields(deg: dict[str, Any], message: str) -> None:
    d = mmc_dict(duration_s=10, warmup_s=0)
    d["policy"]["degradation"] = deg
    with pytest.raises(ScenarioError, match=r"policy\.degradation") as exc:
        scenario_from_dict(d)
    assert message in str(exc.value)


def test_shrink_to_is_accepted_with_mode_shrink() -> None:
    d = mmc_dict(duration_s=10, warmup_s=0)
    d["policy"]["degradation"] = {"enabled": True, "mode": "shrink", "shrink_to": 0.5,
                                  "quality_loss": 0.01}
    assert scenario_from_dict(d).policy.degradation.shrink_share == 0.5


@pytest.mark.parametrize("dispatch", ["central", "per_node"])
def test_a_request_rejected_at_arrival_is_not_cut(dispatch: str) -> None:
    """Priority classes with a class limit under overload: the rejected keep their size and
    do not count as degraded; the degraded count is the cut requests after the warm-up."""
    d = mmc_dict(c=2, lam=50.0, mean_ms=30.0, duration_s=60, warmup_s=5,
                 simulation={"records": "all"})
    size = {"distribution": "constant", "mean": 20, "max": 20}
    d["workload"]["classes"] = [
        {"name": "search", "share": 0.3, "priority": 2, "slo_ms": 200, "size": size},
        {"name": "ads", "share": 0.7, "priority": 0, "slo_ms": 200, "max_queue_length": 20,
         "size": size}]
    d["service"]["time"]["per_item_ms"] = 1.0  # 30 + 20 ms a request: overloaded
    d["policy"]["dispatch"] = dispatch
    d["policy"]["degradation"] = {"enabled": True, "mode": "shrink", "share": 0.5,
                                  "queue_delay_ms": 100, "quality_loss": 0.01}
    res = run(scenario_from_dict(d), seed=2)
    check_invariants(res)
    rec = res.records
    dropped = rec[rec["outcome"] == "dropped"]
    assert len(dropped) > 100 and (dropped["items"] == 20).all()
    cut = rec[(rec["items"] == 8) & (rec["arrival_s"] >= 5)]  # after the warm-up
    assert res.summary["degradation"]["degraded"] == len(cut) > 100
