"""The recommendation cascade (issue 17): theory (Jackson tandem, two-way fork-join, Little per
stage and end to end), validation of malformed cascades, and the flow's invariants
(conservation per stage and end to end, causality across stages, candidates that never grow
unless configured) under random cascades (hypothesis)."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.queueing import fork_join_mm1_mean, tandem_mmc_sojourn
from analysis.stats import t_ci as t_interval
from simulator import run, scenario_from_dict
from simulator.cascade.derive import units_of
from simulator.cascade.simulation import CascadeSimulation
from simulator.cascade.summary import build_cascade_summary
from simulator.scenario import ScenarioError


def exp_service(mean_ms: float) -> dict[str, Any]:
    return {"time": {"distribution": "exponential", "mean_ms": mean_ms}}


def cascade(stages: list[dict[str, Any]], pools: list[tuple[str, int]], rate: float,
            duration: float = 300.0, warmup: float = 30.0, slo_ms: float = 500.0,
            seed: int = 1, **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": "casc",
        "simulation": {"duration_s": duration, "warmup_s": warmup, "seed": seed},
        "workload": {"arrival": {"process": "poisson", "rate_qps": rate}},
        "service": exp_service(10.0),
        "cluster": {"pools": [{"name": n, "nodes": c} for n, c in pools]},
        "sla": {"slo_ms": slo_ms},
        "stages": stages,
    }
    d.update(extra)
    return d


def replicate(raw: dict[str, Any], metric: Any, reps: int) -> list[float]:
    sc = scenario_from_dict(raw)
    return [metric(run(sc, seed=100 + r).summary) for r in range(reps)]


# ----------------------------------------------------------------------------- theory
def test_tandem_of_mmc_stations_matches_jackson() -> None:
    """M/M/2 (mu 50/s) then M/M/3 (mu 33.3/s) at 80/s: by Burke and Jackson the mean
    end-to-end time is the sum of the two Erlang-C sojourns (55.6 + 62.4 ms); each stage's
    mean matches its own."""
    lam = 80.0
    raw = cascade([{"name": "one", "pools": ["a"]},
                   {"name": "two", "pools": ["b"], "service": exp_service(30.0)}],
                  [("a", 2), ("b", 3)], lam, duration=600.0, service=exp_service(20.0))
    sc = scenario_from_dict(raw)
    runs = [run(sc, seed=200 + r).summary for r in range(6)]
    e2e = t_interval([s["latency_ms"]["mean"] for s in runs])
    expect = tandem_mmc_sojourn(lam, [(2, 50.0), (3, 1000 / 30.0)]) * 1e3
    assert e2e.lo - 0.01 * expect <= expect <= e2e.hi + 0.01 * expect, (e2e, expect)
    for name, (c, mu) in (("one", (2, 50.0)), ("two", (3, 1000 / 30.0))):
        ci = t_interval([s["stages"][name]["latency_ms"]["mean"] for s in runs])
        exp_stage = tandem_mmc_sojourn(lam, [(c, mu)]) * 1e3
        assert ci.lo - 0.02 * exp_stage <= exp_stage <= ci.hi + 0.02 * exp_stage, (name, ci)
        # the stages' shares of the end-to-end latency add up to one (no network hops)
    shares = [sum(s["stages"][n]["share_of_e2e_latency"] for n in ("one", "two")) for s in runs]
    assert all(abs(x - 1.0) < 0.01 for x in shares)


def test_two_way_fork_join_matches_nelson_tantawi() -> None:
    """A fork stage of two M/M/1 channels (mu 100/s) at 60/s, joined when both answer: the
    mean response is (12 - rho) / 8 / (mu - lambda) = 35.6 ms (exact for two servers), well
    above one M/M/1's 25 ms and below the 37.5 ms of two independent maxima."""
    lam, mu = 60.0, 100.0
    chans = [{"name": "emb", "pools": ["e"], "candidates_out": 200},
             {"name": "i2i", "pools": ["i"], "candidates_out": 100}]
    raw = cascade([{"name": "recall", "channels": chans, "expands": True}],
                  [("e", 1), ("i", 1)], lam, duration=800.0, warmup=50.0,
                  service=exp_service(10.0))
    runs = replicate(raw, lambda s: s["latency_ms"]["mean"], 6)
    ci = t_interval(runs)
    expect = fork_join_mm1_mean(lam, mu, 2) * 1e3
    assert ci.lo - 0.02 * expect <= expect <= ci.hi + 0.02 * expect, (ci, expect)
    assert expect > 1e3 / (mu - lam) + 5  # the join waits for the slower channel


