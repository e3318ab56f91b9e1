"""The central queue with priority levels (and the id ring each level is).

Split from :mod:`simulator.engine.queues`: same lazy admission, one FIFO per level.
"""

from __future__ import annotations

import numpy as np

from simulator.engine.queues import LazyAdmission
from simulator.engine.requests import DROPPED, TIMED_OUT, RequestTable


class IdRing:
    """A FIFO of request ids in a growable numpy ring (ids need not be consecutive)."""

    __slots__ = ("buf", "head", "tail")

    def __init__(self, cap: int = 1024) -> None:
        self.buf = np.empty(cap, dtype=np.int64)
        self.head = 0
        self.tail = 0

    def __len__(self) -> int:
        return self.tail - self.head

    def extend(self, ids: np.ndarray) -> None:
        n = len(ids)
        if self.tail + n > len(self.buf):
            live = self.buf[self.head:self.tail]
            cap = max(2 * (len(live) + n), 1024)
            self.buf = np.empty(cap, dtype=np.int64)
            self.buf[: len(live)] = live
            self.head, self.tail = 0, len(live)
        self.buf[self.tail:self.tail + n] = ids
        self.tail += n

    def push_front(self, ids: np.ndarray) -> None:
        live = self.buf[self.head:self.tail].copy()
        self.head, self.tail = 0, 0
        self.extend(np.concatenate([np.sort(ids), live]))

    def peek(self, k: int) -> np.ndarray:
        return self.buf[self.head:self.head + min(k, len(self))]



class PriorityQueue(LazyAdmission):
    """Central queue with priority levels (Triton priority levels: higher served first).

    Each level is a FIFO; a batch takes from the highest non-empty level first and fills up
    from the next ones. Each class may have its own queue limit (shedding lower priorities
    first when they are given smaller limits); ``max_len`` bounds the total.
    """

    def __init__(self, table: RequestTable, max_len: int, class_level: np.ndarray,
                 level_limit: list[int]) -> None:
        self.table = table
        self.max_len = max_len
        self.class_level = class_level  # class index -> level index (0 = highest priority)
        self.levels = [IdRing() for _ in level_limit]
        self.level_limit = level_limit
        self.len = 0
        self.tail = 0
        self.rejected = 0
        self.divert: object = None
        self.next_arrival_s = -np.inf

    def _admit_upto(self, j: int) -> None:
        if j <= self.tail:
            return
        tab = self.table
        ids = np.arange(self.tail, j)
        if self.divert is not None:
            ids = ids[~self.divert(ids)]  # type: ignore[operator]
        lev = self.class_level[tab.cls[ids - tab.base]]
        rejected = []
        for i, ring in enumerate(self.levels):
            mine = ids[lev == i]
            if not len(mine):
                continue
            room = max(min(self.level_limit[i] - len(ring), self.max_len - self.len), 0)
            ring.extend(mine[:room])
            self.len += min(room, len(mine))
            if room < len(mine):
                rejected.append(mine[room:])
        if rejected:
            r = np.concatenate(rejected)
            tab.end(r, DROPPED)  # rejected at arrival
            self.rejected += len(r)
        self.tail = j

    def peek(self, k: int) -> np.ndarray:
        """The first ``k`` waiting ids in service order (highest level first)."""
        out, need = [], min(k, self.len)
        for ring in self.levels:
            if need <= 0:
                break
            got = ring.peek(need)
            out.append(got)
            need -= len(got)
        return np.concatenate(out) if out else np.empty(0, dtype=np.int64)

    def take(self, k: int) -> np.ndarray:
        """Remove and return the first ``k`` waiting ids (highest level first)."""
        ids = self.peek(k).copy()
        left = len(ids)
        for ring in self.levels:
            m = min(len(ring), left)
            ring.head += m
            left -= m
        self.len -= len(ids)
        return ids

    def pop_one(self) -> int:
        return int(self.take(1)[0])

    def oldest_s(self) -> float:
        """Arrival time of the request served next (head of the highest level), s."""
        gid = int(self.peek(1)[0])
        return float(self.table.t[gid - self.table.base])

    def waiting_items(self) -> int:
        """Items held by all waiting requests."""
        return int(self.table.size[self.peek(self.len) - self.table.base].sum())

    def head_arrays(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        loc = self.peek(k) - self.table.base
        return self.table.t[loc], self.table.size[loc]

    def fit_items(self, cap: int, k_max: int) -> int:
        _, items = self.head_arrays(k_max)
        return max(int(np.searchsorted(np.cumsum(items), cap, side="right")), 1)

    def push_front(self, ids: np.ndarray) -> None:
        tab = self.table
        lev = self.class_level[tab.cls[ids - tab.base]]
        for i, ring in enumerate(self.levels):
            mine = ids[lev == i]
            if len(mine):
                ring.push_front(mine)
        self.len += len(ids)

    def expire(self, now_s: float, timeout_s: np.ndarray) -> int:
        """Time out expired requests at the head of every level."""
        tab = self.table
        n = 0
        for ring in self.levels:
            while len(ring):
                gid = int(ring.buf[ring.head])
                i = gid - tab.base
                deadline = tab.t[i] + timeout_s[tab.cls[i]]
                if deadline >= now_s:
                    break
                ring.head += 1
                self.len -= 1
                tab.end(gid, TIMED_OUT, deadline)
                n += 1
        return n

    def max_wait_s(self, now_s: float) -> float:
        """Longest current wait over all levels, s."""
        tab = self.table
        w = 0.0
        for ring in self.levels:
            if len(ring):
                w = max(w, now_s - float(tab.t[int(ring.buf[ring.head]) - tab.base]))
        return w
