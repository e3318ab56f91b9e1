"""Waiting lines of request ids, without SimPy.

``CentralQueue`` is the shared FIFO of central dispatch. Its requests are not events: arrivals are
admitted lazily ("materialized") whenever the engine looks at the queue, using the sorted arrival
array, so a request costs no event while it waits. The queue holds runs of consecutive ids
(rejections when full split the runs), so taking a batch is O(runs touched), never a scan.

``NodeQueue`` is one node's FIFO under per-node (push) routing. ``UpcomingHead`` is what an
empty central queue will hold at the next arrival. The priority-level queue is in
:mod:`simulator.engine.priority_queue`. Requests leave a queue by being taken, or end through
the request table (:meth:`RequestTable.end`: rejected when full, timed out at their deadline;
:meth:`RequestTable.shed`: shed by the memory cap once ``cap`` later requests have arrived,
checked whenever arrivals are admitted, so no more than ``cap`` requests ever wait).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque

import numpy as np

from simulator.engine.requests import DROPPED, TIMED_OUT, RequestTable


def fit_run(table: RequestTable, first: int, cap: int, k_max: int) -> int:
    """Largest k <= k_max such that ids [first, first + k) hold <= cap items (at least 1)."""
    i = first - table.base
    ib = table.items_before
    before = ib[i]
    if ib[i + k_max] - before <= cap:  # all k_max fit (the usual case)
        return k_max
    k = bisect_right(ib, cap + before, i, i + k_max + 1) - 1 - i
    return k if k > 1 else 1


def fill_arrays(items: np.ndarray, cap: int) -> tuple[int, int]:
    """(k, items of those k): the largest prefix of ``items`` holding <= cap (at least 1)."""
    cum = np.cumsum(items)
    k = max(int(np.searchsorted(cum, cap, side="right")), 1)
    return k, int(cum[k - 1])


def fill_run(table: RequestTable, first: int, cap: int, k_max: int) -> tuple[int, int]:
    """(k, items of those k): :func:`fit_run` and the items it holds, in one look."""
    i = first - table.base
    ib = table.items_before
    before = ib[i]
    total = ib[i + k_max] - before
    if total <= cap:  # all k_max fit (the usual case)
        return k_max, total
    k = bisect_right(ib, cap + before, i, i + k_max + 1) - 1 - i
    k = k if k > 1 else 1
    return k, ib[i + k] - before


def hidden_low(ids: deque[int]) -> int:
    """The smallest id that waits behind a larger one (2**62: none; the ids are in order)."""
    low, top = 2**62, -1
    for g in ids:
        if g < top:
            if g < low:
                low = g
        else:
            top = g
    return low


class UpcomingHead:
    """The head of an empty central queue as it will be at the next arrival time ``t_s``.

    Holds the ``n`` requests (ids ``first``...) that arrive at exactly ``t_s``. It answers what a
    batcher's view asks (arrays, item fit) without admitting anything, so the engine can ask the
    batcher now what it will decide at ``t_s``: nothing else can change an empty queue before.
    """

    __slots__ = ("first", "n", "t_s", "table")

    def __init__(self, table: RequestTable, first: int, t_s: float) -> None:
        self.table, self.first, self.t_s = table, first, t_s
        n = 0
        # (an id not loaded once every arrival up to t_s is arrives later: not read, so a
        # cascade's stages before are not run ahead to find it)
        while ((first + n < table.end_id or table.ensure(first + n, t_s))
               and table.arrival_s[first + n - table.base] == t_s):
            n += 1
        self.n = n

    def head_arrays(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Arrival times (s) and items of the first k of them."""
        tab = self.table
        i = self.first - tab.base
        m = min(k, self.n)
        return tab.t[i:i + m], tab.size[i:i + m]

    def fit_items(self, cap: int, k_max: int) -> int:
        """Largest k <= k_max of them holding <= cap items (>= 1)."""
        k_max = min(k_max, self.n)
        return 1 if k_max <= 1 else fit_run(self.table, self.first, cap, k_max)

    def fill(self, cap: int, k_max: int) -> tuple[int, int]:
        """(k, items): the largest k <= k_max of them holding <= cap items (>= 1), and their
        items."""
        k_max = min(k_max, self.n)
        return fill_run(self.table, self.first, cap, k_max)


