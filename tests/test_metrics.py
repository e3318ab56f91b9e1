"""The streaming latency sketch against exact percentiles."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.metrics import LatencySketch


@pytest.mark.parametrize("dist", ["lognormal", "exponential", "pareto"])
def test_sketch_quantiles_within_relative_error(dist: str) -> None:
    rng = np.random.default_rng(0)
    x = {"lognormal": rng.lognormal(2, 1.5, 200_000), "exponential": rng.exponential(30, 200_000),
         "pareto": 1 + rng.pareto(1.2, 200_000)}[dist]
    sk = LatencySketch(alpha=0.005)
    for part in np.array_split(x, 7):
        sk.add(part)
    for q in (0.5, 0.9, 0.95, 0.99, 0.999):
        exact = np.quantile(x, q, method="lower")
        assert sk.quantile(q) == pytest.approx(exact, rel=0.011), q
    assert sk.quantile(1.0) == x.max()
    assert sk.mean == pytest.approx(x.mean())
    assert sk.n == len(x)


@given(st.lists(st.floats(0.01, 1e6), min_size=1, max_size=300), st.floats(0.0, 1.0))
def test_sketch_quantile_is_near_some_sample_value(values: list[float], q: float) -> None:
    sk = LatencySketch(alpha=0.01)
    sk.add(np.asarray(values))
    v = sk.quantile(q)
    x = np.sort(values)
    rank = q * (len(x) - 1)
    lo, hi = x[int(np.floor(rank))], x[int(np.ceil(rank))]
    err = sk.gamma - 1  # the documented bound: inside the order statistic's bucket
    assert lo / (1 + err) * (1 - 1e-9) <= v <= hi * (1 + err) * (1 + 1e-9)


def test_default_sketch_error_and_replications_differ() -> None:
    """Independent samples give different percentiles (no bucket-midpoint ties: those made
    replication CIs of zero width), each within the default bound of the exact value."""
    sk0 = LatencySketch()
    assert sk0.gamma - 1 < 0.0051
    seen = []
    for seed in range(3):
        x = np.random.default_rng(seed).lognormal(1.8, 0.3, 20_000)
        sk = LatencySketch()
        sk.add(x)
        for q in (0.5, 0.99):
            exact = np.quantile(x, q, method="lower")
            assert abs(sk.quantile(q) / exact - 1) < sk.gamma - 1
        seen.append((sk.quantile(0.5), sk.quantile(0.99)))
    assert len({p50 for p50, _ in seen}) == 3 and len({p99 for _, p99 in seen}) == 3


def test_merge_equals_single_sketch() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.exponential(5, 1000), rng.exponential(50, 1000)
    s1, s2, s3 = LatencySketch(), LatencySketch(), LatencySketch()
    s1.add(a)
    s2.add(b)
    s1.merge(s2)
    s3.add(np.concatenate([a, b]))
    assert s1.quantile(0.99) == s3.quantile(0.99)
    assert np.array_equal(s1.counts, s3.counts)
