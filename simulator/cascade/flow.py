"""How requests flow through a cascade: each stage's input, its units' fates, its output.

The cascade is feed-forward: a stage never depends on a later one. So every stage (each unit a
full single-stage :class:`~simulator.engine.simulation.Simulation` with its own clock) runs as
far as its input is known, and the input of stage k up to time X is known once stage k-1 has
run to X (less the network hop): a departure is logged when its batch finishes, so after
running a unit to X every departure before X is known. Nothing is assumed in between: the
requests of stage k are exactly stage k-1's departures, at their times.

* :class:`OriginSource`: the workload's requests entering stage 1 (each gets its origin id).
* :class:`StageInput`: builds a stage's arrival chunks from the previous stage's output, window
  after window; applies the budget-driven degradation (skip the stage, shrink the candidates)
  as each request gets there; feeds the same chunks to every unit of the stage.
* :class:`UnitLink`: listens to one unit's request table (served batches, other endings) and
  maps its request ids back to the rows that entered it; a request the unit's queue-driven
  degradation cut (mode "shrink") leaves with the cut count and its quality loss.
* :class:`StageOutput` and :class:`ForkOutput`: a stage's departures before a time, with the
  candidates each passes on; a fork stage joins its channels (all answered, or each one's
  join timeout passed).
What the stages and the whole funnel count is :mod:`simulator.cascade.stats`.

Times are seconds of simulated time unless a name says ``_ms``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np

from simulator.cascade.config import StageCfg
from simulator.cascade.rows import IdColumns, Rows
from simulator.cascade.stats import EndToEnd, StageStats, lose, passed
from simulator.engine.requests import COMPLETED, OUTCOME_NAMES, Outcome
from simulator.sections import SizeCfg
from simulator.workload import Chunk, Workload, sample_sizes

#: rows a stage input gathers into one arrival chunk (more windows are read until then)
CHUNK_ROWS = 2048
#: the first window a stage input reads, s; it doubles while windows come back short, up to
MIN_WINDOW_S, MAX_WINDOW_S = 0.01, 2.0


class OriginSource:
    """The workload's requests as rows entering stage 1, in arrival order; ``collect(Y)``
    returns those arriving in [the last Y, Y)."""

    def __init__(self, workload: Workload, e2e: EndToEnd) -> None:
        self._chunks = workload.chunks()
        self._e2e = e2e
        self._held = Rows.empty()
        self._loaded_until = 0.0
        self._next_origin = 0
        self._done = False

    def collect(self, until_s: float) -> Rows:
        while not self._done and self._loaded_until < until_s:
            try:
                ch = next(self._chunks)
            except StopIteration:
                self._done = True
                break
            n = len(ch.time)
            ids = np.arange(self._next_origin, self._next_origin + n, dtype=np.int64)
            self._next_origin += n
            rows = Rows(ch.time.astype(np.float64), ids, ch.time.astype(np.float64),
                        ch.cls.astype(np.int16), ch.size.astype(np.int64), np.zeros(n))
            self._held = Rows.concat([self._held, rows])
            self._loaded_until = ch.t1
        out, self._held = self._held.split(until_s)
        # the end-to-end fates start as the requests arrive, not as their chunk is read (a
        # chunk at a peak holds minutes of arrivals: only the held copy keeps them)
        self._e2e.arrive(out)
        return out


class UnitLink:
    """One unit's fates (a :class:`~simulator.engine.requests.FateListener`) and its rows.

    Served batches are logged as they finish (the hot path: one list append per batch);
    :meth:`take` turns those before a time into rows. Other endings: completed (a cached
    answer) counts as a departure, the rest as a loss.
    """

    def __init__(self, name: str, sim: Any, cand_out: SizeCfg | None, expands: bool,
                 rng: np.random.Generator, releases: bool = True,
                 stats: StageStats | None = None) -> None:
        self.name = name
        self._stats = stats  # its stage's counts (queue-driven cuts are shrinks)
        self.sim = sim
        self._releases = releases  # False for a fork's channels: the join releases their rows
        self.rows = IdColumns()  # unit request id -> row at entry
        self._cand_out = cand_out
        self._expands = expands
        self._rng = rng
        # served batches of consecutive ids: the served log's entries (first, end, start,
        # finish, node), appended as they are (the hot path: one append per batch)
        self._ranges: list[tuple[int, int, float, float, int]] = []
        self.served_range = self._ranges.append  # the FateListener methods
        self._id_batches: list[tuple[np.ndarray, float]] = []  # batches of any ids
        self._late: list[tuple[np.ndarray, np.ndarray]] = []  # completed via end()
        self._lost: list[tuple[np.ndarray, int, np.ndarray, float]] = []
        sim.table.watch(self)
        # queue-driven shrinking (policy.degradation mode "shrink"): per unit id from
        # _cut_base, the candidates a request was cut to (0: not cut)
        self._cut = np.zeros(0, dtype=np.int64)
        self._cut_base = 0
        deg = getattr(sim, "degradation", None)
        self._cut_loss = 0.0
        if deg is not None and deg.shrinks:
            self._cut_loss = deg.quality_loss_per_degraded()
            deg.on_shrink = self._shrunk
        # cache answers and fallback-variant batches (policy.degradation): their quality
        # loss joins the request's end-to-end loss (per unit id from _cut_base, like _cut)
        self._deg_loss = 0.0 if deg is None or not deg.enabled else \
            deg.quality_loss_per_degraded()
        self._deg = np.zeros(0, dtype=bool)

    def _grow(self, ids: np.ndarray) -> None:
        """Drop the per-id marks below the oldest unread id; make room up to ``ids``."""
        low = self.oldest_unread()
        if low > self._cut_base:  # rows below are let go: their marks too
            drop = min(low - self._cut_base, len(self._cut))
            self._cut, self._deg = self._cut[drop:], self._deg[drop:]
            self._cut_base = low
        need = int(ids.max()) + 1 - self._cut_base - len(self._cut)
        if need > 0:
            grow = max(need, 1024)
            self._cut = np.concatenate([self._cut, np.zeros(grow, dtype=np.int64)])
            self._deg = np.concatenate([self._deg, np.zeros(grow, dtype=bool)])

    def _shrunk(self, ids: np.ndarray, cand: np.ndarray) -> None:
        """The unit cut requests ``ids`` to ``cand`` candidates as they joined its queue."""
        self._grow(ids)
        self._cut[ids - self._cut_base] = cand
        if self._stats is not None:  # a shrink of the stage, counted in its window
            t0 = self.rows.get(ids).t0
            self._stats.shrunk += int((t0 >= self._stats.warmup_s).sum())

    def degraded(self, ids: np.ndarray) -> None:
        """The unit answered ``ids`` from its cache or served them with its fallback variant
        (a :class:`~simulator.engine.requests.FateListener` method)."""
        if not len(ids) or not self._deg_loss:
            return
        self._grow(ids)
        self._deg[ids - self._cut_base] = True

    def entry(self, ids: np.ndarray) -> Rows:
        """The rows of unit requests ``ids`` as they leave: as they entered, but with the
        candidates they were cut to and its quality loss where the unit cut them."""
        rows = self.rows.get(ids)
        if not len(self._cut) or not len(ids):
            return rows
        loc = ids - self._cut_base
        ok = (loc >= 0) & (loc < len(self._cut))
        cut = np.zeros(len(ids), dtype=np.int64)
        cut[ok] = self._cut[loc[ok]]
        deg = np.zeros(len(ids), dtype=bool)
        deg[ok] = self._deg[loc[ok]]
        m = cut > 0
        if not m.any() and not deg.any():
            return rows
        return Rows(rows.t, rows.origin, rows.t0, rows.cls, np.where(m, cut, rows.cand),
                    rows.qloss + self._cut_loss * m + self._deg_loss * deg)

    def served_ids(self, ids: np.ndarray, finish_s: float) -> None:
        self._id_batches.append((ids, finish_s))

    def ended(self, ids: np.ndarray, outcome: Outcome, t_s: np.ndarray) -> None:
        if outcome == COMPLETED:
            self._late.append((ids, t_s))
        else:
            self._lost.append((ids, int(outcome), t_s, float(self.sim.env.now)))

    def candidates(self, cand_in: np.ndarray) -> np.ndarray:
        """Candidates passed on by departing requests that brought ``cand_in``."""
        if self._cand_out is None:
            return cand_in
        out = sample_sizes(self._cand_out, self._rng, len(cand_in))
        return out if self._expands else np.minimum(out, cand_in)

    def take(self, before_s: float, floor_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(unit ids, departure times) of the departures before ``before_s``, in time order;
        a departure learnt after its window passed (a cached answer found late) is moved to
        ``floor_s``. Those at or after ``before_s`` stay for the next call."""
        ids_parts, t_parts = [], []
        if self._ranges:
            e = np.array(self._ranges, dtype=float)  # (n, 5): first, end, start, finish, node
            now = e[:, 3] < before_s
            if not now.all():
                self._ranges = [x for x, m in zip(self._ranges, now.tolist(), strict=True)
                                if not m]
            else:
                self._ranges.clear()
            e = e[now]
            if len(e):
                first = e[:, 0].astype(np.int64)
                lens = e[:, 1].astype(np.int64) - first
                offs = np.cumsum(lens) - lens
                ids_parts.append(np.repeat(first - offs, lens) + np.arange(int(lens.sum())))
                t_parts.append(np.repeat(np.maximum(e[:, 3], floor_s), lens))
        keep = []
        for ids, f in self._id_batches:
            if f < before_s:
                ids_parts.append(np.asarray(ids, dtype=np.int64))
                t_parts.append(np.full(len(ids), max(f, floor_s)))
            else:
                keep.append((ids, f))
        self._id_batches = keep
        late_keep = []
        for ids, t in self._late:
            m = t < before_s
            if m.any():
                ids_parts.append(ids[m])
                t_parts.append(np.maximum(t[m], floor_s))
            if (~m).any():
                late_keep.append((ids[~m], t[~m]))
        self._late = late_keep
        if not ids_parts:
            return np.empty(0, dtype=np.int64), np.empty(0)
        ids_a = np.concatenate(ids_parts)
        t_a = np.concatenate(t_parts)
        order = np.lexsort((ids_a, t_a))
        return ids_a[order], t_a[order]

    def take_lost(self) -> list[tuple[np.ndarray, int, np.ndarray, float]]:
        """Losses since the last call: (unit ids, outcome, end times, when learnt)."""
        out, self._lost = self._lost, []
        return out

    def release(self) -> None:
        """Rows of requests the unit's table has let go (all ended) are not needed (a fork's
        channels keep them until the join has used them)."""
        if self._releases:
            self.rows.release_below(self.oldest_unread())

    def oldest_unread(self) -> int:
        """The lowest id the link may still read: the table's oldest held request, or an
        older one whose fate is logged but not yet taken (the table lets a request go as soon
        as it has ended; the cascade reads its departure at its next step)."""
        low = self.sim.table.base
        if self._ranges:
            low = min(low, min(e[0] for e in self._ranges))
        for part in (*self._id_batches, *self._late, *self._lost):
            if len(part[0]):
                low = min(low, int(np.min(part[0])))
        return low


