"""Replicated experiments: seeds, common random numbers, compare, sweep (resume), plan, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tomli_w
from click.testing import CliRunner

from analysis.queueing import erlang_c_staffing, mmc_wait_exceeds
from simulator.cli import main
from simulator.executors import SerialExecutor
from simulator.experiment import (
    ExperimentWarning,
    compare,
    load_base,
    parse_variants,
    replication_seed,
    sweep,
)
from simulator.planner import Vary, plan, smallest_feasible
from simulator.scenario import ScenarioError
from tests.conftest import mmc_dict

SHORT = {"duration_s": 1000, "warmup_s": 100}


class CountingExecutor(SerialExecutor):
    """Serial, counting the runs it was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def imap_unordered(self, fn: Any, tasks: Any) -> Any:
        self.count += len(tasks)
        return super().imap_unordered(fn, tasks)


def test_replication_seeds_are_spawned_children() -> None:
    seeds = [replication_seed(42, r) for r in range(50)]
    assert len(set(seeds)) == 50 and all(0 <= s < 2**63 for s in seeds)
    child = np.random.SeedSequence(42).spawn(4)[3]
    lo, hi = (int(v) for v in child.generate_state(2, np.uint32))
    assert seeds[3] == ((hi << 32) | lo) & (2**63 - 1)
    assert replication_seed(43, 0) != seeds[0]


def test_variant_syntax() -> None:
    base = load_base(mmc_dict(**SHORT))
    vs = parse_variants(["base", "big:cluster.pools.gpu.nodes=9,sla.slo_ms=2500",
                         "hourly:workload.diurnal.kind=hourly,workload.diurnal.hourly=[1,2,3,"
                         "4,5,6,7,8,9,10,11,12,1,2,3,4,5,6,7,8,9,10,11,12]"], base)
    assert vs["base"] == []
    assert vs["big"] == [("cluster.pools.gpu.nodes", 9), ("sla.slo_ms", 2500)]
    assert len(vs["hourly"][1][1]) == 24  # commas inside an array stay in the value
    # a policy table: its keys stay inside the inline table
    vs = parse_variants(["hpa:policy.autoscaling={name='hpa', target=0.5, sync_period_s=10}"],
                        base)
    assert vs["hpa"] == [("policy.autoscaling", {"name": "hpa", "target": 0.5,
                                                 "sync_period_s": 10})]
    with pytest.raises(ScenarioError, match="variant 'bad'"):
        parse_variants(["bad:cluster.pools.gpu.nodes=0"], base)


def test_compare_crn_and_outputs(tmp_path: Path) -> None:
    d = mmc_dict(**SHORT)
    res = compare(d, {"a": {}, "same": {"sla.penalty_usd_per_violation": 0.0},
                      "nine": ["cluster.pools.gpu.nodes=9"]},
                  replications=4, seed=9, executor=SerialExecutor(), out_dir=tmp_path)
    runs = res.runs
    assert len(runs) == 12 and set(runs["variant"]) == {"a", "same", "nine"}
    # common random numbers: replication r has one seed across variants, identical arrivals
    per_rep = runs.groupby("replication")
    assert (per_rep["seed"].nunique() == 1).all()
    assert (per_rep["requests.arrived"].nunique() == 1).all()
    assert runs["seed"].iloc[0] == replication_seed(9, 0)
    # an identical variant differs by exactly zero, so no difference is claimed
    diffs = res.diffs.set_index(["variant", "metric"])
    assert diffs.loc[("same", "p99_ms"), "half_width"] == 0.0
    assert diffs.loc[("same", "p99_ms"), "verdict"] == "no significant difference"
    assert diffs.loc[("nine", "cost"), "verdict"] == "more expensive"
    assert diffs.loc[("nine", "p99_ms"), "verdict"] == "better"
    assert diffs.loc[("nine", "node_hours"), "mean"] == pytest.approx(900 / 3600)
    # files: compare.json states its methods; runs.parquet has one row per run
    js = json.loads((tmp_path / "compare.json").read_text())
    assert "Student t" in js["ci_method"] and "paired" in js["difference_method"]
    assert js["baseline"] == "a" and len(js["results"]) == 12
    back = pd.read_parquet(tmp_path / "runs.parquet")
    for col in ("variant", "replication", "seed", "cost_usd.total", "sla.violation_rate",
                "latency_ms.p99", "nodes.node_seconds"):
        assert col in back.columns
    assert not list(tmp_path.glob(".*.tmp"))


