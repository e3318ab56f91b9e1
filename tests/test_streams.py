"""Random streams by purpose: the draws of one purpose never depend on how many draws another
made, so variants compared with common random numbers see the same arrivals, sizes,
preemptions and failures (see simulator/rng.py for the list of streams)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from simulator import run

ALIVE = {"provisioning", "loading", "ready"}


def _scenario(**policy: Any) -> dict[str, Any]:
    """An elastic spot pool with frequent preemptions and failures beside an on-demand pool."""
    return {
        "name": "streams",
        "simulation": {"duration_s": 1800.0, "seed": 3, "records": "all",
                       "timeseries_interval_s": 10.0},
        "workload": {
            "arrival": {"process": "poisson", "rate_qps": 60.0},
            "peaks": [{"start_s": 600.0, "ramp_s": 60, "hold_s": 300, "decay_s": 200,
                       "multiplier": 3.0}],
            "classes": [
                {"name": "a", "share": 0.7,
                 "size": {"distribution": "lognormal", "mean": 20, "sigma": 0.8, "max": 200}},
                {"name": "b", "share": 0.3,
                 "size": {"distribution": "pareto", "mean": 10, "alpha": 1.5, "max": 100}},
            ]},
        "service": {"time": {"distribution": "lognormal", "mean_ms": 30.0, "cv": 0.6}},
        "cluster": {"pools": [
            {"name": "spot", "nodes": 3, "min_nodes": 3, "max_nodes": 8, "purchase": "spot",
             "price_per_hour_usd": 0.3,
             "spot": {"preemptions_per_hour": 6.0, "notice_s": 30.0},
             "failures": {"mtbf_h": 0.2, "repair": {"mean_s": 60.0}},
             "provisioning": {"mean_s": 40.0}},
            {"name": "od", "nodes": 2, "min_nodes": 2, "max_nodes": 6,
             "price_per_hour_usd": 1.0},
        ]},
        "policy": {"dispatch": "central", "batching": {"name": "none"}, **policy},
        "sla": {"slo_ms": 200.0},
    }


HPA = {"autoscaling": {"name": "hpa", "target": 0.3, "sync_period_s": 15.0}}
STATIC = {"autoscaling": {"name": "static", "sync_period_s": 60.0}}


def _alive(events: pd.DataFrame, pool: str, node: str, t: float, states: set[str]) -> bool:
    """Whether ``node`` of ``pool`` was in one of ``states`` just before time ``t``."""
    ev = events[(events["pool"] == pool) & (events["detail"] == node)
                & events["kind"].isin({"provisioning", "loading", "ready", "draining", "failed",
                                       "terminated"})]
    before = ev[ev["t_s"] < t]
    return bool(len(before)) and before["kind"].iloc[-1] in states


def _common_hits(a: pd.DataFrame, b: pd.DataFrame, kind: str, states: set[str]) -> int:
    """Every ``kind`` event of variant a that hits a node which, in variant b, was in
    ``states`` just before (so could be hit there) happens in b too. Returns how many."""
    hb = set(zip(b.loc[b["kind"] == kind, "t_s"], b.loc[b["kind"] == kind, "detail"],
                 strict=True))
    n = 0
    for t, pool, node in a.loc[a["kind"] == kind, ["t_s", "pool", "detail"]].itertuples(
            index=False):
        if _alive(b, pool, node, t, states):
            assert (t, node) in hb, f"{kind} of {pool} {node} at {t:.3f} s missing in variant b"
            n += 1
    return n


def test_variants_that_scale_differently_see_the_same_arrivals_preemptions_failures() -> None:
    a = run(_scenario(**STATIC))
    b = run(_scenario(**HPA))
    ra, rb = a.records.sort_values("id"), b.records.sort_values("id")
    for col in ("arrival_s", "class", "items"):
        assert ra[col].tolist() == rb[col].tolist(), f"{col} differs between the variants"
    ea, eb = a.extras["events"], b.extras["events"]
    assert (eb["kind"] == "scale_up").any(), "the HPA variant must scale (else the test is moot)"
    hits = 0
    for x, y in ((ea, eb), (eb, ea)):
        hits += _common_hits(x, y, "preemption_notice", ALIVE)
        hits += _common_hits(x, y, "failure", {"ready"})
    assert hits >= 10, f"too few shared preemptions and failures ({hits}) to test anything"


def test_pool_preference_does_not_move_preemptions_or_failures() -> None:
    a = run(_scenario(**HPA, pool_preference="cheapest"))
    b = run(_scenario(**HPA, pool_preference="weighted"))
    ea, eb = a.extras["events"], b.extras["events"]
    hits = 0
    for x, y in ((ea, eb), (eb, ea)):
        hits += _common_hits(x, y, "preemption_notice", ALIVE)
        hits += _common_hits(x, y, "failure", {"ready"})
    assert hits >= 10


def test_a_class_keeps_its_sizes_when_another_class_changes_share() -> None:
    """The k-th request of class b has the same size whatever class a's share."""
    sc1, sc2 = _scenario(), _scenario()
    sc2["workload"]["classes"][0]["share"] = 0.4
    for sc in (sc1, sc2):
        sc["simulation"]["duration_s"] = 300.0
        sc["cluster"]["pools"] = [{"name": "p", "nodes": 8}]
    r1, r2 = run(sc1).records, run(sc2).records
    s1 = r1[r1["class"] == "b"].sort_values("id")["items"].to_numpy()
    s2 = r2[r2["class"] == "b"].sort_values("id")["items"].to_numpy()
    n = min(len(s1), len(s2))
    assert n > 1000
    np.testing.assert_array_equal(s1[:n], s2[:n])