class StageInput:
    """Stage k's arrival chunks (see the module docstring), one generator per unit."""

    def __init__(self, k: int, cfg: StageCfg, upstream: Any, n_units: int,
                 slo_s: np.ndarray, duration_s: float, stats: StageStats,
                 links: list[UnitLink], skip_rng: np.random.Generator,
                 first_stage: bool) -> None:
        self.k = k
        self.cfg = cfg
        self.upstream = upstream  # .collect(until_s) -> Rows (arrival times at this stage)
        self.slo_s = slo_s
        self.duration_s = duration_s
        self.stats = stats
        self.links = links
        self.horizon = 0.0  # every input row before this time has been made
        self._queues: list[deque[Chunk]] = [deque() for _ in range(n_units)]
        self._skipped = Rows.empty()  # skipped rows not yet taken by the output
        self._skip_rng = skip_rng
        self._window = MIN_WINDOW_S
        deg = cfg.degrade
        self._skip_s = None if deg.skip_below_ms is None or first_stage else \
            deg.skip_below_ms / 1e3
        self._shrink_s = None if deg.shrink_below_ms is None else deg.shrink_below_ms / 1e3

    def chunks(self, u: int) -> Iterator[Chunk]:
        """Unit ``u``'s arrival chunks (made on demand, window after window)."""
        q = self._queues[u]
        while True:
            while not q:
                if self.horizon >= self.duration_s:
                    return
                self._make()
            yield q.popleft()

    def ensure(self, until_s: float) -> None:
        """Make the input up to ``until_s`` (the skipped rows in it are then known)."""
        while self.horizon < min(until_s, self.duration_s):
            self._make()

    def take_skipped(self, before_s: float) -> Rows:
        out, self._skipped = self._skipped.split(before_s)
        return out

    def _make(self) -> None:
        """The next window [horizon, h2): read until it holds CHUNK_ROWS rows or spans
        MAX_WINDOW_S (windows adapt to the rate)."""
        h = self.horizon
        parts: list[Rows] = []
        got = 0
        h2 = h
        while got < CHUNK_ROWS and h2 - h < MAX_WINDOW_S and h2 < self.duration_s:
            nxt = min(h2 + self._window, self.duration_s)
            rows = self.upstream.collect(nxt)
            parts.append(rows)
            got += len(rows)
            h2 = nxt
            if got < CHUNK_ROWS // 4:
                self._window = min(self._window * 2, MAX_WINDOW_S)
            elif got > CHUNK_ROWS:
                self._window = max(self._window / 2, MIN_WINDOW_S)
        rows = Rows.concat(parts).sorted()
        if len(rows) and (rows.t[0] < h - 1e-9 or rows.t[-1] >= h2 + 1e-9):
            # the previous stage handed on a request outside the window it was asked for: a
            # broken link would make the unit wait for it forever; say so instead
            raise RuntimeError(f"stage {self.cfg.name}: arrivals at {rows.t[0]!r}..{rows.t[-1]!r}"
                               f" s outside the window [{h!r}, {h2!r}) s")
        self.horizon = h2
        rows = self._degrade(rows)
        if self.stats.trace is not None:  # the units' request ids are this order's indices
            self.stats.inputs.append(rows.origin.copy())
        for link in self.links:
            link.release()
            link.rows.append(rows)
        chunk = Chunk(h, h2, rows.t, rows.cls, np.maximum(rows.cand, 1))
        for q in self._queues:
            q.append(chunk)

    def _degrade(self, rows: Rows) -> Rows:
        """Count the rows entering; skip or shrink by the budget left; return those served."""
        if not len(rows):
            return rows
        st = self.stats
        m = rows.t0 >= st.warmup_s
        st.entered += int(m.sum())
        st.candidates_in += int(rows.cand[m].sum())
        if self._skip_s is None and self._shrink_s is None:
            return rows
        left = self.slo_s[rows.cls] - (rows.t - rows.t0)
        if self._skip_s is not None:
            skip = left < self._skip_s
            if skip.any():
                sk = rows.take(skip)
                sk.qloss = sk.qloss + self.cfg.degrade.skip_quality_loss
                cand_in = sk.cand
                sk.cand = _cut(self.cfg, sk.cand, self._skip_rng)
                if st.trace is not None:
                    st.trace.append(np.column_stack([sk.origin, sk.t, sk.t, cand_in, sk.cand]))
                st.skipped += int((sk.t0 >= st.warmup_s).sum())
                self._skipped = Rows.concat([self._skipped, sk])
                rows, left = rows.take(~skip), left[~skip]
        if self._shrink_s is not None and len(rows):
            shrink = left < self._shrink_s
            if shrink.any():
                rows.cand = rows.cand.copy()
                rows.qloss = rows.qloss.copy()
                rows.cand[shrink] = np.maximum(
                    1, np.ceil(rows.cand[shrink] * self.cfg.degrade.shrink_to)).astype(np.int64)
                rows.qloss[shrink] += self.cfg.degrade.shrink_quality_loss
                st.shrunk += int((shrink & (rows.t0 >= st.warmup_s)).sum())
        return rows