def test_littles_law_per_stage_and_end_to_end() -> None:
    """L = lambda W for each stage (its units' number in system, sampled every 20 ms, against
    its throughput and mean latency) and end to end (their sum against the mean end-to-end
    time)."""
    raw = cascade([{"name": "one", "pools": ["a"]},
                   {"name": "two", "pools": ["b"], "service": exp_service(15.0)}],
                  [("a", 2), ("b", 2)], 90.0, duration=400.0, warmup=40.0,
                  service=exp_service(12.0))
    raw["simulation"]["timeseries_interval_s"] = 0.02
    res = run(scenario_from_dict(raw), seed=5)
    s = res.summary
    ts = res.timeseries
    window = s["measurement_window_s"]
    total_l = 0.0
    for name in ("one", "two"):
        mine = ts[(ts["stage"] == name) & (ts["t_s"] >= s["warmup_s"])]
        big_l = float(mine["in_system"].mean())
        lam = s["stages"][name]["requests"]["passed"] / window
        w = s["stages"][name]["latency_ms"]["mean"] / 1e3
        assert big_l == pytest.approx(lam * w, rel=0.06), name
        total_l += big_l
    lam = s["requests"]["completed"] / window
    assert total_l == pytest.approx(lam * s["latency_ms"]["mean"] / 1e3, rel=0.06)


# ----------------------------------------------------------------------------- validation
BASE = cascade([{"name": "rank", "pools": ["a"]}], [("a", 1)], 10.0, duration=20.0,
               warmup=0.0)


@pytest.mark.parametrize("change, field, words", [
    (lambda d: d.update(stages=[]), "stages", "empty stage list"),
    (lambda d: d["stages"][0].update(pools=["nope"]), "stages.rank.pools", "does not exist"),
    (lambda d: (d["cluster"]["pools"].append({"name": "b", "nodes": 1})), "cluster.pools",
     "serves no stage"),
    (lambda d: (d["cluster"]["pools"].append({"name": "b", "nodes": 1}),
                d["stages"].append({"name": "two", "pools": ["a", "b"]})),
     "stages.two.pools", "already serves stages.rank"),
    (lambda d: d["stages"][0].update(budget_ms=900), "stages.rank.budget_ms",
     "larger than the end-to-end SLO"),
    (lambda d: d["stages"][0].update(candidates_out=50), "stages.rank.candidates_out",
     "grow along the funnel"),
    (lambda d: d["stages"][0].update(degrade={"skip_below_ms": 10}),
     "stages.rank.degrade.skip_below_ms", "first stage cannot be skipped"),
    (lambda d: d["stages"][0].update(pools=[], channels=[
        {"name": "x", "pools": ["a"], "candidates_out": 1}]), "stages", "at least 2 channels"),
    (lambda d: d["stages"][0].update(service={"profile": "gone.json", "variant": "fp32"}),
     "[stages.rank]: field 'service.profile'", "not found"),
    (lambda d: d["stages"][0].update(batching={"name": "dynamic", "max_batch": 0}),
     "field 'stages.rank.batching'", "max_batch"),
    (lambda d: d["stages"][0].update(degrade={"shrink_below_ms": 5, "skip_below_ms": 10}),
     "stages", "shrink_below_ms"),
    # names become unit names ("stage/channel") and paths ("stages.<stage>.<field>")
    (lambda d: d["stages"][0].update(name="recall/embedding"), "name", "may not contain '/'"),
    (lambda d: d["stages"][0].update(name="ra.nk"), "name", "may not contain '.'"),
    (lambda d: d["stages"][0].update(name=""), "name", "may not be empty"),
    # settings that would never act, or make every request miss
    (lambda d: d["stages"][0].update(degrade={"shrink_to": 0.4}), "stages.rank.degrade",
     "shrink_to is given without shrink_below_ms"),
    (lambda d: d["stages"][0].update(network_ms=500), "stages.rank.network_ms",
     "every request of it would miss the SLO"),
    (lambda d: d["stages"][0].update(candidates_out=2.5), "stages.rank.candidates_out",
     "2.5 is not a count"),
])
def test_malformed_cascade_refused_naming_stage_and_field(change: Any, field: str,
                                                          words: str) -> None:
    raw = copy.deepcopy(BASE)
    change(raw)
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict(raw, "c.toml")
    msg = str(err.value)
    assert field in msg and words in msg, msg
    assert "Traceback" not in msg


