"""Routers: pick the node a request is pushed to (``policy.dispatch = "per_node"``).

A router sees a :class:`NodesView` and a random source and returns a node index that is
ready. The engine calls it only when at least one node is ready. Cost per call is O(1) for
``random``, ``round_robin`` and ``power_of_two`` (whatever the cluster size) and one vectorised
numpy pass for the full-scan policies.
"""

from __future__ import annotations

from typing import Annotated, Protocol

import numpy as np
from pydantic import Field

from simulator.policies.registry import PolicyParams, parse_params, register
from simulator.policies.views import NodesView
from simulator.rng import BufferedRandom


class Router(Protocol):
    """Routing policy interface."""

    def choose(self, nodes: NodesView, rng: BufferedRandom, now_s: float) -> int:
        """Index of the ready node that receives the next request."""
        ...


def _random_ready(nodes: NodesView, rng: BufferedRandom) -> int:
    """A uniformly random ready node: rejection sampling, falling back to a scan."""
    n = nodes.n
    ready = nodes.ready
    for _ in range(8):
        j = rng.integers(n)
        if ready[j]:
            return j
    idx = np.flatnonzero(ready)
    return int(idx[rng.integers(len(idx))])


def _argmin_random_tie(load: np.ndarray, rng: BufferedRandom) -> int:
    best = np.flatnonzero(load == load.min())
    return int(best[0]) if len(best) == 1 else int(best[rng.integers(len(best))])


@register("router", "random")
class RandomRouter:
    """Uniformly random ready node (c independent M/M/1 queues under Poisson load)."""

    Params = PolicyParams  # no parameters

    def choose(self, nodes: NodesView, rng: BufferedRandom, now_s: float) -> int:
        return _random_ready(nodes, rng)


@register("router", "round_robin")
class RoundRobinRouter:
    """Next ready node in index order."""

    Params = PolicyParams  # no parameters

    def __init__(self) -> None:
        self._next = 0

    def choose(self, nodes: NodesView, rng: BufferedRandom, now_s: float) -> int:
        n = nodes.n
        ready = nodes.ready
        for step in range(n):
            j = (self._next + step) % n
            if ready[j]:
                self._next = j + 1
                return j
        raise RuntimeError("round_robin called with no ready node")


@register("router", "join_shortest_queue")
class JoinShortestQueueRouter:
    """Ready node with the fewest requests (queued + in service); ties broken at random."""

    Params = PolicyParams  # no parameters

    def choose(self, nodes: NodesView, rng: BufferedRandom, now_s: float) -> int:
        load = np.where(nodes.ready, nodes.queue_len + nodes.busy, np.iinfo(np.int64).max)
        return _argmin_random_tie(load, rng)


class PowerOfDParams(PolicyParams):
    d: Annotated[int, Field(ge=1, le=100, description=(
        "ready nodes sampled per decision (Envoy LEAST_REQUEST choice_count default 2), at "
        "most 100 (each sample costs run time per request: join_shortest_queue scans all)"))] = 2


@register("router", "power_of_two")
class PowerOfDChoicesRouter:
    """Sample ``d`` ready nodes, take the least loaded (Envoy LEAST_REQUEST, Mitzenmacher)."""

    Params = PowerOfDParams

    def __init__(self, **params: object) -> None:
        self.d = parse_params("router", "power_of_two", PowerOfDParams, params).d

    def choose(self, nodes: NodesView, rng: BufferedRandom, now_s: float) -> int:
        best = -1
        best_load = 0
        ql, busy = nodes.queue_len, nodes.busy
        for _ in range(self.d):
            j = _random_ready(nodes, rng)
            load = int(ql[j]) + int(busy[j])
            if best < 0 or load < best_load:
                best, best_load = j, load
        return best


@register("router", "least_outstanding_work")
class LeastOutstandingWorkRouter:
    """Ready node expected to finish its queued and in-service work first."""

    Params = PolicyParams  # no parameters

    def choose(self, nodes: NodesView, rng: BufferedRandom, now_s: float) -> int:
        free_at = np.maximum(nodes.busy_until_s, now_s) + nodes.queued_work_s
        return _argmin_random_tie(np.where(nodes.ready, free_at, np.inf), rng)
