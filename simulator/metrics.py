"""Measurement: a streaming quantile sketch and the per-interval time series.

``LatencySketch`` is a log-bucketed histogram (the DDSketch idea): every value in bucket i lies
within a relative error ``alpha`` of the bucket's representative value, so every quantile has
relative error <= alpha whatever the number of values. Memory is fixed (a few thousand counts);
adding values is one vectorised ``bincount``.
"""

from __future__ import annotations

import math

import numpy as np


class LatencySketch:
    """Quantiles of positive values (ms) with relative error <= alpha, in bounded memory."""

    MIN_VALUE = 1e-4  # ms; smaller values are counted in the lowest bucket
    MAX_VALUE = 1e9  # ms; larger values are counted in the highest bucket

    def __init__(self, alpha: float = 0.005) -> None:
        self.alpha = alpha
        self.gamma = (1 + alpha) / (1 - alpha)
        self._log_gamma = math.log(self.gamma)
        self._offset = math.floor(math.log(self.MIN_VALUE) / self._log_gamma)
        nb = math.ceil(math.log(self.MAX_VALUE) / self._log_gamma) - self._offset + 1
        self.counts = np.zeros(nb, dtype=np.int64)
        self.n = 0
        self.total = 0.0
        self.max = 0.0
        self.min = math.inf

    def add(self, values: np.ndarray) -> None:
        """Add an array of values (ms)."""
        v = np.asarray(values, dtype=float)
        if v.size == 0:
            return
        v = np.clip(v, self.MIN_VALUE, self.MAX_VALUE)
        idx = np.ceil(np.log(v) / self._log_gamma).astype(np.int64) - self._offset
        np.clip(idx, 0, len(self.counts) - 1, out=idx)
        self.counts += np.bincount(idx, minlength=len(self.counts))
        self.n += v.size
        self.total += float(v.sum())
        self.max = max(self.max, float(v.max()))
        self.min = min(self.min, float(v.min()))

    def merge(self, other: LatencySketch) -> None:
        """Add another sketch with the same alpha."""
        if other.alpha != self.alpha:
            raise ValueError("cannot merge sketches with different alpha")
        self.counts += other.counts
        self.n += other.n
        self.total += other.total
        self.max = max(self.max, other.max)
        self.min = min(self.min, other.min)

    def quantile(self, q: float) -> float:
        """The q-quantile (0 <= q <= 1), ms; NaN when empty. Exact at q=1 (the max)."""
        if self.n == 0:
            return math.nan
        if q >= 1.0:
            return self.max
        rank = q * (self.n - 1)
        cum = np.cumsum(self.counts)
        i = int(np.searchsorted(cum, rank, side="right"))
        value = 2 * self.gamma ** (i + self._offset) / (self.gamma + 1)
        return min(max(value, self.min), self.max)

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan

    def count_above(self, threshold: float) -> int:
        """Approximate count of values > threshold (bucket resolution)."""
        i = math.ceil(math.log(max(threshold, self.MIN_VALUE)) / self._log_gamma) - self._offset
        return int(self.counts[i + 1:].sum()) if i + 1 < len(self.counts) else 0


class TimeSeries:
    """Per-interval rows for plotting, filled as the run proceeds (fixed memory per row)."""

    COLUMNS = (
        "t_s", "arrivals", "completions", "dropped", "timed_out", "queue_len", "in_system",
        "busy_nodes", "provisioned_nodes", "arrival_rate_qps", "p99_latency_ms",
        "mean_latency_ms",
    )

    def __init__(self, duration_s: float, interval_s: float) -> None:
        self.interval_s = interval_s
        n = max(1, math.ceil(duration_s / interval_s - 1e-9))
        self.n = n
        self.t_s = np.arange(n) * interval_s
        self.arrivals = np.zeros(n, dtype=np.int64)
        self.completions = np.zeros(n, dtype=np.int64)
        self.dropped = np.zeros(n, dtype=np.int64)
        self.timed_out = np.zeros(n, dtype=np.int64)
        self.queue_len = np.zeros(n, dtype=np.float64)
        self.in_system = np.zeros(n, dtype=np.float64)
        self.busy_nodes = np.zeros(n, dtype=np.float64)
        self.provisioned_nodes = np.zeros(n, dtype=np.float64)
        self.p99_latency_ms = np.full(n, np.nan)
        self.mean_latency_ms = np.full(n, np.nan)

    def bin_of(self, t: np.ndarray) -> np.ndarray:
        """Interval index of times ``t`` (s), clipped to the series."""
        return np.clip((np.asarray(t) / self.interval_s).astype(np.int64), 0, self.n - 1)

    def count(self, column: str, t: np.ndarray) -> None:
        """Add one event per time in ``t`` to ``column``."""
        if len(t):
            getattr(self, column)[:] += np.bincount(self.bin_of(t), minlength=self.n)

    def latency_by_arrival(self, arrival_s: np.ndarray, latency_ms: np.ndarray) -> None:
        """Per-interval p99 and mean latency of requests that arrived in each interval.

        Call once per set of whole intervals (chunks are aligned to intervals), with
        ``arrival_s`` in arrival order (sorted), so each interval is one segment.
        """
        if len(arrival_s) == 0:
            return
        b = self.bin_of(arrival_s)
        if len(b) > 1 and bool((b[1:] < b[:-1]).any()):  # not in arrival order: group first
            order = np.argsort(b, kind="stable")
            b, latency_ms = b[order], latency_ms[order]
        starts = np.flatnonzero(np.concatenate([[True], b[1:] != b[:-1]]))
        ends = np.concatenate([starts[1:], [len(b)]])
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            seg = np.sort(latency_ms[s:e])  # sorted: the mean sums in the same order always
            k = b[s]
            self.p99_latency_ms[k] = float(np.percentile(seg, 99))
            self.mean_latency_ms[k] = float(seg.mean())

    def to_frame(self) -> object:
        """A pandas DataFrame with one row per interval."""
        import pandas as pd

        df = pd.DataFrame({c: getattr(self, c) for c in self.COLUMNS if c != "arrival_rate_qps"})
        df.insert(9, "arrival_rate_qps", self.arrivals / self.interval_s)
        return df
