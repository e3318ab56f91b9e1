"""The request table: per-request state in numpy arrays, loaded chunk by chunk.

Requests get global ids in arrival order. Only a sliding window of chunks is held: a chunk is
handed to the recorder and dropped as soon as every request in it has ended (completed, dropped
or timed out), so memory stays bounded whatever the run's length.

The table is the one owner of a request's fate: a request ends only through
:meth:`RequestTable.end` (or, for a served batch of consecutive ids, the served log that
:meth:`RequestTable.apply_served` writes out), which refuses to end a request twice.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from enum import IntEnum
from itertools import chain

import numpy as np

from simulator.workload import Chunk


class Outcome(IntEnum):
    """How a request ended (the ``outcome`` column; PENDING: not yet, in flight at the end)."""

    PENDING = 0
    COMPLETED = 1
    DROPPED = 2  # rejected by a full queue, or lost with its node
    TIMED_OUT = 3  # left the queue at its deadline


PENDING, COMPLETED, DROPPED, TIMED_OUT = Outcome
OUTCOME_NAMES = {PENDING: "in_flight", COMPLETED: "completed", DROPPED: "dropped",
                 TIMED_OUT: "timed_out"}
Ids = int | range | np.ndarray  # global request ids: one, consecutive, or any


class ChunkView:
    """A finished slice of the table handed to the recorder (arrays are copies-free views)."""

    __slots__ = ("cls", "degraded", "finish", "first_id", "node", "outcome", "size", "start", "t",
                 "t0", "t1")

    def __init__(self, table: RequestTable, lo: int, hi: int, t0: float, t1: float) -> None:
        self.first_id = table.base + lo
        self.t0, self.t1 = t0, t1
        self.t = table.t[lo:hi]
        self.cls = table.cls[lo:hi]
        self.size = table.size[lo:hi]
        self.start = table.start[lo:hi]
        self.finish = table.finish[lo:hi]
        self.node = table.node[lo:hi]
        self.outcome = table.outcome[lo:hi]
        self.degraded = table.degraded[lo:hi]


class RequestTable:
    """Arrays indexed by ``id - base``: arrival, class, size, start, finish, node, outcome."""

    def __init__(self, chunks: Iterator[Chunk], on_done: Callable[[ChunkView], None]) -> None:
        self._chunks = chunks
        self._on_done = on_done
        self.base = 0
        self.end_id = 0  # one past the last loaded global id
        self.exhausted = False
        self._spans: deque[tuple[int, int, float, float]] = deque()  # (lo, hi, t0, t1) global
        self.t = np.empty(0)
        self.arrival_s: list[float] = []  # t as Python floats: cheap scalar reads when hot
        # items_before[k]: items of all ids before local index k (len = loaded + 1), a list
        # for the same reason: items(a, b) is two list reads
        self.items_before: list[int] = [0]
        self.cls = np.empty(0, dtype=np.int16)
        self.size = np.empty(0, dtype=np.int64)
        self.start = np.empty(0)
        self.finish = np.empty(0)
        self.node = np.empty(0, dtype=np.int32)
        self.outcome = np.empty(0, dtype=np.int8)
        self.degraded = np.empty(0, dtype=np.int8)  # 1 = served by the fallback
        self._items_total = 0
        self.last_time = -np.inf  # arrival time of the last loaded request
        # finished batches of consecutive ids not yet written to the columns:
        # (first id, end id, start s, finish s, node); see served() and apply_served()
        self._served: list[tuple[int, int, float, float, int]] = []
        self.served = self._served.append
        # the same for batches of any ids: (ids array, start s, finish s, node)
        self._served_ids: list[tuple[np.ndarray, float, float, int]] = []
        self.served_ids = self._served_ids.append
        self.loaded_until = 0.0  # every arrival before this time is loaded

    def load_next(self) -> bool:
        """Load the next chunk (after releasing finished ones); False when none is left."""
        if self.exhausted:
            return False
        try:
            ch = next(self._chunks)
        except StopIteration:
            self.exhausted = True
            return False
        self.release_done()
        n = len(ch.time)
        keep = slice(0, self.end_id - self.base)
        self.t = np.concatenate([self.t[keep], ch.time])
        self.arrival_s = self.arrival_s[keep] + ch.time.tolist()
        self.cls = np.concatenate([self.cls[keep], ch.cls])
        self.size = np.concatenate([self.size[keep], ch.size])
        self.start = np.concatenate([self.start[keep], np.full(n, np.nan)])
        self.finish = np.concatenate([self.finish[keep], np.full(n, np.nan)])
        self.node = np.concatenate([self.node[keep], np.full(n, -1, dtype=np.int32)])
        self.outcome = np.concatenate([self.outcome[keep], np.zeros(n, dtype=np.int8)])
        self.degraded = np.concatenate([self.degraded[keep], np.zeros(n, dtype=np.int8)])
        cs = np.cumsum(ch.size, dtype=np.int64) + self._items_total
        self.items_before = self.items_before + cs.tolist()
        if n:
            self._items_total = int(cs[-1])
        self._spans.append((self.end_id, self.end_id + n, ch.t0, ch.t1))
        self.end_id += n
        if n:
            self.last_time = float(ch.time[-1])
        self.loaded_until = ch.t1
        return True

    def apply_served(self) -> None:
        """Write the logged finished batches into start, finish, node and outcome (vectorized).

        The hot loop logs a served batch with one list append instead of four array writes:
        ``served((first, end, start_s, finish_s, node))`` for consecutive ids,
        ``served_ids((ids, start_s, finish_s, node))`` for any; every reader of those columns
        (chunk release, the end of the run) calls this first.
        """
        if self._served_ids:
            self._apply_served_ids()
        log = self._served
        if not log:
            return
        a = np.fromiter(chain.from_iterable(log), dtype=np.float64, count=5 * len(log))
        a = a.reshape(-1, 5)  # ids and nodes are exact as float64 (< 2**53)
        log.clear()
        first = a[:, 0].astype(np.int64) - self.base
        k = a[:, 1].astype(np.int64) - a[:, 0].astype(np.int64)
        n = int(k.sum())
        offset = np.repeat(np.cumsum(k) - k, k)  # index of each request's batch start
        loc = np.repeat(first, k) + (np.arange(n) - offset)
        self.start[loc] = np.repeat(a[:, 2], k)
        self.finish[loc] = np.repeat(a[:, 3], k)
        self.node[loc] = np.repeat(a[:, 4].astype(np.int32), k)
        self.outcome[loc] = COMPLETED

    def _apply_served_ids(self) -> None:
        log = self._served_ids
        ids = np.concatenate([b[0] for b in log])
        k = np.fromiter((len(b[0]) for b in log), dtype=np.int64, count=len(log))
        times = np.fromiter(chain.from_iterable((b[1], b[2], b[3]) for b in log),
                            dtype=np.float64, count=3 * len(log)).reshape(-1, 3)
        log.clear()
        loc = ids - self.base
        if self.outcome[loc].any():
            self._ended_twice(ids)
        self.start[loc] = np.repeat(times[:, 0], k)
        self.finish[loc] = np.repeat(times[:, 1], k)
        self.node[loc] = np.repeat(times[:, 2].astype(np.int32), k)
        self.outcome[loc] = COMPLETED

    # ------------------------------------------------------------------ a request's fate
    def _loc(self, ids: range | np.ndarray) -> slice | np.ndarray:
        if type(ids) is range:
            return slice(ids.start - self.base, ids.stop - self.base)
        return ids - self.base

    def end(self, ids: Ids, outcome: Outcome, t_s: float | np.ndarray | None = None) -> None:
        """Requests ``ids`` end now with ``outcome`` at time ``t_s`` (s; a scalar or one per
        id; None: at each request's arrival, as for a rejection at admission).

        Every ending goes through here (served batches of consecutive ids go through the
        served log instead); a request that has ended already cannot end again.
        """
        if type(ids) is int:
            i = ids - self.base
            if self.outcome[i] != PENDING:
                self._ended_twice(np.asarray([ids]))
            self.outcome[i] = outcome
            self.finish[i] = self.t[i] if t_s is None else t_s
            return
        loc = self._loc(ids)  # type: ignore[arg-type]
        if self.outcome[loc].any():
            self._ended_twice(np.arange(ids.start, ids.stop) if type(ids) is range else ids)
        self.outcome[loc] = outcome
        self.finish[loc] = self.t[loc] if t_s is None else t_s

    def _ended_twice(self, ids: np.ndarray) -> None:
        loc = ids - self.base
        bad = ids[self.outcome[loc] != PENDING]
        raise RuntimeError(f"request {int(bad[0])} ended twice (was "
                           f"{OUTCOME_NAMES[int(self.outcome[bad[0] - self.base])]})")

    def begin(self, ids: range | np.ndarray, node: int, t_s: float) -> None:
        """Requests ``ids`` started service on ``node`` at ``t_s`` (s). A served batch of
        consecutive ids logs this when it finishes (:meth:`apply_served`); one that never
        finishes (interrupted, or in service at the end) records it here."""
        loc = self._loc(ids)
        self.start[loc] = t_s
        self.node[loc] = node

    def restart(self, ids: np.ndarray) -> None:
        """Requests go back to waiting (requeued): no start, no node."""
        loc = ids - self.base
        self.start[loc] = np.nan
        self.node[loc] = -1

    def answer(self, ids: np.ndarray, latency_s: float) -> None:
        """Requests are answered at once, without a node (a cached answer), ``latency_s`` after
        they arrive; they count as degraded."""
        loc = ids - self.base
        self.start[loc] = self.t[loc]
        self.end(ids, COMPLETED, self.t[loc] + latency_s)
        self.degraded[loc] = 1

    def mark_degraded(self, ids: range | np.ndarray) -> None:
        """Requests served by a fallback (cheaper variant) instead of the pool's model."""
        self.degraded[self._loc(ids)] = 1

    def ensure(self, gid: int) -> bool:
        """Load chunks until ``gid`` is in the table; False if the workload ends first."""
        while gid >= self.end_id:
            if not self.load_next():
                return False
        return True

    def items(self, a: int, b: int) -> int:
        """Total items of the contiguous ids [a, b) (global ids, all loaded)."""
        i, j = a - self.base, b - self.base
        return self.items_before[j] - self.items_before[i]

    def ensure_time(self, t: float) -> None:
        """Load chunks until every arrival at or before ``t`` is in the table."""
        while self.loaded_until <= t and self.load_next():
            pass

    def release_done(self) -> None:
        """Hand finished leading chunks to the recorder and drop them from memory."""
        self.apply_served()
        released = 0
        while self._spans:
            lo, hi, t0, t1 = self._spans[0]
            a, b = lo - self.base, hi - self.base
            if b > a and np.any(self.outcome[a:b] == PENDING):
                break
            self._on_done(ChunkView(self, a, b, t0, t1))
            self._spans.popleft()
            released = b
        if released:
            self.base += released
            for name in ("t", "cls", "size", "start", "finish", "node", "outcome",
                         "degraded"):
                setattr(self, name, getattr(self, name)[released:])
            self.arrival_s = self.arrival_s[released:]
            self.items_before = self.items_before[released:]

    def flush_all(self) -> None:
        """End of run: hand every loaded chunk to the recorder (pending = in flight)."""
        self.apply_served()
        while self._spans:
            lo, hi, t0, t1 = self._spans.popleft()
            self._on_done(ChunkView(self, lo - self.base, hi - self.base, t0, t1))
        self.base = self.end_id
