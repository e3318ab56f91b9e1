"""Hypothesis strategies for PeakSim: scenarios, policy views, request streams, metrics.

* :func:`scenarios`: small valid scenarios (raw dicts);
* :func:`cluster_states` / :func:`nodes_views`: what a router sees (slots in every lifecycle
  state, mixed queue lengths, full queues);
* :func:`queue_states` / :func:`queue_views`: what a batcher sees (mixed classes, ages, items);
* :func:`request_streams`: arrivals with gaps, bursts and simultaneous arrivals;
* :func:`pool_metrics`, :func:`metric_histories`, :func:`load_steps`: what an autoscaler sees.

    from hypothesis import given
    from simulator.testing import strategies as st_peaksim

    @given(st_peaksim.scenarios())
    def test_my_policy(raw): ...
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from simulator.policies.autoscaling_api import PoolMetrics
from simulator.policies.registry import allowed_names, params_model
from simulator.policies.views import NodesView, QueueView


@st.composite
def service_times(draw: st.DrawFn) -> dict[str, Any]:
    """An analytic service-time table."""
    dist = draw(st.sampled_from(["exponential", "deterministic", "lognormal", "gamma",
                                 "uniform"]))
    cv = draw(st.floats(0.0, 0.57)) if dist == "uniform" else draw(st.floats(0.0, 2.0))
    return {"distribution": dist, "mean_ms": draw(st.floats(1.0, 200.0)), "cv": cv,
            "per_item_ms": draw(st.sampled_from([0.0, 0.5]))}


@st.composite
def request_classes(draw: st.DrawFn) -> list[dict[str, Any]]:
    """One to three classes with shares, SLOs, optional timeouts and size distributions."""
    n = draw(st.integers(1, 3))
    out = []
    for i in range(n):
        size = draw(st.sampled_from([
            {"distribution": "constant", "mean": 1},
            {"distribution": "lognormal", "mean": 8, "sigma": 1.0, "max": 64},
            {"distribution": "pareto", "mean": 4, "alpha": 1.5, "max": 32},
        ]))
        c: dict[str, Any] = {"name": f"c{i}", "share": draw(st.floats(0.1, 1.0)), "size": size}
        if draw(st.booleans()):
            c["slo_ms"] = draw(st.floats(5.0, 500.0))
        if draw(st.booleans()):
            c["timeout_ms"] = draw(st.floats(5.0, 500.0))
        out.append(c)
    return out


def _defaults_only(kind: str) -> list[str]:
    """Registered policies of ``kind`` that run on their default parameters."""
    return [n for n in allowed_names(kind)
            if not any(f.is_required() for f in params_model(kind, n).model_fields.values())]


@st.composite
def scenarios(draw: st.DrawFn, max_duration_s: float = 60.0) -> dict[str, Any]:
    """A small valid scenario (raw dict): 1-6 nodes, any dispatch; any router and batcher that
    runs on its default parameters, and the dynamic batcher with drawn parameters."""
    nodes = draw(st.integers(1, 6))
    svc = draw(service_times())
    mean_s = svc["mean_ms"] / 1000
    rho = draw(st.floats(0.1, 1.6))  # includes overload
    rate = max(rho * nodes / mean_s, 0.5)
    rate = min(rate, 400.0)
    dispatch = draw(st.sampled_from(["central", "per_node"]))
    batcher = draw(st.sampled_from(sorted({*_defaults_only("batcher"), "dynamic"})))
    batching: dict[str, Any] = {"name": batcher}
    if batcher == "dynamic":
        mb = draw(st.integers(1, 16))
        batching.update(max_batch=mb, max_wait_ms=draw(st.sampled_from([0.0, 2.0, 20.0])))
        if draw(st.booleans()):
            batching["max_batch_items"] = draw(st.integers(1, 64))
    duration = draw(st.floats(5.0, max_duration_s))
    process = draw(st.sampled_from(["poisson", "gamma", "mmpp"]))
    arrival: dict[str, Any] = {"process": process, "rate_qps": rate}
    if process == "gamma":
        arrival["cv"] = draw(st.floats(0.3, 3.0))
    if process == "mmpp":
        arrival["states"] = [{"multiplier": 0.5, "mean_sojourn_s": 2.0},
                             {"multiplier": 3.0, "mean_sojourn_s": 0.5}]
    raw: dict[str, Any] = {
        "name": "prop",
        "simulation": {"duration_s": duration, "warmup_s": draw(st.floats(0.0, duration / 2)),
                       "seed": draw(st.integers(0, 2**31)), "timeseries_interval_s": 1.0,
                       "records": "all"},
        "workload": {"arrival": arrival, "classes": draw(request_classes())},
        "service": {"time": svc},
        "cluster": {"pools": [{"name": "p0", "nodes": nodes}]},
        "policy": {
            "dispatch": dispatch,
            "routing": ({"name": draw(st.sampled_from(_defaults_only("router")))}
                        if dispatch == "per_node" else {}),
            "batching": batching,
            "admission": {"max_queue_length": draw(st.integers(1, 200))},
        },
        "sla": {"slo_ms": draw(st.floats(5.0, 1000.0))},
    }
    if draw(st.booleans()):
        raw["workload"]["peaks"] = [{"start_s": duration / 3, "ramp_s": 1.0, "hold_s": 1.0,
                                     "decay_s": 2.0, "multiplier": 3.0}]
    return raw


# ----------------------------------------------------------------------------- policy states
#: Lifecycle states of a node slot, as the engine names them (``simulator.engine.nodes``).
NODE_STATES = ("terminated", "provisioning", "loading", "ready", "draining", "failed")


@dataclass(frozen=True)
class ClusterState:
    """What a router is shown at one instant: the view, each slot's lifecycle state, the time."""

    nodes: NodesView
    states: tuple[str, ...]
    now_s: float

    def __repr__(self) -> str:
        v = self.nodes
        return (f"ClusterState(now_s={self.now_s!r}, capacity={v.capacity}, "
                f"states={list(self.states)}, queue_len={v.queue_len.tolist()}, "
                f"busy={v.busy.tolist()}, busy_until_s={v.busy_until_s.tolist()}, "
                f"queued_work_s={v.queued_work_s.tolist()})")


