"""Measurement: a streaming quantile sketch and the per-interval time series.

``LatencySketch`` is a log-bucketed histogram (the DDSketch idea): bucket i holds the values in
(gamma^(i-1), gamma^i] with gamma = (1 + alpha) / (1 - alpha). A quantile is interpolated
geometrically inside its bucket by the rank's position among the bucket's values, so it always
lies inside the bucket of the exact order statistic: relative error < gamma - 1 (about 2 alpha;
0.5% at the default alpha 0.0025). Interpolation, not the bucket's midpoint, so that the same
percentile from independent replications differs by what the data say, not by whole buckets
(midpoints gave replications identical p50s and confidence intervals of zero width). Memory is
fixed (a few thousand counts); adding values is one vectorised ``bincount``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


class LatencySketch:
    """Quantiles of positive values (ms) with relative error < gamma - 1 (~2 alpha), in
    bounded memory."""

    MIN_VALUE = 1e-4  # ms; smaller values are counted in the lowest bucket
    MAX_VALUE = 1e9  # ms; larger values are counted in the highest bucket

    def __init__(self, alpha: float = 0.0025) -> None:
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
        """The q-quantile (0 <= q <= 1), ms; NaN when empty. Exact at q=1 (the max).

        The rank q (n - 1) falls in bucket i, holding ``c`` values after ``b`` smaller ones;
        the value is the bucket's lower edge x gamma^((rank - b + 0.5) / c): geometric
        interpolation inside the bucket, clipped to the observed min and max.
        """
        if self.n == 0:
            return math.nan
        if q >= 1.0:
            return self.max
        rank = q * (self.n - 1)
        cum = np.cumsum(self.counts)
        i = int(np.searchsorted(cum, rank, side="right"))
        before = float(cum[i - 1]) if i > 0 else 0.0
        inside = (rank - before + 0.5) / float(self.counts[i])
        value = self.gamma ** (i + self._offset - 1 + min(inside, 1.0))
        return min(max(value, self.min), self.max)

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan

    def count_above(self, threshold: float) -> int:
        """Approximate count of values > threshold (bucket resolution)."""
        i = math.ceil(math.log(max(threshold, self.MIN_VALUE)) / self._log_gamma) - self._offset
        return int(self.counts[i + 1:].sum()) if i + 1 < len(self.counts) else 0


class TimeSeries:
    """Per-interval rows for plotting, filled as the run proceeds (fixed memory per row).

    Columns: :attr:`COLUMNS`, then ``violations`` (SLA violations of the requests that arrived
    in the interval) and, for every request class (also when there is only one, so the
    columns do not depend on the number of classes), ``arrivals.<class>`` and
    ``violations.<class>``. README.md ("Time-series columns") documents each column.
    """

    COLUMNS = (
        "t_s", "arrivals", "completions", "dropped", "timed_out", "queue_len", "in_system",
        "busy_nodes", "provisioned_nodes", "arrival_rate_qps", "p99_latency_ms",
        "mean_latency_ms",
    )

    def __init__(self, duration_s: float, interval_s: float,
                 class_names: Sequence[str] = ()) -> None:
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
        # SLA violations by arrival interval: in total and, with arrivals, per request class
        self.violations = np.zeros(n, dtype=np.int64)
        self.class_names = list(class_names)
        self.class_arrivals = np.zeros((len(self.class_names), n), dtype=np.int64)
        self.class_violations = np.zeros((len(self.class_names), n), dtype=np.int64)

    def bin_of(self, t: np.ndarray) -> np.ndarray:
        """Interval index of times ``t`` (s), clipped to the series."""
        return np.clip((np.asarray(t) / self.interval_s).astype(np.int64), 0, self.n - 1)

    def count(self, column: str, t: np.ndarray) -> None:
        """Add one event per time in ``t`` to ``column``."""
        if len(t):
            self.count_bins(column, self.bin_of(t))

    def count_bins(self, column: str, bins: np.ndarray) -> None:
        """Add one event per interval index in ``bins`` (from :meth:`bin_of`) to ``column``."""
        if len(bins):
            lo, c = binned_counts(bins)
            getattr(self, column)[lo:lo + c.shape[1]] += c[0]

    def count_classes(self, b: np.ndarray, cls: np.ndarray, violated: np.ndarray) -> None:
        """Arrivals and SLA violations per class by arrival interval, and the total violations.

        ``b``: arrival intervals of the requests (:meth:`bin_of` of their arrival times, which
        the caller has at hand); ``cls``: class index of each request; ``violated``: boolean
        mask of the requests that violate the SLA. One vectorised count per call (per chunk).
        """
        if len(b) == 0:
            return
        k = len(self.class_names)
        lo, arr = binned_counts(b, cls, k)
        hi = lo + arr.shape[1]
        self.class_arrivals[:, lo:hi] += arr
        if violated.any():
            vlo, viol = binned_counts(b[violated], cls[violated], k)
            vhi = vlo + viol.shape[1]
            self.class_violations[:, vlo:vhi] += viol
            self.violations[vlo:vhi] += viol.sum(axis=0)

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
        extra: dict[str, np.ndarray] = {"violations": self.violations}
        for i, name in enumerate(self.class_names):
            extra[f"arrivals.{name}"] = self.class_arrivals[i]
            extra[f"violations.{name}"] = self.class_violations[i]
        return pd.concat([df, pd.DataFrame(extra)], axis=1)


def binned_counts(bins: np.ndarray, groups: np.ndarray | None = None,
                  n_groups: int = 1) -> tuple[int, np.ndarray]:
    """Counts of (group, bin) pairs over the bins' own range only (not the whole series).

    Returns ``(lo, counts)`` with ``counts[g, j]`` the number of items of group ``g`` in bin
    ``lo + j``; ``bins`` must be non-empty. One ``bincount``, sized by the range the items
    span, so counting a chunk costs O(chunk + its intervals) whatever the series' length.
    """
    lo = int(bins.min())
    width = int(bins.max()) - lo + 1
    idx = bins - lo
    if groups is not None:
        idx = groups.astype(np.int64) * width + idx
    return lo, np.bincount(idx, minlength=n_groups * width).reshape(n_groups, width)


def worst_window(violations: np.ndarray, ended: np.ndarray, first: int, width: int,
                 interval_s: float) -> dict[str, Any]:
    """The sliding window with the highest violation rate.

    ``violations[k]`` and ``ended[k]``: SLA violations and requests counted in the rate's
    denominator among those that arrived in interval k; windows are ``width`` consecutive
    intervals starting at ``first`` or later (sliding by one interval), clipped to the
    intervals available; windows without any counted request are skipped. Returns
    ``{"window_s", "violation_rate", "start_s", "violations", "requests"}`` (rate and start
    NaN when no window has a counted request); ties go to the earliest window.
    """
    v = np.asarray(violations[first:], dtype=np.int64)
    e = np.asarray(ended[first:], dtype=np.int64)
    w = min(max(1, int(width)), len(v))
    out: dict[str, Any] = {"window_s": (w or max(1, int(width))) * interval_s,
                           "violation_rate": math.nan, "start_s": math.nan, "violations": 0,
                           "requests": 0}
    if w == 0:
        return out
    cv = np.concatenate([[0], np.cumsum(v)])
    ce = np.concatenate([[0], np.cumsum(e)])
    wv = cv[w:] - cv[:-w]
    we = ce[w:] - ce[:-w]
    ok = we > 0
    if not ok.any():
        return out
    rate = np.where(ok, wv / np.maximum(we, 1), -1.0)
    j = int(np.argmax(rate))
    out.update(violation_rate=float(wv[j] / we[j]), start_s=(first + j) * interval_s,
               violations=int(wv[j]), requests=int(we[j]))
    return out
