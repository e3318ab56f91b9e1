"""The autoscaler interface: what the engine shows a scaling policy, and what it gets back.

Engine side (SimPy) calls ``policy.desired(now_s, metrics)`` every ``policy.sync_period_s``
seconds for each elastic pool, clamps the answer to [min_nodes, max_nodes] and executes it
(provision new nodes, or drain ready ones). Policies keep their own history (stabilisation
windows, panic windows, forecasts) inside themselves; they never import SimPy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class PoolMetrics:
    """Observations of one pool at ``now_s`` (s), averaged over the last engine tick.

    ready: nodes that serve; starting: nodes provisioning or loading the model (requested, not
    ready); draining: nodes finishing work before termination; desired: the last desired count.
    utilization: busy fraction of ready nodes over the last tick (0..1).
    concurrency: mean requests in service plus waiting for this pool over the last tick (the
    pool's share of a shared queue is counted in proportion to its ready nodes).
    queue_length: requests waiting now (pool's share). arrival_rate_qps: arrivals over the last
    tick routed to this pool's share. rate_history: arrival rate (QPS) per past tick of length
    tick_s, oldest first (read-only). service_s_per_request: busy node-seconds per completed
    request recently (the capacity one request costs). forecast: a prior rate curve (QPS as a
    function of time s: e.g. last season's curve), or None.
    """

    now_s: float
    ready: int
    starting: int
    draining: int
    desired: int
    min_nodes: int
    max_nodes: int
    utilization: float
    concurrency: float
    queue_length: float
    arrival_rate_qps: float
    rate_history: np.ndarray
    tick_s: float
    service_s_per_request: float
    forecast: Callable[[float], float] | None = None

    @property
    def current(self) -> int:
        """Nodes requested and not draining (ready + starting)."""
        return self.ready + self.starting


class Autoscaler(Protocol):
    """Scaling policy interface."""

    sync_period_s: float

    def desired(self, now_s: float, metrics: PoolMetrics) -> int:
        """Desired node count for the pool (the engine clamps to [min, max])."""
        ...
