"""The request table: per-request state in numpy arrays, loaded chunk by chunk.

Requests get global ids in arrival order. Only a sliding window of chunks is held: a chunk is
handed to the recorder and dropped as soon as every request in it has ended (completed, dropped,
timed out or shed), so memory grows with the requests from the oldest one still waiting or in
service to the newest arrival, whatever the run's length. Under overload that span grows without
end (every arrival since the oldest waiting request stays, rejected ones included): the memory
cap ``simulation.max_in_system`` bounds it, the queues shedding a waiting request once that many
later requests have arrived (:meth:`RequestTable.shed`).

The table is the one owner of a request's fate: a request ends only through
:meth:`RequestTable.end` (or, for a served batch of consecutive ids, the served log that
:meth:`RequestTable.apply_served` writes out), which refuses to end a request twice.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from enum import IntEnum
from itertools import chain
from typing import Protocol

import numpy as np

from simulator.workload import Chunk


class Outcome(IntEnum):
    """How a request ended (the ``outcome`` column; PENDING: not yet, in flight at the end)."""

    PENDING = 0
    COMPLETED = 1
    DROPPED = 2  # rejected by a full queue, or lost with its node
    TIMED_OUT = 3  # left the queue at its deadline
    SHED = 4  # left the queue when simulation.max_in_system later requests had arrived


PENDING, COMPLETED, DROPPED, TIMED_OUT, SHED = Outcome
OUTCOME_NAMES = {PENDING: "in_flight", COMPLETED: "completed", DROPPED: "dropped",
                 TIMED_OUT: "timed_out", SHED: "shed_by_cap"}
Ids = int | range | np.ndarray  # global request ids: one, consecutive, or any


class FateListener(Protocol):
    """Who :meth:`RequestTable.watch` tells each request's fate (a cascade's stage link)."""

    def served_range(self, entry: tuple[int, int, float, float, int]) -> None: ...

    def served_ids(self, ids: np.ndarray, finish_s: float) -> None: ...

    def ended(self, ids: np.ndarray, outcome: Outcome, t_s: np.ndarray) -> None: ...

    def degraded(self, ids: np.ndarray) -> None:
        """Requests ``ids`` were degraded: answered from a cache, or served by a cheaper
        variant (a cascade adds their quality loss to the end-to-end one)."""


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
    """Arrays indexed by ``id - base``: arrival, class, size, start, finish, node, outcome.

    Each column is a view of a buffer the table keeps: a chunk is written after the rows held,
    released rows are skipped, and the rows held slide back to the buffer's front when its end
    is reached (the buffer grows only when they do not fit), so a long run does not
    allocate a column's worth per chunk (a 100x overload's window of millions of rows,
    reallocated every chunk, fragmented the heap: its resident memory kept growing).
    """

    COLUMNS = (("t", np.float64), ("cls", np.int16), ("size", np.int64),
               ("start", np.float64), ("finish", np.float64), ("node", np.int32),
               ("outcome", np.int8), ("degraded", np.int8))

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
        self._buf = {name: np.empty(0, dtype=dt) for name, dt in self.COLUMNS}
        self._off = 0  # buffer index of local index 0 (id base)
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
        # how far past now (s) the dispatcher reads arrivals to find the next one: unbounded
        # for a workload (reading is cheap); a cascade stage's arrivals are the stage before's
        # departures, and reading them runs that stage ahead, holding its rows
        self.lookahead_s = math.inf
        self.shed_by_cap = 0  # requests shed by the memory cap (shed()), whole run
        self._listener: FateListener | None = None  # see watch()
        self._sized_to = 0  # resize(): items_before is right up to this id ...
        self._shrunk = 0  # ... and past it counts this many items too many

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
        live = self.end_id - self.base
        self._make_room(live + n)
        a = self._off + live
        buf = self._buf
        buf["t"][a:a + n] = ch.time
        buf["cls"][a:a + n] = ch.cls
        buf["size"][a:a + n] = ch.size
        buf["start"][a:a + n] = np.nan
        buf["finish"][a:a + n] = np.nan
        buf["node"][a:a + n] = -1
        buf["outcome"][a:a + n] = PENDING
        buf["degraded"][a:a + n] = 0
        self.arrival_s += ch.time.tolist()
        cs = np.cumsum(ch.size, dtype=np.int64) + self._items_total
        self.items_before += cs.tolist()
        if n:
            self._items_total = int(cs[-1])
        self._spans.append((self.end_id, self.end_id + n, ch.t0, ch.t1))
        self.end_id += n
        self._views()
        if n:
            self.last_time = float(ch.time[-1])
        self.loaded_until = ch.t1
        return True

    def _make_room(self, need: int) -> None:
        """Make the buffers hold ``need`` rows from ``_off``: slide the rows held to the front
        (in at most 8 non-overlapping blocks, so no temporary copy), or, when they do not fit
        or have moved less than an eighth of their length, grow every buffer to 1.25 ``need``
        (a window that holds still then slides every ``need`` / 4 rows loaded, never grows)."""
        cap = len(self._buf["t"])
        if self._off + need <= cap:
            return
        live, off = self.end_id - self.base, self._off
        if need <= cap and 8 * off >= live:
            for name, _ in self.COLUMNS:
                b = self._buf[name]
                for i in range(0, live, off):
                    k = min(off, live - i)
                    b[i:i + k] = b[off + i:off + i + k]
        else:
            size = max(need + need // 4, 1024)
            for name, dt in self.COLUMNS:
                new = np.empty(size, dtype=dt)
                new[:live] = self._buf[name][off:off + live]
                self._buf[name] = new
        self._off = 0

    def _views(self) -> None:
        """Point the columns at the rows held: ids [base, end_id)."""
        a, b = self._off, self._off + self.end_id - self.base
        for name, _ in self.COLUMNS:
            setattr(self, name, self._buf[name][a:b])

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

    def watch(self, listener: FateListener) -> None:
        """Tell ``listener`` every request's fate as it is decided: each served batch when it
        finishes (``served_range`` with the served log's entry ``(first id, end id, start s,
        finish s, node)``, or ``served_ids(ids, finish_s)``) and ``ended(ids, outcome, t_s)``
        for every other ending (a cascade hands served requests to its next stage). Call before
        the run starts: the serving loops take the served log's methods when they start.
        Without a listener the served log stays the bare list append (the hot path)."""
        self._listener = listener
        log, log_ids = self._served.append, self._served_ids.append
        on_range, on_ids = listener.served_range, listener.served_ids

        def served(entry: tuple[int, int, float, float, int]) -> None:
            log(entry)
            on_range(entry)

        def served_ids(entry: tuple[np.ndarray, float, float, int]) -> None:
            log_ids(entry)
            on_ids(entry[0], entry[2])

        self.served, self.served_ids = served, served_ids

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
            if self._listener is not None:
                self._listener.ended(np.asarray([ids]), outcome, self.finish[i:i + 1].copy())
            return
        loc = self._loc(ids)  # type: ignore[arg-type]
        if self.outcome[loc].any():
            self._ended_twice(np.arange(ids.start, ids.stop) if type(ids) is range else ids)
        self.outcome[loc] = outcome
        self.finish[loc] = self.t[loc] if t_s is None else t_s
        if self._listener is not None:
            arr = np.arange(ids.start, ids.stop) if type(ids) is range else np.asarray(ids)
            self._listener.ended(arr, outcome, np.array(self.finish[loc], dtype=float))

    def shed(self, ids: range | np.ndarray, cap: int, timeout_s: np.ndarray | None = None,
             floor_s: float = -np.inf) -> None:
        """Waiting requests ``ids``, each passed by ``cap`` later arrivals (all loaded), leave:
        shed by the memory cap (``simulation.max_in_system``) at the arrival of their
        cap-th later request, not before ``floor_s`` (s: when they came back to wait, requeued
        from a stopped node); or timed out at their deadline when their class's timeout
        (``timeout_s``, per class, s) came first."""
        ids = np.arange(ids.start, ids.stop) if type(ids) is range else np.asarray(ids)
        if not len(ids):
            return
        loc = ids - self.base
        t_cap = np.maximum(self.t[loc + cap], floor_s)
        if timeout_s is not None:
            deadline = self.t[loc] + timeout_s[self.cls[loc]]
            first = deadline < t_cap
            if first.any():
                self.end(ids[first], TIMED_OUT, deadline[first])
                ids, t_cap = ids[~first], t_cap[~first]
        self.end(ids, SHED, t_cap)
        self.shed_by_cap += len(ids)

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
        if self._listener is not None:
            self._listener.degraded(np.asarray(ids, dtype=np.int64))

    def mark_degraded(self, ids: range | np.ndarray) -> None:
        """Requests served by a fallback (cheaper variant) instead of the pool's model."""
        self.degraded[self._loc(ids)] = 1
        if self._listener is not None:
            self._listener.degraded(np.arange(ids.start, ids.stop) if type(ids) is range
                                    else np.asarray(ids, dtype=np.int64))

    def resize(self, first: int, end: int, size: np.ndarray | None = None) -> None:
        """Arrivals [first, end) join a queue now, with ``size`` items each (None: as they
        are); calls come in id order, before any of those ids is queued (shrink mode).

        ``items_before`` is kept right up to ``end`` only: past it every entry still counts
        the items removed so far (``_shrunk``), so a call costs the ids it covers, not the
        ids loaded. Readers of later entries (arrivals not yet queued) see more items than
        will come, never fewer (an item-fill time errs early)."""
        ib, base = self.items_before, self.base
        k = max(self._sized_to, base) - base  # entries up to k are right
        i, j = first - base, end - base
        gone = self._shrunk
        if gone and i > k:
            ib[k + 1:i + 1] = [x - gone for x in ib[k + 1:i + 1]]
        if size is not None and j > i:
            cut = np.cumsum(self.size[i:j] - size) + gone
            self.size[i:j] = size
            ib[i + 1:j + 1] = (np.asarray(ib[i + 1:j + 1], dtype=np.int64) - cut).tolist()
            gone = int(cut[-1])
        elif gone:
            ib[i + 1:j + 1] = [x - gone for x in ib[i + 1:j + 1]]
        self._sized_to, self._shrunk = end, gone

    def ensure(self, gid: int, until_s: float = math.inf) -> bool:
        """Load chunks until ``gid`` is in the table; False if the workload ends first, or
        if every arrival up to ``until_s`` is loaded without it (it arrives later: a caller
        that only needs arrivals before a deadline need not read past it; in a cascade,
        reading arrivals runs the stages before ahead, holding their rows)."""
        while gid >= self.end_id:
            if self.loaded_until > until_s or not self.load_next():
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
            self._off += released
            self._views()
            del self.arrival_s[:released]
            del self.items_before[:released]

    def flush_all(self) -> None:
        """End of run: hand every loaded chunk to the recorder (pending = in flight)."""
        self.apply_served()
        while self._spans:
            lo, hi, t0, t1 = self._spans.popleft()
            self._on_done(ChunkView(self, lo - self.base, hi - self.base, t0, t1))
        self.base = self.end_id
