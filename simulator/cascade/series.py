"""A cascade's end-to-end time series: per interval, the origin requests that arrived, the ones
completed, the SLA violations and the latency (p99 and mean) of those that arrived in it.

The units' own series describe each stage; this one is what the caller of the funnel sees, for
the whole-run timeline. Latency and violations are binned by arrival at stage 1 (as a
single-stage run bins them), completions by the time the answer reached the caller. Every
request counts, the warm-up's too (the report shades it). p99 per interval comes from a sparse
log-bucket sketch (the buckets of :class:`~simulator.metrics.LatencySketch`: relative error
< 0.5%), so memory grows with the intervals and the buckets used, not with the requests.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from simulator.metrics import LatencySketch


class EndToEndSeries:
    """Per-interval end-to-end counts and latency quantiles (``interval_s`` s over
    ``duration_s`` s; latencies in ms)."""

    COLUMNS = ("arrivals", "completions", "violations", "p99_latency_ms", "mean_latency_ms")

    def __init__(self, duration_s: float, interval_s: float) -> None:
        self.interval_s = float(interval_s)
        self.n = max(1, math.ceil(duration_s / self.interval_s))
        self.arrivals = np.zeros(self.n, dtype=np.int64)
        self.completions = np.zeros(self.n, dtype=np.int64)
        self.violations = np.zeros(self.n, dtype=np.int64)
        self._done = np.zeros(self.n, dtype=np.int64)  # completed, by arrival interval
        self._lat_sum = np.zeros(self.n)  # ms, by arrival interval
        self._buckets: dict[int, dict[int, int]] = {}  # interval -> bucket -> count
        self._proto = LatencySketch()  # the bucket layout (and its quantile rule)

    def interval_of(self, t_s: np.ndarray) -> np.ndarray:
        """The interval index of each time ``t_s`` (s), clipped to the run."""
        return np.clip((np.asarray(t_s) // self.interval_s).astype(np.int64), 0, self.n - 1)

    def arrive(self, t0_s: np.ndarray) -> None:
        """Origin requests entering stage 1 at ``t0_s``."""
        self.arrivals += np.bincount(self.interval_of(t0_s), minlength=self.n)

    def complete(self, t0_s: np.ndarray, done_s: np.ndarray, lat_ms: np.ndarray,
                 late: np.ndarray) -> None:
        """Requests answered at ``done_s`` after ``lat_ms``; ``late``: past their SLO."""
        if not len(t0_s):
            return
        self.completions += np.bincount(self.interval_of(done_s), minlength=self.n)
        b = self.interval_of(t0_s)
        self.violations += np.bincount(b[late], minlength=self.n)
        self._done += np.bincount(b, minlength=self.n)
        self._lat_sum += np.bincount(b, weights=lat_ms, minlength=self.n)
        p = self._proto
        v = np.clip(np.asarray(lat_ms, dtype=float), p.MIN_VALUE, p.MAX_VALUE)
        idx = np.ceil(np.log(v) / p._log_gamma).astype(np.int64) - p._offset
        np.clip(idx, 0, len(p.counts) - 1, out=idx)
        key = b * len(p.counts) + idx
        keys, counts = np.unique(key, return_counts=True)
        for k, c in zip(keys.tolist(), counts.tolist(), strict=True):
            per = self._buckets.setdefault(k // len(p.counts), {})
            j = k % len(p.counts)
            per[j] = per.get(j, 0) + c

    def violate(self, t0_s: np.ndarray) -> None:
        """Violations that are not late answers: lost at a stage, or in flight past the SLO
        at the end (binned by arrival)."""
        self.violations += np.bincount(self.interval_of(t0_s), minlength=self.n)

    def _p99(self, k: int) -> float:
        per = self._buckets.get(k)
        if not per:
            return math.nan
        sk = LatencySketch(self._proto.alpha)
        idx = np.fromiter(per.keys(), dtype=np.int64)
        sk.counts[idx] = np.fromiter(per.values(), dtype=np.int64)
        sk.n = int(sk.counts.sum())
        # min/max clip the interpolation; the buckets' edges stand in for them here
        g = sk.gamma
        sk.min = float(g ** (int(idx.min()) + sk._offset - 1))
        sk.max = float(g ** (int(idx.max()) + sk._offset))
        return sk.quantile(0.99)

    def frame(self) -> pd.DataFrame:
        """One row per interval: ``t_s`` (its start) and :attr:`COLUMNS`."""
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(self._done > 0, self._lat_sum / np.maximum(self._done, 1), np.nan)
        return pd.DataFrame({
            "t_s": np.arange(self.n) * self.interval_s,
            "arrivals": self.arrivals, "completions": self.completions,
            "violations": self.violations,
            "p99_latency_ms": [self._p99(k) for k in range(self.n)],
            "mean_latency_ms": mean,
        })