def test_pool_moved_to_another_stage_is_named_as_such() -> None:
    """Services given per stage (no [service]): a pool moved to another stage's list is
    refused as serving two stages, not as a pool without a service."""
    raw = cascade([{"name": "one", "pools": ["a"], "service": exp_service(1.0)},
                   {"name": "two", "pools": ["a"], "service": exp_service(1.0)}],
                  [("a", 1), ("b", 1)], 10.0, duration=20.0, warmup=0.0)
    raw.pop("service")
    with pytest.raises(ScenarioError, match=r"stages.two.pools.*already serves stages.one"):
        scenario_from_dict(raw, "c.toml")


def test_single_stage_scenario_has_no_cascade_sections() -> None:
    raw = copy.deepcopy(BASE)
    raw.pop("stages")
    s = run(scenario_from_dict(raw)).summary
    assert "stages" not in s and "cascade" not in s


# ----------------------------------------------------------------------------- invariants
def check_flow(sc: Any, seed: int) -> dict[str, Any]:
    """Run ``sc`` traced (warm-up 0: every count is the whole run) and check conservation per
    stage and end to end, causality across stages and candidate counts."""
    sim = CascadeSimulation(sc, units_of(sc), seed, trace=True)
    rec = sim.run()
    s = build_cascade_summary(rec)
    stages = sc.stages
    units = {u.name: r for u, r in rec.units}
    dur = sc.simulation.duration_s
    # end to end: every request completed, was lost, or is in flight (each once)
    r = s["requests"]
    assert r["arrived"] == (r["completed"] + r["dropped"] + r["timed_out"] + r["shed_by_cap"]
                            + r["in_flight"])
    assert r["timed_out"] == sum(v for k, v in r["lost"].items() if k.endswith(": timed_out"))
    traces = []
    for k, (cfg, stt) in enumerate(zip(stages, rec.stages, strict=True)):
        tr = np.concatenate(stt.trace) if stt.trace else np.zeros((0, 5))
        traces.append(tr)
        # per stage: what entered passed, was skipped, lost, or is still in it
        lost = sum(stt.lost.values())
        assert len(tr) == stt.passed + stt.skipped
        assert len(np.unique(tr[:, 0])) == len(tr)  # a request passes a stage once
        if not cfg.channels:
            u = units[cfg.name]
            assert u.total.arrived == stt.entered - stt.skipped
            assert u.total.completed == stt.passed
            assert u.total.dropped + u.total.timed_out + u.total.shed_by_cap == lost
            assert stt.entered == stt.passed + stt.skipped + lost + u.total.in_flight
        # causality: no stage finishes a request before it came
        assert (tr[:, 2] >= tr[:, 1]).all()
        if cfg.channels:  # the join of requests every channel answered: at the latest answer
            # (or that channel's join timeout), from the channels' own records
            order = np.concatenate(stt.inputs)  # unit id -> origin
            fin, done = [], []
            for c in cfg.channels:
                recs = units[f"{cfg.name}/{c.name}"].records.sort_values("id")
                ok = (recs["outcome"] == "completed").to_numpy()
                f = recs["finish_s"].to_numpy()
                t_in = recs["arrival_s"].to_numpy()
                lim = t_in + (math.inf if c.timeout_ms is None else c.timeout_ms / 1e3)
                fin.append(np.minimum(f, lim))
                done.append(ok)  # a lost one resolves when the join learns of it
            n = min(len(x) for x in fin)
            all_done = np.logical_and.reduce([d[:n] for d in done])
            expect = np.max([x[:n] for x in fin], axis=0)
            g = np.flatnonzero(all_done)
            _o, i_tr, i_g = np.intersect1d(tr[:, 0], order[g], return_indices=True)
            bad = np.abs(tr[i_tr, 2] - expect[g[i_g]]) > 1e-9
            assert not bad.any(), (tr[i_tr][bad][:3], expect[g[i_g]][bad][:3])
        # candidates never grow unless the stage expands
        if not cfg.expands:
            assert (tr[:, 4] <= tr[:, 3]).all()
        if k:
            prev = traces[k - 1]
            net = stages[k - 1].network_ms / 1e3
            _common, i_prev, i_cur = np.intersect1d(prev[:, 0], tr[:, 0], return_indices=True)
            # it reaches this stage exactly when the previous one let it out (plus the hop)
            assert np.allclose(tr[i_cur, 1], prev[i_prev, 2] + net, rtol=0, atol=1e-9)
            assert (tr[i_cur, 3] <= prev[i_prev, 4]).all()  # shrinking only lowers them
            # what left the previous stage entered this one, or is in transit at the end
            assert stt.entered == rec.stages[k - 1].passed + rec.stages[k - 1].skipped \
                - rec.stages[k - 1].in_transit
            late = prev[~np.isin(prev[:, 0], tr[:, 0])]
            lost_here = stt.entered - len(tr)
            assert len(late) - lost_here <= rec.stages[k - 1].in_transit
            assert (late[:, 2] + net >= dur - 1e-9).sum() >= rec.stages[k - 1].in_transit
    last = rec.stages[-1]
    assert r["completed"] == last.passed + last.skipped - last.in_transit
    for u, ur in rec.units:  # each unit's own engine invariants
        from simulator.testing.invariants import check_causality, check_conservation

        us = build_cascade_summary(rec)["units"][u.name]
        check_conservation(us, ur.records)
        check_causality(ur.records)
    return s


