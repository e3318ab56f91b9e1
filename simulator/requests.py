"""The request table: per-request state in numpy arrays, loaded chunk by chunk.

Requests get global ids in arrival order. Only a sliding window of chunks is held: a chunk is
handed to the recorder and dropped as soon as every request in it has ended (completed, dropped
or timed out), so memory stays bounded whatever the run's length.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from itertools import chain

import numpy as np

from simulator.workload import Chunk

PENDING, COMPLETED, DROPPED, TIMED_OUT = 0, 1, 2, 3
OUTCOME_NAMES = {PENDING: "in_flight", COMPLETED: "completed", DROPPED: "dropped",
                 TIMED_OUT: "timed_out"}


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
        self.end = 0  # one past the last loaded global id
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
        # (first id, end id, start s, finish s); see served() and apply_served()
        self._served: list[tuple[int, int, float, float]] = []
        self.served = self._served.append
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
        keep = slice(0, self.end - self.base)
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
        self._spans.append((self.end, self.end + n, ch.t0, ch.t1))
        self.end += n
        if n:
            self.last_time = float(ch.time[-1])
        self.loaded_until = ch.t1
        return True

    def apply_served(self) -> None:
        """Write the logged finished batches into start, finish and outcome (vectorized).

        The hot loop logs a served batch of consecutive ids with one list append
        (``served((first, end, start_s, finish_s))``) instead of three array writes; every
        reader of those columns (chunk release, the end of the run) calls this first.
        """
        log = self._served
        if not log:
            return
        a = np.fromiter(chain.from_iterable(log), dtype=np.float64, count=4 * len(log))
        a = a.reshape(-1, 4)  # ids are exact as float64 (< 2**53)
        log.clear()
        first = a[:, 0].astype(np.int64) - self.base
        k = a[:, 1].astype(np.int64) - a[:, 0].astype(np.int64)
        n = int(k.sum())
        offset = np.repeat(np.cumsum(k) - k, k)  # index of each request's batch start
        loc = np.repeat(first, k) + (np.arange(n) - offset)
        self.start[loc] = np.repeat(a[:, 2], k)
        self.finish[loc] = np.repeat(a[:, 3], k)
        self.outcome[loc] = COMPLETED

    def ensure(self, gid: int) -> bool:
        """Load chunks until ``gid`` is in the table; False if the workload ends first."""
        while gid >= self.end:
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
        self.base = self.end
