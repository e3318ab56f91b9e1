"""The property-testing toolkit: every built-in policy passes, deliberately broken ones fail.

Broken policies are plain classes (never registered at import): the checks register them
only for their own whole-run simulations.
"""

from __future__ import annotations

import copy
import math
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given

from simulator import run
from simulator.policies.autoscaling_api import PoolMetrics
from simulator.policies.registry import _REGISTRY, allowed_names
from simulator.policies.views import BatchDecision, NodesView, QueueView
from simulator.rng import BufferedRandom
from simulator.testing import (
    DeterminismError,
    InvariantError,
    PolicyCheckError,
    check_autoscaler,
    check_batcher,
    check_deterministic,
    check_invariants,
    check_no_starvation,
    check_router,
)
from simulator.testing import strategies as st_peaksim
from simulator.testing.checks import _registered


def _builtin(kind: str) -> list[str]:
    return [n for n in allowed_names(kind)
            if _REGISTRY[kind][n].__module__.startswith("simulator.policies")]


# ----------------------------------------------------------------------------- built-ins pass
@pytest.mark.parametrize("name", _builtin("router"))
def test_builtin_routers_pass(name: str) -> None:
    check_router(name)


BATCHERS: list[tuple[str, dict[str, Any]]] = [
    ("none", {}),
    ("dynamic", {"max_batch": 8}),
    ("dynamic", {"max_batch": 8, "max_wait_ms": 5.0, "timer_slack_ms": 1.0,
                 "preferred_sizes": [4]}),
    ("dynamic", {"max_batch": 4, "max_batch_items": 32, "max_wait_ms": 2.0}),
]


@pytest.mark.parametrize(("name", "params"), BATCHERS)
def test_builtin_batchers_pass(name: str, params: dict[str, Any]) -> None:
    check_batcher(name, params=params)


AUTOSCALERS: list[tuple[str, dict[str, Any], bool]] = [
    ("static", {}, False),
    ("hpa", {}, True),
    ("kpa", {}, True),
    ("target_tracking", {}, True),
    ("scheduled", {"calendar": [{"start_s": 100.0, "end_s": 400.0, "nodes": 3}],
                   "lead_time_s": 0.0}, False),
    ("predictive", {}, False),
    ("max", {"policies": [{"name": "hpa"}, {"name": "predictive"}]}, True),
]


@pytest.mark.parametrize(("name", "params", "reactive"), AUTOSCALERS)
def test_builtin_autoscalers_pass(name: str, params: dict[str, Any], reactive: bool) -> None:
    check_autoscaler(name, params=params, reactive=reactive)


def test_every_builtin_policy_is_covered() -> None:
    assert {n for n, _ in BATCHERS} == set(_builtin("batcher"))
    assert {n for n, _, _ in AUTOSCALERS} == set(_builtin("autoscaler"))


# ----------------------------------------------------------------------------- broken policies
class DrainingFriendlyRouter:
    """Least loaded node, ignoring readiness: a draining node with an empty queue wins."""

    def __init__(self, **_: Any) -> None:
        pass

    def choose(self, nodes: NodesView, rng: BufferedRandom, now_s: float) -> int:
        return int(np.argmin(nodes.queue_len + nodes.busy))


class UnseededRouter:
    """Random ready node from the global ``random`` module: not reproducible."""

    def __init__(self, **_: Any) -> None:
        pass

    def choose(self, nodes: NodesView, rng: BufferedRandom, now_s: float) -> int:
        return random.choice(np.flatnonzero(nodes.ready).tolist())


class FirstReadyRouter:
    """Always the first ready node: valid picks, but piles all work on one node."""

    def __init__(self, **_: Any) -> None:
        pass

    def choose(self, nodes: NodesView, rng: BufferedRandom, now_s: float) -> int:
        return int(np.flatnonzero(nodes.ready)[0])


class OversizedBatcher:
    """Takes one request more than max_batch."""

    max_batch = 4

    def __init__(self, **_: Any) -> None:
        pass

    def next_batch(self, queue: QueueView, now_s: float) -> BatchDecision:
        if queue.n_waiting == 0:
            return BatchDecision(wake_at_size=1)
        return BatchDecision(take=min(queue.n_waiting, self.max_batch + 1))


class LazyBatcher:
    """Waits for a full batch with no deadline: starves a lone request."""

    max_batch = 4

    def __init__(self, **_: Any) -> None:
        pass

    def next_batch(self, queue: QueueView, now_s: float) -> BatchDecision:
        if queue.n_waiting >= self.max_batch:
            return BatchDecision(take=self.max_batch)
        return BatchDecision(wake_at_size=self.max_batch)