stage_st = st.fixed_dictionaries({
    "nodes": st.integers(1, 3),
    "mean_ms": st.floats(2.0, 30.0),
    "timeout_ms": st.one_of(st.none(), st.floats(5.0, 200.0)),
    "queue": st.one_of(st.none(), st.integers(1, 50)),
    "out": st.one_of(st.none(), st.integers(1, 400)),
    "net_ms": st.sampled_from([0.0, 0.0, 1.5]),
    "skip": st.one_of(st.none(), st.floats(0.0, 300.0)),
    "shrink": st.one_of(st.none(), st.floats(0.0, 300.0)),
    "batch": st.sampled_from(["none", "dynamic"]),
})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stages=st.lists(stage_st, min_size=1, max_size=3), fork=st.booleans(),
       rate=st.floats(20.0, 400.0), seed=st.integers(0, 2**32))
def test_flow_conserves_and_is_causal(stages: list[dict[str, Any]], fork: bool, rate: float,
                                      seed: int) -> None:
    pools, cfgs = [], []
    size_in = 1000
    for k, g in enumerate(stages):
        cfg: dict[str, Any] = {"name": f"s{k}", "network_ms": g["net_ms"],
                               "service": exp_service(g["mean_ms"])}
        if g["batch"] == "dynamic":
            cfg["batching"] = {"name": "dynamic", "max_batch": 8, "max_wait_ms": 2.0}
        adm: dict[str, Any] = {}
        if g["timeout_ms"] is not None:
            adm["timeout_ms"] = g["timeout_ms"]
        if g["queue"] is not None:
            adm["max_queue_length"] = g["queue"]
        if adm:
            cfg["admission"] = adm
        if k == 0 and fork:
            cfg["channels"] = [
                {"name": "a", "pools": ["p0a"], "candidates_out": 300,
                 "timeout_ms": g["timeout_ms"]},
                {"name": "b", "pools": ["p0b"], "candidates_out": 200}]
            cfg["expands"] = True
            pools += [("p0a", g["nodes"]), ("p0b", 1)]
        else:
            cfg["pools"] = [f"p{k}"]
            pools.append((f"p{k}", g["nodes"]))
            if g["out"] is not None:
                cfg["candidates_out"] = min(g["out"], size_in)
                size_in = cfg["candidates_out"]
        if k:
            deg: dict[str, Any] = {}
            lo, hi = sorted(x for x in (g["skip"], g["shrink"]) if x is not None) \
                if g["skip"] is not None and g["shrink"] is not None else (g["skip"], g["shrink"])
            if lo is not None:
                deg["skip_below_ms"] = lo
            if hi is not None:
                deg["shrink_below_ms"] = hi
            cfg["degrade"] = deg
        cfgs.append(cfg)
    raw = cascade(cfgs, pools, rate, duration=30.0, warmup=0.0, slo_ms=300.0)
    raw["workload"]["classes"] = [{"name": "q", "share": 1.0,
                                   "size": {"distribution": "constant", "mean": 1000,
                                            "max": 1000}}]
    if fork:
        raw["stages"][0]["channels"][0] = {k: v for k, v in raw["stages"][0]["channels"][0]
                                           .items() if v is not None}
    check_flow(scenario_from_dict(raw), seed % 1000)


