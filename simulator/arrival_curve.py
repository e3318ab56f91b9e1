"""ArrivalCurve: the time-varying arrival rate = base x diurnal curve x promotion peaks (QPS).

``rate(t)`` is vectorised over numpy arrays of times in seconds since the run's beginning.
``cell_bounds`` gives per-cell upper bounds used by thinning; ``cumulative`` integrates the rate
for time-change sampling of renewal processes.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from simulator.scenario import DiurnalCfg, PeakCfg


def read_csv_table(path: str | os.PathLike[str], what: str) -> pd.DataFrame:
    """A CSV file as a table; a file that is not a readable CSV (empty, binary, ragged, not
    UTF-8) raises ValueError naming it (``what``: what the file is, for the message)."""
    try:
        return pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError,
            pd.errors.EmptyDataError) as exc:
        raise ValueError(f"{path}: not a readable CSV {what} ({type(exc).__name__}: "
                         f"{str(exc).strip()[:200]})") from None


class DiurnalCurve:
    """A periodic multiplier with mean 1 over one period (when normalized)."""

    def __init__(self, cfg: DiurnalCfg, file_path: str | None = None,
                 start_hour: float = 0.0) -> None:
        self.cfg = cfg
        self.period = cfg.period_s
        self.shift_s = start_hour / 24.0 * cfg.period_s  # clock time = t + shift
        self._x: np.ndarray | None = None
        self._y: np.ndarray | None = None
        if cfg.kind == "hourly":
            step = self.period / 24.0
            levels = np.asarray(cfg.hourly, dtype=float)
            self._x = (np.arange(-1, 25) + 0.5) * step
            self._y = np.concatenate([[levels[-1]], levels, [levels[0]]])
        elif cfg.kind == "file":
            path = file_path or cfg.path or ""
            df = read_csv_table(path, "diurnal curve")
            cols = {}
            for col in (cfg.time_column, cfg.rate_column):
                if col not in df.columns:
                    raise ValueError(f"{path}: column '{col}' not found; columns: "
                                     f"{', '.join(map(str, df.columns))}")
                v = pd.to_numeric(df[col], errors="coerce").to_numpy(float)
                if np.any(~np.isfinite(v)):
                    bad = df[col][~np.isfinite(v)].iloc[0]
                    raise ValueError(f"{path}: column '{col}' holds a value that is not a "
                                     f"finite number (first: "
                                     f"{repr(bad) if isinstance(bad, str) else bad})")
                cols[col] = v
            t, r = cols[cfg.time_column], cols[cfg.rate_column]
            if len(t) < 2 or np.any(np.diff(t) <= 0) or np.any(r < 0):
                raise ValueError(
                    f"{path}: need >= 2 rows, increasing {cfg.time_column}, rates >= 0"
                )
            t = np.mod(t - t[0], self.period)
            order = np.argsort(t, kind="stable")
            t, r = t[order], r[order]
            self._x = np.concatenate([[t[-1] - self.period], t, [t[0] + self.period]])
            self._y = np.concatenate([[r[-1]], r, [r[0]]])
        self._scale = 1.0
        if cfg.kind in ("hourly", "file") and cfg.normalize:
            grid = np.linspace(0, self.period, 4097)[:-1] - self.shift_s
            mean = float(self(grid).mean())
            if mean <= 0:
                raise ValueError("diurnal curve has mean 0")
            self._scale = 1.0 / mean

    def __call__(self, t: np.ndarray) -> np.ndarray:
        """Multiplier at simulated times ``t`` (s)."""
        c = self.cfg
        if c.kind == "none":
            return np.ones_like(t, dtype=float)
        t = np.asarray(t, dtype=float) + self.shift_s
        if c.kind == "sinusoid":
            phase = 2 * math.pi * (t / self.period - c.peak_hour / 24.0)
            return 1.0 + c.amplitude * np.cos(phase)
        assert self._x is not None and self._y is not None
        return self._scale * np.interp(np.mod(t, self.period), self._x, self._y)

    def breakpoints(self, t0: float, t1: float) -> np.ndarray:
        """Times in [t0, t1] where the curve changes monotonicity or slope."""
        c = self.cfg
        if c.kind == "none":
            return np.empty(0)
        return self._clock_breakpoints(t0 + self.shift_s, t1 + self.shift_s) - self.shift_s

    def _clock_breakpoints(self, t0: float, t1: float) -> np.ndarray:
        c = self.cfg
        if c.kind == "sinusoid":
            base = c.peak_hour / 24.0 * self.period
            half = self.period / 2
            k0 = math.floor((t0 - base) / half)
            k1 = math.ceil((t1 - base) / half)
            pts = base + np.arange(k0, k1 + 1) * half
        else:
            assert self._x is not None
            k0 = math.floor(t0 / self.period)
            k1 = math.ceil(t1 / self.period)
            pts = np.concatenate([self._x + k * self.period for k in range(k0, k1 + 1)])
        return pts[(pts > t0) & (pts < t1)]


def peak_shape(p: PeakCfg, t: np.ndarray, start_s: float | None = None) -> np.ndarray:
    """Shape in [0, 1]: linear ramp, hold at 1, then linear or exponential decay to 0.

    ``start_s``: the ramp's start, s since the run's beginning (default ``p.start_s``; a
    calendar peak's resolved ``at``, negative when the peak began before the run).
    """
    a = p.start_s if start_s is None else start_s
    assert a is not None, "a calendar peak needs its resolved start"
    b = a + p.ramp_s
    c = b + p.hold_s
    s = np.zeros_like(t, dtype=float)
    if p.ramp_s > 0:
        m = (t >= a) & (t < b)
        s[m] = (t[m] - a) / p.ramp_s
    s[(t >= b) & (t < c)] = 1.0
    if p.decay_s > 0:
        if p.decay == "linear":
            m = (t >= c) & (t < c + p.decay_s)
            s[m] = 1.0 - (t[m] - c) / p.decay_s
        else:
            m = (t >= c) & (t < c + 8 * p.decay_s)
            s[m] = np.exp(-(t[m] - c) / p.decay_s)
    return s


def peak_breakpoints(p: PeakCfg, start_s: float | None = None) -> list[float]:
    """Times where a peak's shape changes slope (``start_s`` as for :func:`peak_shape`)."""
    a = p.start_s if start_s is None else start_s
    assert a is not None, "a calendar peak needs its resolved start"
    end = p.decay_s * (1 if p.decay == "linear" else 8)
    b = a + p.ramp_s
    return [a, b, b + p.hold_s, b + p.hold_s + end]


class ArrivalCurve:
    """rate(t) = base_qps x diurnal(t), lifted by each peak towards its level (QPS).

    ``peak_starts_s``: each peak's ramp start, s since the run's beginning (default: the
    peaks' ``start_s``; :meth:`simulator.scenario.Scenario.peak_starts_s` resolves ``at``).
    """

    def __init__(
        self, base_qps: float, diurnal: DiurnalCurve, peaks: Sequence[PeakCfg] = (),
        peak_starts_s: Sequence[float] | None = None,
    ) -> None:
        self.base_qps = base_qps
        self.diurnal = diurnal
        self.peaks = list(peaks)
        self.peak_starts_s = ([p.start_s for p in self.peaks] if peak_starts_s is None
                              else [float(x) for x in peak_starts_s])
        if len(self.peak_starts_s) != len(self.peaks):
            raise ValueError("one start per peak")

    def rate(self, t: np.ndarray) -> np.ndarray:
        """Arrival rate at times ``t`` (s), QPS."""
        t = np.asarray(t, dtype=float)
        r = self.base_qps * self.diurnal(t)
        for p, a in zip(self.peaks, self.peak_starts_s, strict=True):
            s = peak_shape(p, t, a)
            if p.relative_to == "curve":
                r = r * (1.0 + (p.multiplier - 1.0) * s)
            else:
                level = p.multiplier * self.base_qps
                r = r + np.maximum(level - r, 0.0) * s
        return r

    def is_constant(self) -> bool:
        return self.diurnal.cfg.kind == "none" and not self.peaks

    def _cell_edges(self, t0: float, t1: float, max_cell_s: float) -> np.ndarray:
        """Cell edges covering [t0, t1): breakpoints included, no cell wider than max_cell_s."""
        pts = [t0, t1, *self.diurnal.breakpoints(t0, t1).tolist()]
        for p, a in zip(self.peaks, self.peak_starts_s, strict=True):
            pts += [x for x in peak_breakpoints(p, a) if t0 < x < t1]
        knots = np.unique(np.asarray(pts))
        edges = [knots[:1]]
        for a, b in itertools.pairwise(knots):
            n = max(1, math.ceil((b - a) / max_cell_s))
            edges.append(np.linspace(a, b, n + 1)[1:])
        return np.concatenate(edges)

    def cell_bounds(
        self, t0: float, t1: float, max_cell_s: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cells (edges) over [t0, t1) and an upper bound of the rate in each cell (QPS).

        Within a cell every factor is monotone (breakpoints are cell edges), so the rate's
        maximum is near an edge; a sub-grid of 9 points and a 2% margin cover the curvature.
        """
        edges = self._cell_edges(t0, t1, max_cell_s)
        a, b = edges[:-1], edges[1:]
        sub = a[:, None] + (b - a)[:, None] * np.linspace(0, 1, 9)[None, :]
        bound = self.rate(sub.ravel()).reshape(sub.shape).max(axis=1) * 1.02
        return edges, bound

    def cumulative(self, t0: float, t1: float, step_s: float = 0.25) -> tuple[np.ndarray,
                                                                             np.ndarray]:
        """Grid over [t0, t1] and the integral of the rate from t0 (expected arrivals)."""
        edges = self._cell_edges(t0, t1, step_s)
        r = self.rate(edges)
        lam = np.concatenate([[0.0], np.cumsum((r[1:] + r[:-1]) * 0.5 * np.diff(edges))])
        return edges, lam
