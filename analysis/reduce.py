"""Reducing many runs to decision numbers: Student-t intervals per group, and Pareto fronts.

Pure numpy/pandas; no plotting. The intervals are :func:`analysis.stats.t_ci` (the one
implementation, with its one edge-case rule: non-finite values dropped, an infinite half-width
with fewer than two values) arranged per group.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis import stats


def t_interval(values: Sequence[float] | np.ndarray, confidence: float = 0.95
               ) -> tuple[float, float, int]:
    """(mean, half-width, n) of :func:`analysis.stats.t_ci` over ``values``.

    Non-finite values are dropped; the half-width is inf with fewer than two values left (no
    spread to estimate; reports show "n/a") and 0 when all values are equal. Units are those of
    ``values``.
    """
    ci = stats.t_ci(values, confidence)
    return ci.mean, ci.half_width, ci.n


def group_intervals(df: pd.DataFrame, by: str | list[str], metrics: Sequence[str],
                    confidence: float = 0.95) -> pd.DataFrame:
    """Per group and metric: mean, half_width, lo, hi and n (:func:`analysis.stats.t_ci`).

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
            ci = stats.t_ci(pd.to_numeric(g[m], errors="coerce").to_numpy(), confidence)
            rows.append({**dict(zip(keys, gvals, strict=True)), "metric": m, "mean": ci.mean,
                         "half_width": ci.half_width, "lo": ci.lo, "hi": ci.hi, "n": ci.n})
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