def test_budget_degradation_skips_and_shrinks_with_quality_counted() -> None:
    """Under a load the ranking stage cannot keep within budget, requests with little of
    their SLO left shrink their candidates or skip re-ranking; each counts its quality loss."""
    stages = [{"name": "recall", "pools": ["r"], "candidates_out": 500, "expands": True},
              {"name": "rank", "pools": ["k"], "service": exp_service(9.0),
               "candidates_out": 50},
              {"name": "rerank", "pools": ["x"], "service": exp_service(4.0),
               "degrade": {"skip_below_ms": 60, "skip_quality_loss": 0.01,
                           "shrink_below_ms": 90, "shrink_quality_loss": 0.002}}]
    raw = cascade(stages, [("r", 2), ("k", 1), ("x", 1)], 105.0, duration=120.0, warmup=10.0,
                  slo_ms=150.0, service=exp_service(3.0))
    s = run(scenario_from_dict(raw), seed=3).summary
    rr = s["stages"]["rerank"]["requests"]
    assert rr["skipped"] > 0 and rr["shrunk"] > 0
    deg = s["degradation"]
    assert deg["skipped"]["rerank"] == rr["skipped"]
    expect = 0.01 * rr["skipped"] + 0.002 * rr["shrunk"]
    # losses of requests still in flight at the end are not counted: at most those
    assert expect - 0.012 * s["requests"]["in_flight"] <= deg["quality_loss_total"] \
        <= expect + 1e-9
    quiet = copy.deepcopy(raw)
    quiet["stages"][2]["degrade"] = {}
    q = run(scenario_from_dict(quiet), seed=3).summary
    assert q["stages"]["rerank"]["requests"]["skipped"] == 0
    assert q["degradation"]["quality_loss_total"] == 0
    # skipping re-ranking saves its latency for the requests that were late anyway
    assert s["latency_ms"]["p99"] < q["latency_ms"]["p99"]


def test_fork_join_timeout_drops_the_slow_channel() -> None:
    """A channel that answers after its join timeout is not waited for: the stage latency is
    at most the timeout (plus nothing), and the late channel's candidates are missing."""
    chans = [{"name": "fast", "pools": ["f"], "candidates_out": 100},
             {"name": "slow", "pools": ["s"], "candidates_out": 400, "timeout_ms": 20,
              "service": exp_service(40.0)}]
    raw = cascade([{"name": "recall", "channels": chans, "expands": True},
                   {"name": "rank", "pools": ["k"], "service": exp_service(1.0)}],
                  [("f", 2), ("s", 2), ("k", 4)], 40.0, duration=120.0, warmup=10.0,
                  service=exp_service(2.0))
    s = run(scenario_from_dict(raw), seed=9).summary
    recall = s["stages"]["recall"]
    assert recall["latency_ms"]["max"] <= 20.0 + 1e-6
    # fast-only requests bring 100 candidates, both channels 500: the mean lies between
    assert 100 < recall["candidates"]["out_mean"] < 500
    assert math.isclose(s["stages"]["rank"]["candidates"]["in_mean"],
                        recall["candidates"]["out_mean"], rel_tol=0.01)


