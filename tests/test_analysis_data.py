"""Real small results for the analysis tests, and the loading of run/compare/sweep directories.

The builders run PeakSim for a few simulated minutes and write the documented on-disk shapes:
a run directory (as ``peaksim run`` writes it, plus synthesized elastic-cluster files), a
comparison (``compare.json``, ``runs.parquet``, member run directories) and a sweep
(``sweep.parquet``, ``plan.json``). Each is built once per session (cached) in a temp dir.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from analysis.results import (
    CompareResults,
    ResultsError,
    RunResults,
    SweepResults,
    flatten,
    load_results,
    sweep_params,
)
from simulator import run
from simulator.output import write_json, write_parquet
from tests.conftest import ROOT, deep_merge

PROFILE = ROOT / "scenarios" / "profiles" / "cpu-x86.json"
VARIANTS = {"static-2": {"cluster": {"pools": [{"name": "cpu", "nodes": 2}]}},
            "static-3": {"cluster": {"pools": [{"name": "cpu", "nodes": 3}]}},
            "batch8-2": {"policy": {"batching": {"max_batch": 8}}}}
SEEDS = (11, 12, 13)
GRID_NODES = (1, 2, 3)
GRID_BATCH = (1, 8)


def scenario(**extra: Any) -> dict[str, Any]:
    """A 4-minute scenario at 23:30 with a short peak, two classes and a measured profile."""
    d: dict[str, Any] = {
        "name": "mini_peak",
        "simulation": {"duration_s": 240, "warmup_s": 20, "seed": 5, "records": "all",
                       "start_hour": 23.5, "timeseries_interval_s": 10},
        "workload": {
            "arrival": {"process": "poisson", "rate_qps": 100.0},
            "peaks": [{"name": "p", "start_s": 90, "ramp_s": 10, "hold_s": 20,
                       "decay": "exponential", "decay_s": 20, "multiplier": 2.0,
                       "relative_to": "mean"}],
            "classes": [
                {"name": "feed", "share": 0.7,
                 "size": {"distribution": "lognormal", "mean": 50, "sigma": 0.5, "max": 400}},
                {"name": "ads", "share": 0.3, "slo_ms": 40,
                 "size": {"distribution": "lognormal", "mean": 20, "sigma": 0.5, "max": 200}},
            ]},
        "service": {"profile": str(PROFILE), "variant": "int8"},
        "cluster": {"pools": [{"name": "cpu", "nodes": 2}]},
        "policy": {"dispatch": "central",
                   "batching": {"name": "dynamic", "max_batch": 1, "max_wait_ms": 2.0}},
        "sla": {"slo_ms": 50, "penalty_usd_per_violation": 0.001},
    }
    return deep_merge(d, extra)


def write_run(out: Path, sc: dict[str, Any], seed: int | None = None,
              overrides: list[str] | None = None) -> dict[str, Any]:
    """Run ``sc`` and write it as ``peaksim run --out`` does; returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    res = run(sc, seed=seed, records_path=out / "records.parquet")
    write_parquet(out / "timeseries.parquet", res.timeseries)
    write_json(out / "scenario.json", {"source": "<tests>", "overrides": overrides or [],
                                       "scenario": res.scenario.model_dump(mode="json")})
    write_json(out / "summary.json", res.summary)
    return res.summary


def _tmp() -> Path:
    d = Path(tempfile.mkdtemp(prefix="peaksim-analysis-"))
    atexit.register(shutil.rmtree, d, True)
    return d


@functools.cache
def run_dir() -> Path:
    """A plain run directory."""
    p = _tmp() / "run"
    write_run(p, scenario())
    return p


@functools.cache
def elastic_run_dir() -> Path:
    """A run directory plus synthesized ``timeseries_pools.parquet`` and ``events.parquet``."""
    p = _tmp() / "elastic"
    shutil.copytree(run_dir(), p)
    ts = pd.read_parquet(p / "timeseries.parquet")
    rows = []
    for pool, base in (("cpu", 2), ("gpu", 1)):
        for t in ts["t_s"]:
            up = 1 if 80 <= t < 160 else 0
            rows.append({"t_s": t, "pool": pool, "desired": base + up,
                         "provisioning": up if t < 100 else 0, "loading": up if t < 110 else 0,
                         "ready": base + (up if t >= 110 else 0), "draining": 0, "busy": base})
    write_parquet(p / "timeseries_pools.parquet", pd.DataFrame(rows))
    ev = pd.DataFrame({"t_s": [80.0, 82.0, 160.0, 200.0], "pool": ["cpu", "gpu", "cpu", "gpu"],
                       "kind": ["scale_up", "scale_up", "scale_down", "preemption"],
                       "detail": ["+1", "+1", "-1", "spot"]})
    write_parquet(p / "events.parquet", ev)
    return p


