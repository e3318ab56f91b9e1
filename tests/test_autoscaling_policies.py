"""Autoscaling policies: the arithmetic of the real systems, driven over simulated time."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.policies import allowed_names, create
from simulator.policies.autoscaling_api import PoolMetrics

BUILTIN = {"static", "hpa", "kpa", "target_tracking", "scheduled", "predictive", "max"}


def pm(now: float = 0.0, ready: int = 4, *, starting: int = 0, desired: int | None = None,
       min_nodes: int = 1, max_nodes: int = 1000, utilization: float = 0.5,
       concurrency: float = 0.0, queue_length: float = 0.0, rate: float = 0.0,
       rate_history: np.ndarray | None = None, tick_s: float = 1.0,
       service_s: float = 0.1, forecast: Callable[[float], float] | None = None) -> PoolMetrics:
    """PoolMetrics with defaults; ``desired`` defaults to ready + starting."""
    return PoolMetrics(
        now_s=now, ready=ready, starting=starting, draining=0,
        desired=ready + starting if desired is None else desired,
        min_nodes=min_nodes, max_nodes=max_nodes, utilization=utilization,
        concurrency=concurrency, queue_length=queue_length, arrival_rate_qps=rate,
        rate_history=np.zeros(0) if rate_history is None else rate_history, tick_s=tick_s,
        service_s_per_request=service_s, forecast=forecast,
    )


def drive(policy: Any, times: list[float] | np.ndarray, make: Callable[[float, int], PoolMetrics],
          start: int) -> list[int]:
    """Call the policy at ``times``; nodes become ready at once (ready = last desired)."""
    out, nodes = [], start
    for t in times:
        nodes = policy.desired(float(t), make(float(t), nodes))
        out.append(nodes)
    return out


# ---------------------------------------------------------------- construction


def test_all_builtins_registered() -> None:
    assert set(allowed_names("autoscaler")) >= BUILTIN


@pytest.mark.parametrize("name", sorted(BUILTIN - {"max"}))
def test_unknown_argument_is_a_clear_error(name: str) -> None:
    with pytest.raises(ValueError, match=rf"autoscaler '{name}'.*'bogus'"):
        create("autoscaler", name, bogus=1)


def test_max_unknown_argument_and_child_errors() -> None:
    with pytest.raises(ValueError, match=r"autoscaler 'max'.*'bogus'"):
        create("autoscaler", "max", policies=[{"name": "static"}], bogus=1)
    with pytest.raises(ValueError, match=r"autoscaler 'hpa'.*'tagret'"):
        create("autoscaler", "max", policies=[{"name": "hpa", "tagret": 0.5}])
    with pytest.raises(ValueError, match="unknown autoscaler 'nope'"):
        create("autoscaler", "max", policies=[{"name": "nope"}])


def test_bad_values_rejected() -> None:
    with pytest.raises(ValueError, match="metric"):
        create("autoscaler", "hpa", metric="cpu")
    with pytest.raises(ValueError, match="needs a target"):
        create("autoscaler", "hpa", metric="concurrency")
    with pytest.raises(ValueError, match="target"):
        create("autoscaler", "kpa", target=0)
    with pytest.raises(ValueError, match="calendar"):
        create("autoscaler", "scheduled", calendar=[{"start_s": 5, "end_s": 1, "nodes": 2}])


def test_defaults_mirror_real_systems() -> None:
    hpa = create("autoscaler", "hpa")
    assert (hpa.sync_period_s, hpa.tolerance, hpa.down_window_s, hpa.target) == (15, 0.1, 300, 0.6)
    assert (hpa.up_percent, hpa.up_pods, hpa.up_period_s, hpa.down_percent) == (100, 4, 15, 100)
    kpa = create("autoscaler", "kpa")
    assert (kpa.sync_period_s, kpa.stable_window_s, kpa.panic_window_s) == (2, 60, 6)
    assert (kpa.target, kpa.panic_threshold, kpa.max_up_rate, kpa.max_down_rate) == pytest.approx(
        (7, 2, 1000, 2))
    tt = create("autoscaler", "target_tracking")
    assert (tt.target, tt.upscale_delay_s, tt.downscale_delay_s, tt.look_back_s,
            tt.sync_period_s) == (2, 30, 600, 30, 10)
    pr = create("autoscaler", "predictive")
    assert (pr.buffer_s, pr.lead_s, pr.target_utilization, pr.alpha) == (300, 0, 0.6, 0.3)
    assert create("autoscaler", "scheduled").lead_time_s == 900


# ---------------------------------------------------------------- static


def test_static_keeps_or_holds_and_clamps() -> None:
    assert create("autoscaler", "static").desired(0, pm(ready=7)) == 7
    assert create("autoscaler", "static", nodes=12).desired(0, pm(ready=3)) == 12
    assert create("autoscaler", "static", nodes=12).desired(0, pm(ready=3, max_nodes=10)) == 10


# ---------------------------------------------------------------- HPA


def test_hpa_worked_examples_double_halve() -> None:
    # Kubernetes docs: current 200m / target 100m -> double; 50m / 100m -> halve
    hpa = create("autoscaler", "hpa", metric="concurrency", target=100.0)
    assert hpa.recommend(pm(ready=4, concurrency=4 * 200.0)) == 8
    assert hpa.recommend(pm(ready=4, concurrency=4 * 50.0)) == 2
    # utilisation: 10 pods at 90 % vs target 60 % -> ceil(10 x 1.5) = 15
    util = create("autoscaler", "hpa")
    assert util.recommend(pm(ready=10, utilization=0.9)) == 15
    assert util.recommend(pm(ready=10, utilization=0.2)) == 4  # ceil(10 x 1/3)
    # the full policy applies the doubling at once (within max(100 %, 4))
    assert hpa.desired(0, pm(ready=4, concurrency=800.0)) == 8


def test_hpa_tolerance() -> None:
    hpa = create("autoscaler", "hpa", metric="queue_length", target=10.0)
    assert hpa.recommend(pm(ready=4, queue_length=4 * 10.9)) == 4  # ratio 1.09: keep
    assert hpa.recommend(pm(ready=4, queue_length=4 * 9.1)) == 4  # ratio 0.91: keep
    assert hpa.recommend(pm(ready=4, queue_length=4 * 12.0)) == 5  # ratio 1.2: ceil(4.8)
    assert create("autoscaler", "hpa", tolerance=0.0).recommend(pm(ready=4, utilization=0.63)) == 5


def test_hpa_not_ready_pods_count_zero_on_scale_up() -> None:
    hpa = create("autoscaler", "hpa")
    # 4 ready at 90 % (ratio 1.5) with 4 starting: 3.6 / (8 x 0.6) = 0.75 -> keep 8
    assert hpa.recommend(pm(ready=4, starting=4, utilization=0.9)) == 8
    # 4 ready at 90 %, 1 starting: 3.6 / (5 x 0.6) = 1.2 -> ceil(6.0) = 6
    assert hpa.recommend(pm(ready=4, starting=1, utilization=0.9)) == 6
    # scale-down ignores the starting pods: ceil(4 x 0.3 / 0.6) = 2
    assert hpa.recommend(pm(ready=4, starting=2, utilization=0.3)) == 2


def test_hpa_scale_down_stabilisation_takes_max_over_300s() -> None:
    hpa = create("autoscaler", "hpa")
    # 10 nodes; from t = 15 the load needs 5 (50 % of target), with a blip needing 8 at t = 150
    def make(t: float, n: int) -> PoolMetrics:
        busy = 8 * 0.6 if t == 150 else (10 * 0.6 if t == 0 else 5 * 0.6)
        return pm(t, ready=n, utilization=busy / n)

    times = np.arange(0, 601, 15.0)
    out = dict(zip(times, drive(hpa, times, make, 10), strict=True))
    assert all(out[t] == 10 for t in times if t < 300)  # the t=0 recommendation (10) holds
    assert out[300] == 8 and out[435] == 8  # now the t=150 blip is the window's max
    assert out[450] == 5  # 300 s after the blip


def test_hpa_scale_up_limit_max_100pct_or_4_pods() -> None:
    hpa = create("autoscaler", "hpa", metric="concurrency", target=1.0)
    # demand for 200 nodes from 2: +max(100 %, 4) per 15 s period
    def make(t: float, n: int) -> PoolMetrics:
        return pm(t, ready=n, concurrency=200.0)

    assert drive(hpa, [0, 5, 15, 30, 45, 60], make, 2) == [6, 6, 12, 24, 48, 96]


def test_hpa_scale_down_100pct_per_period_and_clamp() -> None:
    hpa = create("autoscaler", "hpa", scale_down_stabilization_s=0)
    assert hpa.desired(0, pm(ready=40, utilization=0.03, min_nodes=3)) == 3
    assert create("autoscaler", "hpa").desired(0, pm(ready=5, utilization=1.0, max_nodes=7)) == 7


def test_hpa_scale_from_zero_when_requests_wait() -> None:
    hpa = create("autoscaler", "hpa")
    assert hpa.desired(0, pm(ready=0, min_nodes=0, utilization=0.0, queue_length=3)) == 1
    assert hpa.desired(15, pm(ready=0, min_nodes=0, utilization=0.0)) == 0


# ---------------------------------------------------------------- KPA


def _kpa_run(kpa: Any, conc: Callable[[float], float], t_end: float, start: int,
             lag_s: float = 0.0) -> list[tuple[float, int, float | None]]:
    """Drive the KPA every tick; a node becomes ready ``lag_s`` after it is desired.

    Returns (time s, desired, panic_since: when the panic condition last held, or None).
    """
    out: list[tuple[float, int, float | None]] = []
    n = start
    for t in np.arange(0, t_end + 1e-9, kpa.sync_period_s):
        ready = min([n] + [d for s, d, _ in out if s >= t - lag_s - 1e-9])
        n = kpa.desired(float(t), pm(float(t), ready=ready, desired=n,
                                     concurrency=conc(float(t))))
        out.append((float(t), n, kpa.panic_since))
    return out


def test_kpa_stable_mode_tracks_target() -> None:
    kpa = create("autoscaler", "kpa")  # target 7
    out = _kpa_run(kpa, lambda t: 70.0, 120, 10)
    assert all(n == 10 and p is None for _, n, p in out)


def test_kpa_panics_on_2x_burst_never_scales_down_then_leaves() -> None:
    kpa = create("autoscaler", "kpa")

    def conc(t: float) -> float:
        return 70.0 if t < 100 else (140.0 if t < 130 else 7.0)

    out = _kpa_run(kpa, conc, 400, 10, lag_s=20.0)  # nodes take 20 s
    entered = min(t for t, _, p in out if p is not None)
    assert 100 <= entered <= 100 + 6  # within the panic window
    panic = [(t, n) for t, n, p in out if p is not None]
    assert all(b[1] >= a[1] for a, b in itertools.pairwise(panic))  # never down
    assert max(n for _, n in panic) >= 20
    i_left = min(i for i, (t, _, p) in enumerate(out) if t > entered and p is None)
    left, last_over = out[i_left][0], out[i_left - 1][2]
    assert last_over is not None and 110 < last_over < 130  # until the new nodes were ready
    assert last_over + 60 < left <= last_over + 60 + kpa.sync_period_s  # a full stable window
    after = [n for t, n, _ in out if t >= left]
    assert after[-1] < 20  # scales down once out of panic


def test_kpa_no_panic_below_threshold_and_scale_down_rate() -> None:
    kpa = create("autoscaler", "kpa")
    out = _kpa_run(kpa, lambda t: 70.0 if t < 100 else 105.0, 200, 10)  # 1.5x
    assert all(p is None for _, _, p in out)
    kpa = create("autoscaler", "kpa")
    seq = _kpa_run(kpa, lambda t: 0.0, 20, 40)
    assert [n for _, n, _ in seq[:4]] == [20, 10, 5, 2]  # floor(ready / 2) per tick


# ---------------------------------------------------------------- Ray Serve target tracking


def test_target_tracking_upscale_waits_30s() -> None:
    tt = create("autoscaler", "target_tracking")
    out = drive(tt, [0, 10, 20, 30, 40], lambda t, n: pm(t, ready=n, concurrency=20.0), 2)
    assert out == [2, 2, 2, 10, 10]


def test_target_tracking_downscale_waits_600s_and_resets() -> None:
    tt = create("autoscaler", "target_tracking")
    times = np.arange(0, 1001, 10.0)
    out = dict(zip(times, drive(tt, times, lambda t, n: pm(t, ready=n, concurrency=2.0), 10),
                   strict=True))
    assert out[590] == 10 and out[600] == 1
    tt = create("autoscaler", "target_tracking")

    def make(t: float, n: int) -> PoolMetrics:  # a blip at t = 300 keeps the average at 20
        return pm(t, ready=n, concurrency=56.0 if t == 300 else 2.0)

    out = dict(zip(times, drive(tt, times, make, 10), strict=True))
    assert out[600] == 10 and out[920] == 10 and out[930] == 1


def test_target_tracking_cold_start() -> None:
    tt = create("autoscaler", "target_tracking")
    assert tt.desired(0, pm(ready=0, min_nodes=0, concurrency=3.0)) == 1


# ---------------------------------------------------------------- scheduled


def test_scheduled_prewarms_lead_time_before_entry() -> None:
    sch = create("autoscaler", "scheduled", calendar=[
        {"start_s": 3600, "end_s": 7200, "nodes": 40, "label": "11.11 00:00"},
        {"start_s": 5000, "end_s": 6000, "nodes": 60},
    ])
    assert sch.desired(2699, pm(ready=2, min_nodes=2)) == 2
    assert sch.desired(2700, pm(ready=2, min_nodes=2)) == 40  # 3600 - 900
    assert sch.desired(4100, pm(ready=40, min_nodes=2)) == 60  # overlapping: max
    assert sch.desired(7199, pm(ready=40, min_nodes=2)) == 40
    assert sch.desired(7200, pm(ready=40, min_nodes=2)) == 2
    base = create("autoscaler", "scheduled", base=5, lead_time_s=0, calendar=[])
    assert base.desired(0, pm(ready=1, min_nodes=1)) == 5


# ---------------------------------------------------------------- predictive


PEAK_START, PEAK_END = 7200.0, 9000.0


def _prior(t: float) -> float:
    return 300.0 if PEAK_START <= t < PEAK_END else 10.0


def test_predictive_provisions_before_known_peak_and_never_decreases() -> None:
    lead = 120.0
    pr = create("autoscaler", "predictive", lead_s=lead)
    times = np.arange(0, 12001, 60.0)

    def make(t: float, n: int) -> PoolMetrics:  # observed = the prior (history over 60 s)
        hist = np.array([_prior(t - 60 + i + 0.5) for i in range(60)])
        return pm(t, ready=n, rate_history=hist, tick_s=1.0, forecast=_prior, service_s=0.1)

    out = dict(zip(times, drive(pr, times, make, 1), strict=True))
    low, high = math.ceil(10 * 0.1 / 0.6), math.ceil(300 * 0.1 / 0.6)
    assert out[0] == low and high == 50
    rise = min(t for t in times if out[t] >= high)
    h = 300 + lead
    assert PEAK_START - h - pr.sync_period_s < rise <= PEAK_START - h  # ahead by buffer + lead
    seq = [out[t] for t in times]
    assert all(b >= a for a, b in itertools.pairwise(seq))  # never scales in
    assert out[12000] == high


def test_predictive_level_ratio_tracks_a_bigger_season() -> None:
    pr = create("autoscaler", "predictive")
    for t in np.arange(0, 3001, 60.0):  # this year runs at 2x last year's prior
        hist = np.full(60, 20.0)
        n = pr.desired(float(t), pm(float(t), rate_history=hist, forecast=_prior, service_s=0.1))
    assert pr.level_ratio == pytest.approx(2.0, rel=0.01)
    assert n == math.ceil(20 * 0.1 / 0.6)


def test_predictive_holt_without_prior_leads_a_ramp() -> None:
    pr = create("autoscaler", "predictive")
    times = np.arange(0, 3601, 60.0)

    def rate(t: float) -> float:
        return 10.0 + 0.1 * t  # a ramp: +6 QPS per minute

    out = []
    for t in times:
        hist = np.array([rate(t - 60 + i + 0.5) for i in range(60)])
        out.append(pr.desired(float(t), pm(float(t), rate_history=hist, service_s=0.1)))
    reactive_now = math.ceil(rate(3600) * 0.1 / 0.6)
    assert out[-1] > reactive_now  # provisions for the rate ahead, not the rate now
    assert all(b >= a for a, b in itertools.pairwise(out))
    # a drop afterwards does not scale in
    n = pr.desired(3660.0, pm(3660.0, rate_history=np.full(60, 1.0), service_s=0.1))
    assert n >= out[-1]


# ---------------------------------------------------------------- max


def test_max_takes_the_max() -> None:
    mx = create("autoscaler", "max", policies=[{"name": "static", "nodes": 5},
                                               {"name": "static", "nodes": 8}])
    assert mx.desired(0, pm(ready=1)) == 8


def test_max_respects_children_periods() -> None:
    mx = create("autoscaler", "max", policies=[{"name": "hpa"}, {"name": "kpa"}])
    assert mx.sync_period_s == 2
    calls = {"hpa": [], "kpa": []}
    for key, child in zip(("hpa", "kpa"), mx.children, strict=True):
        inner = child.desired

        def spy(now_s: float, m: PoolMetrics, _inner: Any = inner, _key: str = key) -> int:
            calls[_key].append(now_s)
            return _inner(now_s, m)

        child.desired = spy  # type: ignore[method-assign]
    n = 4
    for t in np.arange(0, 61, 2.0):
        n = mx.desired(float(t), pm(float(t), ready=n, utilization=0.6, concurrency=28.0))
    assert calls["hpa"] == [0, 16, 32, 48]
    assert len(calls["kpa"]) == 31


def test_scheduled_plus_hpa_holds_calendar_floor() -> None:
    mx = create("autoscaler", "max", policies=[
        {"name": "scheduled", "calendar": [{"start_s": 1000, "end_s": 2000, "nodes": 30}]},
        {"name": "hpa"}])
    assert mx.desired(0, pm(ready=4, utilization=0.6)) == 4
    assert mx.desired(120, pm(120, ready=4, utilization=0.6)) == 30  # 1000 - 900 lead


# ---------------------------------------------------------------- properties


def _build(name: str) -> Any:
    params: dict[str, dict[str, Any]] = {
        "max": {"policies": [{"name": "hpa"}, {"name": "kpa"}, {"name": "predictive"}]},
        "scheduled": {"calendar": [{"start_s": 500, "end_s": 900, "nodes": 50}]},
    }
    return create("autoscaler", name, **params.get(name, {}))


step = st.fixed_dictionaries({
    "dt": st.floats(0.5, 400), "ready": st.integers(0, 80), "starting": st.integers(0, 20),
    "util": st.floats(0, 1), "conc": st.floats(0, 5000), "queue": st.floats(0, 5000),
    "rate": st.floats(0, 1e4), "service": st.one_of(st.just(float("nan")), st.floats(0, 2)),
    "prior": st.booleans(),
})


@pytest.mark.parametrize("name", [*sorted(BUILTIN), "hpa:concurrency", "hpa:queue_length"])
@given(lo=st.integers(0, 5), span=st.integers(0, 60), steps=st.lists(step, min_size=1,
                                                                      max_size=30))
def test_fleet_always_within_bounds(name: str, lo: int, span: int,
                                    steps: list[dict[str, Any]]) -> None:
    if ":" in name:
        policy = create("autoscaler", "hpa", metric=name.split(":")[1], target=3.0)
    else:
        policy = _build(name)
    hi, t, desired = lo + span, 0.0, lo
    for s in steps:
        t += s["dt"]
        m = PoolMetrics(
            now_s=t, ready=s["ready"], starting=s["starting"], draining=0, desired=desired,
            min_nodes=lo, max_nodes=hi, utilization=s["util"], concurrency=s["conc"],
            queue_length=s["queue"], arrival_rate_qps=s["rate"],
            rate_history=np.full(5, s["rate"]), tick_s=1.0, service_s_per_request=s["service"],
            forecast=(lambda x: 100.0 + 50.0 * math.sin(x / 300.0)) if s["prior"] else None,
        )
        desired = policy.desired(t, m)
        assert isinstance(desired, int) and lo <= desired <= hi


@pytest.mark.parametrize("kind", ["hpa", "hpa:concurrency", "hpa:queue_length", "kpa",
                                  "target_tracking"])
def test_sustained_step_moves_reactive_policies_the_right_way(kind: str) -> None:
    if kind == "hpa:concurrency":
        policy = create("autoscaler", "hpa", metric="concurrency", target=7.0)
    elif kind == "hpa:queue_length":
        policy = create("autoscaler", "hpa", metric="queue_length", target=1.0)
    else:
        policy = create("autoscaler", kind)
    # demand in busy nodes: 6 (on target for 10 nodes), then 18 for 30 min, then 1 for 30 min
    def make(t: float, n: int) -> PoolMetrics:
        d = 6.0 if t < 600 else (18.0 if t < 2400 else 1.0)
        # synthetic metrics proportional to demand, on target at 10 nodes for each policy
        per_node = 2.0 if kind == "target_tracking" else 7.0
        return pm(t, ready=n, utilization=min(1.0, d / max(n, 1)),
                  concurrency=d / 0.6 * per_node, queue_length=d / 0.6)

    times = np.arange(0, 4200, policy.sync_period_s)
    out = dict(zip(times, drive(policy, times, make, 10), strict=True))
    before = out[max(t for t in times if t < 600)]
    peak = out[max(t for t in times if t < 2400)]
    end = out[times[-1]]
    assert peak > before and end < peak
    assert end < 10
