"""The planner: cheapest feasible point when cost is not monotone, lower-bound pruning,
exhaustive reference, several knobs, metric names checked before any run, provenance."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import tomli_w
from click.testing import CliRunner

from simulator.cli import main
from simulator.executors import SerialExecutor
from simulator.experiment import compare, sweep
from simulator.planner import objective_lower_bound, plan
from simulator.scenario import scenario_from_dict
from tests.conftest import mmc_dict

KNOB = "cluster.pools.gpu.nodes"


def penalised(**extra: Any) -> dict[str, Any]:
    """M/D/c (lambda 7.2/s, 1 s service) whose SLA penalty makes more nodes cheaper than the
    fewest that meet the constraint: a node costs 2.5 USD over the 900 s window, a violation
    (sojourn > 1.2 s: a wait over 0.2 s) 0.01 USD; waits vanish as nodes are added."""
    d = {"duration_s": 1000, "warmup_s": 100,
         "sla": {"slo_ms": 1200, "penalty_usd_per_violation": 0.01},
         "service": {"time": {"distribution": "deterministic", "mean_ms": 1000}},
         "cluster": {"pools": [{"name": "gpu", "nodes": 8, "price_per_hour_usd": 10.0}]}}
    return mmc_dict(**{**d, **extra})


def _plan(method: str, **kw: Any) -> Any:
    return plan(penalised(), [f"{KNOB}:8..16"], ["violation_rate<=0.3"], objective="cost",
                seed=3, method=method, executor=SerialExecutor(), max_replications=12, **kw)


@pytest.fixture(scope="module")
def both() -> tuple[Any, Any]:
    return _plan("search"), _plan("exhaustive")


def test_cheapest_point_is_not_the_smallest_feasible(both: tuple[Any, Any]) -> None:
    """Bisection alone answers the smallest feasible count; with penalties it is not the
    cheapest. The search answers what exhaustive enumeration answers, with fewer runs."""
    search, exhaustive = both
    smallest = min(p[KNOB] for p in exhaustive.points if p["feasible"])
    assert search.best == exhaustive.best
    assert search.best[KNOB] > smallest
    by_n = {p[KNOB]: p for p in exhaustive.points}
    assert by_n[search.best[KNOB]]["mean"]["cost"] < by_n[smallest]["mean"]["cost"]
    assert search.simulations < exhaustive.simulations
    assert search.simulations == len(search.runs) and search.to_dict()["simulations"] > 0
    # over 8..12 bisection visits 12, 10, 9, 8 and never the cheapest (the old planner
    # answered 12); the search walks up from the smallest feasible count and finds it
    narrow = plan(penalised(), [f"{KNOB}:8..12"], ["violation_rate<=0.3"], objective="cost",
                  seed=3, executor=SerialExecutor(), max_replications=12)
    assert narrow.best == exhaustive.best


def test_skipped_candidates_are_proven_costlier(both: tuple[Any, Any]) -> None:
    search, exhaustive = both
    by_n = {p[KNOB]: p for p in exhaustive.points}
    bound_skips = [s for s in search.skipped if "lower bound" in s["reason"]]
    assert bound_skips, search.skipped
    best = by_n[search.best[KNOB]]
    for s in bound_skips:  # every skipped candidate really costs more than the answer
        for n in _values(s[KNOB]):
            assert by_n[n]["mean"]["cost"] > best["mean"]["cost"]
    evaluated = {p[KNOB] for p in search.points}
    skipped = [n for s in search.skipped for n in _values(s[KNOB])]
    assert evaluated.isdisjoint(skipped) and len(skipped) == len(set(skipped))
    assert evaluated | set(skipped) == set(range(8, 17))  # every candidate accounted for


def _values(v: int | str) -> list[int]:
    """A skipped entry's values: one int, or a run ``"a..b"``."""
    if isinstance(v, int):
        return [v]
    a, b = (int(x) for x in v.split(".."))
    return list(range(a, b + 1))