def test_compare_reads_variants_from_file(tmp_path: Path) -> None:
    raw = mmc_dict(**SHORT)
    raw["compare"] = {"baseline": "nine", "replications": 3, "variants": [
        {"name": "eight"}, {"name": "nine", "set": {"cluster.pools.gpu.nodes": 9}}]}
    p = tmp_path / "s.toml"
    p.write_text(tomli_w.dumps(raw))
    res = compare(p, executor=SerialExecutor())
    assert res.baseline == "nine" and res.meta["replications"] == 3
    assert res.diffs.set_index("metric").loc["cost", "verdict"] == "cheaper"


def test_compare_rel_precision_and_short_run_warning() -> None:
    ex = CountingExecutor()
    d = mmc_dict(c=2, lam=1.0, duration_s=600, warmup_s=60)  # ~270 requests per node
    with pytest.warns(ExperimentWarning) as caught:
        res = compare(d, ["x"], rel_precision=0.05, precision_metrics=["wait_mean_ms"],
                      min_replications=3, max_replications=6, executor=ex,
                      min_requests_per_node=1000)
    assert res.meta["replications"] == 6 == ex.count
    messages = [str(w.message) for w in caught]
    assert any("not reached" in m for m in messages)
    assert any("too short" in m for m in messages)
    assert messages == res.warnings


def test_compare_rel_precision_stops_when_reached() -> None:
    ex = CountingExecutor()
    res = compare(mmc_dict(**SHORT), ["x"], rel_precision=0.10,
                  precision_metrics=["p99_ms"], min_replications=3, executor=ex)
    n = res.meta["replications"]
    assert n == ex.count and 3 <= n < 100
    row = res.table.set_index("metric").loc["p99_ms"]
    assert row["rel_precision"] <= 0.10


def test_compare_mser5_warmup() -> None:
    # an overload burst at the start (9.6/s > 8 servers for 200 s) leaves a backlog that
    # drains by about t = 400 s: a transient MSER-5 must cut off
    d = mmc_dict(c=8, lam=6.0, duration_s=3000, warmup_s=0,
                 simulation={"timeseries_interval_s": 10.0},
                 workload={"peaks": [{"start_s": 0, "ramp_s": 0, "hold_s": 200,
                                      "decay": "linear", "decay_s": 1, "multiplier": 1.6}]})
    with pytest.warns(ExperimentWarning, match="during the warm-up"):  # as intended here
        res = compare(d, ["x", "y:cluster.pools.gpu.nodes=9"], replications=2,
                      warmup="mser5", executor=SerialExecutor())
    w = res.meta["warmup"]
    assert "MSER-5" in w["method"] and 250 < w["warmup_s"] < 1500
    assert (res.runs["warmup_s"] == w["warmup_s"]).all()


def test_sweep_grid_and_resume(tmp_path: Path) -> None:
    d = mmc_dict(**SHORT)
    grid = {"cluster.pools.gpu.nodes": [8, 9], "policy.routing.name": "round_robin,random"}
    ex = CountingExecutor()
    df = sweep(d, grid, 2, out_dir=tmp_path, seed=1, executor=ex,
               overrides=["policy.dispatch=per_node"])
    assert len(df) == 8 == ex.count
    assert set(df["policy.routing.name"]) == {"round_robin", "random"}
    files = sorted((tmp_path / "runs").glob("*.parquet"))
    assert len(files) == 8 and (tmp_path / "sweep.parquet").is_file()
    files[0].unlink()
    ex2 = CountingExecutor()
    df2 = sweep(d, grid, 2, out_dir=tmp_path, seed=1, executor=ex2,
                overrides=["policy.dispatch=per_node"])
    assert ex2.count == 1  # only the missing run
    cols = [c for c in df.columns if c != "wall_s"]
    pd.testing.assert_frame_equal(df[cols], df2[cols], check_dtype=False)
    ex3 = CountingExecutor()
    sweep(d, grid, 2, out_dir=tmp_path, seed=2, executor=ex3,
          overrides=["policy.dispatch=per_node"])
    assert ex3.count == 8  # another seed is another experiment
    assert not list(tmp_path.rglob(".*.tmp"))


def test_smallest_feasible_bisects() -> None:
    calls: list[int] = []

    def feasible(x: int) -> bool:
        calls.append(x)
        return x >= 37

    assert smallest_feasible(feasible, 1, 100) == 37
    assert len(calls) <= 9
    calls.clear()
    assert smallest_feasible(feasible, 1, None, start=5) == 37  # 5, 10, 20, 40, then bisect
    assert calls[:4] == [5, 10, 20, 40]
    assert smallest_feasible(lambda x: False, 1, 10) is None
    assert smallest_feasible(lambda x: False, 1, None, start=4, cap=16) is None


