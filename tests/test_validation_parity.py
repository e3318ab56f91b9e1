"""`peaksim validate` and `peaksim run` refuse the same scenarios, with the same message and
no traceback; values that cannot finish are refused at once (issue 15, item 5).

Each malformed case used to pass `validate` and then fail in `run` (an error, a traceback, a
memory error or a hang), or passed both with a value no run can use.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from click.testing import CliRunner

from simulator import ScenarioError, load_scenario, scenario_from_dict
from simulator.cli import main
from tests.conftest import ROOT, mmc_dict

Raw = dict[str, Any]
Files = dict[str, str]


def _base() -> Raw:
    return mmc_dict(c=4, lam=5.0, mean_ms=500.0, duration_s=120.0, warmup_s=10.0)


def _trace(csv: str, **cfg: Any) -> Callable[[Raw], Files]:
    def f(d: Raw) -> Files:
        d["workload"]["arrival"] = {"process": "trace", "trace": {"path": "t.csv", **cfg}}
        return {"t.csv": csv}
    return f


def _diurnal(csv: str) -> Callable[[Raw], Files]:
    def f(d: Raw) -> Files:
        d["workload"]["diurnal"] = {"kind": "file", "path": "d.csv"}
        return {"d.csv": csv}
    return f


def _spot(csv: str | None, trace: str = "s.csv") -> Callable[[Raw], Files]:
    def f(d: Raw) -> Files:
        d["cluster"]["pools"][0].update(purchase="spot", max_nodes=6, spot={"trace": trace})
        return {} if csv is None else {"s.csv": csv}
    return f


def _set(path: str, value: Any) -> Callable[[Raw], Files]:
    """Set a dotted field of the raw scenario (list items by index)."""
    def f(d: Raw) -> Files:
        node: Any = d
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node.setdefault(k, {})
        node[keys[-1]] = value
        return {}
    return f


def _autoscaler(**spec: Any) -> Callable[[Raw], Files]:
    def f(d: Raw) -> Files:
        d["cluster"]["pools"][0].update(min_nodes=1, max_nodes=8)
        d["policy"]["autoscaling"] = spec
        return {}
    return f


PLUGIN_NO_SYNC = '''
from simulator.policies.registry import register

@register("autoscaler", "parity_nosync")
class NoSync:
    """Forgets sync_period_s, which the engine reads."""

    def desired(self, now_s, metrics):
        return metrics.desired
'''
PLUGIN_BOOM = '''
from simulator.policies.registry import register

@register("batcher", "parity_boom")
class Boom:
    def __init__(self, **params):
        raise RuntimeError("boom: cannot build")
'''


def _plugin(text: str, table: str, spec: Raw) -> Callable[[Raw], Files]:
    # a file name of its own: plugins are imported once per name given in policy.plugins
    module = f"parity_{table}.py"

    def f(d: Raw) -> Files:
        d["policy"]["plugins"] = [module]
        if table == "autoscaling":
            d["cluster"]["pools"][0].update(min_nodes=1, max_nodes=8)
        d["policy"][table] = spec
        return {module: text}
    return f


TRACE = "workload.arrival.trace.path"
DIURNAL = "workload.diurnal.path"
SPOT = "cluster.pools.gpu.spot.trace"

# (id, mutation, field named, words of the message); each passed `validate` before
CASES: list[tuple[str, Callable[[Raw], Files], str, str]] = [
    # arrival traces: contents were read only by `run`
    ("trace-missing-column", _trace("a,b\n1,2\n", column="ts"), TRACE,
     "column 'ts' not found; columns: a, b"),
    ("trace-non-numeric", _trace("t\n1\nabc\n3\n"), TRACE, "not a finite number (first: 'abc')"),
    ("trace-nan", _trace("t\n1\nnan\n3\n"), TRACE, "not a finite number (first: nan)"),
    ("trace-inf", _trace("t\n1\ninf\n3\n"), TRACE, "not a finite number (first: inf)"),
    ("trace-empty-file", _trace(""), TRACE, "not a readable CSV trace"),
    ("trace-header-only", _trace("t\n"), TRACE, "holds no rows"),
    ("trace-bad-datetime", _trace("t\n2024-01-01\nnope\n", time_unit="datetime"), TRACE,
     "not datetimes"),
    ("trace-counts-no-interval", _trace("c\n1\n2\n", format="counts"),
     "workload.arrival.trace", "format 'counts' needs interval_s"),
    ("trace-counts-negative", _trace("c\n1\n-2\n", format="counts", interval_s=1.0), TRACE,
     "counts >= 0"),
    ("trace-counts-all-zero", _trace("c\n0\n0\n", format="counts", interval_s=1.0), TRACE,
     "no arrivals"),
    ("trace-counts-1e15", _trace("c\n1e15\n", format="counts", interval_s=1.0),
     "workload.arrival.trace", "about 1e+15 arrivals"),
    ("trace-rate-scale-1e12", _trace("t\n0\n1\n2\n", rate_scale=1e12),
     "workload.arrival.trace.rate_scale", "less than or equal to 1000000"),
    ("trace-time-scale-1e12-loop", _trace("t\n0\n1\n2\n", time_scale=1e12, loop=True),
     "workload.arrival.trace.time_scale", "less than or equal to 1000000"),
    # diurnal curve files
    ("diurnal-missing-column", _diurnal("x,y\n0,1\n10,2\n"), DIURNAL,
     "column 'time_s' not found; columns: x, y"),
    ("diurnal-one-row", _diurnal("time_s,rate\n0,1\n"), DIURNAL, "need >= 2 rows"),
    ("diurnal-non-numeric", _diurnal("time_s,rate\n0,1\n10,abc\n"), DIURNAL,
     "column 'rate' holds a value that is not a finite number (first: 'abc')"),
    ("diurnal-nan", _diurnal("time_s,rate\n0,1\n10,nan\n20,1\n"), DIURNAL,
     "not a finite number (first: nan)"),
    ("diurnal-empty", _diurnal(""), DIURNAL, "not a readable CSV diurnal curve"),
    ("diurnal-all-zero", _diurnal("time_s,rate\n0,0\n10,0\n"), DIURNAL, "mean 0"),
    ("diurnal-unsorted", _diurnal("time_s,rate\n10,1\n0,2\n"), DIURNAL, "increasing time_s"),
    # spot preemption traces
    ("spot-trace-missing-file", _spot(None, "nope.csv"), SPOT, "file not found"),
    ("spot-trace-empty", _spot(""), SPOT, "not a readable CSV preemption trace"),
    ("spot-trace-non-numeric", _spot("when\nabc\n"), SPOT, "finite numbers >= 0"),
    ("spot-trace-nan", _spot("time_s\n1\nnan\n"), SPOT, "finite numbers >= 0"),
    ("spot-trace-negative", _spot("time_s\n-1\n5\n"), SPOT, "finite numbers >= 0"),
    # policies: arguments and plugins that only the run used to build
    ("autoscaler-sync-1e-6", _autoscaler(name="kpa", sync_period_s=1e-6),
     "policy.autoscaling", "sync_period_s: Input should be greater than or equal to 0.001"),
    ("autoscaler-static-nodes-1e12", _autoscaler(name="static", nodes=10**12),
     "policy.autoscaling", "nodes: Input should be less than or equal to 1000000"),
    ("router-d-1e9", _set("policy", {"dispatch": "per_node", "batching": {"name": "none"},
                                     "routing": {"name": "power_of_two", "d": 10**9}}),
     "policy.routing", "d: Input should be less than or equal to 100"),
    ("plugin-autoscaler-without-sync-period",
     _plugin(PLUGIN_NO_SYNC, "autoscaling", {"name": "parity_nosync"}),
     "policy.autoscaling", "AttributeError"),
    ("plugin-batcher-constructor-fails", _plugin(PLUGIN_BOOM, "batching", {"name": "parity_boom"}),
     "policy.batching", "RuntimeError: boom: cannot build"),
    # numbers no run can use (memory errors, divisions by zero, hangs)
    ("mmpp-sojourn-1e-9", _set("workload.arrival", {
        "process": "mmpp", "rate_qps": 5.0, "states": [
            {"multiplier": 1, "mean_sojourn_s": 1e-9}, {"multiplier": 2, "mean_sojourn_s": 1}]}),
     "workload.arrival.states.0.mean_sojourn_s", "greater than or equal to 0.001"),
    ("gamma-cv-1e-300", _set("workload.arrival", {"process": "gamma", "rate_qps": 5.0,
                                                  "cv": 1e-300}),
     "workload.arrival.cv", "greater than or equal to 0.0001"),
    ("diurnal-period-1e-6", _set("workload.diurnal", {"kind": "sinusoid", "period_s": 1e-6}),
     "workload.diurnal.period_s", "greater than or equal to 60"),
    ("peak-multiplier-1e12", _set("workload.peaks", [{"start_s": 10, "multiplier": 1e12}]),
     "workload.peaks.0.multiplier", "less than or equal to 10000"),
    ("size-mean-1e15", _set("workload.classes", [
        {"name": "a", "share": 1, "size": {"mean": 1e15, "max": 10**15}}]),
     "workload.classes.a.size.mean", "less than or equal to 1000000"),
    # NaN used to fail a bound with a misleading message ("less than 24")
    ("start-hour-nan", _set("simulation.start_hour", float("nan")), "simulation.start_hour",
     "finite number"),
    ("amplitude-nan", _set("workload.diurnal", {"kind": "sinusoid", "amplitude": float("nan")}),
     "workload.diurnal.amplitude", "finite number"),
]


def _write(tmp_path: Path, mutate: Callable[[Raw], Files]) -> Path:
    raw = _base()
    for name, text in mutate(raw).items():
        (tmp_path / name).write_text(text)
    p = tmp_path / "scenario.toml"
    p.write_text(tomli_w.dumps(raw))
    return p


def _error(r: Any) -> str:
    """The refusal as printed, checked to be one clean error (status 2, no traceback)."""
    assert r.exit_code == 2, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    assert "error: " in r.output, r.output
    return r.output[r.output.index("error: "):]


@pytest.fixture(autouse=True)
def _forget_test_plugins() -> Any:
    yield
    from simulator.policies.registry import unregister

    unregister("autoscaler", "parity_nosync")
    unregister("batcher", "parity_boom")


@pytest.mark.parametrize(("mutate", "field", "hint"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_validate_and_run_refuse_alike(tmp_path: Path, mutate: Callable[[Raw], Files],
                                       field: str, hint: str) -> None:
    p = _write(tmp_path, mutate)
    err = _error(CliRunner().invoke(main, ["validate", str(p)]))
    assert f"{p}: field '{field}'" in err, err
    assert hint in err, err
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["run", str(p), "--out", str(out), "--quiet"])
    assert _error(r) == err  # the same message, before anything ran
    assert not (out / "summary.json").exists()
    with pytest.raises(ScenarioError, match=f"field '{field}'"):  # the Python API too
        load_scenario(p)


# ----------------------------------------------------------------------------- huge values
def _pool(**kw: Any) -> Callable[[Raw], Files]:
    def f(d: Raw) -> Files:
        d["cluster"]["pools"][0].update(kw)
        return {}
    return f


def _long(seconds: float, **arrival: Any) -> Callable[[Raw], Files]:
    def f(d: Raw) -> Files:
        d["simulation"]["duration_s"] = seconds
        d["workload"]["arrival"].update(arrival)
        return {}
    return f


def _scaled(sync_s: float, seconds: float) -> Callable[[Raw], Files]:
    def f(d: Raw) -> Files:
        d["simulation"]["duration_s"] = seconds
        _autoscaler(name="hpa", sync_period_s=sync_s)(d)
        return {}
    return f


HUGE: list[tuple[str, Callable[[Raw], Files], str, str]] = [
    # the values, refused by their bounds
    ("nodes-1e9", _pool(nodes=10**9), "cluster.pools.gpu.nodes",
     "less than or equal to 100000"),
    ("max-batch-1e12", _set("policy.batching", {"name": "dynamic", "max_batch": 10**12}),
     "policy.batching", "max_batch: Input should be less than or equal to 65536"),
    ("rate-1e12", _set("workload.arrival.rate_qps", 1e12), "workload.arrival.rate_qps",
     "less than or equal to 1000000000"),
    ("duration-1e15", _set("simulation.duration_s", 1e15), "simulation.duration_s",
     "less than or equal to 100000000"),
    ("interval-1e-6", _set("simulation.timeseries_interval_s", 1e-6),
     "simulation.timeseries_interval_s", "greater than or equal to 0.001"),
    ("mtbf-1e-9-h", _pool(failures={"mtbf_h": 1e-9}), "cluster.pools.gpu.failures.mtbf_h",
     "greater than or equal to 0.001"),
    ("preemptions-1e9-per-hour", _pool(purchase="spot", spot={"preemptions_per_hour": 1e9}),
     "cluster.pools.gpu.spot.preemptions_per_hour", "less than or equal to 3600"),
    # allowed values that add up to a run that cannot finish: refused by the estimate
    ("rate-x-duration", _long(3600.0, rate_qps=1e8), "workload.arrival.rate_qps",
     "about 3.6e+11 arrivals"),
    ("autoscaler-syncs", _scaled(0.01, 1e7), "policy.autoscaling.sync_period_s",
     "about 1e+09 autoscaler syncs of pool 'gpu'"),
    ("failure-clocks", lambda d: {**_set("simulation.duration_s", 86400.0)(d),
                                  **_pool(nodes=100_000, failures={"mtbf_h": 0.001})(d)},
     "cluster.pools.gpu.failures.mtbf_h", "failures in pool 'gpu'"),
    ("preemption-clocks", lambda d: {**_set("simulation.duration_s", 86400.0)(d),
                                     **_pool(nodes=50_000, purchase="spot",
                                             spot={"preemptions_per_hour": 3600})(d)},
     "cluster.pools.gpu.spot.preemptions_per_hour", "preemptions in pool 'gpu'"),
    ("timeseries-rows", lambda d: {**_set("simulation.duration_s", 1e8)(d),
                                   **_set("simulation.timeseries_interval_s", 0.01)(d)},
     "simulation.timeseries_interval_s", "time-series rows"),
    ("calendar-window-10-years", _set("simulation", {
        "start": "2020-01-01 00:00", "end": "2030-01-01 00:00", "records": "none"}),
     "simulation", "at most 1e+08 s"),
]


@pytest.mark.parametrize(("mutate", "field", "hint"), [c[1:] for c in HUGE],
                         ids=[c[0] for c in HUGE])
def test_values_that_cannot_finish_are_refused_at_once(
        tmp_path: Path, mutate: Callable[[Raw], Files], field: str, hint: str) -> None:
    p = _write(tmp_path, mutate)
    t0 = time.perf_counter()
    err = _error(CliRunner().invoke(main, ["validate", str(p)]))
    assert time.perf_counter() - t0 < 2.0
    assert f"field '{field}'" in err and hint in err, err
    r = CliRunner().invoke(main, ["run", str(p), "--out", str(tmp_path / "out"), "--quiet"])
    assert _error(r) == err
    assert time.perf_counter() - t0 < 4.0


def test_estimate_message_names_the_fix_and_the_limit(tmp_path: Path) -> None:
    p = _write(tmp_path, _long(3600.0, rate_qps=1e8))
    err = _error(CliRunner().invoke(main, ["validate", str(p)]))
    assert "simulation.duration_s" in err  # the run's length, and where it comes from
    assert "PeakSim refuses runs estimated above 12 h" in err
    assert "shorten simulation.duration_s or lower workload.arrival.rate_qps" in err


def test_memory_estimate_names_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from simulator import preflight

    monkeypatch.setattr(preflight, "memory_budget_bytes", lambda: (6.0 * 2**30, 8.0 * 2**30))
    raw = _base()
    raw["cluster"]["pools"][0]["nodes"] = 20_000
    raw["policy"].update(dispatch="per_node", batching={"name": "dynamic", "max_batch": 65536})
    with pytest.raises(ScenarioError) as exc:
        scenario_from_dict(raw)
    msg = str(exc.value)
    assert "field 'policy.batching.max_batch'" in msg and "GiB of memory" in msg
    assert "more than the 6 GiB a run may use (75% of this machine's 8 GiB)" in msg


def test_records_kept_in_memory_count_in_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """`peaksim run` streams records to a file, so the scenario validates; the Python API
    keeps them in memory without records_path and refuses before simulating."""
    from simulator import preflight
    from simulator.api import run

    monkeypatch.setattr(preflight, "memory_budget_bytes", lambda: (6.0 * 2**30, 8.0 * 2**30))
    raw = mmc_dict(c=64, lam=2e4, mean_ms=1.0, duration_s=3e4, warmup_s=10.0)  # 6e8 arrivals
    sc = scenario_from_dict(raw)  # as validate: records go to a file
    est = preflight.estimate(sc, records="all", records_in_memory=True)
    assert est.arrivals == pytest.approx(6e8, rel=0.01)
    t0 = time.perf_counter()
    with pytest.raises(ScenarioError, match=r"field 'simulation.records'.*per-request records"):
        run(sc, records="all")
    assert time.perf_counter() - t0 < 2.0


# ----------------------------------------------------------------------------- shipped
SHIPPED = sorted((ROOT / "scenarios").glob("*.toml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_scenarios_validate_within_the_limits(path: Path) -> None:
    from simulator.preflight import MAX_RUN_S, estimate

    r = CliRunner().invoke(main, ["validate", str(path)])
    assert r.exit_code == 0, r.output
    est = estimate(load_scenario(path))
    assert est.run_s < 120.0 < MAX_RUN_S  # the 24-hour days: ~30 s on the reference machine
    assert est.memory_bytes < 2 * 2**30


def test_singles_day_benchmark_day_is_estimated_as_measured() -> None:
    """benchmarks/bench_singles_day.py: 122 M requests in 533-538 s, peak RSS 799 MB."""
    from simulator.preflight import estimate

    sc = load_scenario(ROOT / "scenarios/singles_day.toml", ["workload.arrival.rate_qps=1000"])
    est = estimate(sc)
    assert est.arrivals == pytest.approx(122.46e6, rel=0.05)
    assert 400 < est.run_s < 700
    assert 0.5 * 2**30 < est.memory_bytes < 2 * 2**30


def test_arrival_estimate_matches_a_run() -> None:
    """The integral of the curve (diurnal and peak) against the arrivals a run draws."""
    from simulator.api import run
    from simulator.preflight import estimate

    raw = mmc_dict(c=8, lam=20.0, mean_ms=50.0, duration_s=3600.0, warmup_s=10.0)
    raw["workload"]["diurnal"] = {"kind": "sinusoid", "amplitude": 0.5, "period_s": 1800.0}
    raw["workload"]["peaks"] = [{"start_s": 600, "ramp_s": 60, "hold_s": 120, "decay_s": 300,
                                 "multiplier": 10.0}]
    sc = scenario_from_dict(raw)
    est = estimate(sc)
    arrived = run(sc).summary["requests"]["arrived_incl_warmup"]
    assert est.arrivals == pytest.approx(arrived, rel=0.03)


def test_dumped_scenario_of_a_run_still_validates(tmp_path: Path) -> None:
    """A scenario as run (scenario.json) re-validates: the bounds accept every value a run
    writes (defaults included)."""
    p = _write(tmp_path, _trace("t\n0\n0.5\n2\n", loop=True))
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["run", str(p), "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    saved = json.loads((out / "scenario.json").read_text())["scenario"]
    from simulator.preflight import estimate

    sc = scenario_from_dict(saved, base_dir=tmp_path)
    # 3 arrivals per 3-s span (last arrival + the mean gap), looped over 120 s
    assert estimate(sc).arrivals == pytest.approx(120.0)
