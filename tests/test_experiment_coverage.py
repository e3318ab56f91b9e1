"""Empirical coverage of the replication CI: over many independent experiments of an M/M/c
queue, the 95% Student-t interval for the mean wait must cover the Erlang-C value about 95% of
the time (exact binomial test). The fast version runs by default; the slow one is larger."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import stats
from analysis.queueing import mmc_mean_wait
from simulator.executors import PoolExecutor
from simulator.experiment import sweep
from tests.conftest import mmc_dict


def _coverage(c: int, lam: float, duration_s: float, experiments: int, reps: int,
              seed: int) -> tuple[int, np.ndarray, float]:
    """Hits of the Erlang-C mean wait by ``experiments`` CIs of ``reps`` replications each,
    the per-run mean waits (s) and the theoretical value (s)."""
    d = mmc_dict(c=c, lam=lam, duration_s=duration_s, warmup_s=duration_s / 10)
    with PoolExecutor(2) as ex:
        df = sweep(d, {}, experiments * reps, seed=seed, executor=ex)
    waits = df["queue_wait_ms.mean"].to_numpy() / 1000  # independent replications, s
    theory = mmc_mean_wait(c, lam, 1.0)
    cis = [stats.t_ci(waits[e * reps:(e + 1) * reps]) for e in range(experiments)]
    hits = sum(ci.lo <= theory <= ci.hi for ci in cis)
    return hits, waits, theory


def test_ci_coverage_fast() -> None:
    experiments, reps = 50, 5
    hits, waits, theory = _coverage(4, 2.4, 1500.0, experiments, reps, seed=1)
    assert stats.coverage_acceptable(hits, experiments), f"coverage {hits}/{experiments}"
    # the pooled 250 replications pin the mean down tightly: no bias in the estimator
    pooled = stats.t_ci(waits)
    assert pooled.lo <= theory <= pooled.hi
    # the check has power: intervals a third as wide (z = 1 instead of t(4) = 2.78) fail it
    narrow = 0
    for e in range(experiments):
        ci = stats.t_ci(waits[e * reps:(e + 1) * reps])
        h = ci.half_width / stats.t_quantile(reps - 1)
        narrow += ci.mean - h <= theory <= ci.mean + h
    assert not stats.coverage_acceptable(narrow, experiments), f"narrow {narrow}/{experiments}"


@pytest.mark.slow
def test_ci_coverage_slow() -> None:
    experiments, reps = 300, 10
    hits, waits, theory = _coverage(4, 3.0, 3000.0, experiments, reps, seed=7)
    assert stats.coverage_acceptable(hits, experiments), f"coverage {hits}/{experiments}"
    assert 0.91 <= hits / experiments <= 0.99
    pooled = stats.t_ci(waits)
    assert pooled.lo <= theory <= pooled.hi
