"""Autoscalers: how many nodes a pool should have. Pure: no SimPy, no I/O.

Every policy has ``sync_period_s`` (s, how often the engine asks) and
``desired(now_s, metrics) -> int``, whose answer is already clamped to
``[metrics.min_nodes, metrics.max_nodes]``. Policies keep their own history (stabilisation
windows, panic windows, forecasts) inside themselves. Each declares its parameters as a
pydantic model (``Params``: defaults, bounds and units in one place); the scenario's table
(``policy.autoscaling = {name = "hpa", target = 0.6}``) is validated against it when the
scenario loads, and an unknown or out-of-range parameter raises a :class:`ValueError` naming
the policy, the parameter and the allowed ones.

This module holds the shared helpers, ``static`` and the ``max`` combinator. The reactive
policies (``hpa``, ``kpa``, ``target_tracking``) live in
:mod:`simulator.policies.autoscaling_reactive`, the planned ones (``scheduled``,
``predictive``) in :mod:`simulator.policies.autoscaling_planned`. See ``docs/autoscaling.md``.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Annotated, Any

from pydantic import Field, field_validator

from simulator.policies.autoscaling_api import Autoscaler, PoolMetrics
from simulator.policies.registry import (
    PolicyParams,
    create,
    parse_params,
    register,
    validate_params,
)

_EPS = 1e-9  # float slack for ceilings and window edges (s or dimensionless)

# parameter types of the autoscalers' models (finite, at most 1e9; units in the field names)
Pos = Annotated[float, Field(gt=0, le=1e9, allow_inf_nan=False)]
NonNeg = Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)]
Fraction = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=1_000_000, strict=False)]

#: the shortest sync period, s: each sync is an event that builds the pool's metrics (about
#: 0.2 ms of run time), so a shorter one cannot finish a run of any length
MIN_SYNC_PERIOD_S = 1e-3


def sync(default_s: float, source: str) -> Any:
    """The ``sync_period_s`` field: how often the engine asks the policy, s (at least
    :data:`MIN_SYNC_PERIOD_S`)."""
    return Field(default_s, ge=MIN_SYNC_PERIOD_S, le=1e9, allow_inf_nan=False,
                 description=f"how often the engine asks the policy, s, at least 0.001 "
                 f"({source})")


def finite(x: float, default: float = 0.0) -> float:
    """``x`` if it is a finite number, else ``default`` (NaN metrics read as no signal)."""
    x = float(x)
    return x if math.isfinite(x) else default


def ceil_count(x: float) -> int:
    """Ceiling of a non-negative node count, tolerant of float noise (7.000000001 -> 7)."""
    if not math.isfinite(x) or x <= 0:
        return 0
    return math.ceil(x - _EPS)


def clamp(n: float, metrics: PoolMetrics) -> int:
    """``n`` clamped to ``[metrics.min_nodes, metrics.max_nodes]`` as an int."""
    return int(max(metrics.min_nodes, min(metrics.max_nodes, int(n))))


class TimedSamples:
    """(time s, value) samples kept for ``horizon_s``; statistics over trailing windows.

    A sample at time t is in the window of length w at ``now`` when ``now - w < t <= now``
    (Kubernetes and Knative both keep samples strictly after the cutoff).
    """

    def __init__(self, horizon_s: float) -> None:
        self.horizon_s = float(horizon_s)
        self._q: deque[tuple[float, float]] = deque()

    def add(self, t: float, value: float) -> None:
        """Append a sample and forget the ones older than the horizon."""
        self._q.append((float(t), float(value)))
        cutoff = t - self.horizon_s + _EPS
        while self._q and self._q[0][0] < cutoff:
            self._q.popleft()

    def window(self, now_s: float, window_s: float) -> list[float]:
        """Values of the samples with ``now_s - window_s < t <= now_s``."""
        cutoff = now_s - window_s + _EPS
        return [v for t, v in self._q if cutoff <= t <= now_s + _EPS]

    def mean(self, now_s: float, window_s: float, default: float = 0.0) -> float:
        """Mean over the trailing window (``default`` when it is empty)."""
        vals = self.window(now_s, window_s)
        return sum(vals) / len(vals) if vals else default

    def max(self, now_s: float, window_s: float, default: float) -> float:
        """Maximum over the trailing window (``default`` when it is empty)."""
        return max(self.window(now_s, window_s), default=default)

    def min(self, now_s: float, window_s: float, default: float) -> float:
        """Minimum over the trailing window (``default`` when it is empty)."""
        return min(self.window(now_s, window_s), default=default)


class StaticParams(PolicyParams):
    nodes: Annotated[Count | None, Field(description="the count to hold (default: keep the "
                                         "pool's current count, i.e. never change)")] = None
    sync_period_s: Pos = sync(60.0, "the answer never changes")


@register("autoscaler", "static")
class StaticAutoscaler:
    """Fixed node count: the peak-provisioned (or any fixed) baseline.

    ``nodes``: the count to hold (default: keep ``metrics.desired``, i.e. never change).
    ``sync_period_s``: how often the engine asks (s, default 60; the answer never changes).
    """

    Params = StaticParams

    def __init__(self, **params: Any) -> None:
        p = parse_params("autoscaler", "static", StaticParams, params)
        self.nodes = p.nodes
        self.sync_period_s = p.sync_period_s

    def desired(self, now_s: float, metrics: PoolMetrics) -> int:
        return clamp(metrics.desired if self.nodes is None else self.nodes, metrics)

    def holds(self, nodes: int) -> bool:
        """Capability: True when every answer would keep a pool of ``nodes`` at that count
        (the engine then need not ask, unless nodes can disappear)."""
        return self.nodes is None or self.nodes == nodes


class MaxParams(PolicyParams):
    policies: Annotated[list[dict[str, Any]], Field(
        min_length=1, description="child policies, each a table {name = ..., <its "
        "parameters>}; the answer is the largest of theirs")]

    @field_validator("policies")
    @classmethod
    def _children(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for i, spec in enumerate(v):
            if not isinstance(spec, dict) or "name" not in spec:
                raise ValueError(f"policies[{i}] must be a table with a 'name' key, got {spec!r}")
            params = {k: x for k, x in spec.items() if k != "name"}
            out.append({"name": str(spec["name"]),
                        **validate_params("autoscaler", str(spec["name"]), params)})
        return out


@register("autoscaler", "max")
class MaxAutoscaler:
    """Combination: the maximum over child policies (AWS: with several scaling policies active,
    the one that gives the largest capacity wins; predictive + dynamic is combined this way).

    ``policies``: a list of ``{name = "...", <params>}`` tables, each built from the registry.
    ``sync_period_s`` is the smallest child period; a child is asked only when its own period
    has elapsed since it was last asked, otherwise its last answer is reused.
    """

    Params = MaxParams

    def __init__(self, **params: Any) -> None:
        p = parse_params("autoscaler", "max", MaxParams, params)
        self.children: list[Autoscaler] = [
            create("autoscaler", spec["name"], {k: v for k, v in spec.items() if k != "name"})
            for spec in p.policies]
        self.sync_period_s = min(float(c.sync_period_s) for c in self.children)
        self._last_call: list[float | None] = [None] * len(self.children)
        self._last_answer: list[int] = [0] * len(self.children)

    def desired(self, now_s: float, metrics: PoolMetrics) -> int:
        for i, child in enumerate(self.children):
            last = self._last_call[i]
            if last is None or now_s - last >= child.sync_period_s - _EPS:
                self._last_answer[i] = int(child.desired(now_s, metrics))
                self._last_call[i] = now_s
        return clamp(max(self._last_answer), metrics)