def _ro(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@st.composite
def cluster_states(draw: st.DrawFn, min_nodes: int = 1, max_nodes: int = 8,
                   capacity: int | None = None, any_ready: bool = True) -> ClusterState:
    """A router's view of 1-8 node slots in every lifecycle state, with mixed queues.

    Only ``ready`` slots have ``ready = True``; ``draining`` and ``failed`` slots may still hold
    queued work; some ready queues are full (``queue_len == capacity``). With ``any_ready``
    (the default, as the engine calls a router only then) at least one slot is ready.
    """
    n = draw(st.integers(min_nodes, max_nodes))
    cap = capacity if capacity is not None else draw(st.integers(1, 12))
    states = draw(st.lists(st.sampled_from(NODE_STATES), min_size=n, max_size=n))
    if any_ready and "ready" not in states:
        states[draw(st.integers(0, n - 1))] = "ready"
    now = draw(st.sampled_from([0.0, 1.0, 37.25, 3600.0]))
    mean_s = draw(st.sampled_from([0.001, 0.02, 0.5]))
    ql = np.zeros(n, dtype=np.int64)
    busy = np.zeros(n, dtype=np.int8)
    until = np.zeros(n)
    for j, s in enumerate(states):
        if s in ("ready", "draining", "failed"):
            ql[j] = draw(st.one_of(st.just(0), st.just(cap), st.integers(0, cap)))
            busy[j] = draw(st.booleans()) if s != "failed" else 0
        if busy[j]:
            until[j] = now + draw(st.floats(0.0, 5.0, allow_nan=False))
        else:
            until[j] = max(0.0, now - draw(st.floats(0.0, 5.0, allow_nan=False)))
    ready = np.array([s == "ready" for s in states], dtype=bool)
    view = NodesView(queue_len=_ro(ql), busy=_ro(busy), ready=_ro(ready),
                     busy_until_s=_ro(until), queued_work_s=_ro(ql * mean_s), capacity=cap)
    return ClusterState(view, tuple(states), now)


def nodes_views(**kwargs: Any) -> st.SearchStrategy[NodesView]:
    """Just the :class:`NodesView` of :func:`cluster_states` (same arguments)."""
    return cluster_states(**kwargs).map(lambda c: c.nodes)


@dataclass(frozen=True)
class QueueState:
    """What a batcher is shown: a queue view at ``now_s`` and the class of each head request."""

    queue: QueueView
    now_s: float
    classes: tuple[int, ...]

    def __repr__(self) -> str:
        q = self.queue
        return (f"QueueState(now_s={self.now_s!r}, n_waiting={q.n_waiting}, "
                f"oldest_s={q.oldest_s!r}, arrival_s={q.arrival_s.tolist()}, "
                f"items={q.items.tolist()}, classes={list(self.classes)})")


@st.composite
def queue_states(draw: st.DrawFn, max_batch: int = 8, max_wait_s: float = 0.02,
                 max_waiting: int | None = None) -> QueueState:
    """A queue of 0..3 x ``max_batch`` requests of mixed classes, ages and item counts.

    Ages range from "just arrived" to well past ``max_wait_s``; the head arrays hold the first
    ``max(max_batch, 1)`` requests in service order (FIFO, or by class priority, then FIFO).
    """
    hi = max_waiting if max_waiting is not None else 3 * max_batch + 2
    n = draw(st.integers(0, hi))
    now = draw(st.sampled_from([0.0, 0.5, 100.0, 3600.0]))
    horizon = max(3 * max_wait_s, 0.01)
    head = min(n, max(max_batch, 1))
    ages = sorted(draw(st.lists(
        st.one_of(st.just(0.0), st.just(max_wait_s), st.floats(0.0, horizon)),
        min_size=head, max_size=head)), reverse=True)
    classes = draw(st.lists(st.integers(0, 2), min_size=head, max_size=head))
    items = [draw(st.sampled_from([1, 1, 4, 16, 64])) * (c + 1) for c in classes]
    order = list(range(head))
    if head and draw(st.booleans()):  # priority service order: class 0 first, FIFO within
        order.sort(key=lambda i: classes[i])
    arrival = np.array([now - ages[i] for i in order], dtype=float)
    it = np.array([items[i] for i in order], dtype=np.int64)
    cl = tuple(classes[i] for i in order)
    q = QueueView(n, _ro(arrival), _ro(it), limit=head)
    return QueueState(q, now, cl)


def queue_views(**kwargs: Any) -> st.SearchStrategy[QueueView]:
    """Just the :class:`QueueView` of :func:`queue_states` (same arguments)."""
    return queue_states(**kwargs).map(lambda s: s.queue)


@dataclass(frozen=True)
class RequestStream:
    """Arrivals sorted by time (s), with a class index and an item count per request."""

    arrival_s: np.ndarray
    classes: np.ndarray
    items: np.ndarray

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    def __repr__(self) -> str:
        return (f"RequestStream(arrival_s={self.arrival_s.tolist()}, "
                f"classes={self.classes.tolist()}, items={self.items.tolist()})")


@st.composite
def request_streams(draw: st.DrawFn, max_requests: int = 60,
                    max_gap_s: float = 0.05) -> RequestStream:
    """A stream of up to ``max_requests`` requests: gaps, bursts and simultaneous arrivals.

    Built from segments: a lone arrival after a gap (up to ``max_gap_s``), a burst of requests
    at the same instant, or a quick train 1 ms apart.
    """
    t = 0.0
    times: list[float] = []
    while len(times) < max_requests:
        kind = draw(st.sampled_from(["gap", "burst", "train"]))
        t += draw(st.floats(0.0, max_gap_s, allow_nan=False))
        k = 1 if kind == "gap" else draw(st.integers(2, 12))
        k = min(k, max_requests - len(times))
        for i in range(k):
            times.append(t + (0.001 * i if kind == "train" else 0.0))
        t = times[-1]
        if draw(st.integers(0, 3)) == 0:
            break
    n = len(times)
    classes = np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), dtype=np.int64)
    items = np.array([draw(st.sampled_from([1, 2, 8, 32])) for _ in range(n)], dtype=np.int64)
    return RequestStream(np.array(times, dtype=float), classes, items)


