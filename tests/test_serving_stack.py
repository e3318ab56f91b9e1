"""Serving-stack profiles (issue 16, items 2-4): schema, strict logs, the fit, scenarios that
combine a model profile with a serving stack, provenance, and the request-log replay."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from simulator.cli import main
from simulator.profiles import fitted_ms, load_profile
from simulator.scenario import ScenarioError, scenario_from_dict
from simulator.serving_logs import (
    LogError,
    read_batch_log,
    read_request_log,
    write_batch_log,
    write_request_log,
)
from simulator.serving_profile import ServingProfileError, load_serving_profile

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "scenarios" / "profiles" / "cpu-x86.json"


def stack_dict(**kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "schema_version": 1, "kind": "serving_stack", "name": "t",
        "provenance": {"source": "batch-log", "date": "2026-12-01T00:00:00Z", "server": "test"},
        "overhead_ms_per_batch": 1.0, "overhead_ms_per_item": 0.0, "residuals": [1.0],
    }
    d.update(kw)
    return d


def write_stack(path: Path, **kw: Any) -> Path:
    path.write_text(json.dumps(stack_dict(**kw)))
    return path


def scenario(svc: dict[str, Any], tmp: Path, rate: float = 20.0, duration: float = 100.0,
             batching: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": "stack",
        "simulation": {"duration_s": duration, "warmup_s": 5.0, "seed": 3},
        "workload": {"arrival": {"process": "poisson", "rate_qps": rate}},
        "service": svc,
        "cluster": {"pools": [{"name": "cpu", "nodes": 1}]},
        "policy": {"dispatch": "central", "batching": batching or {"name": "none"}},
        "sla": {"slo_ms": 1000},
    }


# ----------------------------------------------------------------------------- schema
@pytest.mark.parametrize("change, field", [
    ({"overhead_ms_per_batch": float("nan")}, "overhead_ms_per_batch"),
    ({"overhead_ms_per_item": -0.1}, "overhead_ms_per_item"),
    ({"residuals": [1.0, -2.0]}, "residuals"),
    ({"residuals": None}, "residuals"),
    ({"timer_overshoot_ms": float("inf")}, "timer_overshoot_ms"),
    ({"kind": "profile"}, "kind"),
    ({"provenance": {"source": "guess", "date": "x"}}, "provenance.source"),
    ({"residuals_by_items": [{"min_items": 1, "max_items": 2, "residuals": [1.0]},
                             {"min_items": 4, "max_items": 8, "residuals": [1.0]}]},
     "residuals_by_items"),
])
def test_schema_refuses_naming_file_and_field(tmp_path: Path, change: dict[str, Any],
                                              field: str) -> None:
    d = stack_dict(**change)
    if change.get("residuals", 0) is None:
        del d["residuals"]
    p = tmp_path / "s.json"
    p.write_text(json.dumps(d))  # NaN and Infinity are written as JSON extensions
    with pytest.raises(ServingProfileError) as e:
        load_serving_profile(p)
    assert str(p.resolve()) in str(e.value) and f"'{field}" in str(e.value)


def test_schema_reads_a_valid_stack_and_variant_override(tmp_path: Path) -> None:
    p = write_stack(tmp_path / "s.json", variants={
        "int8": {"overhead_ms_per_batch": 0.3, "overhead_ms_per_item": 0.02}})
    s = load_serving_profile(p)
    assert s.for_variant("fp32").overhead_ms_per_batch == 1.0
    assert s.for_variant("int8").overhead_ms_per_item == 0.02
    assert s.for_variant("int8").residuals == [1.0]


# ----------------------------------------------------------------------------- logs
BATCH_OK = "items,start_s,end_s\n2,0.0,0.001\n3,0.002,0.004\n"
BAD_BATCH = [
    ("start_s,end_s\n0,1\n", "row 0", "items"),
    ("items,start_s\n1,0\n", "row 0", "end"),
    ("items,start_s,end_s\n1,0,0.001\n2,abc,0.003\n", "row 2", "start_s"),
    ("items,start_s,end_s\n1,0,nan\n", "row 1", "end_s"),
    ("items,start_s,end_s\n1,0.002,0.003\n1,0.001,0.004\n", "row 2", "start_s"),  # unsorted
    ("items,start_s,end_s\n1,-0.5,0.003\n", "row 1", "start_s"),
    ("items,start_s,end_s\n1,0.002,0.001\n", "row 1", "end_s"),  # finishes before it starts
    ("items,start_s,end_s\n1,0,0.001\n0,0.002,0.003\n", "row 2", "items"),
    ("items,start_s,end_s\n1.5,0,0.001\n", "row 1", "items"),
    ("", "empty", None),
    ("items,start_s,end_s\n", "no data rows", None),
]


@pytest.mark.parametrize("text, where, column", BAD_BATCH)
def test_malformed_batch_log_refused_naming_row_and_column(tmp_path: Path, text: str,
                                                           where: str, column: str | None
                                                           ) -> None:
    p = tmp_path / "b.csv"
    p.write_text(text)
    with pytest.raises(LogError) as e:
        read_batch_log(p)
    msg = str(e.value)
    assert str(p) in msg and where in msg and "\n" not in msg
    if column:
        assert f"'{column}" in msg


@pytest.mark.parametrize("text, where, column", [
    ("arrival_s,finish_s\n0,1\n", "row 0", "batch_id"),
    ("arrival_s,finish_s,batch_id\n0.5,0.4,1\n", "row 1", "finish_s"),
    ("arrival_s,finish_s,batch_id\n0.5,0.6,1\n0.4,0.6,1\n", "row 2", "arrival_s"),
    ("arrival_s,finish_s,batch_id\n0.5,0.6,\n", "row 1", "batch_id"),
    ("arrival_s,finish_s,batch_id,items\n0.5,0.6,1,-1\n", "row 1", "items"),
])
def test_malformed_request_log_refused(tmp_path: Path, text: str, where: str,
                                       column: str) -> None:
    p = tmp_path / "r.csv"
    p.write_text(text)
    with pytest.raises(LogError) as e:
        read_request_log(p)
    assert str(p) in str(e.value) and where in str(e.value) and f"'{column}" in str(e.value)


def test_cli_refuses_a_bad_log_with_exit_2_and_one_line(tmp_path: Path) -> None:
    p = tmp_path / "b.csv"
    p.write_text("items,start_s,end_s\n1,0.002,0.001\n")
    r = CliRunner().invoke(main, ["calibrate-serving", "--model-profile", str(PROFILE),
                                  "--variant", "fp32", "--batch-log", str(p), "--out",
                                  str(tmp_path / "s.json")])
    assert r.exit_code == 2, r.output
    assert "row 1, column 'end_s'" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "s.json").exists()


def test_time_unit_from_suffix_and_option(tmp_path: Path) -> None:
    p = tmp_path / "b.csv"
    p.write_text("items,start_ms,end_ms\n2,0,1.5\n")
    assert read_batch_log(p).batch_ms[0] == pytest.approx(1.5)
    q = tmp_path / "c.csv"
    q.write_text("items,start,end\n2,0,1500\n")
    assert read_batch_log(q, "us").batch_ms[0] == pytest.approx(1.5)
    with pytest.raises(LogError, match="in ms but --time-unit says s"):
        read_batch_log(p, "s")


# ----------------------------------------------------------------------------- the fit
def synthetic_batch_log(path: Path, per_batch: float, per_item: float, n: int = 20_000,
                        sigma: float = 0.1, seed: int = 5) -> None:
    """Batches whose time is (fp32 fit + overheads) x lognormal(0, sigma) noise."""
    v = load_profile(PROFILE).variants["fp32"]
    rng = np.random.default_rng(seed)
    items = rng.integers(1, 33, n)
    ms = (fitted_ms(v, items.astype(float)) + per_batch + per_item * items) \
        * rng.lognormal(0.0, sigma, n)
    start = np.cumsum(rng.exponential(0.01, n))
    write_batch_log(path, items, start, start + ms / 1e3)


def test_known_overheads_recovered(tmp_path: Path) -> None:
    log = tmp_path / "b.csv"
    synthetic_batch_log(log, 0.5, 0.01)
    out = tmp_path / "stack.json"
    r = CliRunner().invoke(main, ["calibrate-serving", "--model-profile", str(PROFILE),
                                  "--variant", "fp32", "--batch-log", str(log), "--out",
                                  str(out), "--server", "synthetic"])
    assert r.exit_code == 0, r.output
    s = load_serving_profile(out)
    assert s.overhead_ms_per_batch == pytest.approx(0.5, rel=0.04)
    assert s.overhead_ms_per_item == pytest.approx(0.01, rel=0.08)
    assert np.median(s.residuals) == pytest.approx(1.0, abs=0.02)
    assert np.std(np.log(s.residuals)) == pytest.approx(0.1, rel=0.1)
    assert s.provenance.source == "batch-log" and s.provenance.sha256
    assert s.diagnostics is not None and s.diagnostics.max_rel_error < 0.05


def test_request_log_batches_derived(tmp_path: Path) -> None:
    """Without start_s, dispatch = max(last arrival, previous finish[, first + max_wait])."""
    p = tmp_path / "r.csv"
    write_request_log(p, np.array([0.0, 0.0005, 0.010, 0.0101]),
                      np.array([0.004, 0.004, 0.0125, 0.0125]), [1, 1, 2, 2])
    from simulator.serving_logs import batches_from_requests

    b = batches_from_requests(read_request_log(p))
    assert b.items.tolist() == [2, 2]
    assert b.start_s.tolist() == pytest.approx([0.0005, 0.0101])
    b2 = batches_from_requests(read_request_log(p), max_batch=32, max_wait_ms=2.0)
    assert b2.start_s.tolist() == pytest.approx([0.002, 0.012])


def test_harness_writes_the_batch_log_format(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from simulator.serving_logs import harness_batch_log

    res = SimpleNamespace(batch_start=np.array([0.5, 1.2, 1.3]), warmup_s=1.0,
                          batch_items=np.array([3, 4, 5]), batch_ms=np.array([1.0, 2.0, 3.0]))
    harness_batch_log(res, tmp_path / "h.csv")
    b = read_batch_log(tmp_path / "h.csv")
    assert b.items.tolist() == [4, 5] and b.batch_ms.tolist() == pytest.approx([2.0, 3.0])


# ----------------------------------------------------------------------------- scenarios
def test_scenario_uses_the_stack_overheads(tmp_path: Path) -> None:
    from simulator import run
    from simulator.service import build_service

    stack = write_stack(tmp_path / "stack.json", overhead_ms_per_batch=1.0)
    svc = {"profile": str(PROFILE), "variant": "fp32", "serving": str(stack)}
    sc = scenario_from_dict(scenario(svc, tmp_path), "t.toml", base_dir=tmp_path)
    v = load_profile(PROFILE).variants["fp32"]
    expect_ms = float(fitted_ms(v, 1.0)) + 1.0  # residuals [1.0]: deterministic
    svc_model = build_service(sc.pool_service(sc.cluster.pools[0]), np.random.default_rng(0),
                              PROFILE, stack)
    assert svc_model.mean_time(1, 1) * 1e3 == pytest.approx(expect_ms)
    own = scenario_from_dict(scenario({"profile": str(PROFILE), "variant": "fp32"}, tmp_path),
                             "t.toml", base_dir=tmp_path)
    with_stack = run(sc).summary["latency_ms"]["mean"]
    without = run(own).summary["latency_ms"]["mean"]
    own_ms = build_service(own.pool_service(own.cluster.pools[0]), np.random.default_rng(0),
                           PROFILE).mean_time(1, 1) * 1e3
    # low load (~2% utilisation): latency ~ service time; the shift is the expected one
    assert with_stack == pytest.approx(expect_ms, rel=0.03)
    assert with_stack - without == pytest.approx(expect_ms - own_ms, abs=0.05)


def test_relative_serving_path_and_pool_service(tmp_path: Path) -> None:
    write_stack(tmp_path / "stack.json", overhead_ms_per_batch=2.0)
    d = scenario({"profile": str(PROFILE), "variant": "fp32"}, tmp_path)
    d["cluster"]["pools"][0]["service"] = {"profile": str(PROFILE), "variant": "fp32",
                                           "serving": "stack.json"}
    sc = scenario_from_dict(d, str(tmp_path / "t.toml"), base_dir=tmp_path)
    from simulator.provenance import input_files

    roles = {i["role"]: i for i in input_files(sc)}
    assert roles["serving_profile"]["field"] == "cluster.pools.cpu.service.serving"
    assert roles["serving_profile"]["sha256"]


def test_missing_or_invalid_stack_refused_at_validation(tmp_path: Path) -> None:
    svc = {"profile": str(PROFILE), "variant": "fp32", "serving": "nope.json"}
    with pytest.raises(ScenarioError, match=r"field 'service.serving': file not found"):
        scenario_from_dict(scenario(svc, tmp_path), "t.toml", base_dir=tmp_path)
    write_stack(tmp_path / "bad.json", overhead_ms_per_batch=-1)
    svc["serving"] = "bad.json"
    with pytest.raises(ScenarioError, match=r"'service.serving'.*'overhead_ms_per_batch'"):
        scenario_from_dict(scenario(svc, tmp_path), "t.toml", base_dir=tmp_path)
    with pytest.raises(ScenarioError, match="needs 'profile'"):
        scenario_from_dict(scenario({"time": {"distribution": "exponential", "mean_ms": 1.0},
                                     "serving": "x.json"}, tmp_path),
                           "t.toml", base_dir=tmp_path)


def test_provenance_lists_the_serving_profile(tmp_path: Path) -> None:
    from simulator.provenance import input_files, resolved_dump

    stack = write_stack(tmp_path / "stack.json")
    svc = {"profile": str(PROFILE), "variant": "fp32", "serving": "stack.json"}
    sc = scenario_from_dict(scenario(svc, tmp_path), "t.toml", base_dir=tmp_path)
    files = {i["role"]: i for i in input_files(sc)}
    assert files["serving_profile"]["field"] == "service.serving"
    assert Path(files["serving_profile"]["path"]) == stack
    assert len(files["serving_profile"]["sha256"]) == 64
    assert resolved_dump(sc)["service"]["serving"] == str(stack)


def test_same_results_when_the_stack_repeats_the_variant(tmp_path: Path) -> None:
    """A stack holding the variant's own overheads and serving residuals draws the same
    numbers as no stack: the seeded draw is unchanged by the new path."""
    from simulator import run

    v = load_profile(PROFILE).variants["int8"]
    stack = write_stack(tmp_path / "same.json", overhead_ms_per_batch=v.overhead_ms_per_batch,
                        overhead_ms_per_item=v.overhead_ms_per_item,
                        residuals=v.serving_residuals)
    batching = {"name": "dynamic", "max_batch": 16, "max_wait_ms": 2.0}
    own = {"profile": str(PROFILE), "variant": "int8"}
    a = run(scenario_from_dict(scenario(own, tmp_path, 2000, 20, batching), "t.toml",
                               base_dir=tmp_path)).summary
    b = run(scenario_from_dict(scenario({**own, "serving": str(stack)}, tmp_path, 2000, 20,
                                        batching), "t.toml", base_dir=tmp_path)).summary
    assert a["latency_ms"] == b["latency_ms"]
    assert scenario_from_dict(scenario(own, tmp_path), "t.toml",
                              base_dir=tmp_path).service.serving is None


def test_size_ranges_draw_their_own_residuals(tmp_path: Path) -> None:
    from simulator.service import build_service

    stack = write_stack(tmp_path / "s.json", overhead_ms_per_batch=0.0, residuals_by_items=[
        {"min_items": 1, "max_items": 4, "residuals": [1.0]},
        {"min_items": 5, "max_items": 32, "residuals": [2.0]}])
    sc = scenario_from_dict(scenario({"profile": str(PROFILE), "variant": "fp32",
                                      "serving": str(stack)}, tmp_path), "t.toml",
                            base_dir=tmp_path)
    m = build_service(sc.pool_service(sc.cluster.pools[0]), np.random.default_rng(0), PROFILE,
                      stack)
    v = load_profile(PROFILE).variants["fp32"]
    assert m.sample(1, 2) * 1e3 == pytest.approx(float(fitted_ms(v, 2.0)))
    assert m.sample(1, 8) * 1e3 == pytest.approx(2 * float(fitted_ms(v, 8.0)))
    assert m.sample(1, 100) * 1e3 == pytest.approx(2 * float(fitted_ms(v, 100.0)))


# ----------------------------------------------------------------------------- replay
def test_validate_request_log_recovers_peaksims_own_latencies(tmp_path: Path) -> None:
    """A request log written from PeakSim's own records (two load levels, a stack) is
    predicted by validate-calibration --request-log within a few %."""
    from simulator import run

    stack = write_stack(tmp_path / "s.json", overhead_ms_per_batch=0.3,
                        overhead_ms_per_item=0.01,
                        residuals=np.round(np.random.default_rng(1).lognormal(0, 0.2, 500),
                                           4).tolist())
    batching = {"name": "dynamic", "max_batch": 32, "max_wait_ms": 2.0}
    parts = []
    for k, rate in enumerate((300.0, 3000.0)):
        d = scenario({"profile": str(PROFILE), "variant": "fp32", "serving": str(stack)},
                     tmp_path, rate, 12.0, batching)
        d["simulation"].update(records="all", warmup_s=0.0, seed=10 + k)
        rec = run(scenario_from_dict(d, "t.toml", base_dir=tmp_path)).records
        rec = rec[rec["outcome"] == "completed"].sort_values("arrival_s")
        rec = rec.assign(arrival_s=rec["arrival_s"] + 20.0 * k,
                         finish_s=rec["finish_s"] + 20.0 * k, load=f"{rate:g}")
        parts.append(rec)
    import pandas as pd

    rec = pd.concat(parts)
    log = tmp_path / "requests.csv"
    write_request_log(log, rec["arrival_s"].to_numpy(), rec["finish_s"].to_numpy(),
                      [f"{s:.9f}" for s in rec["start_s"]], rec["start_s"].to_numpy(),
                      rec["load"].tolist())
    out = tmp_path / "v.json"
    r = CliRunner().invoke(main, ["validate-calibration", "--request-log", str(log),
                                  "--profile", str(PROFILE), "--variant", "fp32",
                                  "--serving", str(stack), "--max-batch", "32",
                                  "--max-wait-ms", "2", "--sim-reps", "2", "--out", str(out),
                                  "--plot", str(tmp_path / "v.png")])
    assert r.exit_code == 0, r.output
    rows = json.loads(out.read_text())["rows"]
    assert [row["level"] for row in rows] == ["300", "3000"]
    for row in rows:
        assert abs(row["errors"]["p50"]) < 0.05, row
        assert abs(row["errors"]["p99"]) < 0.15, row
        assert math.isfinite(row["real_util"])
    assert (tmp_path / "v.png").stat().st_size > 1000


def test_a_measured_timer_overshoot_is_pointed_at_when_timer_slack_is_unset(
        tmp_path: Path) -> None:
    """A stack that measured its batcher's timer lateness, in a run whose batcher waits
    without timer_slack_ms, gets a warning naming the value to set; setting it, or a batcher
    that does not wait, silences it."""
    from simulator.scenario import scenario_warnings

    stack = write_stack(tmp_path / "stack.json", timer_overshoot_ms=0.25)
    svc = {"profile": str(PROFILE), "variant": "fp32", "serving": str(stack)}

    def warns(batching: dict[str, Any]) -> list[str]:
        sc = scenario_from_dict(scenario(svc, tmp_path, batching=batching), "t.toml",
                                base_dir=tmp_path)
        return [w for w in scenario_warnings(sc) if "timer" in w]

    w = warns({"name": "dynamic", "max_batch": 8, "max_wait_ms": 2.0})
    assert len(w) == 1 and "policy.batching.timer_slack_ms = 0.25" in w[0]
    assert "pool 'cpu'" in w[0]
    assert warns({"name": "dynamic", "max_batch": 8, "max_wait_ms": 2.0,
                  "timer_slack_ms": 0.25}) == []
    assert warns({"name": "dynamic", "max_batch": 8, "max_wait_ms": 0.0}) == []
    assert warns({"name": "none"}) == []
