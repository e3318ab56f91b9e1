"""Autoscalers: how many nodes a pool should have. Pure: no SimPy, no I/O.

Every policy has ``sync_period_s`` (s, how often the engine asks) and
``desired(now_s, metrics) -> int``, whose answer is already clamped to
``[metrics.min_nodes, metrics.max_nodes]``. Policies keep their own history (stabilisation
windows, panic windows, forecasts) inside themselves. Constructor arguments come straight
from the scenario (``policy.autoscaling = {name = "hpa", target = 0.6}``); an unknown argument
raises a :class:`ValueError` naming the policy and the argument (a ``name`` key is ignored).

This module holds the shared helpers, ``static`` and the ``max`` combinator. The reactive
policies (``hpa``, ``kpa``, ``target_tracking``) live in
:mod:`simulator.policies.autoscaling_reactive`, the planned ones (``scheduled``,
``predictive``) in :mod:`simulator.policies.autoscaling_planned`. See ``docs/autoscaling.md``.
"""

from __future__ import annotations

import inspect
import math
from collections import deque
from typing import Any

from simulator.policies.autoscaling_api import Autoscaler, PoolMetrics
from simulator.policies.registry import create, register

_EPS = 1e-9  # float slack for ceilings and window edges (s or dimensionless)


def reject_unknown(policy: str, cls: type, extra: dict[str, Any]) -> None:
    """Raise a clear error for constructor arguments ``cls`` does not take (``name`` is allowed)."""
    unknown = sorted(k for k in extra if k != "name")
    if unknown:
        params = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
        allowed = [
            p for p, spec in params.items()
            if p not in ("self", "name") and spec.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        raise ValueError(
            f"autoscaler '{policy}': unknown argument(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(allowed)}"
        )


def positive(policy: str, arg: str, value: float, *, allow_zero: bool = False) -> float:
    """``value`` as float, checked to be finite and > 0 (or >= 0 with ``allow_zero``)."""
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"autoscaler '{policy}': {arg} must be finite and {bound}, got {value!r}")
    return v


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


@register("autoscaler", "static")
class StaticAutoscaler:
    """Fixed node count: the peak-provisioned (or any fixed) baseline.

    ``nodes``: the count to hold (default: keep ``metrics.desired``, i.e. never change).
    ``sync_period_s``: how often the engine asks (s, default 60; the answer never changes).
    """

    def __init__(
        self, *, nodes: int | None = None, sync_period_s: float = 60.0,
        name: str | None = None, **extra: Any,
    ) -> None:
        reject_unknown("static", type(self), extra)
        if nodes is not None and (int(nodes) != nodes or nodes < 0):
            raise ValueError(f"autoscaler 'static': nodes must be an integer >= 0, got {nodes!r}")
        self.nodes = None if nodes is None else int(nodes)
        self.sync_period_s = positive("static", "sync_period_s", sync_period_s)

    def desired(self, now_s: float, metrics: PoolMetrics) -> int:
        return clamp(metrics.desired if self.nodes is None else self.nodes, metrics)

    def holds(self, nodes: int) -> bool:
        """Capability: True when every answer would keep a pool of ``nodes`` at that count
        (the engine then need not ask, unless nodes can disappear)."""
        return self.nodes is None or self.nodes == nodes


@register("autoscaler", "max")
class MaxAutoscaler:
    """Combination: the maximum over child policies (AWS: with several scaling policies active,
    the one that gives the largest capacity wins; predictive + dynamic is combined this way).

    ``policies``: a list of ``{name = "...", <params>}`` tables, each built from the registry.
    ``sync_period_s`` is the smallest child period; a child is asked only when its own period
    has elapsed since it was last asked, otherwise its last answer is reused.
    """

    def __init__(
        self, *, policies: list[dict[str, Any]] | None = None, name: str | None = None,
        **extra: Any,
    ) -> None:
        reject_unknown("max", type(self), extra)
        if not policies:
            raise ValueError("autoscaler 'max': policies must list at least one policy")
        self.children: list[Autoscaler] = []
        for i, spec in enumerate(policies):
            if not isinstance(spec, dict) or "name" not in spec:
                raise ValueError(
                    f"autoscaler 'max': policies[{i}] must be a table with a 'name' key, "
                    f"got {spec!r}"
                )
            params = {k: v for k, v in spec.items() if k != "name"}
            self.children.append(create("autoscaler", str(spec["name"]), **params))
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
