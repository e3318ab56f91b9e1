"""Read-only views the engine hands to policies, and the decisions policies return.

Views expose numpy arrays marked read-only, so a policy cannot change engine state by accident.
Building a view costs O(1): the arrays are the engine's own, shared, not copied.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a`` (no copy)."""
    v = a.view()
    v.flags.writeable = False
    return v


@dataclass(frozen=True, slots=True)
class NodesView:
    """What a router sees of the nodes it may route to, one entry per node index.

    queue_len: requests waiting at each node (not counting the batch in service);
    busy: 1 if the node is serving a batch; ready: True if the node may take new work;
    busy_until_s: when the batch in service ends (absolute simulated time, s);
    queued_work_s: expected service time of the queued requests, s.
    """

    queue_len: np.ndarray
    busy: np.ndarray
    ready: np.ndarray
    busy_until_s: np.ndarray
    queued_work_s: np.ndarray
    capacity: int  # most requests a node may hold queued (admission limit)

    @property
    def n(self) -> int:
        """Number of nodes (ready or not)."""
        return int(self.queue_len.shape[0])


@dataclass(frozen=True, slots=True)
class QueueView:
    """What a batcher sees of one queue at time ``now_s``.

    ``arrival_s`` and ``items`` hold the oldest waiting requests in service order (at most
    ``max_batch`` of them, more never matter); ``n_waiting`` counts all waiting requests.
    """

    n_waiting: int
    arrival_s: np.ndarray
    items: np.ndarray


@dataclass(frozen=True, slots=True)
class BatchDecision:
    """Take the first ``take`` waiting requests now (take > 0), or wait.

    When waiting, the engine wakes the batcher again at ``wait_until_s`` or as soon as
    ``wake_at_size`` requests are waiting, whichever comes first (None = no such trigger).
    """

    take: int = 0
    wait_until_s: float | None = None
    wake_at_size: int | None = None


TAKE_NONE = BatchDecision()
