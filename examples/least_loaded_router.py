"""A custom router for PeakSim: the least loaded ready node that still has room.

Load = requests queued + the batch in service. Among the ready nodes it prefers those whose
queue is not full (the engine drops a request sent to a full queue); if every ready node is
full it still returns a ready node (the engine then drops the request). Ties are broken with
the router's seeded random stream, so runs are reproducible.

Use it from a scenario (``examples/least_loaded.toml``), which names this file as a plugin so
that every command and every worker process imports it::

    [policy]
    plugins = ["least_loaded_router.py"]     # relative to the scenario's folder
    dispatch = "per_node"
    routing = { name = "least_loaded_ready" }

or with any scenario: ``peaksim run SCENARIO --plugin examples/least_loaded_router.py``. It has
no parameters (a policy with parameters declares them as a pydantic ``Params`` model, see
``simulator/policies/routing.py``).
"""

from __future__ import annotations

import numpy as np

from simulator.policies.registry import register
from simulator.policies.views import NodesView
from simulator.rng import BufferedRandom


@register("router", "least_loaded_ready")
class LeastLoadedReadyRouter:
    """Ready node with the fewest requests, preferring nodes whose queue has room."""

    def choose(self, nodes: NodesView, rng: BufferedRandom, now_s: float) -> int:
        load = nodes.queue_len + nodes.busy
        room = nodes.ready & (nodes.queue_len < nodes.capacity)
        allowed = room if room.any() else nodes.ready
        load = np.where(allowed, load, np.iinfo(np.int64).max)
        best = np.flatnonzero(load == load.min())
        return int(best[0]) if len(best) == 1 else int(best[rng.integers(len(best))])