class LazyAdmission:
    """Lazy admission shared by the central queues: arrivals enter when the engine looks.

    Subclasses hold ``table``, ``tail`` (every id below has been admitted or rejected), ``len``
    and ``next_arrival_s`` (the arrival time of id ``tail``, cached), and implement ``_admit_upto``.
    """

    table: RequestTable
    tail: int
    len: int
    next_arrival_s: float

    def _admit_upto(self, j: int) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ admission
    def materialize(self, now_s: float) -> None:
        """Admit (or reject, when full) every request that arrived at or before ``now_s``."""
        if now_s < self.next_arrival_s:
            return  # the next arrival is still in the future
        tab = self.table
        i = self.tail - tab.base
        if self.tail < tab.end_id and tab.last_time > now_s and tab.arrival_s[i] <= now_s:
            # the usual case: the arrivals up to now_s end inside the loaded chunks, and
            # only a few arrived since the last look
            t = tab.arrival_s
            k = i + 1  # t[-1] > now_s: k stays inside t
            if t[k] <= now_s:
                w = k + 16
                k = bisect_right(t, now_s, k + 1, w if w < len(t) and t[w - 1] > now_s else len(t))
            self._admit_upto(tab.base + k)
            self.next_arrival_s = tab.arrival_s[k]
            return
        self._materialize(now_s)
        self.next_arrival_s = (tab.arrival_s[self.tail - tab.base] if self.tail < tab.end_id
                        else (np.inf if tab.exhausted else tab.loaded_until))

    def _materialize(self, now_s: float) -> None:
        tab = self.table
        while True:
            if self.tail < tab.end_id:
                if tab.arrival_s[self.tail - tab.base] > now_s:
                    return
                if tab.last_time > now_s:  # the arrivals up to now_s end inside this chunk
                    k = bisect_right(tab.arrival_s, now_s, self.tail - tab.base + 1)
                    self._admit_upto(tab.base + k)
                    return
                self._admit_upto(tab.end_id)
            if tab.loaded_until > now_s or not tab.load_next():
                return

    def items_fill_time(self, items: int, until_s: float = np.inf) -> float:
        """Arrival time at which the waiting requests will hold ``items`` items (inf if never,
        if they already do, or if not at or before ``until_s``: arrivals past it are not
        read). Counts every future arrival as admitted, so it errs early, never late."""
        tab = self.table
        if self.tail >= tab.end_id and not tab.ensure(self.tail, until_s):
            return np.inf
        i = self.tail - tab.base
        ib = tab.items_before
        if self.len == 0:
            target = ib[i] + items
        else:
            head = self._contiguous_head()
            if head is not None:  # ids [head, tail) wait: count items from the head
                target = ib[head - tab.base] + items
            else:
                target = ib[i] + items - self.waiting_items()
            if ib[i] >= target:
                return np.inf  # already met (a lone oversized request): not a trigger
        while True:
            ib = tab.items_before
            w = i + 33  # the trigger is usually a few arrivals away: search near first
            # first p > i with items_before[p] >= target
            p = bisect_left(ib, target, i + 1, w if w < len(ib) and ib[w - 1] >= target
                            else len(ib))
            if p < len(ib):
                return tab.arrival_s[p - 1]  # the arrival that brings the items to target
            if tab.loaded_until > until_s or not tab.load_next():
                return np.inf
            i = self.tail - tab.base

    def _contiguous_head(self) -> int | None:
        """First waiting id when the waiting ids are exactly [it, tail), else None."""
        return None

    def waiting_items(self) -> int:
        raise NotImplementedError

    def fill_time(self, size: int, until_s: float = np.inf) -> float:
        """Arrival time at which ``size`` requests will be waiting (inf if never, or if not at
        or before ``until_s``: arrivals past it are not read)."""
        gid = self.tail + (size - self.len) - 1
        if gid < self.tail:
            return -np.inf
        tab = self.table
        if gid >= tab.end_id and not tab.ensure(gid, until_s):
            return np.inf
        return tab.arrival_s[gid - tab.base]