# ----------------------------------------------------------------------------- autoscaling
@dataclass(frozen=True)
class LoadStep:
    """A sustained load step: ``base_qps`` until ``step_at_s``, then ``level_qps`` to ``end_s``.

    ``service_s`` is the node-seconds one request costs; ``min_nodes``/``max_nodes`` bound the
    pool, which starts with ``start_nodes``; new nodes are ready ``lag_s`` after being asked.
    """

    base_qps: float
    level_qps: float
    step_at_s: float
    end_s: float
    service_s: float
    min_nodes: int
    max_nodes: int
    start_nodes: int
    lag_s: float

    def rate(self, t_s: float) -> float:
        """Arrival rate (QPS) at ``t_s``."""
        return self.base_qps if t_s < self.step_at_s else self.level_qps


@st.composite
def load_steps(draw: st.DrawFn, direction: str | None = None,
               phase_s: float = 1200.0) -> LoadStep:
    """A load step up (x2..x8) or down (/2../8) held ``phase_s`` seconds on each side."""
    up = draw(st.booleans()) if direction is None else direction == "up"
    service_s = draw(st.sampled_from([0.02, 0.05, 0.2]))
    lo = draw(st.integers(0, 2))
    hi = draw(st.integers(max(lo, 1) + 3, 16))
    factor = draw(st.sampled_from([2.0, 4.0, 8.0]))
    # the low level needs about 1-2 nodes' worth of work, the high level several
    low = draw(st.floats(0.5, 1.5)) / service_s
    high = low * factor
    base, level = (low, high) if up else (high, low)
    start = draw(st.integers(max(lo, 1), hi))
    return LoadStep(base, level, phase_s, 2 * phase_s, service_s, lo, hi, start,
                    draw(st.sampled_from([0.0, 15.0, 60.0])))


