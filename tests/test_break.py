"""Break tests (issue 15, item 10): what users do to a capacity-planning tool when things go
wrong. Real processes are killed with SIGKILL in the middle of sweep, compare and plan and
restarted; two runs race for one folder; CLI options and scenario fields are fuzzed with
hypothesis (nothing may end in a traceback, and what ``validate`` accepts ``run`` runs);
conservation is checked with preemptions, failures, shedding and timeouts together."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import tomli_w

from tests.conftest import mmc_dict

psutil = pytest.importorskip("psutil")
PEAKSIM = [sys.executable, "-c", "from simulator.cli import main; main()"]
ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _scenario(tmp_path: Path, duration_s: float = 150.0) -> Path:
    """M/M/8 at 720 QPS, 10 ms: a run of about a third of a second."""
    p = tmp_path / "mm8.toml"
    p.write_text(tomli_w.dumps(mmc_dict(lam=720.0, mean_ms=10.0, duration_s=duration_s,
                                        warmup_s=20)))
    return p


def _wait_for(pred: Any, timeout: float = 90.0) -> None:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def _kept(out: Path) -> list[Path]:
    return [p for p in (out / "runs").glob("*.parquet") if not p.name.endswith(".series.parquet")
            ] if (out / "runs").is_dir() else []


COMMANDS = {
    "sweep": ["--grid", "cluster.pools.gpu.nodes=8,9,10,11,12"],
    "compare": ["--variant", "eight:cluster.pools.gpu.nodes=8",
                "--variant", "ten:cluster.pools.gpu.nodes=10", "--replications", "3"],
    "plan": ["--vary", "cluster.pools.gpu.nodes:7..12", "--constraint", "p99_ms<=60",
             "--min-replications", "2", "--max-replications", "4"],
}


def _result(cmd: str, out: Path) -> Any:
    """What the command answered (without the run-dependent bookkeeping)."""
    if cmd == "sweep":
        df = pd.read_parquet(out / "sweep.parquet")
        df = df[[c for c in df.columns if "wall" not in c]]  # seconds of this machine
        return df.sort_values(["point", "replication"]).reset_index(drop=True)
    doc = json.loads((out / f"{cmd}.json").read_text())
    if cmd == "compare":
        return {k: doc[k] for k in ("results", "differences", "seed", "replications")}
    return {k: doc[k] for k in ("best", "points", "skipped") if k in doc}


@pytest.mark.parametrize("cmd", list(COMMANDS))
def test_sigkill_then_rerun_resumes_with_the_same_answer(cmd: str, tmp_path: Path) -> None:
    src = _scenario(tmp_path)
    out = tmp_path / "killed"
    args = [cmd, str(src), *COMMANDS[cmd], "--workers", "1", "--out", str(out)]
    proc = subprocess.Popen([*PEAKSIM, *args], cwd=tmp_path, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for(lambda: len(_kept(out)) >= 2 or proc.poll() is not None)
    assert proc.poll() is None, "finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    before = {p.name: p.stat().st_mtime_ns for p in _kept(out)}
    assert not (out / f"{cmd}.json").exists() and not (out / "sweep.parquet").exists()
    again = subprocess.run([*PEAKSIM, *args], cwd=tmp_path, env=ENV, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    # the runs finished before the kill were read back, not run again
    assert {p.name: p.stat().st_mtime_ns for p in _kept(out) if p.name in before} == before
    clean = tmp_path / "clean"
    ok = subprocess.run([*PEAKSIM, *args[:-1], str(clean)], cwd=tmp_path, env=ENV,
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    a, b = _result(cmd, out), _result(cmd, clean)
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b)
    else:
        assert a == b
    assert sorted(p.name for p in _kept(out)) == sorted(p.name for p in _kept(clean))
    assert not list(out.rglob("*.tmp")) and not (out / ".peaksim.lock").exists()


def test_two_runs_into_one_folder(tmp_path: Path) -> None:
    src = _scenario(tmp_path, duration_s=800.0)  # a second or two
    out = tmp_path / "shared"
    args = ["run", str(src), "--out", str(out), "--records", "all", "--quiet"]
    first = subprocess.Popen([*PEAKSIM, *args], cwd=tmp_path, env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (out / ".peaksim.lock").exists() or first.poll() is not None)
    second = subprocess.run([*PEAKSIM, *args, "--seed", "99"], cwd=tmp_path, env=ENV,
                            capture_output=True, text=True, timeout=120)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode != 0 and "another PeakSim run" in second.stderr
    assert "Traceback" not in second.stderr
    summary = json.loads((out / "summary.json").read_text())
    rec = pd.read_parquet(out / "records.parquet")
    # records and summary of one run
    assert int((rec["arrival_s"] >= summary["warmup_s"]).sum()) == summary["requests"]["arrived"]
    assert json.loads((out / "scenario.json").read_text())["seed"] is None


def test_runs_started_together_never_mix(tmp_path: Path) -> None:
    """Started at the same instant with different seeds: whatever order the lock falls in,
    the folder ends holding one whole run (summary, records and scenario.json agree)."""
    src = _scenario(tmp_path, duration_s=300.0)
    out = tmp_path / "shared"
    procs = [subprocess.Popen([*PEAKSIM, "run", str(src), "--out", str(out), "--records",
                               "all", "--quiet", "--seed", str(s)], cwd=tmp_path, env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for s in (1, 2)]
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    assert any(rc == 0 for rc, _ in results), results
    for rc, err in results:
        assert "Traceback" not in err
        assert rc == 0 or "another PeakSim run" in err or "another run's results" in err
    seed = json.loads((out / "scenario.json").read_text())["seed"]
    summary = json.loads((out / "summary.json").read_text())
    rec = pd.read_parquet(out / "records.parquet")
    assert int((rec["arrival_s"] >= summary["warmup_s"]).sum()) == summary["requests"]["arrived"]
    assert seed in (1, 2)
    assert summary["seed"] == seed if "seed" in summary else True
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


# ----------------------------------------------------------------------------- conservation
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from simulator import run, scenario_from_dict  # noqa: E402
from simulator.testing import check_invariants  # noqa: E402
from simulator.testing import strategies as st_peaksim  # noqa: E402


@st.composite
def hostile(draw: st.DrawFn) -> dict[str, Any]:
    """A small scenario where everything that loses requests happens at once: spot
    preemptions (requeue or lose, with or without notice), node failures and repairs, full
    queues, queue timeouts and the system cap, often under overload."""
    raw = draw(st_peaksim.scenarios(max_duration_s=40.0))
    pool = raw["cluster"]["pools"][0]
    if draw(st.booleans()):
        pool["purchase"] = "spot"
        pool["spot"] = {"preemptions_per_hour": draw(st.floats(60.0, 3600.0)),
                        "notice_s": draw(st.sampled_from([0.0, 0.5, 3.0])),
                        "on_preempt": draw(st.sampled_from(["requeue", "lose"]))}
    if draw(st.booleans()):
        pool["failures"] = {"mtbf_h": draw(st.floats(0.002, 0.02)),
                            "repair": {"distribution": "exponential",
                                       "mean_s": draw(st.floats(0.5, 5.0)), "cv": 1.0},
                            "on_failure": draw(st.sampled_from(["requeue", "lose"]))}
    pool["provisioning"] = {"distribution": "deterministic", "mean_s": 0.5, "cv": 0.0}
    adm = raw["policy"]["admission"]
    if draw(st.booleans()):
        adm["timeout_ms"] = draw(st.floats(1.0, 500.0))
    if draw(st.booleans()):
        raw["simulation"]["max_in_system"] = draw(st.integers(1, 50))
    return raw


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile())
def test_conservation_with_preemptions_failures_shedding_and_timeouts(raw: dict) -> None:
    res = run(scenario_from_dict(raw))
    check_invariants(res)
    r = res.summary["requests"]
    lost = r["arrived"] - r["completed"] - r["in_flight"]
    assert lost == r["dropped"] + r["timed_out"] + r.get("shed_by_cap", 0)


# ----------------------------------------------------------------------------- CLI fuzz
from click.testing import CliRunner  # noqa: E402

from simulator.cli import main  # noqa: E402

_TEXT = st.one_of(
    st.sampled_from(["", "-3", "0", "1", "2", "nan", "inf", "-inf", "1e309", "1e12", "abc",
                     "[red]x[/]", "../../x", "p99", "violation", "cost", "wait_exceeds:",
                     "wait_exceeds:abc", "wait_exceeds:5", "p99_ms<=", "p99_ms<=abc",
                     "violation_rate<=0.5", "classes.nope.sla.violation_rate<=1",
                     "cluster.pools.gpu.nodes", "cluster.pools.gpu.nodes=", "a:b=c",
                     "x:cluster.pools.gpu.nodes=2", "x:cluster.pools.gpu.nodes=-2",
                     "cluster.pools.gpu.nodes:1..", "cluster.pools.gpu.nodes:3..2",
                     "cluster.pools.gpu.nodes=1,2", "nope.field=1", "sla.slo_ms=-1",
                     "simulation.duration_s=nan", "=", ":", "mser5", "mser5:nope"]),
    st.text(max_size=12))


#: hostile values per option (plus any text): what users mistype
_BY_OPTION = {
    "--replications": ["-3", "0", "1", "abc", "1e9", "2.5"],
    "--min-replications": ["-1", "0", "1", "x"], "--max-replications": ["-1", "0", "1", "x"],
    "--rel-precision": ["0", "-0.1", "nan", "inf", "x"], "--cap": ["0", "-5", "x"],
    "--seed": ["-1", "x", "1e3", "99999999999999999999999"],
    "--metric": ["foo", "wait_exceeds:", "wait_exceeds:abc", "p99", "classes.x.sla"],
    "--objective": ["nope", "p99", "cost_usd", "classes.nope.sla.violation_rate"],
    "--constraint": ["violation<=0.1", "p99<=100", "nope<=1", "cost>=x", "p99_ms", "<=1"],
    "--variant": ["a:cluster.pools.gpu.nodes=9", "a:cluster.pools.gpu.nodes=-1", ":x=1",
                  "c:nope.field=1", "d:cluster.pools.gpu.nodes", "e"],
    "--baseline": ["zzz", "a", ""], "--warmup": ["-5", "nan", "mser5:nope", "abc"],
    "--grid": ["cluster.pools.gpu.nodes=2,x", "cluster.pools.gpu.nodes=", "nope=1,2", "x"],
    "--vary": ["cluster.pools.gpu.nodes:3..2", "cluster.pools.gpu.nodes:1..",
               "nope:1..2", "sla.slo_ms=1,x", "x"],
    "--method": ["x", "search", "exhaustive"], "--records": ["x", "sample:2", "sample:0"],
    "--set": ["sla.slo_ms=-1", "nope.field=1", "cluster.pools.gpu.nodes=0", "=", "x"],
}


@st.composite
def cli_args(draw: st.DrawFn) -> list[str]:
    cmd = draw(st.sampled_from(["compare", "sweep", "plan", "validate", "run"]))
    opts = {
        "compare": ["--variant", "--replications", "--baseline", "--rel-precision",
                    "--max-replications", "--warmup", "--set", "--seed"],
        "sweep": ["--grid", "--replications", "--metric", "--set", "--seed"],
        "plan": ["--vary", "--constraint", "--objective", "--method", "--min-replications",
                 "--max-replications", "--cap", "--set", "--warmup"],
        "validate": ["--set"],
        "run": ["--set", "--seed", "--records"],
    }[cmd]
    # a runnable core, so that the fuzzed options reach the code after the first run
    base = {"compare": ["--variant", "a:cluster.pools.gpu.nodes=2", "--variant",
                        "b:cluster.pools.gpu.nodes=3", "--replications", "2"],
            "plan": ["--vary", "cluster.pools.gpu.nodes:2..3", "--min-replications", "2",
                     "--max-replications", "2", "--constraint", "p99_ms<=1e9"]}.get(cmd, [])
    args = [cmd, *(base if draw(st.booleans()) else [])]
    for _ in range(draw(st.integers(0, 3))):
        opt = draw(st.sampled_from(opts))
        args += [opt, draw(st.one_of(st.sampled_from(_BY_OPTION.get(opt, ["x"])), _TEXT))]
    if cmd in ("run", "compare", "sweep", "plan") and draw(st.booleans()):
        args += ["--out", draw(st.sampled_from(["m[/x]", "[bold]o", "a b", "../up", "o"]))]
    return args


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(args=cli_args())
def test_fuzzed_cli_options_never_end_in_a_traceback(args: list[str], tmp_path: Path) -> None:
    src = tmp_path / "tiny.toml"
    if not src.exists():
        src.write_text(tomli_w.dumps(mmc_dict(c=2, lam=2.0, mean_ms=100.0, duration_s=5,
                                              warmup_s=0)))
    cmd, rest = args[0], args[1:]
    extra = ["--workers", "1"] if cmd in ("compare", "sweep", "plan") else []
    n = len(list(tmp_path.iterdir()))
    if "--out" in rest:  # an odd name, inside this test's folder
        i = rest.index("--out")
        rest = [*rest[:i], "--out", str(tmp_path / f"d{n}" / rest[i + 1]), *rest[i + 2:]]
    elif cmd != "validate":
        extra += ["--out", str(tmp_path / f"out{n}")]
    r = CliRunner().invoke(main, [cmd, str(src), *rest, *extra])
    assert r.exception is None or isinstance(r.exception, SystemExit), (
        args, r.output, repr(r.exception))
    assert r.exit_code in (0, 1, 2), (args, r.output)
    assert "Traceback" not in r.output
    # a count below its minimum is refused, never run as zero runs
    last = {rest[i]: rest[i + 1] for i in range(0, len(rest) - 1) if rest[i].startswith("--")}
    lowest = {"--replications": 2 if cmd == "compare" else 1, "--min-replications": 2,
              "--max-replications": 2, "--cap": 1}
    for opt, lo in lowest.items():
        v = last.get(opt, "")
        if v.lstrip("-").isdigit() and int(v) < lo:
            assert r.exit_code == 2, (args, r.output)


# ----------------------------------------------------------------------------- field fuzz
_FIELDS = [
    "simulation.duration_s", "simulation.warmup_s", "simulation.seed",
    "simulation.timeseries_interval_s", "simulation.records", "simulation.max_in_system",
    "workload.arrival.rate_qps", "workload.arrival.process", "workload.arrival.cv",
    "workload.diurnal.kind", "workload.diurnal.amplitude", "service.time.mean_ms",
    "service.time.distribution", "service.speed", "cluster.pools.gpu.nodes",
    "cluster.pools.gpu.min_nodes", "cluster.pools.gpu.max_nodes",
    "cluster.pools.gpu.price_per_hour_usd", "cluster.pools.gpu.purchase",
    "cluster.pools.gpu.spot.preemptions_per_hour", "cluster.pools.gpu.spot.notice_s",
    "cluster.pools.gpu.failures.mtbf_h", "cluster.pools.gpu.failures.repair.mean_s",
    "cluster.pools.gpu.provisioning.mean_s", "cluster.pools.gpu.autoscaler",
    "policy.dispatch", "policy.batching.name", "policy.batching.max_batch",
    "policy.batching.max_wait_ms", "policy.admission.max_queue_length",
    "policy.admission.timeout_ms", "policy.autoscaling.name", "policy.autoscaling.target",
    "sla.slo_ms", "sla.overload_share", "cost.pue", "name",
]
_VALUES = st.one_of(
    st.sampled_from(["0", "-1", "1", "2", "0.5", "nan", "inf", "-inf", "1e9", "1e12", "1e15",
                     "1e-9", "1e300", "9223372036854775808", "true", "''", "'x'", "[1,2]",
                     "{}", "{name='hpa'}", "{name='hpa', target=-1}", "'dynamic'",
                     "'per_node'", "'spot'", "'trace'", "'none'", "'sample:2'",
                     "'[bold]x[/]'", "'../../etc'", "3", "10", "100", "0.1", "0.99", "60",
                     "'poisson'", "'gamma'", "'exponential'", "'lognormal'", "'central'",
                     "'requeue'", "'on_demand'", "{name='target_tracking'}",
                     "{mtbf_h=0.01}", "{preemptions_per_hour=100}"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**20, 10**20).map(str),
    st.sampled_from(["1", "2", "3", "4", "10", "30", "100", "0.5", "0.1", "0.9"]),
    st.floats(0.01, 200.0).map(repr), st.integers(1, 50).map(str))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sets=st.lists(st.tuples(st.sampled_from(_FIELDS), _VALUES), min_size=1, max_size=3))
def test_fuzzed_fields_validate_and_run_agree(sets: list[tuple[str, str]]) -> None:
    """Whatever the values: no traceback; what ``validate`` accepts ``run`` runs, and a run
    validate estimates at under 2 s finishes (in 30 s at most; longer ones are not run
    here)."""
    from simulator.scenario import ScenarioError, parse_value

    raw = mmc_dict(c=2, lam=4.0, mean_ms=100.0, duration_s=20, warmup_s=0)
    raw["cluster"]["pools"][0].update(max_nodes=4, min_nodes=1)
    args = [x for k, v in sets for x in ("--set", f"{k}={v}")]
    src_dir = Path(os.environ.get("TMPDIR", "/tmp"))
    src = src_dir / f"peaksim-fuzz-{os.getpid()}.toml"
    src.write_text(tomli_w.dumps(raw))
    r = CliRunner().invoke(main, ["validate", str(src), *args])
    assert r.exception is None or isinstance(r.exception, SystemExit), (sets, repr(r.exception))
    assert r.exit_code in (0, 2), (sets, r.output)
    assert "Traceback" not in r.output
    event("validate: ok" if r.exit_code == 0 else "validate: refused")
    if r.exit_code != 0:
        return
    try:
        sc = scenario_from_dict(raw, str(src), [(k, parse_value(v)) for k, v in sets],
                                base_dir=src_dir)
    except ScenarioError as exc:  # --set parses values the same way
        raise AssertionError(f"validate accepted {sets} but loading refuses: {exc}") from None
    from simulator.preflight import estimate  # validate's own estimate of the run

    est = estimate(sc)
    if est.run_s > 2.0:
        event("accepted, not run: estimated > 2 s")
        return
    event("accepted and run")
    import signal as _signal

    def _late(*_: object) -> None:
        raise AssertionError(f"{sets}: estimated {est.summary()}, still running after 30 s")

    old = _signal.signal(_signal.SIGALRM, _late)
    _signal.setitimer(_signal.ITIMER_REAL, 30.0)
    try:
        res = run(sc, records="none")
    finally:
        _signal.setitimer(_signal.ITIMER_REAL, 0)
        _signal.signal(_signal.SIGALRM, old)
    assert res.summary["requests"]["arrived"] >= 0


def test_a_batch_left_hanging_on_a_failed_node_is_caught() -> None:
    """Conservation alone counts a request whose node failed mid-batch as 'in flight' if it
    is neither requeued nor lost: ``check_in_service_at_end`` catches it."""
    from simulator.testing.invariants import InvariantError, check_in_service_at_end, node_lives

    raw = mmc_dict(c=3, lam=6.0, mean_ms=200.0, duration_s=120, warmup_s=0)
    raw["simulation"]["records"] = "all"
    raw["cluster"]["pools"][0]["failures"] = {"mtbf_h": 0.01, "repair": {
        "distribution": "exponential", "mean_s": 2.0, "cv": 1.0}}
    res = run(scenario_from_dict(raw), seed=3)
    check_in_service_at_end(res)  # the genuine run is clean
    lives = node_lives(res.extras["events"])
    failed = lives[lives["state"] == "failed"].iloc[0]
    rec = res.records
    done = rec[(rec["outcome"] == "completed") & (rec["pool"] == failed["pool"])
               & (rec["node"] == failed["node"]) & (rec["start_s"] < failed["t0_s"])]
    i = done.index[-1]
    rec.loc[i, "outcome"] = "in_flight"  # its node failed and it was never requeued
    rec.loc[i, "finish_s"] = float("nan")
    with pytest.raises(InvariantError, match="neither requeued nor lost"):
        check_in_service_at_end(res)