def runs_row(summary: dict[str, Any], **keys: Any) -> dict[str, Any]:
    """One row of runs.parquet / sweep.parquet: bookkeeping keys + flattened summary."""
    flat = {k: v for k, v in flatten(summary).items() if not isinstance(v, list)}
    return {**keys, **flat, "node_hours": summary["nodes"]["node_seconds"] / 3600.0}


@functools.cache
def compare_dir() -> Path:
    """A comparison of three variants x three replications (common seeds)."""
    root = _tmp() / "compare"
    rows = []
    for name, extra in VARIANTS.items():
        for r, seed in enumerate(SEEDS):
            s = write_run(root / "runs" / name / f"rep{r}", scenario(**extra), seed=seed)
            rows.append(runs_row(s, variant=name, replication=r, seed=seed))
    write_parquet(root / "runs.parquet", pd.DataFrame(rows))
    write_json(root / "compare.json", {
        "scenario": "<tests>", "baseline": "static-2", "replications": len(SEEDS),
        "variants": {k: [str(v)] for k, v in VARIANTS.items()},
        "differences": [{"variant": "static-3", "baseline": "static-2", "metric": "cost",
                         "mean": 0.06, "lo": 0.05, "hi": 0.07, "verdict": "more expensive"}],
        "warnings": ["runs are short (test fixture)"]})
    return root


