"""Reactive autoscalers: Kubernetes HPA, Knative KPA, Ray Serve target tracking. Pure.

Each mirrors its system's documented defaults (../shared/docs/reference-figures.md, "Policy
defaults of real systems") and the arithmetic of its source code; where the simulator has to
choose (no real default exists) the docstring says so. Shared helpers are in
:mod:`simulator.policies.autoscaling`.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from simulator.policies.autoscaling import (
    Count,
    NonNeg,
    Pos,
    TimedSamples,
    ceil_count,
    clamp,
    finite,
    sync,
)
from simulator.policies.autoscaling_api import PoolMetrics
from simulator.policies.registry import PolicyParams, parse_params, register

HPA_METRICS = ("utilization", "concurrency", "queue_length")


class HPAParams(PolicyParams):
    """Kubernetes HPA (autoscaling/v2) with its default behavior."""

    metric: Annotated[Literal["utilization", "concurrency", "queue_length"], Field(
        description="per-node metric: busy fraction, or requests (in service + waiting, or "
        "waiting) per node")] = "utilization"
    target: Annotated[Pos | None, Field(description="target per node (utilization: 0..1, "
                                        "default 0.6; requests per node: required)")] = None
    tolerance: Annotated[NonNeg, Field(description="no change within this relative distance "
                                       "of the target (Kubernetes 0.1)")] = 0.1
    sync_period_s: Pos = sync(15.0, "--horizontal-pod-autoscaler-sync-period")
    scale_down_stabilization_s: Annotated[NonNeg, Field(
        description="scale-down takes the highest recommendation of this window, s")] = 300.0
    scale_up_stabilization_s: Annotated[NonNeg, Field(
        description="scale-up takes the lowest recommendation of this window, s")] = 0.0
    scale_up_percent: Annotated[NonNeg, Field(
        description="scale-up limit per period, % of the count at the period's start")] = 100.0
    scale_up_pods: Annotated[Count, Field(description="scale-up limit per period, nodes "
                                          "(the larger limit applies)")] = 4
    scale_up_period_s: Annotated[Pos, Field(description="scale-up policy period, s")] = 15.0
    scale_down_percent: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False, description=(
        "scale-down limit per period, % of the count at the period's start"))] = 100.0
    scale_down_period_s: Annotated[Pos, Field(description="scale-down policy period, s")] = 15.0

    @model_validator(mode="after")
    def _target(self) -> HPAParams:
        if self.target is None:
            if self.metric != "utilization":
                raise ValueError(f"metric '{self.metric}' needs a target (requests per node)")
            self.target = 0.6
        return self


@register("autoscaler", "hpa")
class HPAAutoscaler:
    """Kubernetes Horizontal Pod Autoscaler (autoscaling/v2, default ``behavior``).

    Every ``sync_period_s`` (15 s, ``--horizontal-pod-autoscaler-sync-period``):

    1. per-pod metric = pool metric / ready nodes (``utilization`` is already a per-node busy
       fraction 0..1; ``concurrency`` and ``queue_length`` are requests per node);
       ratio = per-pod / ``target``; if |ratio - 1| <= ``tolerance`` (0.1) keep the current
       count, else recommend ceil(ready x ratio).
    2. Not-ready pods (``metrics.starting``) on a scale-up: counted at 0 %, the ratio is
       recomputed over ready + starting; if it no longer suggests a scale-up (within tolerance
       or below 1) keep the current count, and never recommend fewer than current.
    3. Stabilisation: a scale-down takes the highest recommendation of the last
       ``scale_down_stabilization_s`` (300 s); scale-up window ``scale_up_stabilization_s`` (0).
       As Kubernetes, the history is seeded with the current count at the first sync.
    4. Rate limits (policies over ``*_period_s`` = 15 s): up to
       max(``scale_up_percent`` = 100 % of the count at the period's start,
       ``scale_up_pods`` = 4) added per period (selectPolicy Max); scale-down
       ``scale_down_percent`` = 100 % per period.
    5. Clamp to [min_nodes, max_nodes].

    "Current replicas" is ``metrics.desired`` (the Deployment's spec.replicas: what the HPA
    set last). With no ready node and none starting, Kubernetes has no metric and keeps the
    count; here, if requests wait (``concurrency``/``queue_length``/``arrival_rate_qps`` > 0)
    it asks for at least 1 node (scale from zero, the HPAScaleToZero behaviour).
    Defaults: Kubernetes HPA docs ("Algorithm details", "Default Behavior"); ``target``
    0.6 utilisation is PeakSim's choice (Kubernetes has no default target; ``kubectl
    autoscale`` uses 80 %). ``concurrency`` and ``queue_length`` need an explicit ``target``.
    """

    Params = HPAParams

    def __init__(self, **params: Any) -> None:
        p = parse_params("autoscaler", "hpa", HPAParams, params)
        self.metric = p.metric
        assert p.target is not None
        self.target = p.target
        self.tolerance = p.tolerance
        self.sync_period_s = p.sync_period_s
        self.down_window_s = p.scale_down_stabilization_s
        self.up_window_s = p.scale_up_stabilization_s
        self.up_percent = p.scale_up_percent
        self.up_pods = p.scale_up_pods
        self.up_period_s = p.scale_up_period_s
        self.down_percent = p.scale_down_percent
        self.down_period_s = p.scale_down_period_s
        self._recs = TimedSamples(max(self.down_window_s, self.up_window_s))
        self._seeded = False
        self._ups: deque[tuple[float, int]] = deque()  # (time s, nodes added)
        self._downs: deque[tuple[float, int]] = deque()  # (time s, nodes removed)

    def _per_pod(self, m: PoolMetrics) -> float:
        if self.metric == "utilization":
            return max(0.0, finite(m.utilization))
        total = m.concurrency if self.metric == "concurrency" else m.queue_length
        return max(0.0, finite(total)) / m.ready

    def recommend(self, m: PoolMetrics) -> int:
        """Replica recommendation from the metric alone (steps 1-2, before stabilisation)."""
        current = m.desired
        if m.ready <= 0:
            waiting = max(finite(m.concurrency), finite(m.queue_length),
                          finite(m.arrival_rate_qps)) > 0
            return max(current, 1) if (m.starting == 0 and waiting) else current
        per_pod = self._per_pod(m)
        ratio = per_pod / self.target
        if m.starting <= 0 or ratio <= 1.0:
            if abs(1.0 - ratio) <= self.tolerance:
                return current
            return ceil_count(ratio * m.ready)
        # scale-up with not-ready pods: they count at 0 % of the target
        n = m.ready + m.starting
        new_ratio = per_pod * m.ready / (n * self.target)
        if abs(1.0 - new_ratio) <= self.tolerance or new_ratio < 1.0:
            return current
        return max(current, ceil_count(new_ratio * n))

    def _changed(self, events: deque[tuple[float, int]], now_s: float, period_s: float) -> int:
        return sum(n for t, n in events if t > now_s - period_s + 1e-9)

    def desired(self, now_s: float, metrics: PoolMetrics) -> int:
        current = metrics.desired
        rec = self.recommend(metrics)
        if not self._seeded:
            self._recs.add(now_s, current)
            self._seeded = True
        # stabilisation (Kubernetes stabilizeRecommendationWithBehaviors)
        up = min(rec, self._recs.min(now_s, self.up_window_s, rec))
        down = max(rec, self._recs.max(now_s, self.down_window_s, rec))
        self._recs.add(now_s, rec)
        want = min(max(current, up), down)
        # rate limits (calculateScaleUpLimitWithScalingRules / ...ScaleDownLimit...)
        if want > current:
            start = (current - self._changed(self._ups, now_s, self.up_period_s)
                     + self._changed(self._downs, now_s, self.up_period_s))
            limit = max(math.ceil(start * (1 + self.up_percent / 100.0)), start + self.up_pods)
            want = min(want, max(limit, current))
        elif want < current:
            start = (current + self._changed(self._downs, now_s, self.down_period_s)
                     - self._changed(self._ups, now_s, self.down_period_s))
            limit = math.floor(start * (1 - self.down_percent / 100.0))
            want = max(want, min(limit, current))
        final = clamp(want, metrics)
        if final > current:
            self._ups.append((now_s, final - current))
        elif final < current:
            self._downs.append((now_s, current - final))
        horizon = max(self.up_period_s, self.down_period_s)
        for ev in (self._ups, self._downs):
            while ev and ev[0][0] <= now_s - horizon:
                ev.popleft()
        return final


class KPAParams(PolicyParams):
    """Knative Pod Autoscaler (concurrency)."""

    target: Annotated[Pos | None, Field(description="target concurrent requests per node "
                                        "(default target_utilization x "
                                        "container_concurrency)")] = None
    container_concurrency: Annotated[Pos, Field(description="concurrent requests a node "
                                                "takes (Knative containerConcurrency)")] = 10.0
    target_utilization: Annotated[Pos, Field(description="container-concurrency-target-"
                                              "percentage as a fraction")] = 0.7
    stable_window_s: Annotated[Pos, Field(description="stable window, s")] = 60.0
    panic_window_percentage: Annotated[Pos, Field(description="panic window, % of the "
                                                  "stable window")] = 10.0
    panic_threshold: Annotated[Pos, Field(description="panic when desired / ready reaches "
                                          "this (2.0 = 200 %)")] = 2.0
    max_scale_up_rate: Annotated[float, Field(ge=1, le=1e9, allow_inf_nan=False, description=(
        "most growth per tick, x ready"))] = 1000.0
    max_scale_down_rate: Annotated[float, Field(ge=1, le=1e9, allow_inf_nan=False, description=(
        "most shrinkage per tick, ready / this"))] = 2.0
    sync_period_s: Pos = sync(2.0, "Knative tick-interval")


@register("autoscaler", "kpa")
class KPAAutoscaler:
    """Knative Pod Autoscaler (concurrency metric), after ``pkg/autoscaler/scaling``.

    Every tick (``sync_period_s`` = 2 s) the total concurrency (``metrics.concurrency``) is
    sampled; desired_stable = ceil(mean over ``stable_window_s`` (60 s) / ``target``),
    desired_panic = ceil(mean over the panic window (``panic_window_percentage`` = 10 % of
    stable: 6 s) / ``target``), both limited to [floor(ready / ``max_scale_down_rate``),
    ceil(ready x ``max_scale_up_rate``)] (2x down, 1000x up per tick; ready counts as >= 1).
    Panic starts when desired_panic / ready >= ``panic_threshold`` (2.0 = 200 %); while
    panicking the answer is max(desired_stable, desired_panic) ratcheted up from the count at
    panic entry: it never scales down. Panic ends once a full stable window has passed since
    the panic condition last held.

    ``target`` (requests per node) defaults to ``target_utilization`` (0.7:
    container-concurrency-target-percentage 70 %) x ``container_concurrency``. Knative's own
    containerConcurrency default is 0 (unlimited, target 100 per pod); PeakSim's default of
    10 concurrent requests per node gives target 7. Scale-to-zero grace and the activator are
    not modelled (``min_nodes`` bounds the pool).
    """

    Params = KPAParams

    def __init__(self, **params: Any) -> None:
        p = parse_params("autoscaler", "kpa", KPAParams, params)
        self.target = (p.container_concurrency * p.target_utilization if p.target is None
                       else p.target)
        self.stable_window_s = p.stable_window_s
        self.panic_window_s = self.stable_window_s * p.panic_window_percentage / 100.0
        self.panic_threshold = p.panic_threshold
        self.max_up_rate = p.max_scale_up_rate
        self.max_down_rate = p.max_scale_down_rate
        self.sync_period_s = p.sync_period_s
        self._samples = TimedSamples(max(self.stable_window_s, self.panic_window_s))
        self.panic_since: float | None = None  # last time the panic condition held (s)
        self._max_panic = 0

    @property
    def panicking(self) -> bool:
        """Whether the autoscaler is in panic mode."""
        return self.panic_since is not None

    def desired(self, now_s: float, metrics: PoolMetrics) -> int:
        self._samples.add(now_s, max(0.0, finite(metrics.concurrency)))
        ready = max(1, metrics.ready)
        stable = self._samples.mean(now_s, self.stable_window_s)
        panic = self._samples.mean(now_s, self.panic_window_s)
        max_up = math.ceil(self.max_up_rate * ready)
        max_down = math.floor(ready / self.max_down_rate)
        dspc = ceil_count(stable / self.target)
        dppc = ceil_count(panic / self.target)
        stable_pods = min(max(dspc, max_down), max_up)
        panic_pods = min(max(dppc, max_down), max_up)
        if dppc / ready >= self.panic_threshold:
            if self.panic_since is None:
                self._max_panic = metrics.desired  # never below the count at panic entry
            self.panic_since = now_s
        elif self.panic_since is not None and now_s > self.panic_since + self.stable_window_s:
            self.panic_since = None
            self._max_panic = 0
        want = stable_pods
        if self.panic_since is not None:
            self._max_panic = max(self._max_panic, stable_pods, panic_pods)
            want = self._max_panic
        return clamp(want, metrics)


class TargetTrackingParams(PolicyParams):
    """Ray Serve AutoscalingConfig."""

    target_ongoing_requests: Annotated[Pos, Field(description="target requests (running + "
                                                  "queued) per node")] = 2.0
    upscale_delay_s: Annotated[NonNeg, Field(description="an increase must be recommended "
                                             "this long, s")] = 30.0
    downscale_delay_s: Annotated[NonNeg, Field(description="a decrease must be recommended "
                                               "this long, s")] = 600.0
    look_back_period_s: Annotated[Pos, Field(description="averaging window of the ongoing "
                                             "requests, s")] = 30.0
    sync_period_s: Pos = sync(10.0, "Ray metrics_interval_s")


@register("autoscaler", "target_tracking")
class TargetTrackingAutoscaler:
    """Ray Serve's default autoscaling policy (target ongoing requests per replica).

    ``metrics.concurrency`` (ongoing requests: running plus queued) is sampled each
    ``sync_period_s`` (10 s: Ray's ``metrics_interval_s`` default) and averaged over
    ``look_back_period_s`` (30 s); desired = ceil(average / ``target_ongoing_requests`` (2)),
    clamped. An increase is applied once it has been recommended at every sync for
    ``upscale_delay_s`` (30 s), a decrease once recommended for ``downscale_delay_s``
    (600 s); the value applied is the latest recommendation, and a change of direction or a
    "keep" resets the wait (Ray's decision counter). From zero nodes with requests waiting it
    asks for 1 at once (Ray's cold-start path). Defaults: Ray Serve AutoscalingConfig.
    """

    Params = TargetTrackingParams

    def __init__(self, **params: Any) -> None:
        p = parse_params("autoscaler", "target_tracking", TargetTrackingParams, params)
        self.target = p.target_ongoing_requests
        self.upscale_delay_s = p.upscale_delay_s
        self.downscale_delay_s = p.downscale_delay_s
        self.look_back_s = p.look_back_period_s
        self.sync_period_s = p.sync_period_s
        self._samples = TimedSamples(self.look_back_s)
        self._up_since: float | None = None
        self._down_since: float | None = None

    def desired(self, now_s: float, metrics: PoolMetrics) -> int:
        ongoing = max(0.0, finite(metrics.concurrency))
        self._samples.add(now_s, ongoing)
        current = metrics.desired
        if current == 0 and ongoing > 0:
            self._up_since = self._down_since = None
            return clamp(1, metrics)
        rec = clamp(ceil_count(self._samples.mean(now_s, self.look_back_s) / self.target),
                    metrics)
        if rec > current:
            self._down_since = None
            if self._up_since is None:
                self._up_since = now_s
            if now_s - self._up_since >= self.upscale_delay_s - 1e-9:
                self._up_since = None
                return rec
        elif rec < current:
            self._up_since = None
            if self._down_since is None:
                self._down_since = now_s
            if now_s - self._down_since >= self.downscale_delay_s - 1e-9:
                self._down_since = None
                return rec
        else:
            self._up_since = self._down_since = None
        return clamp(current, metrics)
