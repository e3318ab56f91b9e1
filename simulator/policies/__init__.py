"""Pure scheduling policies: read-only views in, decisions out. No SimPy, no I/O.

Importing this package registers the built-in routers, batchers and autoscalers by name.
"""

from simulator.policies import (  # noqa: F401  (registration side effect)
    autoscaling,
    autoscaling_planned,
    autoscaling_reactive,
    batching,
    routing,
)
from simulator.policies.registry import allowed_names, create, register
from simulator.policies.views import BatchDecision, NodesView, QueueView

__all__ = [
    "BatchDecision",
    "NodesView",
    "QueueView",
    "allowed_names",
    "create",
    "register",
]