def test_lower_bound_is_below_every_measured_cost() -> None:
    """The bound counts only what every run must pay: floors x price x window, human cost."""
    cases = [
        penalised(),
        penalised(cluster={"pools": [{"name": "gpu", "nodes": 9, "min_nodes": 3,
                                      "max_nodes": 12, "price_per_hour_usd": 2.0}]},
                  policy={"autoscaling": {"name": "hpa", "target": 0.5}}),
        penalised(cost={"engineers": 2, "engineer_monthly_usd": 10000, "effort_hours": 1}),
        penalised(cluster={"pools": [{"name": "gpu", "nodes": 9, "failures": {"mtbf_h": 0.05}}]}),
    ]
    from simulator.api import run

    for d in cases:
        sc = scenario_from_dict(d)
        s = run(sc, seed=5).summary
        for obj, measured in (("cost", s["cost_usd"]["total"]),
                              ("cost_usd.compute", s["cost_usd"]["compute"]),
                              ("node_hours", s["nodes"]["node_seconds"] / 3600)):
            lb = objective_lower_bound(sc, obj)
            assert lb is not None and lb <= measured + 1e-9, (obj, lb, measured)
    static = scenario_from_dict(penalised())
    window_h = 900 / 3600
    assert objective_lower_bound(static, "node_hours") == pytest.approx(8 * window_h)
    failing = scenario_from_dict(cases[-1])
    assert objective_lower_bound(failing, "cost") == 0.0
    assert objective_lower_bound(static, "p99_ms") is None


@pytest.mark.filterwarnings("ignore::simulator.experiment.ExperimentWarning")  # overloaded
def test_two_capacity_knobs() -> None:
    """Two pools: the second pool's count is enumerated around the bisected first pool
    (monotone in both); the answer equals exhaustive enumeration."""
    d = penalised(cluster={"pools": [{"name": "gpu", "nodes": 6, "price_per_hour_usd": 10.0},
                                     {"name": "cpu", "nodes": 1, "price_per_hour_usd": 16.0}]})
    kw: dict[str, Any] = {"objective": "cost", "seed": 4, "executor": SerialExecutor(),
                          "max_replications": 8}
    vary = [f"{KNOB}:4..14", "cluster.pools.cpu.nodes:1..3"]
    a = plan(d, vary, ["violation_rate<=0.3"], method="search", **kw)
    b = plan(d, vary, ["violation_rate<=0.3"], method="exhaustive", **kw)
    assert a.best == b.best and a.simulations < b.simulations
    assert len(a.points) + sum(len(_values(s[KNOB])) for s in a.skipped) == len(b.points)
    assert len(b.points) == 33


def test_unknown_metric_is_refused_before_any_run() -> None:
    ex = SerialExecutor()
    for bad in ("violation<=0.1", "p99<=3", "classes.nope.sla.violation_rate<=0.1"):
        with pytest.raises(ValueError, match="metric"):
            plan(penalised(), [f"{KNOB}:8..9"], [bad], executor=ex)
    with pytest.raises(ValueError, match="metric"):
        plan(penalised(), [f"{KNOB}:8..9"], ["violation_rate<=0.5"], objective="costs",
             executor=ex)


def test_per_class_constraint(tmp_path: Path) -> None:
    d = penalised(workload={"classes": [
        {"name": "ads", "share": 0.3, "slo_ms": 1100},
        {"name": "feed", "share": 0.7, "slo_ms": 5000}]})
    res = plan(d, [f"{KNOB}:8..12"], ["classes.ads.sla.violation_rate<=0.45"], seed=2,
               executor=SerialExecutor(), max_replications=8, out_dir=tmp_path)
    pts = {p[KNOB]: p for p in res.points}
    assert "classes.ads.sla.violation_rate" in res.runs.columns
    for p in pts.values():
        assert "classes.ads.sla.violation_rate" in p["mean"]
    assert res.best is not None


def _toml(tmp_path: Path, d: dict[str, Any]) -> Path:
    p = tmp_path / "s.toml"
    p.write_text(tomli_w.dumps(d))
    return p