@st.composite
def pool_metrics(draw: st.DrawFn, now_s: float = 0.0, min_nodes: int | None = None,
                 max_nodes: int | None = None, tick_s: float = 1.0) -> PoolMetrics:
    """One arbitrary but consistent observation of a pool (open loop: any counts in bounds)."""
    lo = draw(st.integers(0, 3)) if min_nodes is None else min_nodes
    hi = draw(st.integers(max(lo, 1), 12)) if max_nodes is None else max_nodes
    ready = draw(st.integers(0, hi))
    starting = draw(st.integers(0, hi - ready))
    draining = draw(st.integers(0, 3))
    desired = draw(st.integers(lo, hi))
    rate = draw(st.one_of(st.just(0.0), st.floats(0.0, 2000.0)))
    svc = draw(st.sampled_from([0.0, 0.01, 0.05, 0.2]))
    offered = rate * svc
    util = min(1.0, offered / ready) if ready else 0.0
    queue = draw(st.one_of(st.just(0.0), st.floats(0.0, 500.0)))
    hist = draw(st.lists(st.floats(0.0, 2000.0), max_size=5))
    return PoolMetrics(
        now_s=now_s, ready=ready, starting=starting, draining=draining, desired=desired,
        min_nodes=lo, max_nodes=hi, utilization=util, concurrency=min(offered, ready) + queue,
        queue_length=queue, arrival_rate_qps=rate, rate_history=_ro(np.array([*hist, rate])),
        tick_s=tick_s, service_s_per_request=svc)


@st.composite
def metric_histories(draw: st.DrawFn, min_calls: int = 1, max_calls: int = 12,
                     sync_period_s: float = 15.0) -> list[PoolMetrics]:
    """A sequence of observations of one pool, ``sync_period_s`` apart, with load steps.

    Open loop: counts and metrics are drawn freely within the pool's fixed bounds, the
    arrival rate follows a piecewise-constant profile (several sustained steps).
    """
    lo = draw(st.integers(0, 3))
    hi = draw(st.integers(max(lo, 1), 12))
    n = draw(st.integers(min_calls, max_calls))
    out = []
    for k in range(n):
        out.append(draw(pool_metrics(now_s=k * sync_period_s, min_nodes=lo, max_nodes=hi,
                                     tick_s=sync_period_s)))
    # impose a piecewise-constant rate (steps) on the drawn observations
    levels = draw(st.lists(st.floats(0.0, 1000.0), min_size=1, max_size=4))
    seg = max(1, -(-n // len(levels)))
    stepped = []
    for k, m in enumerate(out):
        rate = levels[min(k // seg, len(levels) - 1)]
        offered = rate * m.service_s_per_request
        util = min(1.0, offered / m.ready) if m.ready else 0.0
        stepped.append(dataclasses.replace(
            m, arrival_rate_qps=rate, utilization=util,
            concurrency=min(offered, m.ready) + m.queue_length,
            rate_history=_ro(np.full(3, rate))))
    return stepped
