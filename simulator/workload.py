"""Workload: arrival times, request classes and sizes, generated in time-ordered chunks.

A chunk covers [t0, t1) of simulated time and holds sorted arrival times (s), class indices and
sizes (items to rank). Chunks are generated on demand, so memory does not grow with the run's
length. Arrival processes:

* ``poisson``: non-homogeneous Poisson by thinning against per-cell rate bounds (vectorised);
* ``gamma``: a renewal process with gamma gaps of the given CV, time-changed by the curve;
* ``mmpp``: a Markov-modulated Poisson process (state multipliers rescaled to mean 1) times the
  curve, by thinning;
* ``trace``: replay of a CSV of timestamps or per-interval counts.

Times are seconds since the run's beginning (``t = 0``; in the calendar form
``simulation.start - warmup_s``): a trace's time 0 is the run's beginning, and peaks given
``at`` a calendar time are placed through :meth:`Scenario.peak_starts_s`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from simulator.arrival_curve import ArrivalCurve, DiurnalCurve, read_csv_table
from simulator.rng import stream
from simulator.scenario import RequestClassCfg, Scenario, SizeCfg, TraceCfg


@dataclass(frozen=True, slots=True)
class Chunk:
    """Requests arriving in [t0, t1): times (s, sorted), class index, size (items)."""

    t0: float
    t1: float
    time: np.ndarray
    cls: np.ndarray
    size: np.ndarray


def sample_sizes(cfg: SizeCfg, rng: np.random.Generator, n: int) -> np.ndarray:
    """Items per request: integers in [min, max] drawn from the size distribution."""
    if cfg.distribution == "constant":
        return np.full(n, min(max(round(cfg.mean), cfg.min), cfg.max), dtype=np.int64)
    if cfg.distribution == "lognormal":
        mu = math.log(cfg.mean) - cfg.sigma**2 / 2
        x = rng.lognormal(mu, cfg.sigma, n)
    elif cfg.distribution == "pareto":
        xm = cfg.mean * (cfg.alpha - 1) / cfg.alpha
        x = xm * (1.0 + rng.pareto(cfg.alpha, n))
    else:  # uniform on [min, 2 mean - min]
        x = rng.uniform(cfg.min, max(2 * cfg.mean - cfg.min, cfg.min), n)
    return np.clip(np.rint(x), cfg.min, cfg.max).astype(np.int64)


def read_trace(cfg: TraceCfg, path: str) -> np.ndarray:
    """The trace's checked values, read-only: arrival times in trace seconds (format
    'timestamps', as in the file: unsorted, not shifted) or counts per bin ('counts').

    Raises ValueError naming the file and column: unreadable CSV, no rows, unknown column,
    values that are not finite numbers (or datetimes), negative counts, no arrivals. Cached
    by the file's identity (path, size, modification time), so checking a scenario and then
    running it reads the file once.
    """
    st = os.stat(path)
    return _read_trace(path, st.st_size, st.st_mtime_ns, cfg.format, cfg.column,
                       cfg.time_unit)


@lru_cache(maxsize=4)
def _read_trace(path: str, _size: int, _mtime_ns: int, fmt: str, column: str | None,
                unit: str) -> np.ndarray:
    df = read_csv_table(path, "trace")
    if len(df) == 0:
        raise ValueError(f"{path}: the trace holds no rows")
    col = column or str(df.columns[0])
    if col not in df.columns:
        raise ValueError(f"{path}: column '{col}' not found; columns: "
                         f"{', '.join(map(str, df.columns))}")
    if fmt == "timestamps":
        v = TraceSource._seconds(df[col], unit, path, col)
    else:
        v = pd.to_numeric(df[col], errors="coerce").to_numpy(float)
        if np.any(~np.isfinite(v)) or np.any(v < 0):
            raise ValueError(f"{path}: column '{col}' must hold counts >= 0 (finite numbers)")
        if v.sum() <= 0:
            raise ValueError(f"{path}: the trace holds no arrivals (every count is 0)")
    v.flags.writeable = False
    return v


class TraceSource:
    """A replayed trace as sorted arrival times in simulated seconds (held in memory)."""

    def __init__(self, cfg: TraceCfg, path: str, rng: np.random.Generator) -> None:
        raw = read_trace(cfg, path)
        if cfg.format == "timestamps":
            t = np.sort(raw - raw.min())
            # the trace spans its last arrival plus one mean gap (so loops keep the rate); a
            # trace of one instant (one row, or simultaneous arrivals) spans 1 s
            gap = float(t[-1]) / (len(t) - 1) if len(t) > 1 else 0.0
            span = float(t[-1]) + (gap if gap > 0 else 1.0)
            if cfg.rate_scale != 1.0:
                t = self._scale_times(t, cfg.rate_scale, rng)
        else:
            if cfg.interval_s is None:
                raise ValueError(f"{path}: a counts trace needs interval_s")
            counts = self._scale_counts(raw, cfg.rate_scale, rng)
            starts = np.repeat(np.arange(len(counts)) * cfg.interval_s, counts)
            t = np.sort(starts + rng.random(len(starts)) * cfg.interval_s)
            span = len(counts) * cfg.interval_s
        self.span_s = span / cfg.time_scale
        self.times = t / cfg.time_scale
        self.loop = cfg.loop
        if len(self.times) == 0 or self.span_s <= 0:
            raise ValueError(f"{path}: the trace holds no arrivals")

    @staticmethod
    def _seconds(s: pd.Series, unit: str, path: str, col: str) -> np.ndarray:
        if unit == "datetime":
            try:
                dt = pd.to_datetime(s, errors="coerce")
            except (ValueError, TypeError, OverflowError) as exc:
                raise ValueError(f"{path}: column '{col}' holds values that are not datetimes "
                                 f"({exc})") from None
            if dt.isna().any():
                raise ValueError(f"{path}: column '{col}' holds values that are not datetimes")
            return (dt - dt.min()).dt.total_seconds().to_numpy(float)
        v = pd.to_numeric(s, errors="coerce").to_numpy(float)
        if np.any(~np.isfinite(v)):
            bad = s[~np.isfinite(v)].iloc[0]
            shown = repr(bad) if isinstance(bad, str) else bad
            raise ValueError(f"{path}: column '{col}' holds a timestamp that is not a finite "
                             f"number (first: {shown})")
        return v / {"s": 1.0, "ms": 1e3, "us": 1e6}[unit]

    @staticmethod
    def _scale_counts(c: np.ndarray, k: float, rng: np.random.Generator) -> np.ndarray:
        x = c * k
        base = np.floor(x)
        return (base + (rng.random(len(x)) < x - base)).astype(np.int64)

    @staticmethod
    def _scale_times(t: np.ndarray, k: float, rng: np.random.Generator) -> np.ndarray:
        """Thin (k < 1) or copy (k > 1) arrivals; copies are jittered within the mean gap."""
        copies = TraceSource._scale_counts(np.ones(len(t)), k, rng)
        out = np.repeat(t, copies)
        gap = (t[-1] - t[0]) / max(len(t) - 1, 1) if len(t) > 1 else 1.0
        first = np.concatenate([[True], np.diff(np.repeat(np.arange(len(t)), copies)) != 0])
        out = out + np.where(first, 0.0, rng.random(len(out)) * gap)
        return np.sort(out)

    def window(self, t0: float, t1: float) -> np.ndarray:
        """Arrival times in [t0, t1), looping the trace when asked."""
        if not self.loop:
            lo, hi = np.searchsorted(self.times, [t0, t1])
            return self.times[lo:hi]
        parts = []
        k0, k1 = math.floor(t0 / self.span_s), math.floor(t1 / self.span_s)
        for k in range(k0, k1 + 1):
            off = k * self.span_s
            lo, hi = np.searchsorted(self.times, [t0 - off, t1 - off])
            parts.append(self.times[lo:hi] + off)
        return np.concatenate(parts)


class Workload:
    """Generates the scenario's requests chunk by chunk, deterministically from the seed."""

    #: target number of expected arrivals per chunk (memory vs. per-chunk overhead)
    CHUNK_ARRIVALS = 65_536

    def __init__(self, sc: Scenario, seed: int | None = None) -> None:
        self.sc = sc
        self.seed = sc.simulation.seed if seed is None else seed
        w = sc.workload
        a = w.arrival
        diurnal_path = str(sc.resolve_path(w.diurnal.path)) if w.diurnal.path else None
        diurnal = DiurnalCurve(w.diurnal, diurnal_path, sc.simulation.start_hour)
        # peaks' starts in run seconds: calendar peaks (`at`) resolved against the window
        self.curve = ArrivalCurve(a.rate_qps or 0.0, diurnal, w.peaks, sc.peak_starts_s())
        self._rng = stream(self.seed, "arrivals")
        self._rng_cls = stream(self.seed, "classes")
        self.classes: list[RequestClassCfg] = list(w.classes)
        # sizes: a stream per class, so a class's sizes do not move when another's share does
        self._rng_size = [stream(self.seed, f"sizes:{c.name}") for c in self.classes]
        shares = np.asarray([c.share for c in self.classes], dtype=float)
        self.class_p = shares / shares.sum()
        self.trace: TraceSource | None = None
        if a.process == "trace" and a.trace is not None:
            self.trace = TraceSource(a.trace, str(sc.resolve_path(a.trace.path)), self._rng)
        if a.process == "mmpp":
            soj = np.asarray([s.mean_sojourn_s for s in a.states])
            mult = np.asarray([s.multiplier for s in a.states])
            pi = soj / soj.sum()  # uniform jumps between states: pi_i proportional to sojourn
            mean = float((pi * mult).sum())
            if mean <= 0:
                raise ValueError("workload.arrival.states: all multipliers are 0")
            self._mmpp_mult = mult / mean
            self._mmpp_soj = soj
            self._mmpp_state = int(self._rng.choice(len(soj), p=pi))
            self._mmpp_next = float(self._rng.exponential(soj[self._mmpp_state]))
        self._gamma_next_u = 0.0  # operational time of the next gamma-renewal arrival
        self._gamma_lam0 = 0.0
        self._gamma_started = False

    # ---------------------------------------------------------------- chunking
    def mean_rate_qps(self) -> float:
        """Mean arrival rate over the simulated horizon (QPS)."""
        d = self.sc.simulation.duration_s
        if self.trace is not None:
            return len(self.trace.window(0.0, d)) / d
        t = np.linspace(0.0, d, 20001)
        return float(self.curve.rate(t).mean())

    def chunk_s(self) -> float:
        """Chunk width (s): about CHUNK_ARRIVALS arrivals, a whole number of intervals."""
        iv = self.sc.simulation.timeseries_interval_s
        rate = max(self.mean_rate_qps(), 1e-9)
        k = max(1, math.floor(self.CHUNK_ARRIVALS / (rate * iv)))
        return k * iv

    def chunks(self) -> Iterator[Chunk]:
        """Successive chunks covering [0, duration_s)."""
        d = self.sc.simulation.duration_s
        w = self.chunk_s()
        t0 = 0.0
        while t0 < d:
            t1 = min(t0 + w, d)
            times = self._times(t0, t1)
            n = len(times)
            if len(self.classes) == 1:
                cls = np.zeros(n, dtype=np.int16)
            else:
                cls = self._rng_cls.choice(len(self.classes), n, p=self.class_p).astype(np.int16)
            size = np.empty(n, dtype=np.int64)
            for i, c in enumerate(self.classes):
                m = cls == i
                size[m] = sample_sizes(c.size, self._rng_size[i], int(m.sum()))
            yield Chunk(t0, t1, times, cls, size)
            t0 = t1

    # ---------------------------------------------------------------- processes
    def _times(self, t0: float, t1: float) -> np.ndarray:
        p = self.sc.workload.arrival.process
        if p == "trace":
            assert self.trace is not None
            return self.trace.window(t0, t1)
        if p == "gamma":
            return self._gamma(t0, t1)
        mult_edges, mult = None, None
        if p == "mmpp":
            mult_edges, mult = self._mmpp_path(t0, t1)
        return self._thinning(t0, t1, mult_edges, mult)

    def _thinning(
        self, t0: float, t1: float, m_edges: np.ndarray | None, m_val: np.ndarray | None
    ) -> np.ndarray:
        rng = self._rng
        if self.curve.is_constant() and m_edges is None:
            n = rng.poisson(self.curve.base_qps * (t1 - t0))
            return np.sort(t0 + rng.random(n) * (t1 - t0))
        edges, bound = self.curve.cell_bounds(t0, t1, max_cell_s=1.0)
        if m_val is not None:
            bound = bound * float(m_val.max())
        widths = np.diff(edges)
        counts = rng.poisson(bound * widths)
        idx = np.repeat(np.arange(len(widths)), counts)
        t = edges[idx] + rng.random(len(idx)) * widths[idx]
        r = self.curve.rate(t)
        if m_val is not None and m_edges is not None:
            r = r * m_val[np.searchsorted(m_edges, t, side="right") - 1]
        ratio = r / bound[idx]
        if len(ratio) and ratio.max() > 1.0 + 1e-9:
            raise RuntimeError("arrival thinning bound violated; the rate curve is too steep")
        keep = rng.random(len(t)) < ratio
        return np.sort(t[keep])

    def _mmpp_path(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
        """Piecewise-constant rate multipliers of the MMPP over [t0, t1)."""
        edges, vals = [t0], [self._mmpp_mult[self._mmpp_state]]
        k = len(self._mmpp_soj)
        while self._mmpp_next < t1:
            jump = int(self._rng.integers(k - 1))
            self._mmpp_state = jump if jump < self._mmpp_state else jump + 1
            edges.append(self._mmpp_next)
            vals.append(self._mmpp_mult[self._mmpp_state])
            self._mmpp_next += float(self._rng.exponential(self._mmpp_soj[self._mmpp_state]))
        return np.asarray(edges), np.asarray(vals)

    def _gamma(self, t0: float, t1: float) -> np.ndarray:
        """Gamma renewal in operational time, mapped through the cumulative rate."""
        cv = self.sc.workload.arrival.cv
        k = min(1.0 / cv**2, 1e8)  # cv -> 0: near-deterministic gaps without overflow
        grid, lam = self.curve.cumulative(t0, t1)
        lam = lam + self._gamma_lam0
        if not self._gamma_started:
            # start in equilibrium: the first gap is a forward-recurrence time
            self._gamma_next_u = float(self._rng.gamma(k + 1, 1.0 / k) * self._rng.random())
            self._gamma_started = True
        out = []
        u = self._gamma_next_u
        end = lam[-1]
        while u < end:
            n = max(16, int((end - u) * 1.2) + 16)
            gaps = self._rng.gamma(k, 1.0 / k, n)
            us = u + np.concatenate([[0.0], np.cumsum(gaps[:-1])])
            inside = us[us < end]
            out.append(inside)
            u = float(us[-1] + gaps[-1]) if len(inside) == n else float(
                us[len(inside)])
        self._gamma_next_u = u
        self._gamma_lam0 = float(end)
        if not out:
            return np.empty(0)
        ops = np.concatenate(out)
        return np.interp(ops, lam, grid)