def _cut(cfg: StageCfg, cand: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Candidates of a request that skips the stage: cut to the stage's output count."""
    if cfg.candidates_out is None:
        return cand
    out = sample_sizes(cfg.candidates_out, rng, len(cand))
    return out if cfg.expands else np.minimum(out, cand)


class StageOutput:
    """A stage with one unit: its departures (and skipped rows) before a time, as arrivals at
    the next point (``+ network_ms``)."""

    def __init__(self, cfg: StageCfg, link: UnitLink, stage_in: StageInput, stats: StageStats,
                 e2e: EndToEnd) -> None:
        self.cfg = cfg
        self.link = link
        self.input = stage_in
        self.stats = stats
        self.e2e = e2e
        self.net_s = cfg.network_ms / 1e3
        self._upto = 0.0

    def collect(self, until_s: float) -> Rows:
        """Rows reaching the next point in [the last until_s, until_s)."""
        y = until_s - self.net_s  # departures before y arrive before until_s
        if y <= self._upto:
            return Rows.empty()
        floor = self._upto
        self.link.sim.advance(y)
        self.input.ensure(y)
        ids, t = self.link.take(y, floor)
        for lids, outcome, t_end, _learnt in self.link.take_lost():
            r = self.link.rows.get(lids)
            when = np.broadcast_to(np.asarray(t_end, dtype=float), r.origin.shape)
            lost = Rows(when, r.origin, r.t0, r.cls, r.cand, r.qloss)
            lose(self.stats, self.e2e, lost, f"{self.cfg.name}: {OUTCOME_NAMES[outcome]}")
        entry = self.link.entry(ids)
        dep = Rows(t, entry.origin, entry.t0, entry.cls, self.link.candidates(entry.cand),
                   entry.qloss)
        passed(self.stats, dep, t - entry.t, entry.cand)
        out = Rows.concat([dep, self.input.take_skipped(y)]).sorted()
        self._upto = y
        out.t = out.t + self.net_s
        return out


class ForkOutput:
    """A fork stage: its channels' answers joined per request. A request leaves the join when
    every channel has answered, lost it, or passed its ``timeout_ms`` (the join stops
    waiting: ``t_in + timeout``), at the latest of those times; it brings the sum of the
    candidates of the channels that answered in time (cut to the stage's ``candidates_out``
    when given). A request no channel answered in time is lost (``no candidates``)."""

    def __init__(self, cfg: StageCfg, links: list[UnitLink], timeouts_s: list[float],
                 stage_in: StageInput, stats: StageStats, e2e: EndToEnd,
                 cut_rng: np.random.Generator) -> None:
        self.cfg = cfg
        self.links = links
        self.timeouts_s = np.asarray(timeouts_s, dtype=float)  # inf: waits for it
        self.input = stage_in
        self.stats = stats
        self.e2e = e2e
        self.net_s = cfg.network_ms / 1e3
        self._cut_rng = cut_rng
        self._upto = 0.0
        # join state by unit request id (the channels share ids: they get the same chunks)
        self._t = np.empty(0)  # latest resolution time so far
        self._cand = np.empty(0, dtype=np.int64)
        self._qx = np.empty(0)  # quality lost in the channels that cut the request (shrink)
        self._done = np.empty((len(links), 0), dtype=bool)
        self._emitted = np.empty(0, dtype=bool)
        self._base = 0

    def _grow(self, end: int) -> None:
        n = end - self._base - len(self._t)
        if n > 0:
            self._t = np.concatenate([self._t, np.full(n, -np.inf)])
            self._cand = np.concatenate([self._cand, np.zeros(n, dtype=np.int64)])
            self._qx = np.concatenate([self._qx, np.zeros(n)])
            self._done = np.concatenate([self._done, np.zeros((len(self.links), n), bool)],
                                        axis=1)
            self._emitted = np.concatenate([self._emitted, np.zeros(n, dtype=bool)])

    def collect(self, until_s: float) -> Rows:
        y = until_s - self.net_s
        if y <= self._upto:
            return Rows.empty()
        for link in self.links:
            link.sim.advance(y)
        self.input.ensure(y)
        rows0 = self.links[0].rows
        self._grow(rows0.end)
        for c, link in enumerate(self.links):
            ids, t = link.take(y, self._upto)
            late = ids < self._base  # answered after the join let the request go and forgot it
            if late.any():
                ids, t = ids[~late], t[~late]
            if len(ids):
                loc = ids - self._base
                entry = rows0.get(ids)
                in_time = t <= entry.t + self.timeouts_s[c]
                fresh = ~self._done[c, loc]
                use = in_time & fresh
                mine = link.entry(ids)  # (the channel's own cut, if it shrank them)
                got = link.candidates(mine.cand)
                np.add.at(self._cand, loc[use], got[use])
                np.add.at(self._qx, loc[use], (mine.qloss - entry.qloss)[use])
                res_t = np.minimum(t, entry.t + self.timeouts_s[c])
                np.maximum.at(self._t, loc[fresh], res_t[fresh])
                self._done[c, loc] = True
            for lids_all, _outcome, _t_end, learnt in link.take_lost():
                lids = lids_all[lids_all >= self._base]
                loc = lids - self._base
                entry = rows0.get(lids)
                fresh = ~self._done[c, loc]
                res_t = np.minimum(learnt, entry.t + self.timeouts_s[c])
                np.maximum.at(self._t, loc[fresh], res_t[fresh])
                self._done[c, loc] = True
        # the join stops waiting for a channel at t_in + its timeout; nothing happens after
        # the run's end (the final flush asks past it): what would resolve later stays in
        # flight
        until = min(y, self.input.duration_s)
        n_held = rows0.end - self._base
        if n_held:
            t_in = rows0.get(range(self._base, rows0.end)).t
            for c in range(len(self.links)):
                if math.isfinite(self.timeouts_s[c]):
                    late = ~self._done[c, :n_held] & (t_in + self.timeouts_s[c] < until)
                    if late.any():
                        np.maximum.at(self._t, np.flatnonzero(late),
                                      (t_in + self.timeouts_s[c])[late])
                        self._done[c, :n_held][late] = True
        ready = self._done[:, :n_held].all(axis=0) & ~self._emitted[:n_held] \
            & (self._t[:n_held] < until)
        loc = np.flatnonzero(ready)
        self._emitted[loc] = True
        entry = rows0.get(loc + self._base)
        t_join = np.maximum(self._t[loc], entry.t)
        cand = self._cand[loc]
        if self.cfg.candidates_out is not None and len(cand):
            cap = sample_sizes(self.cfg.candidates_out, self._cut_rng, len(cand))
            cand = np.minimum(cand, cap)
        none = cand <= 0
        if none.any():
            e = entry.take(none)
            lose(self.stats, self.e2e, Rows(t_join[none], e.origin, e.t0, e.cls, e.cand, e.qloss),
                 f"{self.cfg.name}: no candidates")
        ok = ~none
        dep = Rows(t_join[ok], entry.origin[ok], entry.t0[ok], entry.cls[ok], cand[ok],
                   entry.qloss[ok] + self._qx[loc][ok])
        passed(self.stats, dep, t_join[ok] - entry.t[ok], entry.cand[ok])
        out = Rows.concat([dep, self.input.take_skipped(y)]).sorted()
        self._upto = y
        self._release()
        out.t = out.t + self.net_s
        return out

    def _release(self) -> None:
        """Drop the join state of the emitted prefix."""
        n = int(np.argmin(self._emitted)) if not self._emitted.all() else len(self._emitted)
        if n < 4096:
            return
        self._t, self._cand, self._qx = self._t[n:], self._cand[n:], self._qx[n:]
        self._done, self._emitted = self._done[:, n:], self._emitted[n:]
        self._base += n
        for link in self.links:
            link.rows.release_below(self._base)