def test_compare_records_overrides_scenarios_and_series(tmp_path: Path) -> None:
    """Global --set and per-variant overrides are recorded, each variant's scenario as run,
    input files with hashes, seeds, and every run's time series."""
    src = _toml(tmp_path, penalised())
    out = tmp_path / "c"
    res = compare(src, ["eight:", f"ten:{KNOB}=10"], replications=2, seed=5,
                  overrides=["simulation.duration_s=600", "sla.slo_ms=1500"],
                  executor=SerialExecutor(), out_dir=out)
    js = json.loads((out / "compare.json").read_text())
    prov = js["provenance"]
    assert prov["overrides"] == ["simulation.duration_s=600", "sla.slo_ms=1500"]
    assert prov["variant_overrides"] == {"eight": [], "ten": [f"{KNOB}=10"]}
    assert prov["scenario"]["sha256"] and len(prov["replication_seeds"]) == 2
    as_run = js["scenarios_as_run"]
    assert as_run["ten"]["simulation"]["duration_s"] == 600
    assert as_run["ten"]["cluster"]["pools"][0]["nodes"] == 10
    assert as_run["eight"]["cluster"]["pools"][0]["nodes"] == 8
    assert as_run["eight"]["sla"]["slo_ms"] == 1500
    ts = pd.read_parquet(out / "timeseries.parquet")
    assert list(ts.columns[:3]) == ["variant", "replication", "t_s"]
    assert {"ready_nodes", "busy_nodes", "p99_latency_ms"} <= set(ts.columns)
    assert set(ts["variant"]) == {"eight", "ten"}
    assert (ts.loc[ts["variant"] == "ten", "ready_nodes"] == 10).all()
    assert len(res.timeseries) == len(ts)


def test_the_recorded_command_reproduces_the_comparison(tmp_path: Path, monkeypatch:
                                                         pytest.MonkeyPatch) -> None:
    src = _toml(tmp_path, penalised())
    monkeypatch.chdir(tmp_path)
    cli = CliRunner()
    r = cli.invoke(main, ["compare", "s.toml", "--variant", "eight:", "--variant",
                          f"ten:{KNOB}=10,policy.batching={{name='none'}}", "--replications",
                          "2", "--set", "simulation.duration_s=500", "--workers", "1",
                          "--out", "c1"])
    assert r.exit_code == 0, r.output
    cmd = json.loads((tmp_path / "c1" / "compare.json").read_text())["command"]
    argv = shlex.split(cmd)
    assert argv[:3] == ["peaksim", "compare", "s.toml"]
    r2 = cli.invoke(main, [*argv[1:], "--workers", "1", "--out", "c2"])
    assert r2.exit_code == 0, r2.output
    a = pd.read_parquet(tmp_path / "c1" / "runs.parquet").drop(columns=["wall_s"])
    b = pd.read_parquet(tmp_path / "c2" / "runs.parquet").drop(columns=["wall_s"])
    pd.testing.assert_frame_equal(a, b)
    assert src.is_file()


def test_plan_and_sweep_record_provenance(tmp_path: Path) -> None:
    src = _toml(tmp_path, penalised())
    res = plan(src, [f"{KNOB}:8..9"], ["violation_rate<=0.9"], seed=1,
               overrides=["simulation.duration_s=400"], executor=SerialExecutor(),
               out_dir=tmp_path / "p")
    js = json.loads((tmp_path / "p" / "plan.json").read_text())
    assert js["provenance"]["overrides"] == ["simulation.duration_s=400"]
    assert js["scenario_as_run"]["simulation"]["duration_s"] == 400
    assert "--set simulation.duration_s=400" in js["command"] and js["skipped"] is not None
    assert js["simulations"] == res.simulations
    sweep(src, {KNOB: "8,9"}, 1, out_dir=tmp_path / "s", overrides=["sla.slo_ms=900"],
          executor=SerialExecutor())
    sj = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert sj["provenance"]["overrides"] == ["sla.slo_ms=900"]
    assert sj["grid"] == {KNOB: [8, 9]} and "--grid" in sj["command"]


def test_duplicate_variant_names_are_refused() -> None:
    from simulator.scenario import ScenarioError

    with pytest.raises(ScenarioError, match="more than once"):
        compare(penalised(), ["a:", f"a:{KNOB}=9"], replications=2, executor=SerialExecutor())


def test_galloping_search_agrees_with_bisection() -> None:
    """The exponential search finds what bisection finds, asks only inside the range, and
    needs fewer questions when the answer is near the low end of a generous range."""
    from simulator.planner import smallest_feasible

    for lo, hi in ((1, 64), (3, 17), (5, 5)):
        for ans in range(0, hi + 3):
            asked: dict[str, list[int]] = {"gallop": [], "bisect": []}
            res = {m: smallest_feasible(
                lambda x, m=m, a=asked, n=ans: a[m].append(x) or x >= n, lo, hi,
                gallop=m == "gallop") for m in asked}
            assert res["gallop"] == res["bisect"] == (max(lo, ans) if max(lo, ans) <= hi
                                                       else None)
            assert all(lo <= x <= hi for x in asked["gallop"])
            if hi == 64 and ans <= 3:
                assert len(asked["gallop"]) < len(asked["bisect"])