@functools.cache
def sweep_dir() -> Path:
    """A 3 x 2 grid (nodes x max_batch) x 2 replications, with a plan choosing a point."""
    root = _tmp() / "sweep"
    rows = []
    for n in GRID_NODES:
        for b in GRID_BATCH:
            for r, seed in enumerate(SEEDS[:2]):
                sc = scenario(cluster={"pools": [{"name": "cpu", "nodes": n}]},
                              policy={"batching": {"max_batch": b}},
                              simulation={"records": "none", "duration_s": 120},
                              workload={"arrival": {"rate_qps": 150.0}},
                              sla={"penalty_usd_per_violation": 0.0})
                s = run(sc, seed=seed).summary
                rows.append(runs_row(s, **{"cluster.pools.cpu.nodes": n,
                                           "policy.batching.max_batch": b},
                                     point=len(rows) // 2, replication=r, seed=seed))
    df = pd.DataFrame(rows)
    write_parquet(root / "sweep.parquet", df)
    means = df.groupby(["cluster.pools.cpu.nodes", "policy.batching.max_batch"]).mean(
        numeric_only=True).reset_index()
    points = [{"cluster.pools.cpu.nodes": int(m["cluster.pools.cpu.nodes"]),
               "policy.batching.max_batch": int(m["policy.batching.max_batch"]),
               "mean": {"cost_usd.total": m["cost_usd.total"],
                        "sla.violation_rate": m["sla.violation_rate"]},
               "ci95": {}, "feasible": bool(m["sla.violation_rate"] <= 0.01)}
              for _, m in means.iterrows()]
    best = min((p for p in points if p["feasible"]), key=lambda p: p["mean"]["cost_usd.total"])
    write_json(root / "plan.json", {"best": {k: best[k] for k in ("cluster.pools.cpu.nodes",
                                                                  "policy.batching.max_batch")},
                                    "points": points})
    return root


# ----------------------------------------------------------------------------- by hand
# Directories in the shape the experiment commands write (the contract of issue 14), built
# from pandas frames and JSON without running the simulator.
CONTRACT_VARIANTS = {"static-4": [],
                     "hpa": ["policy.autoscaling={ name = \"hpa\", target = 0.5 }"],
                     "scheduled": ["policy.autoscaling.name=scheduled",
                                   "cluster.pools.cpu.nodes=3"]}
CONTRACT_SEEDS = (101, 102, 103)
CLASS_SLO = {"home_feed": 100.0, "search": 250.0}  # search has none of its own: sla.slo_ms
INTERVAL_S = 60.0


def contract_scenario(**extra: Any) -> dict[str, Any]:
    """A validated-looking scenario dict: 2 h from 22:00, 10 min warm-up, a peak at 23:00."""
    d: dict[str, Any] = {
        "name": "singles_mini",
        "simulation": {"duration_s": 7200.0, "warmup_s": 600.0, "seed": 5, "start_hour": 22.0,
                       "timeseries_interval_s": INTERVAL_S, "records": "none"},
        "workload": {"arrival": {"process": "poisson", "rate_qps": 100.0},
                     "peaks": [{"name": "midnight", "start_s": 3600.0, "ramp_s": 300.0,
                                "hold_s": 600.0, "decay": "linear", "decay_s": 600.0,
                                "multiplier": 3.0, "relative_to": "mean"}],
                     "classes": [{"name": "home_feed", "share": 0.7, "slo_ms": 100.0},
                                 {"name": "search", "share": 0.3, "slo_ms": None}]},
        "service": {"profile": str(PROFILE), "variant": "int8", "time": None},
        "cluster": {"pools": [{"name": "cpu", "nodes": 4}]},
        "policy": {"dispatch": "central", "autoscaling": {"name": "static"}},
        "sla": {"slo_ms": 250.0, "penalty_usd_per_violation": 0.001},
        "cost": {},
    }
    return deep_merge(d, extra)


def contract_timeseries() -> pd.DataFrame:
    """timeseries.parquet of a comparison: variant x replication x 120 one-minute rows; the
    same arrivals for every variant (common random numbers), fleets and latency apart."""
    t = np.arange(0.0, 7200.0, INTERVAL_S)
    peak = np.where((t >= 3600) & (t < 5100), 3.0, 1.0)
    frames = []
    for v, name in enumerate(CONTRACT_VARIANTS):
        for r, _seed in enumerate(CONTRACT_SEEDS):
            rate = 100.0 * peak * (1 + 0.01 * np.sin(t / 600.0))  # identical across variants
            ready = np.where((t >= 3900) & (t < 5400), 4 + 4 * v, 4).astype(float)
            busy = np.minimum(ready, rate / 40.0)
            over = rate / (ready * 30.0)
            p99 = 20.0 * (1 + r * 0.05) * np.where(over > 1, 100.0 * over, 1.0)
            arrivals = np.round(rate * INTERVAL_S)
            viol = np.round(arrivals * np.clip(over - 1, 0, 1) * (0.5 + 0.1 * r))
            df = pd.DataFrame({
                "variant": name, "replication": r, "t_s": t, "arrivals": arrivals,
                "completions": arrivals - viol // 2, "dropped": 0.0, "timed_out": viol // 2,
                "queue_len": np.maximum(0, (over - 1) * 50), "in_system": busy * 2,
                "busy_nodes": busy, "provisioned_nodes": ready,
                "arrival_rate_qps": rate, "p99_latency_ms": p99, "mean_latency_ms": p99 / 3,
                "ready_nodes": ready, "desired_nodes": ready, "violations": viol,
                "violations.home_feed": np.round(viol * 0.7), "violations.search":
                    viol - np.round(viol * 0.7),
                "arrivals.home_feed": np.round(arrivals * 0.7),
                "arrivals.search": arrivals - np.round(arrivals * 0.7)})
            frames.append(df)
    return pd.concat(frames, ignore_index=True)


def contract_runs() -> pd.DataFrame:
    rows = []
    for v, name in enumerate(CONTRACT_VARIANTS):
        for r, seed in enumerate(CONTRACT_SEEDS):
            compute = 40.0 + 12.0 * v + r
            penalty = 5.0 / (1 + v) + 0.1 * r
            rate = 0.02 / (1 + 3 * v) + 0.001 * r
            rows.append({
                "variant": name, "replication": r, "seed": seed, "scenario": "singles_mini",
                "sim_duration_s": 7200.0, "warmup_s": 600.0, "measurement_window_s": 6600.0,
                "cost_usd.compute": compute, "cost_usd.energy": 2.0, "cost_usd.storage": 0.5,
                "cost_usd.human": 0.0, "cost_usd.sla_penalty": penalty,
                "cost_usd.total": compute + 2.5 + penalty,
                "sla.slo_ms": 250.0, "sla.violation_rate": rate,
                "latency_ms.p99": 180.0 - 40 * v + r, "latency_ms.p50": 12.0 + r,
                "node_hours": 8.0 + 2 * v, "utilization": 0.6 - 0.1 * v,
                "classes.home_feed.slo_ms": 100.0,
                "classes.home_feed.sla.violation_rate": 1.5 * rate,
                "classes.search.slo_ms": 250.0,
                "classes.search.sla.violation_rate": 0.5 * rate})
    return pd.DataFrame(rows)


PROVENANCE = {
    "peaksim_version": "9.9.9+contract", "python": "3.11.7",
    "created_utc": "2026-11-28T12:00:00Z",
    "command": "peaksim compare scenarios/singles_mini.toml --variant 'hpa:policy.autoscaling="
               "{ name = \"hpa\", target = 0.5 }' --replications 3 --out 'results/<cmp&1>'",
    "scenario": {"path": "scenarios/singles_mini.toml", "sha256": "ab" * 32},
    "overrides": ["simulation.duration_s=7200"],
    "variant_overrides": CONTRACT_VARIANTS,
    "inputs": [{"role": "profile", "field": "service.profile", "path": str(PROFILE),
                "sha256": "cd" * 32},
               {"role": "trace", "field": "workload.arrival.trace.path",
                "path": "traces/tmall.parquet", "sha256": None}],
    "seed": 5, "replication_seeds": list(CONTRACT_SEEDS),
    "seeding": "replication r runs with SeedSequence(seed).spawn child r",
    "warmup": {"method": "fixed", "warmup_s": 600.0},
}


def contract_compare_dir(root: Path, *, timeseries: bool = True) -> Path:
    """A comparison directory as the new ``peaksim compare --out`` writes it."""
    root.mkdir(parents=True, exist_ok=True)
    write_parquet(root / "runs.parquet", contract_runs())
    if timeseries:
        write_parquet(root / "timeseries.parquet", contract_timeseries())
    as_run = {name: contract_scenario(cluster={"pools": [{"name": "cpu",
                                                           "nodes": 3 if v == 2 else 4}]})
              for v, name in enumerate(CONTRACT_VARIANTS)}
    write_json(root / "compare.json", {
        "scenario": "scenarios/singles_mini.toml", "seed": 5, "baseline": "static-4",
        "replications": 3, "level": 0.95,
        "variants": CONTRACT_VARIANTS,
        "differences": [{"variant": "hpa", "baseline": "static-4", "metric": "p99_ms",
                         "unit": "ms", "mean": -40.0, "lo": -45.0, "hi": -35.0, "n": 3,
                         "level": 0.95, "method": "paired", "half_width": 5.0,
                         "verdict": "better"},
                        {"variant": "hpa", "baseline": "static-4", "metric": "cost",
                         "unit": "USD", "mean": 9.0, "lo": 8.0, "hi": 10.0, "n": 3,
                         "level": 0.95, "method": "paired", "half_width": 1.0,
                         "verdict": "more expensive"}],
        "warnings": [], "provenance": PROVENANCE, "scenarios_as_run": as_run,
        "command": PROVENANCE["command"]})
    return root


def contract_sweep_dir(root: Path) -> Path:
    """A sweep directory with ``sweep.json`` (no plan): two node counts x 2 replications."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in (2, 4):
        for r, seed in enumerate(CONTRACT_SEEDS[:2]):
            rows.append({"cluster.pools.cpu.nodes": n, "point": n, "replication": r,
                         "seed": seed, "cost_usd.total": 10.0 * n + r,
                         "sla.violation_rate": 0.1 / n, "sla.worst_window.start_s": 900.0,
                         "measurement_window_s": 6600.0, "warmup_s": 600.0})
    write_parquet(root / "sweep.parquet", pd.DataFrame(rows))
    command = "peaksim sweep scenarios/singles_mini.toml --grid cluster.pools.cpu.nodes=2,4"
    prov = {**{k: v for k, v in PROVENANCE.items() if k != "variant_overrides"},
            "command": command}
    write_json(root / "sweep.json", {"provenance": prov, "scenario_as_run": contract_scenario(),
                                     "grid": {"cluster.pools.cpu.nodes": [2, 4]},
                                     "command": command})
    return root


# ----------------------------------------------------------------------------- loading tests
def test_load_run_directory() -> None:
    res = load_results(run_dir())
    assert isinstance(res, RunResults)
    assert res.summary["requests"]["arrived"] > 0
    assert list(res.timeseries.columns)[:3] == ["t_s", "arrivals", "completions"]
    assert res.records is not None and set(res.records["outcome"]) >= {"completed"}
    assert res.scenario_dict["simulation"]["start_hour"] == 23.5
    assert res.pool_series is None and res.events is None
    assert res.seeds == [5]


def test_load_elastic_run_has_pool_series_and_events() -> None:
    res = load_results(elastic_run_dir())
    assert isinstance(res, RunResults)
    assert res.pool_series is not None and set(res.pool_series["pool"]) == {"cpu", "gpu"}
    assert res.events is not None and len(res.events) == 4


def test_load_compare_directory_finds_member_runs() -> None:
    res = load_results(compare_dir())
    assert isinstance(res, CompareResults)
    assert res.variants == list(VARIANTS)
    assert len(res.runs) == len(VARIANTS) * len(SEEDS)
    assert res.seeds == list(SEEDS)
    assert sorted(v for v, _ in res.members) == sorted(list(VARIANTS) * len(SEEDS))


def test_load_sweep_directory_detects_parameters() -> None:
    res = load_results(sweep_dir())
    assert isinstance(res, SweepResults)
    assert res.sweep is not None and len(res.sweep) == len(GRID_NODES) * len(GRID_BATCH) * 2
    assert res.params == ["cluster.pools.cpu.nodes", "policy.batching.max_batch"]
    assert res.plan is not None and res.plan["best"]


def test_sweep_params_without_plan_skips_summary_and_bookkeeping() -> None:
    cols = ["cluster.pools.gpu.nodes", "point", "replication", "seed", "sla.violation_rate",
            "sla.slo_ms", "cost_usd.total", "latency_ms.p99", "node_hours", "wait_exceeds:50",
            "_series", "policy.batching.max_wait_ms"]
    assert sweep_params(cols) == ["cluster.pools.gpu.nodes", "policy.batching.max_wait_ms"]
    varied = pd.DataFrame({"sla.slo_ms": [50.0, 80.0]})
    assert sweep_params(["sla.slo_ms"], table=varied) == ["sla.slo_ms"]


def test_plan_only_directory_is_a_sweep(tmp_path: Path) -> None:
    write_json(tmp_path / "plan.json", {"best": {"cluster.pools.gpu.nodes": 3}, "points": [
        {"cluster.pools.gpu.nodes": 3, "mean": {"cost": 1.0}, "ci95": {}, "feasible": True}]})
    res = load_results(tmp_path)
    assert isinstance(res, SweepResults) and res.sweep is None
    assert res.params == ["cluster.pools.gpu.nodes"]


def test_plan_directory_reads_its_runs_table(tmp_path: Path) -> None:
    shutil.copy(sweep_dir() / "plan.json", tmp_path / "plan.json")
    shutil.copy(sweep_dir() / "sweep.parquet", tmp_path / "runs.parquet")
    res = load_results(tmp_path)
    assert isinstance(res, SweepResults) and res.sweep is not None
    assert res.params == ["cluster.pools.cpu.nodes", "policy.batching.max_batch"]


def test_unknown_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="not a PeakSim results directory"):
        load_results(tmp_path)
    with pytest.raises(ResultsError, match="no such results directory"):
        load_results(tmp_path / "missing")


def test_compare_directory_reads_its_timeseries(tmp_path: Path) -> None:
    res = load_results(contract_compare_dir(tmp_path / "cmp"))
    assert isinstance(res, CompareResults) and res.timeseries is not None
    assert set(res.timeseries["variant"]) == set(CONTRACT_VARIANTS)
    old = load_results(compare_dir())
    assert isinstance(old, CompareResults) and old.timeseries is None  # older directory


def test_sweep_json_is_read_and_its_grid_names_the_parameters(tmp_path: Path) -> None:
    res = load_results(contract_sweep_dir(tmp_path / "sw"))
    assert isinstance(res, SweepResults) and res.doc is not None
    # the grid names the parameter; summary fields under sla.* are not parameters
    assert res.params == ["cluster.pools.cpu.nodes"]