class UnboundedAutoscaler:
    """One node per 2 requests in flight, ignoring max_nodes."""

    sync_period_s = 15.0

    def __init__(self, **_: Any) -> None:
        pass

    def desired(self, now_s: float, metrics: PoolMetrics) -> int:
        return max(metrics.min_nodes, math.ceil(metrics.concurrency / 2))


class InvertedAutoscaler:
    """Clamped, but scales the wrong way: fewer nodes when the load rises."""

    sync_period_s = 15.0

    def __init__(self, **_: Any) -> None:
        pass

    def desired(self, now_s: float, metrics: PoolMetrics) -> int:
        want = metrics.max_nodes - math.ceil(metrics.arrival_rate_qps
                                             * metrics.service_s_per_request)
        return max(metrics.min_nodes, min(metrics.max_nodes, want))


class JumpyHPA:
    """Declares HPA's scale-up rate limit (4 pods or 100 % per 15 s) but jumps to max."""

    sync_period_s = 15.0
    up_pods, up_percent, up_period_s = 4, 100.0, 15.0

    def __init__(self, **_: Any) -> None:
        pass

    def desired(self, now_s: float, metrics: PoolMetrics) -> int:
        return metrics.max_nodes if metrics.utilization > 0.6 else metrics.desired


def test_router_picking_a_draining_node_is_caught() -> None:
    with pytest.raises(PolicyCheckError, match="not ready"):
        check_router(DrainingFriendlyRouter)


def test_unseeded_router_is_caught() -> None:
    with pytest.raises(PolicyCheckError, match="deterministic"):
        check_router(UnseededRouter, simulate=False)


def test_batcher_exceeding_max_batch_is_caught() -> None:
    with pytest.raises(PolicyCheckError, match="max_batch"):
        check_batcher(OversizedBatcher)


def test_batcher_waiting_forever_is_caught() -> None:
    with pytest.raises(PolicyCheckError, match=r"no deadline|not work-conserving"):
        check_batcher(LazyBatcher, simulate=False)


def test_autoscaler_ignoring_max_is_caught() -> None:
    with pytest.raises(PolicyCheckError, match="max_nodes"):
        check_autoscaler(UnboundedAutoscaler)


def test_autoscaler_moving_against_the_load_is_caught() -> None:
    with pytest.raises(PolicyCheckError, match=r"against the load|did not react"):
        check_autoscaler(InvertedAutoscaler, simulate=False)


def test_autoscaler_breaking_its_declared_rate_limit_is_caught() -> None:
    with pytest.raises(PolicyCheckError, match="rate limit"):
        check_autoscaler(JumpyHPA, simulate=False, reactive=False)


def test_broken_policies_are_not_left_registered() -> None:
    for kind in ("router", "batcher", "autoscaler"):
        assert not [n for n in allowed_names(kind) if n.startswith("_peaksim_check_")]


def _per_node(router: str, nodes: int, rate: float) -> dict[str, Any]:
    return {
        "name": "starve", "simulation": {"duration_s": 30.0, "seed": 3, "records": "all"},
        "workload": {"arrival": {"process": "poisson", "rate_qps": rate}},
        "service": {"time": {"distribution": "exponential", "mean_ms": 20.0}},
        "cluster": {"pools": [{"name": "p0", "nodes": nodes}]},
        "policy": {"dispatch": "per_node", "routing": {"name": router},
                   "admission": {"max_queue_length": 1_000_000}},
        "sla": {"slo_ms": 500.0},
    }


def test_starvation_criterion_catches_a_router_that_piles_on_one_node() -> None:
    # 4 nodes at 50 % overall, all of it on node 0 (200 %): early requests never finish
    with _registered("router", FirstReadyRouter) as name:
        res = run(_per_node(name, 4, 100.0))
    check_invariants(res)  # every invariant holds: the pile-up is not a bookkeeping error
    with pytest.raises(PolicyCheckError, match="starvation"):
        check_no_starvation(res, drain_s=10.0)
    check_no_starvation(run(_per_node("join_shortest_queue", 4, 100.0)), drain_s=10.0)


