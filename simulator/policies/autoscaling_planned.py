"""Planned autoscalers: a promotion calendar and a forecast (AWS predictive scaling). Pure.

Both provision ahead of a peak instead of reacting to it; combine them with a reactive policy
through ``max`` (AWS: with several policies active, the largest capacity wins). Shared
helpers are in :mod:`simulator.policies.autoscaling`.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import numpy as np
from pydantic import Field, model_validator

from simulator.policies.autoscaling import (
    Count,
    Fraction,
    NonNeg,
    Pos,
    ceil_count,
    clamp,
    finite,
    sync,
)
from simulator.policies.autoscaling_api import PoolMetrics
from simulator.policies.registry import PolicyParams, parse_params, register


class CalendarEntry(PolicyParams):
    """One promotion in the calendar: hold at least ``nodes`` over [start_s, end_s)."""

    start_s: Annotated[float, Field(allow_inf_nan=False, description="start, s of simulated "
                                    "time")]
    end_s: Annotated[float, Field(allow_inf_nan=False, description="end, s")]
    nodes: Annotated[Count, Field(description="nodes to hold")]
    label: str = ""

    @model_validator(mode="after")
    def _order(self) -> CalendarEntry:
        if not self.end_s > self.start_s:
            raise ValueError(f"need start_s < end_s, got {self.start_s}, {self.end_s}")
        return self


class ScheduledParams(PolicyParams):
    """A promotion calendar (AWS scheduled actions / CronHPA), pre-warmed."""

    calendar: Annotated[list[CalendarEntry], Field(
        default_factory=list, description="entries {start_s, end_s, nodes, label?}")]
    lead_time_s: Annotated[NonNeg, Field(description="start each entry this much earlier "
                                         "(provisioning + model load + margin), s")] = 900.0
    base: Annotated[Count | None, Field(description="nodes outside the calendar (default "
                                        "min_nodes)")] = None
    sync_period_s: Pos = sync(60.0, "cron / AWS scheduled actions granularity")


@register("autoscaler", "scheduled")
class ScheduledAutoscaler:
    """A promotion calendar (AWS scheduled actions / Kubernetes CronHPA style), pre-warmed.

    ``calendar``: entries ``{start_s, end_s, nodes, label?}`` (s of simulated time; nodes).
    At ``now`` the answer is the largest ``nodes`` of the entries with
    ``start_s - lead_time_s <= now < end_s``, else ``base`` (default ``metrics.min_nodes``).
    ``lead_time_s`` (900 s) is PeakSim's choice: enough for provisioning + model load + a
    margin; real scheduled actions have no lead, the operator writes it into the start time.
    ``sync_period_s`` 60 s (the granularity of cron and of AWS scheduled actions).
    """

    Params = ScheduledParams

    def __init__(self, **params: Any) -> None:
        p = parse_params("autoscaler", "scheduled", ScheduledParams, params)
        self.lead_time_s = p.lead_time_s
        self.sync_period_s = p.sync_period_s
        self.base = p.base
        self.entries = [(e.start_s, e.end_s, e.nodes) for e in p.calendar]

    def desired(self, now_s: float, metrics: PoolMetrics) -> int:
        active = [n for s, e, n in self.entries if s - self.lead_time_s <= now_s < e]
        if active:
            return clamp(max(active), metrics)
        return clamp(metrics.min_nodes if self.base is None else self.base, metrics)


class PredictiveParams(PolicyParams):
    """AWS predictive scaling (forecast ahead, never scale in)."""

    scheduling_buffer_s: Annotated[NonNeg, Field(description="AWS SchedulingBufferTime: how "
                                                 "far ahead capacity is launched, s")] = 300.0
    lead_s: Annotated[NonNeg, Field(description="expected provisioning + model load, added "
                                    "to the buffer, s")] = 0.0
    target_utilization: Annotated[Fraction, Field(description="size for this busy fraction, "
                                                  "0..1")] = 0.6
    alpha: Annotated[Fraction, Field(description="level smoothing (0..1]")] = 0.3
    beta: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False, description=(
        "trend smoothing [0..1] (Holt; no prior curve)"))] = 0.1
    sync_period_s: Pos = sync(60.0, "the forecast is re-evaluated this often")
    service_s_per_request: Annotated[Pos | None, Field(description="node-seconds per request "
                                                       "(default: measured)")] = None


@register("autoscaler", "predictive")
class PredictiveAutoscaler:
    """AWS predictive scaling: capacity for the forecast load, launched ahead, never scaled in.

    Horizon h = ``scheduling_buffer_s`` (300 s, AWS SchedulingBufferTime default) + ``lead_s``
    (expected provisioning + model load, default 0). Each sync the policy sizes the pool for
    the highest forecast rate over [now, now + h + ``sync_period_s``) (sampled every <= 15 s:
    a peak that starts before the next sync + h must be requested now):
    nodes = ceil(rate x service_s_per_request / ``target_utilization`` (0.6)).

    Forecast, from the arrivals seen since the last sync (``metrics.rate_history``, or
    ``arrival_rate_qps`` when there is none):

    - with a prior curve ``metrics.forecast`` (last season's rate profile): the seasonal
      profile is the prior and a level ratio L = observed / prior is tracked by exponential
      smoothing with ``alpha`` (0.3), starting at 1 (trust the prior): forecast(t) = L x prior(t);
    - without one: Holt's linear smoothing (level ``alpha``, trend ``beta`` = 0.1, per sync
      interval), forecast(now + dt) = level + trend x dt, floored at 0.

    It never scales in by itself: its answer never drops below its own previous answer (AWS:
    predictive scaling does not scale in; the final capacity is the max over active policies,
    so combine it with a reactive policy through ``max``). ``service_s_per_request`` overrides
    ``metrics.service_s_per_request`` (s of node time per request). AWS forecasts hourly from
    >= 24 h of history; here the forecast is re-evaluated every ``sync_period_s`` (60 s).
    ``alpha``/``beta`` are PeakSim's choices (AWS does not publish its model).
    """

    Params = PredictiveParams

    def __init__(self, **params: Any) -> None:
        p = parse_params("autoscaler", "predictive", PredictiveParams, params)
        self.buffer_s = p.scheduling_buffer_s
        self.lead_s = p.lead_s
        self.target_utilization = p.target_utilization
        self.alpha = p.alpha
        self.beta = p.beta
        self.sync_period_s = p.sync_period_s
        self.service_s = p.service_s_per_request
        self.level_ratio = 1.0  # observed / prior (with a prior curve)
        self.level: float | None = None  # Holt level (QPS)
        self.trend = 0.0  # Holt trend (QPS per s)
        self._last_now: float | None = None
        self._last_service_s: float | None = None
        self._prev: int | None = None

    @property
    def horizon_s(self) -> float:
        """How far ahead capacity is provisioned (s): buffer + lead."""
        return self.buffer_s + self.lead_s

    def _observed(self, now_s: float, m: PoolMetrics) -> tuple[np.ndarray, np.ndarray]:
        """(mid-times s, rates QPS) of the ticks since the last sync."""
        hist = np.asarray(m.rate_history, dtype=float)
        tick = finite(m.tick_s)
        if len(hist) and tick > 0:
            k = len(hist) if self._last_now is None else round((now_s - self._last_now) / tick)
            k = min(len(hist), max(k, 1))
            rates = hist[-k:]
            times = now_s - tick * (np.arange(k - 1, -1, -1) + 0.5)
        else:
            rates, times = np.array([finite(m.arrival_rate_qps)]), np.array([now_s])
        ok = np.isfinite(rates)
        return times[ok], np.maximum(rates[ok], 0.0)

    def _update(self, now_s: float, m: PoolMetrics) -> None:
        times, rates = self._observed(now_s, m)
        if len(rates) == 0:
            return
        if m.forecast is not None:
            prior = np.array([max(0.0, finite(m.forecast(float(t)))) for t in times])
            if prior.sum() > 1e-12:
                ratio = float(rates.sum() / prior.sum())
                self.level_ratio = self.alpha * ratio + (1 - self.alpha) * self.level_ratio
            return
        y = float(rates.mean())
        dt = 0.0 if self._last_now is None else now_s - self._last_now
        if self.level is None or dt <= 0:
            self.level = y if self.level is None else self.level
            return
        prev = self.level
        self.level = self.alpha * y + (1 - self.alpha) * (prev + self.trend * dt)
        self.trend = self.beta * (self.level - prev) / dt + (1 - self.beta) * self.trend

    def forecast_rate(self, t_s: float, m: PoolMetrics) -> float:
        """Forecast arrival rate (QPS) at time ``t_s`` (>= the last sync)."""
        if m.forecast is not None:
            return self.level_ratio * max(0.0, finite(m.forecast(float(t_s))))
        if self.level is None:
            return 0.0
        base = self._last_now if self._last_now is not None else t_s
        return max(0.0, self.level + self.trend * (t_s - base))

    def desired(self, now_s: float, metrics: PoolMetrics) -> int:
        self._update(now_s, metrics)
        self._last_now = now_s
        s = self.service_s
        if s is None:
            s_m = finite(metrics.service_s_per_request)
            if s_m > 0:
                self._last_service_s = s_m
            s = self._last_service_s
        # peaks starting before the next sync + h must be provisioned now; one starting
        # exactly then is the next sync's job (grid of <= 15 s, last point just before it)
        end = now_s + self.horizon_s + self.sync_period_s
        grid = np.linspace(now_s, end, min(200, math.ceil((end - now_s) / 15.0) + 1))
        grid[-1] = max(now_s, end - 1e-6)
        rate = max(self.forecast_rate(float(t), metrics) for t in grid)
        want = metrics.min_nodes if s is None else ceil_count(rate * s / self.target_utilization)
        if self._prev is not None:
            want = max(want, self._prev)
        self._prev = clamp(want, metrics)
        return self._prev
