"""Reducing many runs to decision numbers: Student-t intervals per group, and Pareto fronts.

Pure numpy/pandas/scipy; no plotting. The intervals are the classic replication-method ones:
mean +- t_{1-a/2, n-1} * s / sqrt(n) over independent replications.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats


def t_interval(values: Sequence[float] | np.ndarray, confidence: float = 0.95
               ) -> tuple[float, float, int]:
    """(mean, half-width, n) of the Student-t interval over the finite ``values``.

    The half-width is NaN with fewer than two values (no spread to estimate), and 0 when all
    values are equal. Units are those of ``values``.
    """
    if not 0 < confidence < 1:
        raise ValueError("confidence must lie in (0, 1)")
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan, n
    sd = float(x.std(ddof=1))
    q = float(stats.t.ppf(0.5 + confidence / 2, n - 1))
    return mean, q * sd / math.sqrt(n), n


def group_intervals(df: pd.DataFrame, by: str | list[str], metrics: Sequence[str],
                    confidence: float = 0.95) -> pd.DataFrame:
    """Per group and metric: mean, half_width, lo, hi and n (Student t over the rows).

    Groups keep their order of first appearance. Returns a long table with the ``by`` column(s)
    and ``metric``, ``mean``, ``half_width``, ``lo``, ``hi``, ``n``; missing metrics are skipped.
    """
    keys = [by] if isinstance(by, str) else list(by)
    rows: list[dict[str, object]] = []
    for gkey, g in df.groupby(keys, sort=False, dropna=False):
        gvals = gkey if isinstance(gkey, tuple) else (gkey,)
        for m in metrics:
            if m not in g.columns:
                continue
            mean, half, n = t_interval(pd.to_numeric(g[m], errors="coerce").to_numpy(),
                                       confidence)
            rows.append({**dict(zip(keys, gvals, strict=True)), "metric": m, "mean": mean,
                         "half_width": half, "lo": mean - half, "hi": mean + half, "n": n})
    cols = [*keys, "metric", "mean", "half_width", "lo", "hi", "n"]
    return pd.DataFrame(rows, columns=cols)


def wide_means(long: pd.DataFrame, by: str | list[str]) -> pd.DataFrame:
    """Pivot :func:`group_intervals` output to one row per group and one column per metric."""
    keys = [by] if isinstance(by, str) else list(by)
    order = long[keys].drop_duplicates()
    wide = long.pivot_table(index=keys, columns="metric", values="mean", sort=False)
    wide.columns.name = None
    return order.merge(wide.reset_index(), on=keys, how="left")


def pareto_mask(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> np.ndarray:
    """Which points are non-dominated when minimising both ``x`` and ``y``.

    A point is dominated when another is no worse in both and strictly better in one; equal
    points do not dominate each other. Points with a NaN coordinate are never on the front.
    O(n log n): sort by (x, y), then a point is on the front iff it has the smallest y of its
    x and that y is below every y seen at strictly smaller x.
    """
    xa = np.asarray(x, dtype=float)
    ya = np.asarray(y, dtype=float)
    if xa.shape != ya.shape:
        raise ValueError("x and y must have the same length")
    mask = np.zeros(xa.shape, dtype=bool)
    ok = np.flatnonzero(np.isfinite(xa) & np.isfinite(ya))
    if ok.size == 0:
        return mask
    order = ok[np.lexsort((ya[ok], xa[ok]))]
    best_before = math.inf  # smallest y over strictly smaller x
    i = 0
    while i < order.size:
        j = i
        while j < order.size and xa[order[j]] == xa[order[i]]:
            j += 1
        group = order[i:j]
        gmin = float(ya[group].min())
        if gmin < best_before:
            mask[group[ya[group] == gmin]] = True
        best_before = min(best_before, gmin)
        i = j
    return mask