def test_vary_syntax() -> None:
    assert Vary.parse("cluster.pools.gpu.nodes:4..12") == Vary("cluster.pools.gpu.nodes", 4, 12)
    assert Vary.parse("a.b") == Vary("a.b", 1, None)
    assert Vary.parse("a.b:3..") == Vary("a.b", 3, None)
    assert Vary.parse("p.r.name=random,round_robin").values == ("random", "round_robin")
    with pytest.raises(ScenarioError):
        Vary.parse("a:x..y")


def test_plan_matches_erlang_c_staffing(tmp_path: Path) -> None:
    """The planner's node count equals the Erlang-C staffing rule for P(W_q > t) <= target."""
    lam, mu, t_s, target = 8.0, 1.0, 0.5, 0.03
    answer = erlang_c_staffing(lam, mu, t_s, target)
    # not borderline: theory is clearly on either side of the target at c and c-1
    assert mmc_wait_exceeds(answer, lam, mu, t_s) < 0.7 * target
    assert mmc_wait_exceeds(answer - 1, lam, mu, t_s) > 1.5 * target
    d = mmc_dict(c=10, lam=lam, duration_s=3000, warmup_s=300)
    res = plan(d, ["cluster.pools.gpu.nodes:6..16"], [f"wait_exceeds:{t_s * 1000:g}<={target}"],
               objective="cost", seed=11, executor=SerialExecutor(), out_dir=tmp_path)
    assert res.best == {"cluster.pools.gpu.nodes": answer}
    js = json.loads((tmp_path / "plan.json").read_text())
    assert js["best"] == {"cluster.pools.gpu.nodes": answer}
    by_c = {p["cluster.pools.gpu.nodes"]: p for p in js["points"]}
    assert by_c[answer]["feasible"] and not by_c[answer - 1]["feasible"]
    assert set(by_c[answer]) >= {"mean", "ci95", "feasible"}
    lo, hi = by_c[answer]["ci95"]["wait_exceeds:500"]
    assert lo <= mmc_wait_exceeds(answer, lam, mu, t_s) * 1.3 and hi >= 0


def test_plan_enumerates_lists_and_reports_infeasible() -> None:
    d = mmc_dict(c=4, lam=3.0, **SHORT)
    with pytest.warns(ExperimentWarning, match="no point"):
        res = plan(d, ["cluster.pools.gpu.nodes=4,6"], ["p99_ms<=1"],
                   executor=SerialExecutor(), min_replications=2)
    assert res.best is None and len(res.points) == 2
    assert all(p["decision"] == "violated" and p["n"] in (2, 6, 10) for p in res.points)


def _write(tmp_path: Path, d: dict[str, Any]) -> Path:
    p = tmp_path / "s.toml"
    p.write_text(tomli_w.dumps(d))
    return p


def test_cli_compare_sweep_plan(tmp_path: Path) -> None:
    p = _write(tmp_path, mmc_dict(**SHORT))
    cli = CliRunner()
    r = cli.invoke(main, ["compare", str(p), "--variant", "eight:", "--variant",
                          "nine:cluster.pools.gpu.nodes=9", "--replications", "3",
                          "--workers", "1", "--out", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    assert "more expensive" in r.output and "better" in r.output
    assert (tmp_path / "c" / "compare.json").is_file()
    r = cli.invoke(main, ["sweep", str(p), "--grid", "cluster.pools.gpu.nodes=8,9",
                          "--replications", "2", "--workers", "1", "--out", str(tmp_path / "s")])
    assert r.exit_code == 0, r.output
    assert len(pd.read_parquet(tmp_path / "s" / "sweep.parquet")) == 4
    r = cli.invoke(main, ["plan", str(p), "--vary", "cluster.pools.gpu.nodes:8..12",
                          "--constraint", "violation_rate<=0.1", "--workers", "1",
                          "--out", str(tmp_path / "p")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "p" / "plan.json").read_text())["best"] is not None
    r = cli.invoke(main, ["plan", str(p), "--vary", "cluster.pools.gpu.nodes",
                          "--constraint", "p99=3", "--workers", "1"])
    assert r.exit_code == 2 and "expected METRIC" in r.output
    r = cli.invoke(main, ["compare", str(p), "--variant", "x:cluster.pools.nope.nodes=3",
                          "--workers", "1"])
    assert r.exit_code == 2 and "nope" in r.output