# ----------------------------------------------------------------------------- whole-run checks
@pytest.fixture(scope="module")
def elastic_result() -> Any:
    raw = _per_node("round_robin", 1, 30.0)
    raw["simulation"].update(duration_s=300.0, warmup_s=20.0)
    raw["cluster"]["pools"][0].update(min_nodes=1, max_nodes=4, min_billing_s=120.0,
                                      provisioning={"distribution": "deterministic",
                                                    "mean_s": 10.0})
    raw["policy"]["autoscaling"] = {"name": "scheduled", "lead_time_s": 0.0, "sync_period_s": 5.0,
                                    "calendar": [{"start_s": 30.0, "end_s": 100.0, "nodes": 4},
                                                 {"start_s": 200.0, "end_s": 260.0, "nodes": 3}]}
    res = run(raw, seed=2)
    check_invariants(res)
    assert res.summary["pools"]["p0"]["scale_ups"] >= 2
    return res


def _broken(res: Any) -> Any:
    r = copy.copy(res)
    r.summary = copy.deepcopy(res.summary)
    r.records = res.records.copy()
    r.extras = {k: v.copy() for k, v in res.extras.items()}
    return r


def test_check_invariants_catches_wrong_billing(elastic_result: Any) -> None:
    r = _broken(elastic_result)
    r.summary["pools"]["p0"]["nodes"]["node_seconds"] += 50.0
    with pytest.raises(InvariantError, match="billing"):
        check_invariants(r)
    r = _broken(elastic_result)
    r.summary["pools"]["p0"]["provisioned_node_seconds"] -= 30.0
    with pytest.raises(InvariantError, match="billing"):
        check_invariants(r)


def test_check_invariants_catches_a_clock_going_back(elastic_result: Any) -> None:
    r = _broken(elastic_result)
    ev = r.extras["events"]
    ev.loc[ev.index[-1], "t_s"] = 1.0
    with pytest.raises(InvariantError, match="monotone clock"):
        check_invariants(r)


def test_check_invariants_catches_fleet_out_of_bounds(elastic_result: Any) -> None:
    r = _broken(elastic_result)
    ps = r.extras["timeseries_pools"]
    ps.loc[ps.index[5], "desired"] = 9.0
    with pytest.raises(InvariantError, match="fleet bounds"):
        check_invariants(r)


def test_check_invariants_catches_work_sent_to_a_node_not_ready(elastic_result: Any) -> None:
    r = _broken(elastic_result)
    rec = r.records
    late = rec.index[(rec["node"] == 0) & (rec["arrival_s"] > 150.0)]
    rec.loc[late[:3], "node"] = 3  # node 3 was terminated at 100 s until 200 s
    rec.loc[late[:3], "arrival_s"] = rec.loc[late[:3], "arrival_s"].clip(upper=150.0)
    r.records = rec.sort_values("id")
    with pytest.raises(InvariantError, match=r"readiness|causality|before it arrived"):
        check_invariants(r)


def test_check_deterministic_passes_and_catches_nondeterminism() -> None:
    check_deterministic(_per_node("power_of_two", 3, 60.0))
    with _registered("router", UnseededRouter) as name, \
            pytest.raises(DeterminismError, match="determinism"):
        check_deterministic(_per_node(name, 3, 60.0))


# ----------------------------------------------------------------------------- strategies
@given(st_peaksim.cluster_states())
def test_cluster_states_are_consistent(state: st_peaksim.ClusterState) -> None:
    v = state.nodes
    assert v.ready.any() and not v.ready.flags.writeable
    assert np.array_equal(v.ready, [s == "ready" for s in state.states])
    assert (v.queue_len <= v.capacity).all() and (v.queue_len >= 0).all()


@given(st_peaksim.queue_states(max_batch=6, max_wait_s=0.01))
def test_queue_states_are_consistent(state: st_peaksim.QueueState) -> None:
    q = state.queue
    assert len(q.arrival_s) == min(q.n_waiting, 6) == len(q.items) == len(state.classes)
    assert (q.arrival_s <= state.now_s).all()
    assert q.oldest_s == (q.arrival_s[0] if q.n_waiting else None)


@given(st_peaksim.request_streams())
def test_request_streams_are_sorted(s: st_peaksim.RequestStream) -> None:
    assert len(s) >= 1 and (np.diff(s.arrival_s) >= 0).all()


@given(st_peaksim.metric_histories())
def test_metric_histories_respect_bounds(history: list[PoolMetrics]) -> None:
    times = [m.now_s for m in history]
    assert times == sorted(times)
    for m in history:
        assert m.min_nodes <= m.desired <= m.max_nodes and 0 <= m.utilization <= 1
