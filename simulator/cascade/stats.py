"""What a cascade counts: per stage (:class:`StageStats`) and end to end (:class:`EndToEnd`).

Counts and latencies are of requests whose arrival at stage 1 (``t0``) is at or after the
warm-up; with tracing on (tests) a stage also keeps every request's times. Times are seconds
unless a name says ``_ms``.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from simulator.cascade.records import EndToEndRecords
from simulator.cascade.rows import IdColumns, Rows
from simulator.cascade.series import EndToEndSeries
from simulator.metrics import LatencySketch


class StageStats:
    """What one stage saw (measurement window: requests whose end-to-end arrival ``t0`` is at
    or after the warm-up): requests entering, passed on, skipped, shrunk, lost by reason, and
    the stage latency (arrival at the stage to departure, ms)."""

    def __init__(self, name: str, warmup_s: float, budget_s: float | None = None) -> None:
        self.name = name
        self.warmup_s = warmup_s
        self.budget_s = budget_s  # the stage's latency budget, s (None: none)
        self.over_budget = 0  # passed requests whose stage latency exceeded it
        self.in_transit = 0  # left the stage before the end, reach the next point after it
        #: with tracing on (tests): per passed request (origin, t_in, t_out, cand_in,
        #: cand_out), skipped ones with t_out = t_in; the whole run, every request
        self.trace: list[np.ndarray] | None = None
        self.inputs: list[np.ndarray] = []  # with tracing: origin ids in the units' id order
        self.entered = 0
        self.passed = 0
        self.skipped = 0
        self.shrunk = 0
        self.lost: dict[str, int] = {}
        self.latency = LatencySketch()
        self.candidates_in = 0  # sum over entering requests
        self.candidates_out = 0  # sum over passed requests


class EndToEnd:
    """Every origin request's end-to-end fate (see the module docstring of
    :mod:`simulator.cascade.summary` for the SLA rule): completed (latency = last departure
    + its network hop - arrival), lost at a stage, or in flight at the end."""

    PENDING, DONE = 0, 1
    BLOCK = 8192  # rows per block of done flags (see arrive)

    def __init__(self, slo_s: np.ndarray, warmup_s: float, n_classes: int,
                 series: EndToEndSeries | None = None,
                 records: EndToEndRecords | None = None) -> None:
        self.slo_s = slo_s  # per class, s
        self.series = series  # the per-interval view (whole run), if kept
        self.records = records  # per-request records (whole run), if kept
        self.warmup_s = warmup_s
        self.cols = IdColumns()  # origin id -> row (t0, cls in the row)
        self._state: deque[np.ndarray] = deque()  # per appended block: done flags
        self._block_first: deque[int] = deque()
        self.arrived = np.zeros(n_classes, dtype=np.int64)
        self.arrived_all = 0
        self.completed = np.zeros(n_classes, dtype=np.int64)
        self.violations = np.zeros(n_classes, dtype=np.int64)
        self.in_flight = np.zeros(n_classes, dtype=np.int64)
        self.in_flight_violations = np.zeros(n_classes, dtype=np.int64)
        self.lost: dict[str, np.ndarray] = {}  # "stage: reason" -> per class
        self.latency = [LatencySketch() for _ in range(n_classes)]
        self.qloss = np.zeros(n_classes)  # quality lost, summed over completed requests
        self.degraded = np.zeros(n_classes, dtype=np.int64)  # completed with a loss > 0
        # per class, by arrival interval (the series' intervals), whole run: SLA violations
        # and the requests in the violation rate's denominator (completed, lost, in flight
        # past the SLO), for the worst sliding window (as a single-stage run's)
        n_iv = series.n if series is not None else 0
        self.viol_by_interval = np.zeros((n_classes, n_iv), dtype=np.int64)
        self.counted_by_interval = np.zeros((n_classes, n_iv), dtype=np.int64)

    def _count(self, t0_s: np.ndarray, cls: np.ndarray, late: np.ndarray) -> None:
        """Requests arrived at ``t0_s`` now counted in the violation rate; ``late``: of them,
        the violations."""
        if self.series is None or not len(t0_s):
            return
        b = self.series.interval_of(t0_s)
        np.add.at(self.counted_by_interval, (cls, b), 1)
        np.add.at(self.viol_by_interval, (cls[late], b[late]), 1)

    def arrive(self, rows: Rows) -> None:
        """Origin rows (ids = their ``origin``) entering stage 1."""
        self.cols.append(rows)
        # done flags in blocks of at most BLOCK rows: a block's rows are let go when all of
        # them have ended, so small blocks keep memory near the requests in flight (a
        # workload chunk at a 30x peak holds a million requests)
        first = int(rows.origin[0]) if len(rows) else self.cols.end
        for a in range(0, max(len(rows), 1), self.BLOCK):
            self._state.append(np.zeros(min(self.BLOCK, len(rows) - a), dtype=np.int8))
            self._block_first.append(first + a)
        self.arrived_all += len(rows)
        if self.series is not None:
            self.series.arrive(rows.t0)
        m = rows.t0 >= self.warmup_s
        self.arrived += np.bincount(rows.cls[m], minlength=len(self.arrived))

    def _mark(self, origin: np.ndarray) -> None:
        """Mark ``origin`` ids done (each once: a second ending is a bug, refused); release
        leading blocks whose rows are all done."""
        if not len(origin):
            return
        firsts = np.fromiter(self._block_first, dtype=np.int64, count=len(self._block_first))
        blk = np.searchsorted(firsts, origin, side="right") - 1
        if (blk < 0).any() or len(np.unique(origin)) != len(origin):
            raise RuntimeError("an end-to-end request ended twice (or before it arrived)")
        for b in np.unique(blk):
            sel = origin[blk == b]
            st = self._state[b]
            again = st[sel - firsts[b]] != self.PENDING
            if again.any():
                raise RuntimeError(f"end-to-end request {int(sel[again][0])} ended twice")
            st[sel - firsts[b]] = self.DONE
        while self._state and self._state[0].all():
            self._state.popleft()
            self._block_first.popleft()
            self.cols.release_below(self._block_first[0] if self._block_first else self.cols.end)

    def complete(self, rows: Rows) -> None:
        """Rows that left the last stage; ``rows.t``: when the caller has the answer."""
        self._mark(rows.origin)
        if self.series is not None and len(rows):
            lat = (rows.t - rows.t0) * 1e3
            self.series.complete(rows.t0, rows.t, lat, lat > self.slo_s[rows.cls] * 1e3)
            self._count(rows.t0, rows.cls.astype(np.int64), lat > self.slo_s[rows.cls] * 1e3)
        if self.records is not None:
            self.records.add(rows, "completed", "", rows.t)
        m = rows.t0 >= self.warmup_s
        if not m.any():
            return
        r = rows.take(m)
        lat_ms = (r.t - r.t0) * 1e3
        n = len(self.completed)
        self.completed += np.bincount(r.cls, minlength=n)
        late = lat_ms > self.slo_s[r.cls] * 1e3
        self.violations += np.bincount(r.cls[late], minlength=n)
        self.qloss += np.bincount(r.cls, weights=r.qloss, minlength=n)
        self.degraded += np.bincount(r.cls[r.qloss > 0], minlength=n)
        for c in np.unique(r.cls):
            self.latency[int(c)].add(lat_ms[r.cls == c])

    def lose(self, rows: Rows, where: str) -> None:
        """Rows that ended at a stage (``where``: "stage: reason"; ``rows.t``: when):
        violations."""
        self._mark(rows.origin)
        if self.series is not None:
            self.series.violate(rows.t0)
            self._count(rows.t0, rows.cls.astype(np.int64), np.ones(len(rows), dtype=bool))
        if self.records is not None:
            # the outcome as a single-stage run names it: timed out and shed by the memory
            # cap are their own outcomes, any other loss is a drop
            reason = where.rsplit(": ", 1)[-1]
            outcome = reason if reason in ("timed_out", "shed_by_cap") else "dropped"
            self.records.add(rows, outcome, where, rows.t)
        m = rows.t0 >= self.warmup_s
        if not m.any():
            return
        per = np.bincount(rows.cls[m], minlength=len(self.completed))
        self.lost[where] = self.lost.get(where, 0) + per
        self.violations += per

    def finish(self, end_s: float) -> None:
        """Requests neither completed nor lost are in flight: violations when older than
        their SLO at ``end_s``."""
        firsts = list(self._block_first)
        for first, st in zip(firsts, self._state, strict=True):
            pend = np.flatnonzero(st == self.PENDING) + first
            if not len(pend):
                continue
            r = self.cols.get(pend)
            if self.records is not None:
                self.records.add(r, "in_flight", "", np.full(len(r), np.nan))
            m = r.t0 >= self.warmup_s
            n = len(self.completed)
            self.in_flight += np.bincount(r.cls[m], minlength=n)
            old = m & ((end_s - r.t0) > self.slo_s[r.cls])
            self.in_flight_violations += np.bincount(r.cls[old], minlength=n)
            if self.series is not None:
                late = (end_s - r.t0) > self.slo_s[r.cls]
                self.series.violate(r.t0[late])
                self._count(r.t0[late], r.cls[late].astype(np.int64),
                            np.ones(int(late.sum()), dtype=bool))
        self.violations += self.in_flight_violations


def passed(st: StageStats, dep: Rows, stage_s: np.ndarray, cand_in: np.ndarray) -> None:
    """Rows that left the stage after ``stage_s`` (s) in it, having brought ``cand_in``."""
    if st.trace is not None:
        st.trace.append(np.column_stack([dep.origin, dep.t - stage_s, dep.t, cand_in,
                                         dep.cand]))
    m = dep.t0 >= st.warmup_s
    st.passed += int(m.sum())
    st.candidates_out += int(dep.cand[m].sum())
    st.latency.add(stage_s[m] * 1e3)
    if st.budget_s is not None:
        st.over_budget += int((stage_s[m] > st.budget_s).sum())


def lose(st: StageStats, e2e: EndToEnd, rows: Rows, where: str) -> None:
    """Rows that ended at the stage (``where``: "stage: reason")."""
    m = rows.t0 >= st.warmup_s
    reason = where.split(": ", 1)[1]
    st.lost[reason] = st.lost.get(reason, 0) + int(m.sum())
    e2e.lose(rows, where)


