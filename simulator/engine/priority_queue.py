"""Queues with priority levels and per-class limits: the central one (lazy admission, one id
ring per level) and a node's (per-node routing).

A class's ``max_queue_length`` bounds that class's own queued requests in the queue, whatever
the priorities; the total limit bounds all of them. Split from :mod:`simulator.engine.queues`.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from simulator.engine.queues import LazyAdmission, fill_arrays, hidden_low
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



def admitted(cls: np.ndarray, class_room: np.ndarray, total_room: int) -> np.ndarray:
    """Which of some requests (in arrival order, of classes ``cls``) a queue admits, as a mask.

    Each is admitted if its class still has room (``class_room`` per class) and the queue as a
    whole does (``total_room``), taken in arrival order with nothing leaving in between: the
    rule an eager queue applies arrival by arrival, computed for a whole batch at once.
    """
    n = len(cls)
    order = np.argsort(cls, kind="stable")
    sc = cls[order]
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.searchsorted(sc, sc, side="left")  # rank within its class
    ok = rank < class_room[cls]
    if ok.sum() > max(total_room, 0):
        ok[np.flatnonzero(ok)[max(total_room, 0):]] = False
    return ok


class ClassCounts:
    """Queued requests per class against per-class limits, and the most seen at once."""

    def __init__(self, class_limit: list[int | None]) -> None:
        self.limit = np.asarray([2**62 if x is None else x for x in class_limit],
                                dtype=np.int64)
        self.count = np.zeros(len(class_limit), dtype=np.int64)
        self.peak = np.zeros(len(class_limit), dtype=np.int64)

    def room(self) -> np.ndarray:
        return self.limit - self.count

    def add(self, cls: np.ndarray) -> None:
        self.count += np.bincount(cls, minlength=len(self.count))
        np.maximum(self.peak, self.count, out=self.peak)

    def remove(self, cls: np.ndarray) -> None:
        self.count -= np.bincount(cls, minlength=len(self.count))


class PriorityQueue(LazyAdmission):
    """Central queue with priority levels (Triton priority levels: higher served first) and
    per-class queue limits.

    Each level is a FIFO; a batch takes from the highest non-empty level first and fills up
    from the next ones. A class's ``max_queue_length`` bounds that class's own queued requests
    (whatever the priorities); ``max_len`` bounds the total. An arrival beyond either is
    rejected (:func:`admitted`). ``cap`` and ``timeout_s``: the memory cap, as for
    :class:`~simulator.engine.queues.CentralQueue`.
    """

    fifo = False  # a later arrival of a higher level goes ahead of the head

    def __init__(self, table: RequestTable, max_len: int, class_level: np.ndarray,
                 class_limit: list[int | None], cap: int | None = None,
                 timeout_s: np.ndarray | None = None) -> None:
        self.table = table
        self.max_len = max_len
        self.cap = 2**62 if cap is None else cap
        self.timeout_s = timeout_s
        self.class_level = class_level  # class index -> level index (0 = highest priority)
        self.levels = [IdRing() for _ in range(int(class_level.max()) + 1)]
        # per level: no waiting id below this sits behind a larger one (requeues break the
        # id order)
        self._low = [2**62] * len(self.levels)
        self.classes = ClassCounts(class_limit)
        self.len = 0
        self.peak = 0
        self.tail = 0
        self.rejected = 0
        self.divert: object = None
        self.next_arrival_s = -np.inf

    def _cls(self, ids: np.ndarray) -> np.ndarray:
        return self.table.cls[ids - self.table.base].astype(np.int64)

    def _enter(self, ids: np.ndarray, front: bool) -> np.ndarray:
        """Admit what fits of ``ids`` (in order) into their levels; returns the rejected."""
        cls = self._cls(ids)
        ok = admitted(cls, self.classes.room(), self.max_len - self.len)
        keep, kc = ids[ok], cls[ok]
        lev = self.class_level[kc]
        for i, ring in enumerate(self.levels):
            mine = keep[lev == i]
            if len(mine):
                if front and len(ring) and ring.buf[ring.head] < mine.max():
                    self._low[i] = min(self._low[i], int(ring.buf[ring.head]))
                (ring.push_front if front else ring.extend)(mine)
        self.len += len(keep)
        self.classes.add(kc)
        return ids[~ok]

    def _shed_over_cap(self, limit: int, floor_s: float = -np.inf) -> None:
        """Waiting ids below ``limit`` leave, shed by the memory cap (:meth:`RequestTable.shed`,
        not before ``floor_s``). A level holds ids in order, so they are at its head, unless
        requeues put larger ids before them (then the whole level is looked at)."""
        gone = []
        for i, ring in enumerate(self.levels):
            seg = ring.buf[ring.head:ring.tail]
            if limit > self._low[i]:
                old = seg < limit
                if old.any():
                    gone.append(seg[old])
                    keep = seg[~old]
                    ring.buf[ring.head:ring.head + len(keep)] = keep
                    ring.tail = ring.head + len(keep)
                    seg = keep
                hidden = seg[1:][seg[1:] < np.maximum.accumulate(seg)[:-1]]
                self._low[i] = int(hidden.min()) if len(hidden) else 2**62
                continue
            if not len(seg) or seg[0] >= limit:
                continue
            k = int(np.searchsorted(seg, limit))  # ids below limit are a prefix here
            gone.append(seg[:k].copy())
            ring.head += k
        if gone:
            ids = np.concatenate(gone)
            self.len -= len(ids)
            self.classes.remove(self._cls(ids))
            self.table.shed(ids, self.cap, self.timeout_s, floor_s)

    def _admit_upto(self, j: int) -> None:
        if j <= self.tail:
            return
        ids = np.arange(self.tail, j)
        if self.divert is not None:
            ids = ids[~self.divert(ids)]  # type: ignore[operator]
        rejected = self._enter(ids, front=False)
        if len(rejected):
            self.table.end(rejected, DROPPED)  # rejected at arrival
            self.rejected += len(rejected)
        self.tail = j
        if j > self.cap:  # ids below j - cap have had cap later arrivals
            self._shed_over_cap(j - self.cap)
        self.peak = max(self.peak, self.len)

    def requeue(self, ids: np.ndarray, now_s: float) -> int:
        """Put requests back at the head of their levels, oldest first (requeued from a
        preempted or failed node), as far as their class and the queue have room; the rest are
        rejected now, as an arrival at a full queue is. Returns how many were rejected. Those
        that ``cap`` later requests have passed meanwhile are shed now (the memory cap)."""
        rejected = self._enter(np.sort(ids), front=True)
        if len(rejected):
            self.table.end(rejected, DROPPED, now_s)
            self.rejected += len(rejected)
        if self.tail > self.cap:
            self._shed_over_cap(self.tail - self.cap, now_s)
        self.peak = max(self.peak, self.len)
        return len(rejected)

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
        self.classes.remove(self._cls(ids))
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

    def fill(self, cap: int, k_max: int) -> tuple[int, int]:
        return fill_arrays(self.head_arrays(k_max)[1], cap)

    def expire(self, now_s: float, timeout_s: np.ndarray) -> int:
        """Time out expired requests at the head of every level."""
        tab = self.table
        n = 0
        for ring in self.levels:
            while len(ring):
                gid = int(ring.buf[ring.head])
                i = gid - tab.base
                c = int(tab.cls[i])
                deadline = tab.t[i] + timeout_s[c]
                if deadline >= now_s:
                    break
                ring.head += 1
                self.len -= 1
                self.classes.count[c] -= 1
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


class PriorityNodeQueue:
    """One node's queue with priority levels and per-class limits (per-node routing).

    Same methods as :class:`~simulator.engine.queues.NodeQueue`: service order is the highest
    level first, FIFO within a level; ``has_room(cls)`` says whether class ``cls`` is below its
    own limit at this node (the node's total limit is the dispatcher's check).
    """

    __slots__ = ("_low", "_top", "count", "level_of", "levels", "limit", "n", "table")

    def __init__(self, table: RequestTable, class_level: list[int],
                 class_limit: list[int | None]) -> None:
        self.table = table
        self.level_of = class_level
        self.levels: list[deque[int]] = [deque() for _ in range(max(class_level) + 1)]
        self.limit = [2**62 if x is None else x for x in class_limit]
        self.count = [0] * len(class_limit)
        self.n = 0
        self._top = [-1] * len(self.levels)  # per level, the largest id pushed
        self._low = 2**62  # no id below this sits behind a larger one (re-routed requests)

    def __len__(self) -> int:
        return self.n

    def has_room(self, cls: int) -> bool:
        return self.count[cls] < self.limit[cls]

    def push(self, gid: int, cls: int) -> None:
        lv = self.level_of[cls]
        self.levels[lv].append(gid)
        self.count[cls] += 1
        self.n += 1
        if gid > self._top[lv]:
            self._top[lv] = gid
        elif gid < self._low:
            self._low = gid

    def _popped(self, gid: int) -> int:
        tab = self.table
        self.count[int(tab.cls[gid - tab.base])] -= 1
        self.n -= 1
        return gid

    def pop_one(self) -> int:
        for q in self.levels:
            if q:
                return self._popped(q.popleft())
        raise IndexError("pop from an empty queue")

    def head_id(self) -> int:
        for q in self.levels:
            if q:
                return q[0]
        raise IndexError("empty queue")

    def oldest_s(self) -> float:
        """Arrival time of the oldest waiting request (any level), s."""
        tab = self.table
        return min(float(tab.t[q[0] - tab.base]) for q in self.levels if q)

    def peek(self, k: int) -> np.ndarray:
        out: list[int] = []
        for q in self.levels:
            for gid in q:
                if len(out) >= k:
                    break
                out.append(gid)
        return np.asarray(out, dtype=np.int64)

    def head_arrays(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        tab = self.table
        loc = self.peek(k) - tab.base
        return tab.t[loc], tab.size[loc]

    def fill(self, cap: int, k_max: int) -> tuple[int, int]:
        return fill_arrays(self.head_arrays(k_max)[1], cap)

    def fit_items(self, cap: int, k_max: int) -> int:
        return self.fill(cap, k_max)[0]

    def take(self, k: int) -> np.ndarray:
        return np.asarray([self.pop_one() for _ in range(min(k, self.n))], dtype=np.int64)

    def clear(self) -> np.ndarray:
        out = self.peek(self.n)
        for q in self.levels:
            q.clear()
        self.count = [0] * len(self.count)
        self.n = 0
        return out

    def pop_older(self, limit: int) -> list[int]:
        """Remove and return the waiting ids below ``limit`` (the memory cap's look): those at
        the head of every level, or, when a re-routed request may wait behind larger ids, all
        of them."""
        out = []
        if limit > self._low:
            for i, q in enumerate(self.levels):
                out += [self._popped(g) for g in q if g < limit]
                self.levels[i] = deque(g for g in q if g >= limit)
            self._low = min(hidden_low(q) for q in self.levels)
            return out
        for q in self.levels:
            while q and q[0] < limit:
                out.append(self._popped(q.popleft()))
        return out

    def expire(self, now_s: float, timeout_s: np.ndarray) -> list[int]:
        """Time out expired requests at the head of every level; return their ids."""
        tab = self.table
        out = []
        for q in self.levels:
            while q:
                i = q[0] - tab.base
                deadline = tab.t[i] + timeout_s[tab.cls[i]]
                if deadline >= now_s:
                    break
                gid = self._popped(q.popleft())
                out.append(gid)
                tab.end(gid, TIMED_OUT, deadline)
        return out
