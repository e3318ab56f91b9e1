"""Read-only views the engine hands to policies, and the decisions policies return.

Views expose numpy arrays marked read-only, so a policy cannot change engine state by accident.
Building a view costs O(1): the arrays are the engine's own, shared, not copied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

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


class QueueView:
    """What a batcher sees of one queue at time ``now_s``.

    ``n_waiting`` counts the waiting requests and ``oldest_s`` is the arrival time of the first
    in service order (s). ``arrival_s`` and ``items`` hold the first ``min(n_waiting, limit)``
    waiting requests (read-only arrays, built only when a policy asks for them).
    ``fit_items(cap, k_max)`` answers "how many of the first requests fit in ``cap`` items"
    (at least 1) and ``fill(cap, k_max)`` the same plus how many items those hold; the engine
    answers both from prefix sums, without building arrays (they are callable attributes: the
    engine's own functions, one call per question, since batchers ask once per batch).
    ``items_total(k)``: items of the first k.
    """

    __slots__ = ("_arrival", "_items", "_load", "fill", "fit_items", "limit", "n_waiting",
                 "oldest_s")

    def __init__(self, n_waiting: int, arrival_s: np.ndarray | None = None,
                 items: np.ndarray | None = None, *, oldest_s: float | None = None,
                 limit: int | None = None, load: object = None, fit: object = None,
                 fill: object = None) -> None:
        self.n_waiting = int(n_waiting)
        self._arrival = arrival_s
        self._items = items
        self._load = load  # engine callback: (limit) -> (arrival_s, items)
        self.fit_items = fit or self._fit_arrays  # (cap, k_max) -> k
        self.fill = fill or self._fill_arrays  # (cap, k_max) -> (k, items of those k)
        self.limit = limit if limit is not None else self.n_waiting
        if oldest_s is None:
            oldest_s = float(arrival_s[0]) if arrival_s is not None and len(arrival_s) else None
        self.oldest_s = oldest_s

    @classmethod
    def lazy(cls, n_waiting: int, oldest_s: float | None, limit: int, load: object,
             fit: object, fill: object) -> QueueView:
        """The engine's O(1) constructor: arrays built by ``load(limit)`` only when read."""
        v = cls.__new__(cls)
        v.n_waiting, v.oldest_s, v.limit, v._load = n_waiting, oldest_s, limit, load
        v.fit_items, v.fill = fit, fill
        v._arrival = v._items = None
        return v

    def _materialize(self) -> None:
        if self._arrival is None:
            if self._load is None:
                raise ValueError("QueueView has no arrays")
            a, it = self._load(self.limit)  # type: ignore[operator]
            self._arrival, self._items = readonly(a), readonly(it)

    @property
    def arrival_s(self) -> np.ndarray:
        """Arrival times of the first waiting requests, s."""
        self._materialize()
        assert self._arrival is not None
        return self._arrival

    @property
    def items(self) -> np.ndarray:
        """Items (candidates to rank) of the first waiting requests."""
        self._materialize()
        assert self._items is not None
        return self._items

    def _fill_arrays(self, cap: int, k_max: int) -> tuple[int, int]:
        k_max = min(k_max, self.n_waiting)
        cum = np.cumsum(self.items[:k_max])
        k = max(int(np.searchsorted(cum, cap, side="right")), 1)
        return k, int(cum[k - 1])

    def _fit_arrays(self, cap: int, k_max: int) -> int:
        return self._fill_arrays(cap, k_max)[0]

    def items_total(self, k: int) -> int:
        """Items held by the first k waiting requests (k <= limit)."""
        return int(self.fill(2**62, k)[1])  # type: ignore[operator]


class BatchDecision(NamedTuple):
    """Take the first ``take`` waiting requests now (take > 0), or wait.

    When waiting, the engine asks the batcher again at ``wait_until_s``, as soon as
    ``wake_at_size`` requests are waiting, or as soon as the waiting requests hold
    ``wake_at_items`` items (ignored when they already do: a lone oversized request), whichever
    comes first (None = no such trigger). A decision to
    wait stands until then or until the head of the queue changes: the engine need not ask in
    between (so a wait decision must not hinge on time passing before ``wait_until_s``).
    Immutable (a named tuple: built once or more per batch, so cheap to build matters).
    """

    take: int = 0
    wait_until_s: float | None = None
    wake_at_size: int | None = None
    wake_at_items: int | None = None


TAKE_NONE = BatchDecision()
