"""Output analysis for replicated simulation experiments.

Student-t confidence intervals over independent replications, paired differences under common
random numbers, relative precision and the replications it needs, MSER-5 warm-up detection and
the sequential decision "is this CI clear of a threshold?". Pure numpy/scipy: never imports the
engine. Every interval carries the name of its method so outputs can state it.

This module holds PeakSim's one Student-t interval; ``analysis.reduce.t_interval`` /
``group_intervals`` and ``analysis.queueing.t_interval`` are thin views of :func:`t_ci`. The
edge-case rule, the same everywhere:

- non-finite values (NaN, +-inf) are dropped before anything is computed (a pair is dropped
  when either side is non-finite); ``n`` counts the values kept;
- no value left: mean NaN, interval (-inf, inf);
- one value left: that value as the mean, interval (-inf, inf) (no spread to estimate):
  the half-width is inf and reports show it as "n/a";
- equal values: a zero-width interval.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import special

T_METHOD = "Student t over independent replications (n-1 df)"
PAIRED_METHOD = "paired Student t over per-replication differences (common random numbers, n-1 df)"


@dataclass(frozen=True)
class CI:
    """A confidence interval for a mean: ``lo <= mean <= hi`` at ``level`` (units of the data)."""

    mean: float
    lo: float
    hi: float
    n: int
    level: float = 0.95
    method: str = T_METHOD

    @property
    def half_width(self) -> float:
        """Half the interval's width (same units as the data); inf with fewer than 2 values."""
        return (self.hi - self.lo) / 2

    @property
    def rel_precision(self) -> float:
        """Half-width / |mean| (dimensionless); 0 for a zero-width interval, inf for mean 0."""
        if self.half_width == 0:
            return 0.0
        return self.half_width / abs(self.mean) if self.mean != 0 else math.inf

    def excludes(self, value: float = 0.0) -> bool:
        """True when ``value`` lies outside the closed interval."""
        return value < self.lo or value > self.hi

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form, with the half-width."""
        return {**asdict(self), "half_width": self.half_width}


def t_quantile(df: int, level: float = 0.95) -> float:
    """Two-sided Student-t critical value for ``level`` with ``df`` degrees of freedom."""
    return float(special.stdtrit(df, 0.5 + level / 2))


def finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """The finite values of ``values`` as a float array (NaN and +-inf dropped)."""
    x = np.asarray(values, dtype=float).ravel()
    return x[np.isfinite(x)]


def t_ci(values: Sequence[float] | np.ndarray, level: float = 0.95, method: str = T_METHOD) -> CI:
    """Mean and Student-t CI of independent, identically distributed values.

    Non-finite values are dropped; with fewer than two values left the interval is
    (-inf, inf) (see the module docstring for the rule). ``level`` lies in (0, 1).
    """
    if not 0 < level < 1:
        raise ValueError(f"confidence level must lie in (0, 1), not {level!r}")
    x = finite(values)
    n = int(x.size)
    if n == 0:
        return CI(math.nan, -math.inf, math.inf, 0, level, method)
    m = float(x.mean())
    if n < 2:
        return CI(m, -math.inf, math.inf, n, level, method)
    h = t_quantile(n - 1, level) * float(x.std(ddof=1)) / math.sqrt(n)
    return CI(m, m - h, m + h, n, level, method)


def paired_ci(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
              level: float = 0.95) -> CI:
    """CI of mean(a - b) from paired values (replication r of a with replication r of b).

    Pairs where either side is non-finite are dropped. Under common random numbers the pairs are
    positively correlated, so this interval is narrower than the difference of two CIs.
    """
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.shape != xb.shape:
        raise ValueError(f"paired values need equal lengths ({xa.size} vs {xb.size})")
    return t_ci(xa - xb, level, PAIRED_METHOD)


def replications_needed(values: Sequence[float] | np.ndarray, rel_precision: float,
                        level: float = 0.95, max_n: int = 10_000) -> int:
    """Replications for half-width <= rel_precision * |mean| (Law & Kelton's estimate).

    Uses the sample mean and standard deviation of the pilot ``values``; a zero-variance pilot
    needs no more runs; a zero mean with spread can never reach a relative target (``max_n``).
    """
    x = finite(values)
    if x.size < 2:
        return max(2, int(x.size) + 1)
    s, m = float(x.std(ddof=1)), abs(float(x.mean()))
    if s == 0:
        return int(x.size)
    if m == 0:
        return max_n
    n = int(x.size)
    while n < max_n and t_quantile(n - 1, level) * s / math.sqrt(n) > rel_precision * m:
        n += 1
    return n


def mser(y: Sequence[float] | np.ndarray, batch: int = 5) -> int:
    """MSER-``batch`` truncation point (White 1997): observations to delete as warm-up.

    The series is averaged in non-overlapping batches of ``batch``; the deletion d (in batches)
    minimising ``sum((z[d:] - mean(z[d:]))**2) / (k - d)**2`` over the first half of the
    batches is chosen. Returns the number of original observations to delete (a multiple of
    ``batch``). A minimum in the second half means the run is too short to tell; then half the
    series is returned (and callers should warn).
    """
    x = np.asarray(y, dtype=float)
    k = x.size // batch
    if k < 4:
        return 0
    z = x[: k * batch].reshape(k, batch).mean(axis=1)
    # suffix sums give every tail's mean and sum of squares in O(k)
    s1 = np.cumsum(z[::-1])[::-1]
    s2 = np.cumsum((z * z)[::-1])[::-1]
    cnt = np.arange(k, 0, -1, dtype=float)
    sse = s2 - s1 * s1 / cnt
    stat = sse / cnt**2
    half = k // 2
    d = int(np.argmin(stat[: half + 1]))
    return d * batch


def mser5(y: Sequence[float] | np.ndarray) -> int:
    """MSER-5 truncation point of a time series (observations to delete)."""
    return mser(y, 5)


# ----------------------------------------------------------------------------- thresholds
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt,
}


@dataclass(frozen=True)
class Constraint:
    """``metric op threshold``, e.g. ``violation_rate <= 0.01`` (threshold in metric units)."""

    metric: str
    op: str
    threshold: float

    @classmethod
    def parse(cls, text: str) -> Constraint:
        """Parse ``'p99_ms<=100'``; operators ``<= < >= >``."""
        m = re.fullmatch(r"\s*([^<>=\s]+)\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*", text)
        if not m:
            raise ValueError(f"constraint '{text}': expected METRIC<=VALUE (or <, >=, >)")
        return cls(m.group(1), m.group(2), float(m.group(3)))

    def holds(self, value: float) -> bool:
        """Whether a point value satisfies the constraint."""
        return _OPS[self.op](value, self.threshold)

    def decide(self, ci: CI) -> str:
        """``'met'`` when the whole CI satisfies it, ``'violated'`` when none of it does,
        else ``'undecided'`` (the CI straddles the threshold)."""
        if math.isnan(ci.mean):
            return "undecided"
        if self.holds(ci.lo) and self.holds(ci.hi):
            return "met"
        if not self.holds(ci.lo) and not self.holds(ci.hi):
            return "violated"
        return "undecided"

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.threshold:g}"


def sequential_decision(cis: Sequence[CI], constraints: Sequence[Constraint]) -> str:
    """Joint decision over constraints: 'violated' if any is violated, 'met' if all are met,
    else 'undecided' (sample more)."""
    states = [c.decide(ci) for c, ci in zip(constraints, cis, strict=True)]
    if "violated" in states:
        return "violated"
    if all(s == "met" for s in states):
        return "met"
    return "undecided"


def coverage_acceptable(hits: int, trials: int, level: float = 0.95,
                        alpha: float = 0.001) -> bool:
    """Two-sided exact binomial test that CI coverage ``hits/trials`` is consistent with ``level``.

    Returns False (reject) when the p-value is below ``alpha``.
    """
    from scipy.stats import binomtest

    return bool(binomtest(hits, trials, level).pvalue >= alpha)
