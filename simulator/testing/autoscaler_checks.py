"""Property checks for autoscalers: bounds, declared rate limits and windows, reaction to load.

Part of :mod:`simulator.testing`; see :mod:`simulator.testing.checks` for routers and batchers.
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from simulator.policies.autoscaling_api import PoolMetrics
from simulator.testing import strategies as sp
from simulator.testing.checks import (
    EPS,
    PolicySpec,
    _base_scenario,
    _deterministic,
    _factory,
    _fail,
    _registered,
    _run_checked,
    _settings,
    _sim_settings,
)


# ----------------------------------------------------------------------------- autoscaler
def check_desired(n: Any, m: PoolMetrics, where: str) -> int:
    """One answer: an integer within [min_nodes, max_nodes]."""
    if isinstance(n, bool) or not isinstance(n, Integral):
        _fail(f"desired() returned {n!r} ({type(n).__name__}), not an integer, for {where}")
    if not m.min_nodes <= int(n) <= m.max_nodes:
        _fail(f"desired {n} outside [min_nodes {m.min_nodes}, max_nodes {m.max_nodes}] "
              f"for {where}")
    return int(n)


def closed_loop(policy: Any, step: sp.LoadStep) -> list[tuple[PoolMetrics, int]]:
    """Run ``policy`` against a fluid model of a pool under ``step``; (metrics, answer) per sync.

    The pool starts with ``step.start_nodes`` ready; nodes asked for are ready ``step.lag_s``
    later; a scale-down removes starting nodes first, then ready ones at once. Each ready node
    serves one request at a time: offered work is ``rate x service_s`` node-seconds per second;
    work beyond the ready nodes queues (and drains when capacity allows). Each answer is
    checked with :func:`check_desired`; the engine's clamp is applied before acting on it.
    """
    period = float(policy.sync_period_s)
    if not period > 0:
        _fail(f"sync_period_s must be > 0, got {period!r}")
    desired = ready = step.start_nodes
    pending: list[tuple[float, int]] = []  # (ready at s, nodes)
    queue, t_prev = 0.0, 0.0
    out: list[tuple[PoolMetrics, int]] = []
    t = period
    while t <= step.end_s + EPS:
        rate = step.rate(t)
        ready += sum(k for at, k in pending if at <= t + EPS)
        pending = [(at, k) for at, k in pending if at > t + EPS]
        offered = rate * step.service_s
        queue = max(0.0, queue + (offered - ready) / step.service_s * (t - t_prev))
        busy = min(float(ready), offered + (1.0 if queue > 0 else 0.0) * ready)
        m = PoolMetrics(
            now_s=t, ready=ready, starting=sum(k for _, k in pending), draining=0,
            desired=desired, min_nodes=step.min_nodes, max_nodes=step.max_nodes,
            utilization=busy / ready if ready else 0.0, concurrency=busy + queue,
            queue_length=queue, arrival_rate_qps=rate,
            rate_history=sp._ro(np.array([rate])), tick_s=period,
            service_s_per_request=step.service_s)
        ans = check_desired(policy.desired(t, m), m, f"t={t:g} s of the closed loop {step!r}")
        out.append((m, ans))
        new = max(step.min_nodes, min(step.max_nodes, ans))
        have = ready + sum(k for _, k in pending)
        if new > have:
            pending.append((t + step.lag_s, new - have))
        elif new < have:
            cut = have - new
            while cut and pending:
                at, k = pending.pop()
                if k > cut:
                    pending.append((at, k - cut))
                    cut = 0
                else:
                    cut -= k
            ready -= cut
        desired, t_prev = new, t
        t += period
    return out


def _value_at(history: list[tuple[float, int]], t: float, start: int) -> int:
    """The count in effect at time ``t`` (the last answer at or before ``t``)."""
    v = start
    for tk, d in history:
        if tk <= t + EPS:
            v = d
        else:
            break
    return v


def check_declared_limits(policy: Any, loop: list[tuple[PoolMetrics, int]],
                          start: int, where: str) -> None:
    """Rate limits and windows the policy declares (attribute names as the built-ins):

    * ``up_pods``, ``up_percent``, ``up_period_s``: a scale-up ends at most at
      max(ceil(c0 x (1 + up_percent/100)), c0 + up_pods), c0 = the count up_period_s ago;
    * ``down_percent``, ``down_period_s``: a scale-down ends at least at
      floor(c0 x (1 - down_percent/100)), c0 = the count down_period_s ago;
    * ``down_window_s`` (scale-down stabilisation): within down_window_s after scaling up to
      L, never below L;
    * ``upscale_delay_s`` / ``downscale_delay_s``: a change up / down comes at least that long
      after the previous change (or the first sync), except scaling up from zero;
    * ``max_up_rate`` / ``max_down_rate`` (per sync, relative to ready nodes r >= 1): at most
      max(ceil(r x max_up_rate), the previous count), at least floor(r / max_down_rate).
    """
    hist: list[tuple[float, int]] = []
    ups: list[tuple[float, int]] = []
    last_change: float | None = None
    first_t = loop[0][0].now_s if loop else 0.0
    prev = start
    for m, d in loop:
        t, lo, hi = m.now_s, m.min_nodes, m.max_nodes
        at = f"t={t:g} s (count {prev} -> {d}) of {where}"
        if d > prev and hasattr(policy, "up_pods") and hasattr(policy, "up_period_s"):
            c0 = _value_at(hist, t - policy.up_period_s, start)
            pct = float(getattr(policy, "up_percent", 0.0))
            limit = max(math.ceil(c0 * (1 + pct / 100.0)), c0 + int(policy.up_pods))
            if d > max(limit, prev, lo):
                _fail(f"scale-up rate limit broken: {c0} nodes {policy.up_period_s:g} s ago "
                      f"allow at most {limit}, at {at}")
        if d < prev and hasattr(policy, "down_percent") and hasattr(policy, "down_period_s"):
            c0 = _value_at(hist, t - policy.down_period_s, start)
            limit = math.floor(c0 * (1 - float(policy.down_percent) / 100.0))
            if d < min(limit, prev, hi):
                _fail(f"scale-down rate limit broken: {c0} nodes {policy.down_period_s:g} s "
                      f"ago allow at least {limit}, at {at}")
        if hasattr(policy, "down_window_s"):
            for tu, level in ups:
                if t - tu < float(policy.down_window_s) - 1e-6 and d < min(level, hi):
                    _fail(f"scale-down stabilisation broken: scaled up to {level} at {tu:g} s, "
                          f"below it within down_window_s {policy.down_window_s:g} s, at {at}")
        if d != prev and prev > 0:
            attr = "upscale_delay_s" if d > prev else "downscale_delay_s"
            if hasattr(policy, attr):
                ref = first_t if last_change is None else last_change
                delay = float(getattr(policy, attr))
                if t - ref < delay - 1e-6:
                    _fail(f"{attr} {delay:g} s broken: changed {t - ref:g} s after the "
                          f"previous change (or first sync) at {ref:g} s, at {at}")
        r = max(1, m.ready)
        if hasattr(policy, "max_down_rate") and d < min(math.floor(r / policy.max_down_rate), hi):
            _fail(f"max_down_rate {policy.max_down_rate:g} broken: {m.ready} ready allow at "
                  f"least {math.floor(r / policy.max_down_rate)}, at {at}")
        if hasattr(policy, "max_up_rate"):
            limit = max(math.ceil(r * policy.max_up_rate), prev, lo)
            if d > limit:
                _fail(f"max_up_rate {policy.max_up_rate:g} broken: {m.ready} ready allow at "
                      f"most {limit}, at {at}")
        if d > prev:
            ups.append((t, d))
        if d != prev:
            last_change = t
        hist.append((t, d))
        prev = d


def check_reaction(loop: list[tuple[PoolMetrics, int]], step: sp.LoadStep,
                   reactive: bool, where: str) -> None:
    """Direction of the reaction to a sustained step, on the mean count over the second half
    of each phase (policies may oscillate): after a step up the mean ends >= before the step;
    after a step down, <= (0.5 node of slack). A ``reactive`` policy must also end higher (or
    at max_nodes) when the step overloads the pre-step fleet by half again (offered work >=
    1.5 x the pre-step mean count)."""
    half = (step.end_s - step.step_at_s) / 2
    pre_d = [d for m, d in loop if step.step_at_s - half <= m.now_s < step.step_at_s]
    post_d = [d for m, d in loop if m.now_s >= step.end_s - half]
    if not pre_d or not post_d:
        return
    pre, post = float(np.mean(pre_d)), float(np.mean(post_d))
    up = step.level_qps > step.base_qps
    what = f"mean {pre:.3g} nodes before the step, {post:.3g} at the end, for {where}"
    if up and post < pre - 0.5:
        _fail(f"moved against the load after a sustained step up: {what}")
    if not up and post > pre + 0.5:
        _fail(f"moved against the load after a sustained step down: {what}")
    offered = step.level_qps * step.service_s
    if reactive and up and offered >= 1.5 * pre and pre < step.max_nodes and post <= pre:
        _fail(f"did not react to an overloading step up ({offered:.3g} node-seconds/s of "
              f"work): {what}")


def _autoscaler_scenario(name: str, params: dict[str, Any], lo: int, hi: int, peak: float,
                         seed: int) -> dict[str, Any]:
    raw = _base_scenario(max(lo, 1), 10.0, 50.0, 600.0, seed)
    raw["simulation"]["timeseries_interval_s"] = 10.0
    raw["workload"]["peaks"] = [{"start_s": 150.0, "ramp_s": 30.0, "hold_s": 200.0,
                                 "decay_s": 60.0, "decay": "linear", "multiplier": peak}]
    raw["cluster"]["pools"][0].update(
        min_nodes=lo, max_nodes=hi,
        provisioning={"distribution": "exponential", "mean_s": 20.0})
    raw["policy"]["autoscaling"] = {"name": name, **params}
    return raw


def check_autoscaler(policy: PolicySpec, *, params: dict[str, Any] | None = None,
                     max_examples: int | None = None, reactive: bool = True,
                     simulate: bool = True, sim_examples: int | None = None) -> None:
    """Check an autoscaler; raise :class:`PolicyCheckError` with a minimal counterexample.

    * Bounds, open loop: on generated metric histories
      (:func:`~simulator.testing.strategies.metric_histories`: any counts, load steps) every
      answer is an integer within [metrics.min_nodes, metrics.max_nodes].
    * Closed loop (:func:`closed_loop` on :func:`~simulator.testing.strategies.load_steps`, a
      step up or down held 1200 s): bounds, the rate limits and windows the policy declares
      (:func:`check_declared_limits`), and the direction of the reaction
      (:func:`check_reaction`; ``reactive=False`` for planned policies that ignore load).
    * Whole small simulations (``simulate``): an elastic pool under a load peak, every
      invariant of :func:`check_invariants` (fleet bounds, billing...), and determinism.
    """
    kw = dict(params or {})
    make = _factory("autoscaler", policy, kw)
    period = float(make().sync_period_s)

    @_settings(max_examples)
    @given(history=sp.metric_histories(sync_period_s=period))
    def bounds_prop(history: list[PoolMetrics]) -> None:
        p = make()
        for k, m in enumerate(history):
            check_desired(p.desired(m.now_s, m), m, f"call {k} of the history {history!r}")

    @_settings(max_examples)
    @given(step=sp.load_steps())
    def loop_prop(step: sp.LoadStep) -> None:
        p = make()
        loop = closed_loop(p, step)
        where = repr(step)
        check_declared_limits(p, loop, step.start_nodes, where)
        check_reaction(loop, step, reactive, where)

    bounds_prop()
    loop_prop()
    if not simulate:
        return
    with _registered("autoscaler", policy) as name:

        @_sim_settings(max_examples, sim_examples)
        @given(lo=st.integers(1, 2), extra=st.integers(1, 4), peak=st.floats(1.5, 5.0),
               seed=st.integers(0, 2**31 - 1))
        def sim_prop(lo: int, extra: int, peak: float, seed: int) -> None:
            _run_checked(_autoscaler_scenario(name, kw, lo, lo + extra, peak, seed), seed)

        sim_prop()
        _deterministic(_autoscaler_scenario(name, kw, 1, 4, 3.0, 5))
