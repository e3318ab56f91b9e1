"""Output-analysis statistics: t intervals, paired differences, precision, MSER-5, decisions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis import stats
from analysis.queueing import t_interval


def test_t_ci_matches_reference_and_states_method() -> None:
    x = [1.0, 2.0, 4.0, 3.5, 2.5]
    ci = stats.t_ci(x)
    m, lo, hi = t_interval(x)
    assert (ci.mean, ci.lo, ci.hi) == pytest.approx((m, lo, hi))
    assert ci.n == 5 and "Student t" in ci.method
    assert ci.half_width == pytest.approx((hi - lo) / 2)
    assert ci.rel_precision == pytest.approx(ci.half_width / m)


def test_t_ci_edge_cases() -> None:
    one = stats.t_ci([3.0])
    assert one.mean == 3.0 and one.lo == -math.inf and one.hi == math.inf
    const = stats.t_ci([2.0, 2.0, 2.0])
    assert const.lo == const.hi == 2.0 and const.rel_precision == 0.0
    assert stats.t_ci([1.0, float("nan"), 3.0]).n == 2
    assert math.isnan(stats.t_ci([]).mean)


def test_paired_ci_uses_differences() -> None:
    rng = np.random.default_rng(1)
    common = rng.normal(100, 20, size=30)  # shared noise, as under common random numbers
    a = common + 1.0 + rng.normal(0, 0.1, 30)
    b = common
    paired = stats.paired_ci(a, b)
    assert paired.excludes(0.0) and paired.lo > 0.8 and paired.hi < 1.2
    assert "paired" in paired.method
    # the unpaired intervals overlap heavily: only pairing detects the difference
    ca, cb = stats.t_ci(a), stats.t_ci(b)
    assert ca.lo < cb.hi
    with pytest.raises(ValueError):
        stats.paired_ci([1.0, 2.0], [1.0])


def test_replications_needed_reaches_target() -> None:
    rng = np.random.default_rng(2)
    pilot = rng.normal(10.0, 2.0, size=10)
    n = stats.replications_needed(pilot, 0.05)
    s, m = pilot.std(ddof=1), pilot.mean()
    assert stats.t_quantile(n - 1) * s / math.sqrt(n) <= 0.05 * m
    assert stats.t_quantile(n - 2) * s / math.sqrt(n - 1) > 0.05 * m
    assert stats.replications_needed([5.0, 5.0, 5.0], 0.01) == 3
    assert stats.replications_needed([-1.0, 1.0], 0.01, max_n=50) == 50


def test_mser5_finds_the_transient() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(0, 1, size=1000)
    y[:150] += np.linspace(20, 0, 150)  # a decaying initial transient
    d = stats.mser5(y)
    assert 60 <= d <= 200 and d % 5 == 0
    assert stats.mser5(rng.normal(0, 1, size=1000)) <= 100  # stationary: little deleted
    assert stats.mser5([1.0, 2.0]) == 0


@pytest.mark.parametrize(("text", "metric", "op", "thr"), [
    ("violation_rate<=0.01", "violation_rate", "<=", 0.01),
    (" p99_ms < 100 ", "p99_ms", "<", 100.0),
    ("wait_exceeds:500<=3e-2", "wait_exceeds:500", "<=", 0.03),
    ("utilization>=0.5", "utilization", ">=", 0.5),
])
def test_constraint_parse(text: str, metric: str, op: str, thr: float) -> None:
    c = stats.Constraint.parse(text)
    assert (c.metric, c.op, c.threshold) == (metric, op, thr)


def test_constraint_parse_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="expected METRIC"):
        stats.Constraint.parse("p99_ms=100")


def test_decisions_need_the_whole_ci_on_one_side() -> None:
    c = stats.Constraint.parse("p99_ms<=100")
    assert c.decide(stats.CI(80, 70, 90, 5)) == "met"
    assert c.decide(stats.CI(120, 110, 130, 5)) == "violated"
    assert c.decide(stats.CI(95, 85, 105, 5)) == "undecided"
    g = stats.Constraint.parse("utilization>=0.5")
    assert g.decide(stats.CI(0.6, 0.55, 0.65, 5)) == "met"
    cis = [stats.CI(80, 70, 90, 5), stats.CI(95, 85, 105, 5)]
    assert stats.sequential_decision(cis, [c, c]) == "undecided"
    assert stats.sequential_decision([cis[0], stats.CI(200, 150, 250, 5)], [c, c]) == "violated"
    assert stats.sequential_decision([cis[0], cis[0]], [c, c]) == "met"


def test_coverage_check_has_power() -> None:
    assert stats.coverage_acceptable(57, 60)
    assert stats.coverage_acceptable(55, 60)
    assert not stats.coverage_acceptable(45, 60)  # 75% coverage: rejected
    assert not stats.coverage_acceptable(60 * 100, 60 * 100)  # too good to be true at n=6000


@pytest.mark.parametrize("values", [
    [1.0, 2.0, 4.0, 3.5, 2.5],
    [1.0, 2.0, math.inf, 4.0],  # non-finite values are dropped everywhere
    [1.0, -math.inf, 3.0, math.nan],
    [3.0],  # n = 1: the mean, an infinite interval
    [3.0, math.inf],
    [],
    [2.0, 2.0, 2.0],
])
def test_the_three_t_intervals_are_one(values: list[float]) -> None:
    """analysis.stats.t_ci, analysis.reduce.t_interval / group_intervals and
    analysis.queueing.t_interval give the same numbers under the same edge-case rule."""
    from analysis.queueing import t_interval as q_interval
    from analysis.reduce import group_intervals
    from analysis.reduce import t_interval as r_interval

    ci = stats.t_ci(values)
    finite = [v for v in values if math.isfinite(v)]
    assert ci.n == len(finite)
    if len(finite) < 2:
        assert ci.lo == -math.inf and ci.hi == math.inf and ci.half_width == math.inf
    mean, half, n = r_interval(values)
    qm, qlo, qhi = q_interval(values)
    g = group_intervals(pd.DataFrame({"k": ["a"] * len(values), "x": values}), "k", ["x"])
    same = dict(nan_ok=True)
    assert (mean, n) == pytest.approx((ci.mean, ci.n), **same)
    assert half == pytest.approx(ci.half_width, **same)
    assert (qm, qlo, qhi) == pytest.approx((ci.mean, ci.lo, ci.hi), **same)
    if values:
        row = g.iloc[0]
        assert (row["mean"], row["lo"], row["hi"], row["half_width"], row["n"]) == \
            pytest.approx((ci.mean, ci.lo, ci.hi, ci.half_width, ci.n), **same)


def test_paired_ci_drops_pairs_with_a_non_finite_side() -> None:
    a = [1.0, 2.0, math.inf, 4.0, math.nan]
    b = [0.5, 1.0, 1.0, math.inf, 1.0]
    assert stats.paired_ci(a, b) == stats.t_ci([0.5, 1.0], method=stats.PAIRED_METHOD)
    with pytest.raises(ValueError, match="level"):
        stats.t_ci([1.0, 2.0], level=1.5)