def test_fork_join_in_progress_at_the_end_stays_in_flight() -> None:
    """Requests whose channels are still working when the run ends are in flight, not lost:
    the join's timeouts fire only within the run (its final flush once fired them past the
    end, reporting over-provisioned requests as 'no candidates' drops and violations)."""
    det = {"time": {"distribution": "deterministic", "mean_ms": 500.0}}
    chans = [{"name": c, "pools": [c], "candidates_out": 100, "timeout_ms": 800}
             for c in ("c1", "c2")]
    raw = cascade([{"name": "recall", "channels": chans, "expands": True},
                   {"name": "rank", "pools": ["rank"], "candidates_out": 10}],
                  [("c1", 60), ("c2", 60), ("rank", 60)], 50.0, duration=60.0, warmup=10.0,
                  slo_ms=2000.0, service=det)
    res = run(scenario_from_dict(raw), seed=7, records="all")
    s = res.summary
    assert s["requests"]["dropped"] == 0 and s["sla"]["violations"] == 0, s["requests"]
    # two 500 ms services in a row: whatever arrived in the last second is still in flight
    rec = res.records
    late = int((rec["arrival_s"] >= 60.0 - 1.0).sum())
    assert 0 < s["requests"]["in_flight"] <= late + 2
    assert (rec["finish_s"].dropna() <= 60.0).all()
    assert s["stages"]["recall"]["requests"]["passed"] <= \
        s["stages"]["rank"]["requests"]["entered"] + late


def test_stage_losing_its_requests_is_named_first() -> None:
    """A join whose channels never answer in time loses every request: the verdict names the
    fork stage and the cause, not the busiest stage."""
    chans = [{"name": c, "pools": [c], "candidates_out": 100, "timeout_ms": 0.01}
             for c in ("c1", "c2")]
    raw = cascade([{"name": "recall", "channels": chans, "expands": True},
                   {"name": "rank", "pools": ["k"], "service": exp_service(20.0)}],
                  [("c1", 2), ("c2", 2), ("k", 1)], 20.0, duration=60.0, warmup=5.0,
                  service=exp_service(2.0))
    s = run(scenario_from_dict(raw), seed=3).summary
    # (a 2 ms exponential service is rarely under 10 us: a few answer in time)
    assert s["requests"]["dropped"] >= 0.95 * s["requests"]["arrived"]
    b = s["bottleneck"]
    assert b["stage"] == "recall" and "no candidates" in b["why"], b
    assert "no channel answered within the join's timeouts" in b["why"]


def test_experiments_vary_stage_knobs_and_name_the_stage_to_scale() -> None:
    """compare varies a stage's knobs (--set paths into stages and its pools); per-stage
    metrics are checked against the stage names; every run says which stage to scale."""
    from simulator.experiment import check_metrics, compare

    raw = cascade([{"name": "recall", "pools": ["r"], "candidates_out": 200, "expands": True},
                   {"name": "rank", "pools": ["k"], "service": exp_service(30.0),
                    "budget_ms": 60}],
                  [("r", 2), ("k", 3)], 80.0, duration=60.0, warmup=5.0)
    sc = scenario_from_dict(raw)
    check_metrics(["stages.rank.latency_ms.p99", "stages.recall.utilization", "p99_ms"], sc)
    with pytest.raises(ValueError, match="no stage of that name; stages: recall, rank"):
        check_metrics(["stages.ranking.latency_ms.p99"], sc)
    single = copy.deepcopy(BASE)
    single.pop("stages")
    with pytest.raises(ValueError, match="has no stages"):
        check_metrics(["stages.rank.latency_ms.p99"], scenario_from_dict(single))
    res = compare(sc, {"base": {}, "more_rank": {"cluster.pools.k.nodes": 5,
                                                 "stages.rank.batching": {"name": "none"}}},
                  replications=2, workers=1)
    runs = res.runs
    assert set(runs["bottleneck.stage"]) <= {"recall", "rank"}
    base = runs[runs["variant"] == "base"]
    more = runs[runs["variant"] == "more_rank"]
    assert (base["bottleneck.stage"] == "rank").all()
    # more ranking nodes: the rank stage is faster and less busy, the recall stage unchanged
    assert more["stages.rank.latency_ms.mean"].mean() < base["stages.rank.latency_ms.mean"].mean()
    assert more["stages.rank.utilization"].mean() < base["stages.rank.utilization"].mean()
    assert np.allclose(more["stages.recall.latency_ms.mean"], base["stages.recall.latency_ms.mean"])


