"""Admission: who may wait, where, and for how long.

The scenario's admission rules as one part both dispatchers use: the total queue limit
(``policy.admission.max_queue_length``: the shared queue, or each node's queue), per-class
priorities and queue limits (``workload.classes[].priority`` and ``.max_queue_length``), and
per-class queue timeouts (``timeout_ms``, default ``policy.admission.timeout_ms``); and the
memory cap (``simulation.max_in_system``): a request still waiting when that many later requests
have arrived is shed, whatever the queue limits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator.engine.priority_queue import PriorityNodeQueue, PriorityQueue
from simulator.engine.queues import CentralQueue, NodeQueue
from simulator.engine.requests import RequestTable
from simulator.scenario import Scenario


class Admission:
    """Queue limits, priority levels and timeouts of a scenario (see the module docstring)."""

    def __init__(self, sc: Scenario) -> None:
        adm = sc.policy.admission
        classes = sc.workload.classes
        self.max_queue_length = adm.max_queue_length
        tos = [c.timeout_ms or adm.timeout_ms for c in classes]
        #: queue timeout per class, s (inf: none)
        self.timeout_s = np.asarray([t / 1000.0 if t else np.inf for t in tos])
        self.priorities = sorted({c.priority for c in classes}, reverse=True)
        #: class index -> priority level (0 = served first)
        self.class_level = np.asarray([self.priorities.index(c.priority) for c in classes])
        #: per-class queue limit (None: only the total limit)
        self.class_limit = [c.max_queue_length for c in classes]
        #: the memory cap: a request still waiting after this many later arrivals is shed
        self.max_in_system = sc.simulation.max_in_system

    @property
    def plain(self) -> bool:
        """One priority level and no class limit: a plain FIFO queue will do."""
        return len(self.priorities) == 1 and all(x is None for x in self.class_limit)

    def central_queue(self, table: RequestTable) -> Any:
        """The shared queue of central dispatch: a FIFO, or priority levels with class limits."""
        timeout_s = self.timeout_s if np.isfinite(self.timeout_s).any() else None
        if self.plain:
            return CentralQueue(table, self.max_queue_length, self.max_in_system, timeout_s)
        return PriorityQueue(table, self.max_queue_length, self.class_level, self.class_limit,
                             self.max_in_system, timeout_s)

    def node_queue(self, table: RequestTable) -> Any:
        """One node's queue under per-node dispatch (its total limit is the dispatcher's
        check, against ``max_queue_length``)."""
        if self.plain:
            return NodeQueue(table)
        return PriorityNodeQueue(table, self.class_level.tolist(), self.class_limit)
