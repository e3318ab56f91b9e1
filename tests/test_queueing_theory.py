"""The simulator against queueing theory: Erlang C, Pollaczek-Khinchine, Little's law, M/M/1."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.queueing import (
    mm1_sojourn_quantile,
    mmc_mean_wait,
    pk_mean_wait,
    t_interval,
)
from simulator import run, scenario_from_dict
from tests.conftest import mmc_dict

REPS = 8


def _mean_waits(d: dict, reps: int = REPS) -> list[float]:
    sc = scenario_from_dict(d)
    return [run(sc, seed=100 + r).summary["queue_wait_ms"]["mean"] / 1000 for r in range(reps)]


@pytest.mark.parametrize(("c", "rho"), [(1, 0.5), (2, 0.8), (8, 0.9), (16, 0.7)])
def test_mmc_mean_wait_matches_erlang_c(c: int, rho: float) -> None:
    lam = rho * c  # mu = 1/s
    d = mmc_dict(c=c, lam=lam, duration_s=6000, warmup_s=500)
    waits = _mean_waits(d)
    _, lo, hi = t_interval(waits)
    theory = mmc_mean_wait(c, lam, 1.0)
    assert lo <= theory <= hi, f"Erlang C {theory:.4f} s outside 95% CI [{lo:.4f}, {hi:.4f}]"
    # and the interval is informative (not so wide that anything passes)
    assert hi - lo < 0.35 * theory + 0.02


@pytest.mark.parametrize(
    ("dist", "cv"), [("deterministic", 0.0), ("lognormal", 2.0), ("gamma", 0.5), ("uniform", 0.5)]
)
def test_mg1_mean_wait_matches_pollaczek_khinchine(dist: str, cv: float) -> None:
    lam, mean_s = 0.7, 1.0
    d = mmc_dict(c=1, lam=lam, duration_s=8000, warmup_s=500,
                 service={"time": {"distribution": dist, "mean_ms": 1000.0, "cv": cv}})
    waits = _mean_waits(d)
    _, lo, hi = t_interval(waits)
    theory = pk_mean_wait(lam, mean_s, (cv * mean_s) ** 2)
    assert lo <= theory <= hi, f"P-K {theory:.4f} s outside 95% CI [{lo:.4f}, {hi:.4f}]"


def test_littles_law_on_time_series() -> None:
    d = mmc_dict(c=4, lam=3.0, duration_s=20000, warmup_s=0,
                 simulation={"timeseries_interval_s": 5.0})
    res = run(scenario_from_dict(d), seed=3)
    ts = res.timeseries
    lam_hat = ts["arrivals"].sum() / res.summary["sim_duration_s"]
    w_hat = res.summary["latency_ms"]["mean"] / 1000
    l_hat = ts["in_system"].mean()  # sampled every 5 s: a time average of the number in system
    assert l_hat == pytest.approx(lam_hat * w_hat, rel=0.05)
    # arrival counts and the rate column agree, and the queue length is never negative
    assert (ts["queue_len"] >= 0).all()
    assert np.allclose(ts["arrival_rate_qps"], ts["arrivals"] / 5.0)


def test_random_routing_is_independent_mm1_queues() -> None:
    c, lam_node = 4, 0.8
    d = mmc_dict(c=c, lam=c * lam_node, duration_s=20000, warmup_s=1000,
                 policy={"dispatch": "per_node", "routing": {"name": "random"}})
    s = run(scenario_from_dict(d), seed=11).summary
    mean_sojourn = 1 / (1.0 - lam_node)  # M/M/1 with mu = 1: 5 s
    assert s["latency_ms"]["mean"] / 1000 == pytest.approx(mean_sojourn, rel=0.08)
    assert s["latency_ms"]["p99"] / 1000 == pytest.approx(
        mm1_sojourn_quantile(lam_node, 1.0, 0.99), rel=0.12)


def test_jsq_and_power_of_two_beat_random_on_p99_at_rho_09() -> None:
    p99 = {}
    for name in ("random", "power_of_two", "join_shortest_queue"):
        d = mmc_dict(c=8, lam=7.2, duration_s=8000, warmup_s=500,
                     policy={"dispatch": "per_node", "routing": {"name": name}})
        p99[name] = run(scenario_from_dict(d), seed=5).summary["latency_ms"]["p99"]
    assert p99["power_of_two"] < 0.6 * p99["random"]
    assert p99["join_shortest_queue"] < p99["power_of_two"] * 1.05
