"""Hypothesis strategies for PeakSim: small valid scenarios (as raw dicts).

    from hypothesis import given
    from simulator.testing import strategies as st_peaksim

    @given(st_peaksim.scenarios())
    def test_my_policy(raw): ...
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from simulator.policies.registry import allowed_names


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


@st.composite
def scenarios(draw: st.DrawFn, max_duration_s: float = 60.0) -> dict[str, Any]:
    """A small valid scenario (raw dict): 1-6 nodes, any dispatch, router and batcher."""
    nodes = draw(st.integers(1, 6))
    svc = draw(service_times())
    mean_s = svc["mean_ms"] / 1000
    rho = draw(st.floats(0.1, 1.6))  # includes overload
    rate = max(rho * nodes / mean_s, 0.5)
    rate = min(rate, 400.0)
    dispatch = draw(st.sampled_from(["central", "per_node"]))
    batcher = draw(st.sampled_from(allowed_names("batcher")))
    batching: dict[str, Any] = {"name": batcher}
    if batcher != "none":
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
            "routing": {"name": draw(st.sampled_from(allowed_names("router")))},
            "batching": batching,
            "admission": {"max_queue_length": draw(st.integers(1, 200))},
        },
        "sla": {"slo_ms": draw(st.floats(5.0, 1000.0))},
    }
    if draw(st.booleans()):
        raw["workload"]["peaks"] = [{"start_s": duration / 3, "ramp_s": 1.0, "hold_s": 1.0,
                                     "decay_s": 2.0, "multiplier": 3.0}]
    return raw