class CentralQueue(LazyAdmission):
    """Shared FIFO over global request ids with lazy admission and a length limit.

    ``cap``: the memory cap (``simulation.max_in_system``; None: none): a waiting request is
    shed once ``cap`` later requests have arrived (or times out, when ``timeout_s``, per class,
    s, says its deadline came first).
    """

    fifo = True  # the head is the oldest waiting request (the dispatcher's look-ahead needs it)

    def __init__(self, table: RequestTable, max_len: int, cap: int | None = None,
                 timeout_s: np.ndarray | None = None) -> None:
        self.table = table
        self.max_len = max_len
        self.cap = 2**62 if cap is None else cap
        self.timeout_s = timeout_s
        # no waiting id below this sits behind a larger one (requeues break the id order)
        self._low = 2**62
        self.runs: deque[list[int]] = deque()  # [first id, end id) of admitted, waiting ids
        self.len = 0
        self.tail = 0  # every id below tail has been admitted or rejected
        self.rejected = 0
        self.peak = 0  # the most requests that waited at once
        self.divert: object = None  # engine hook: (ids) -> bool mask of ids answered elsewhere
        self.min_timeout_s = 0.0  # engine hint: no request times out sooner (s)
        self.next_arrival_s = -np.inf  # arrival time of id `tail` (cached), s

    def _admit_upto(self, j: int) -> None:
        n = j - self.tail
        if n <= 0:
            return
        if self.divert is not None:
            keep = ~self.divert(np.arange(self.tail, j))  # type: ignore[operator]
            if not keep.all():
                self._admit_ids(np.arange(self.tail, j)[keep])
                self.tail = j
                if j > self.cap:
                    self._shed_over_cap(j - self.cap)
                self.peak = max(self.peak, self.len)
                return
        room = self.max_len - self.len
        take = n if n <= room else max(room, 0)
        if take:
            last = self.runs[-1] if self.runs else None
            if last is not None and last[1] == self.tail:
                last[1] += take
            else:
                self.runs.append([self.tail, self.tail + take])
            self.len += take
        if take < n:
            self.table.end(range(self.tail + take, j), DROPPED)  # rejected at arrival
            self.rejected += n - take
        self.tail = j
        if j > self.cap:  # ids below j - cap have had cap later arrivals
            self._shed_over_cap(j - self.cap)
        if self.len > self.peak:
            self.peak = self.len

    def _shed_over_cap(self, limit: int, floor_s: float = -np.inf) -> None:
        """Waiting ids below ``limit`` leave, shed by the memory cap (:meth:`RequestTable.shed`,
        not before ``floor_s``). Ids wait in order, so they are at the head, unless requeues
        put larger ids before them (then every run is looked at)."""
        gone: list[np.ndarray] = []
        if limit > self._low:
            self._scan_over_cap(limit, gone)  # (replaces the runs)
        runs = self.runs
        while runs and runs[0][0] < limit:
            run = runs[0]
            hi = run[1] if run[1] <= limit else limit
            gone.append(np.arange(run[0], hi))
            if hi == run[1]:
                runs.popleft()
            else:
                run[0] = hi
        if gone:
            ids = np.concatenate(gone) if len(gone) > 1 else gone[0]
            self.len -= len(ids)
            self.table.shed(ids, self.cap, self.timeout_s, floor_s)

    def _scan_over_cap(self, limit: int, gone: list[np.ndarray]) -> None:
        """Take every waiting id below ``limit`` out of the runs (into ``gone``), wherever it
        waits, and note the smallest id left behind a larger one."""
        kept: deque[list[int]] = deque()
        low, top = 2**62, -1
        for run in self.runs:
            a, b = run
            if a < limit:
                hi = b if b <= limit else limit
                gone.append(np.arange(a, hi))
                if hi == b:
                    continue
                run[0] = a = hi
            if a < top and a < low:
                low = a
            top = max(top, b)
            kept.append(run)
        self.runs, self._low = kept, low

    def _admit_ids(self, ids: np.ndarray) -> None:
        """Admit scattered ids (after diversion) as single-id runs; reject beyond the limit."""
        room = max(self.max_len - self.len, 0)
        for gid in ids[:room].tolist():
            self.runs.append([gid, gid + 1])
        self.len += min(room, len(ids))
        if room < len(ids):
            self.table.end(ids[room:], DROPPED)  # rejected at arrival
            self.rejected += len(ids) - room

    # ------------------------------------------------------------------ reading
    def peek(self, k: int) -> range | np.ndarray:
        """Global ids of the first ``min(k, len)`` waiting requests, in FIFO order.

        A ``range`` when they are consecutive ids (the common case), else an array.
        """
        need = min(k, self.len)
        if need == 0:
            return range(0)
        a, b = self.runs[0]
        if b - a >= need:
            return range(a, a + need)
        out: list[np.ndarray] = []
        for a, b in self.runs:
            if need <= 0:
                break
            m = min(b - a, need)
            out.append(np.arange(a, a + m))
            need -= m
        return np.concatenate(out)

    def oldest_s(self) -> float:
        """Arrival time of the oldest waiting request, s."""
        return self.table.arrival_s[self.runs[0][0] - self.table.base]

    def waiting_items(self) -> int:
        """Items held by all waiting requests."""
        tab = self.table
        return sum(tab.items(a, b) for a, b in self.runs)

    def _contiguous_head(self) -> int | None:
        if len(self.runs) == 1 and self.runs[0][1] == self.tail:
            return self.runs[0][0]
        return None

    def max_wait_s(self, now_s: float) -> float:
        """How long the oldest waiting request has waited, s (0 when empty)."""
        return now_s - self.oldest_s() if self.len else 0.0

    def head_arrays(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Arrival times (s) and items of the first k waiting requests."""
        ids = self.peek(k)
        tab = self.table
        if isinstance(ids, range):
            sl = slice(ids.start - tab.base, ids.stop - tab.base)
            return tab.t[sl], tab.size[sl]
        loc = ids - tab.base
        return tab.t[loc], tab.size[loc]

    def fit_items(self, cap: int, k_max: int) -> int:
        """Largest k <= k_max whose first k waiting requests hold <= cap items (>= 1)."""
        k_max = min(k_max, self.len)
        if k_max <= 1:
            return 1
        a, b = self.runs[0]
        if b - a >= k_max:
            return fit_run(self.table, a, cap, k_max)
        _, items = self.head_arrays(k_max)
        return max(int(np.searchsorted(np.cumsum(items), cap, side="right")), 1)

    def fill(self, cap: int, k_max: int) -> tuple[int, int]:
        """(k, items): the largest k <= k_max whose first k waiting requests hold <= cap items
        (>= 1), and the items they hold."""
        k_max = min(k_max, self.len)
        a, b = self.runs[0]
        if b - a >= k_max:
            return fill_run(self.table, a, cap, k_max)
        return fill_arrays(self.head_arrays(k_max)[1], cap)

    # ------------------------------------------------------------------ removing
    def pop_one(self) -> int:
        """Remove and return the oldest waiting id."""
        run = self.runs[0]
        gid = run[0]
        run[0] += 1
        if run[0] == run[1]:
            self.runs.popleft()
        self.len -= 1
        return gid

    def take(self, k: int) -> range | np.ndarray:
        """Remove and return the first ``k`` waiting ids (see :meth:`peek`)."""
        if k > self.len:
            k = self.len
        run = self.runs[0] if k else None
        if run is not None and run[1] - run[0] >= k:  # all from the first run (the usual case)
            a = run[0]
            run[0] = a + k
            if run[0] == run[1]:
                self.runs.popleft()
            self.len -= k
            return range(a, a + k)
        ids = self.peek(k)
        need = len(ids)
        self.len -= need
        while need:
            run = self.runs[0]
            m = min(run[1] - run[0], need)
            run[0] += m
            need -= m
            if run[0] == run[1]:
                self.runs.popleft()
        return ids

    def requeue(self, ids: np.ndarray, now_s: float) -> int:
        """Put requests back at the head, oldest first (requeued from a preempted or failed
        node), as far as the queue has room; the rest are rejected now, as an arrival at a full
        queue is. Returns how many were rejected. Those that ``cap`` later requests have passed
        meanwhile are shed now (the memory cap)."""
        ids = np.sort(ids)
        room = max(self.max_len - self.len, 0)
        if room and self.runs and self.runs[0][0] < ids[min(room, len(ids)) - 1]:
            self._low = min(self._low, self.runs[0][0])  # now behind larger ids
        for gid in reversed(ids[:room].tolist()):
            self.runs.appendleft([gid, gid + 1])
        self.len += min(room, len(ids))
        if room < len(ids):
            self.table.end(ids[room:], DROPPED, now_s)
            self.rejected += len(ids) - room
        if self.tail > self.cap:
            self._shed_over_cap(self.tail - self.cap, now_s)
        self.peak = max(self.peak, self.len)
        return max(len(ids) - room, 0)

    def expire(self, now_s: float, timeout_s: np.ndarray) -> int:
        """Time out waiting requests at the head whose deadline passed; return how many."""
        tab = self.table
        n = 0
        while self.len:
            gid = self.runs[0][0]
            i = gid - tab.base
            if now_s - tab.arrival_s[i] <= self.min_timeout_s:
                break  # the head has not waited the shortest timeout yet
            deadline = tab.t[i] + timeout_s[tab.cls[i]]
            if deadline >= now_s:
                break
            self.pop_one()
            tab.end(gid, TIMED_OUT, deadline)
            n += 1
        return n



class NodeQueue:
    """One node's FIFO of request ids (per-node routing; one priority level, no class limits).

    :class:`~simulator.engine.priority_queue.PriorityNodeQueue` has the same methods for
    priority levels and per-class limits.
    """

    __slots__ = ("_low", "_top", "ids", "table")

    def __init__(self, table: RequestTable) -> None:
        self.table = table
        self.ids: deque[int] = deque()
        self._top = -1  # the largest id pushed
        self._low = 2**62  # no id below this sits behind a larger one (re-routed requests)

    def __len__(self) -> int:
        return len(self.ids)

    def has_room(self, cls: int) -> bool:
        """Whether a request of class ``cls`` may join (no class limits here)."""
        return True

    def push(self, gid: int, cls: int) -> None:
        self.ids.append(gid)
        if gid > self._top:
            self._top = gid
        elif gid < self._low:
            self._low = gid

    def pop_one(self) -> int:
        return self.ids.popleft()

    def head_id(self) -> int:
        """The id served next."""
        return self.ids[0]

    def oldest_s(self) -> float:
        """Arrival time of the oldest waiting request, s."""
        tab = self.table
        return float(tab.t[self.ids[0] - tab.base])

    def peek(self, k: int) -> np.ndarray:
        n = min(k, len(self.ids))
        return np.fromiter((self.ids[i] for i in range(n)), dtype=np.int64, count=n)

    def head_arrays(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Arrival times (s) and items of the first k waiting requests."""
        tab = self.table
        loc = self.peek(k) - tab.base
        return tab.t[loc], tab.size[loc]

    def fill(self, cap: int, k_max: int) -> tuple[int, int]:
        """(k, items): the largest k <= k_max of the first requests holding <= cap items
        (>= 1), and their items."""
        return fill_arrays(self.head_arrays(k_max)[1], cap)

    def fit_items(self, cap: int, k_max: int) -> int:
        return self.fill(cap, k_max)[0]

    def take(self, k: int) -> np.ndarray:
        n = min(k, len(self.ids))
        pop = self.ids.popleft
        return np.fromiter((pop() for _ in range(n)), dtype=np.int64, count=n)

    def clear(self) -> np.ndarray:
        """Remove and return every waiting id (service order)."""
        out = np.fromiter(self.ids, dtype=np.int64, count=len(self.ids))
        self.ids.clear()
        return out

    def pop_older(self, limit: int) -> list[int]:
        """Remove and return the waiting ids below ``limit`` (the memory cap's look): those at
        the head, or, when a re-routed request may wait behind larger ids, all of them."""
        ids = self.ids
        if limit > self._low:
            out = [g for g in ids if g < limit]
            self.ids = deque(g for g in ids if g >= limit)
            self._low = hidden_low(self.ids)
            return out
        out = []
        while ids and ids[0] < limit:
            out.append(ids.popleft())
        return out

    def expire(self, now_s: float, timeout_s: np.ndarray) -> list[int]:
        """Time out expired requests at the head; return their ids."""
        tab = self.table
        out = []
        while self.ids:
            i = self.ids[0] - tab.base
            deadline = tab.t[i] + timeout_s[tab.cls[i]]
            if deadline >= now_s:
                break
            gid = self.ids.popleft()
            out.append(gid)
            tab.end(gid, TIMED_OUT, deadline)
        return out