def test_plan_refuses_metrics_the_runs_lack_and_budgetless_stage_rates() -> None:
    """A constraint on a stage without budget_ms is refused before any run; a dotted field no
    summary has is refused by name after the first runs (not a KeyError); the worst-window
    constraint works on a cascade (its summary has sla.worst_window)."""
    from simulator.experiment import check_metrics
    from simulator.planner import plan

    raw = cascade([{"name": "recall", "pools": ["r"], "candidates_out": 200, "expands": True},
                   {"name": "rank", "pools": ["k"], "budget_ms": 60}],
                  [("r", 1), ("k", 1)], 40.0, duration=30.0, warmup=5.0,
                  service=exp_service(3.0))
    sc = scenario_from_dict(raw)
    check_metrics(["stages.rank.over_budget_rate"], sc)
    with pytest.raises(ValueError, match="stage recall has no budget_ms"):
        check_metrics(["stages.recall.over_budget_rate"], sc)
    with pytest.raises(ScenarioError, match=r"no field 'latency_ms.p999'.*latency_ms.p99"):
        plan(sc, ["cluster.pools.k.nodes:1..1"], ["latency_ms.p999<=50"], min_replications=2,
             max_replications=2, workers=1)
    res = plan(sc, ["cluster.pools.k.nodes:1..1"], ["worst_window_violation_rate<=1"],
               min_replications=2, max_replications=2, workers=1)
    assert res.best is not None


def test_a_stage_that_gets_nothing_does_not_run_the_stages_before_ahead() -> None:
    """Every request skips the last stage, so its unit never gets an arrival: looking for
    the next one must not run the stages before to the end of the run (holding all their
    rows: memory then grew with the run, not with the requests in flight). The units' clocks
    stay within a few seconds of each other at every step."""
    from simulator.cascade import simulation as csim

    raw = cascade([{"name": "one", "pools": ["a"], "network_ms": 1.0},
                   {"name": "two", "pools": ["b"],
                    "degrade": {"skip_below_ms": 500.0, "skip_quality_loss": 0.01}}],
                  [("a", 2), ("b", 1)], 50.0, duration=600.0, warmup=10.0, slo_ms=500.0,
                  service=exp_service(5.0))
    sc = scenario_from_dict(raw)
    sim = CascadeSimulation(sc, units_of(sc), 3)
    for u in sim.sims:
        u.start()
    y, spread = 0.0, 0.0
    while y < sim.duration_s:
        y = min(y + csim.STEP_S, sim.duration_s)
        sim.e2e.complete(sim.last.collect(y))
        clocks = [u.env.now for u in sim.sims]
        spread = max(spread, max(clocks) - min(clocks))
    assert spread <= 10.0, spread  # (the look-ahead, 1 s, plus windows of <= 2 s a stage)
    assert sim.stats[1].skipped > 0 and sim.stats[1].entered == sim.stats[1].skipped


def test_fork_join_state_released_while_slow_channels_still_answer() -> None:
    """A long fork run with a slow, timed-out channel: the join forgets requests it has let go
    (every 4,096) while that channel still answers or drops them later; the flow stays
    conserved and causal (no late answer lands on another request)."""
    chans = [{"name": "fast", "pools": ["f"], "candidates_out": 100},
             {"name": "slow", "pools": ["s"], "candidates_out": 400, "timeout_ms": 15,
              "service": exp_service(45.0)}]
    raw = cascade([{"name": "recall", "channels": chans, "expands": True,
                    "admission": {"timeout_ms": 200}},
                   {"name": "rank", "pools": ["k"], "service": exp_service(2.0)}],
                  [("f", 2), ("s", 2), ("k", 3)], 40.0, duration=400.0, warmup=0.0,
                  service=exp_service(3.0))
    s = check_flow(scenario_from_dict(raw), 4)
    assert s["requests"]["arrived"] > 3 * 4096
    # the slow channel is cut off at 15 ms; the fast one (no timeout) sets the tail
    assert s["stages"]["recall"]["latency_ms"]["p50"] <= 15.0 + 1e-6
