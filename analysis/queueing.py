"""Closed-form queueing results used to validate the simulator and to seed capacity plans.

Rates in requests per second, times in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from analysis import stats


def erlang_c(c: int, offered_load: float) -> float:
    """Probability that an arrival waits in M/M/c (Erlang C); ``offered_load`` = lambda/mu.

    Computed from Erlang B's stable recursion: B(0)=1, B(k)=a B(k-1) / (k + a B(k-1)).
    """
    a = offered_load
    if c <= 0 or a <= 0:
        raise ValueError("need c >= 1 and offered load > 0")
    if a >= c:
        return 1.0
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    rho = a / c
    return b / (1 - rho + rho * b)


def mmc_mean_wait(c: int, lam: float, mu: float) -> float:
    """Mean time in queue of M/M/c, s (inf when unstable)."""
    a = lam / mu
    if a >= c:
        return math.inf
    return erlang_c(c, a) / (c * mu - lam)


def mmc_wait_exceeds(c: int, lam: float, mu: float, t: float) -> float:
    """P(W_q > t) in M/M/c = C(c, a) exp(-(c mu - lambda) t)."""
    a = lam / mu
    if a >= c:
        return 1.0
    return erlang_c(c, a) * math.exp(-(c * mu - lam) * t)


def erlang_c_staffing(lam: float, mu: float, t: float, target: float) -> int:
    """Smallest c with P(W_q > t) <= target (the classic call-centre staffing rule)."""
    c = max(1, math.floor(lam / mu) + 1)
    while mmc_wait_exceeds(c, lam, mu, t) > target:
        c += 1
    return c


def tandem_mmc_sojourn(lam: float, stations: Sequence[tuple[int, float]]) -> float:
    """Mean end-to-end time of a tandem of M/M/c stations (``stations``: (servers, mu) each,
    in order), s: by Burke's theorem each station's departures are Poisson at ``lam``, so
    (Jackson) the mean sojourn is the sum of the stations' M/M/c sojourns
    W_q(c, lam, mu) + 1/mu."""
    return sum(mmc_mean_wait(c, lam, mu) + 1.0 / mu for c, mu in stations)


def fork_join_mm1_mean(lam: float, mu: float, k: int = 2) -> float:
    """Mean response time of a k-way fork-join of identical M/M/1 servers (each request
    split into k tasks, one per server; it leaves when all k are done), s.

    k = 2 is exact (Flatto and Hahn; Nelson and Tantawi 1988): R_2 = (12 - rho) / 8 x
    1 / (mu - lam). For k > 2, Nelson and Tantawi's approximation (within ~5% for k <= 32):
    R_k = [H_k / H_2 + 4/11 (1 - H_k / H_2) rho] R_2, H_k the k-th harmonic number.
    """
    rho = lam / mu
    if rho >= 1:
        return math.inf
    r2 = (12 - rho) / 8 / (mu - lam)
    if k <= 2:
        return r2 if k == 2 else 1 / (mu - lam)
    hk = sum(1.0 / i for i in range(1, k + 1))
    h2 = 1.5
    return (hk / h2 + 4 / 11 * (1 - hk / h2) * rho) * r2


def pk_mean_wait(lam: float, mean_s: float, var_s: float) -> float:
    """Pollaczek-Khinchine mean wait of M/G/1: lambda E[S^2] / (2 (1 - rho)), s."""
    rho = lam * mean_s
    if rho >= 1:
        return math.inf
    es2 = var_s + mean_s**2
    return lam * es2 / (2 * (1 - rho))


def mm1_sojourn_quantile(lam: float, mu: float, q: float) -> float:
    """q-quantile of M/M/1 time in system (exponential with rate mu - lambda), s."""
    return -math.log(1 - q) / (mu - lam)


def t_interval(values: Sequence[float] | np.ndarray, level: float = 0.95
               ) -> tuple[float, float, float]:
    """(mean, lo, hi) of :func:`analysis.stats.t_ci` over independent replications.

    Same rule as ``t_ci``: non-finite values dropped; (mean, -inf, inf) with fewer than two.
    """
    ci = stats.t_ci(values, level)
    return ci.mean, ci.lo, ci.hi
