"""Per-class SLAs in a run's results: summary, time series, worst window, printed table.

One tiny deterministic scenario, worked out on paper by :func:`expected`: trace arrivals
every ``GAP`` s, one node serving one request at a time in ``SERVICE`` s (FIFO, no batching),
two classes with different SLOs, and a run that ends while a request is in service and others
queue. The class of each arrival is the workload's seeded draw, so it is read from the
records; every time, latency, outcome and count is derived here from the scenario's
definition (the FIFO recurrence), never copied from the run.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from simulator import run, scenario_from_dict
from simulator.executors import RunTask, run_task
from simulator.experiment import metric_column
from simulator.metrics import TimeSeries
from simulator.scenario import ScenarioError
from simulator.summary import format_summary
from simulator.testing import InvariantError, check_invariants

DURATION = 10.0  # s
WARMUP = 2.0  # s
INTERVAL = 1.0  # s, time-series interval
SERVICE = 0.9  # s, deterministic service time
# a trace starts at 0: a short burst in the warm-up (queued until 3.6 s), then from 4 s one
# arrival every 0.3 s, faster than service: a queue builds and the run ends in the middle of it
ARRIVALS = [0.0, 0.1, 0.2, 0.3, *(4.0 + 0.3 * j for j in range(20))]
# burst latencies 0.9 + 0.6 j s and ages at the end 6 - 0.3 j s: none within 0.1 s of an SLO
SLO_MS = {"tight": 1100.0, "loose": 3200.0}
WORST_WINDOW_S = 2.6  # rounds to 3 whole intervals
SEED = 2  # a seed whose class draws exercise every case (checked by the exp fixture)


def raw_scenario(trace: Path) -> dict[str, Any]:
    trace.write_text("time_s\n" + "".join(f"{t}\n" for t in ARRIVALS))
    return {
        "name": "sla-classes",
        "simulation": {"duration_s": DURATION, "warmup_s": WARMUP, "seed": SEED,
                       "records": "all", "timeseries_interval_s": INTERVAL},
        "workload": {"arrival": {"process": "trace", "trace": {"path": str(trace)}},
                     "classes": [{"name": n, "share": 1.0, "slo_ms": s}
                                 for n, s in SLO_MS.items()]},
        "service": {"time": {"distribution": "deterministic", "mean_ms": SERVICE * 1000.0}},
        "cluster": {"pools": [{"name": "p", "nodes": 1, "min_billing_s": 0}]},
        "policy": {"dispatch": "central", "batching": {"name": "none"}},
        "sla": {"slo_ms": 100.0, "worst_window_s": WORST_WINDOW_S},
    }


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return raw_scenario(tmp_path_factory.mktemp("sla") / "trace.csv")


@pytest.fixture(scope="module")
def res(raw: dict[str, Any]) -> Any:
    return run(scenario_from_dict(raw), seed=SEED)


def expected(classes: list[str]) -> dict[str, np.ndarray]:
    """Per arrival i (class ``classes[i]``), from the FIFO recurrence on one node:
    finish_i = max(arrival_i, finish_{i-1}) + SERVICE; a request completes when it finishes
    before the end, else it is in flight at the end (in service or queued)."""
    a = np.asarray(ARRIVALS)
    finish = np.empty(len(a))
    free = 0.0
    for i, t in enumerate(a):
        free = finish[i] = max(t, free) + SERVICE
    slo = np.asarray([SLO_MS[c] for c in classes])
    completed = finish < DURATION
    in_flight = ~completed
    late = in_flight & ((DURATION - a) * 1000.0 > slo)
    viol = (completed & ((finish - a) * 1000.0 > slo)) | late
    return {"arrival": a, "class": np.asarray(classes), "completed": completed,
            "in_flight": in_flight, "late": late, "viol": viol, "counted": completed | late,
            "bin": np.floor(a / INTERVAL).astype(int)}


@pytest.fixture(scope="module")
def exp(res: Any) -> dict[str, np.ndarray]:
    rec = res.records.sort_values("id")
    e = expected(rec["class"].astype(str).tolist())
    # the run follows the recurrence (the scenario is what the test says it is) ...
    assert np.array_equal(rec["outcome"].to_numpy() == "completed", e["completed"])
    # ... and the scenario exercises what the tests are about
    assert set(e["class"]) == set(SLO_MS)
    for c in SLO_MS:
        m = (e["class"] == c) & (e["arrival"] >= WARMUP)
        assert (m & e["late"]).any() and (m & e["in_flight"] & ~e["late"]).any(), c
        assert (m & e["completed"] & e["viol"]).any(), c
        assert (m & e["completed"] & ~e["viol"]).any(), c  # a rate below 1
    assert (e["viol"] & (e["arrival"] < WARMUP)).any()  # the time series counts the warm-up
    return e


def _sel(e: dict[str, np.ndarray], cls: str | None) -> np.ndarray:
    return np.ones(len(e["arrival"]), bool) if cls is None else e["class"] == cls


def test_in_flight_past_slo_counts_per_class_and_in_total(res: Any, exp: Any) -> None:
    """Violations per class with each class's SLO; in-flight requests older than their SLO
    at the end are violations and join the rate's denominator, younger ones do not."""
    s = res.summary
    warm = exp["arrival"] >= WARMUP
    blocks = [(None, s["sla"]), *((c, s["classes"][c]["sla"]) for c in SLO_MS)]
    for cls, sla in blocks:
        m = _sel(exp, cls) & warm
        viol, late = int((exp["viol"] & m).sum()), int((exp["late"] & m).sum())
        counted = int((exp["counted"] & m).sum())
        assert sla["violations"] == viol, cls
        assert sla["in_flight_violations"] == late, cls
        assert sla["violation_rate"] == pytest.approx(viol / counted), cls
    assert s["classes"]["tight"]["slo_ms"] == SLO_MS["tight"]
    assert sum(s["classes"][c]["sla"]["violations"] for c in SLO_MS) == s["sla"]["violations"]


def test_time_series_counts_violations_by_arrival_interval(res: Any, exp: Any) -> None:
    ts = res.timeseries
    n = math.ceil(DURATION / INTERVAL)
    assert list(ts.columns) == [*TimeSeries.COLUMNS, "violations", "arrivals.tight",
                                "violations.tight", "arrivals.loose", "violations.loose"]
    for cls, col in [(None, "violations"), *((c, f"violations.{c}") for c in SLO_MS)]:
        want = np.bincount(exp["bin"][exp["viol"] & _sel(exp, cls)], minlength=n)
        assert ts[col].tolist() == want.tolist(), col  # whole run, warm-up included
    for c in SLO_MS:
        want = np.bincount(exp["bin"][exp["class"] == c], minlength=n)
        assert ts[f"arrivals.{c}"].tolist() == want.tolist(), c
    in_window = ts["violations"][ts["t_s"] >= WARMUP].sum()
    assert in_window == res.summary["sla"]["violations"]


def _brute_worst(e: dict[str, np.ndarray], cls: str | None) -> dict[str, Any]:
    """Every window of whole intervals inside [WARMUP, DURATION), sliding by one interval."""
    w = max(1, round(WORST_WINDOW_S / INTERVAL)) * INTERVAL
    m = _sel(e, cls)
    best: dict[str, Any] = {"window_s": w, "violation_rate": math.nan}
    start = math.ceil(WARMUP / INTERVAL) * INTERVAL
    while start + w <= DURATION + 1e-9:
        inside = m & (e["arrival"] >= start) & (e["arrival"] < start + w)
        n = int((inside & e["counted"]).sum())
        v = int((inside & e["viol"]).sum())
        if n and not v / n <= best["violation_rate"]:  # strictly higher (or the first)
            best = {"window_s": w, "violation_rate": v / n, "start_s": start,
                    "violations": v, "requests": n}
        start += INTERVAL
    return best


def test_worst_window_per_class_and_in_total(res: Any, exp: Any) -> None:
    s = res.summary
    for cls, sla in [(None, s["sla"]), *((c, s["classes"][c]["sla"]) for c in SLO_MS)]:
        want = _brute_worst(exp, cls)
        got = sla["worst_window"]
        assert got["window_s"] == want["window_s"] == 3 * INTERVAL  # rounded from 2.6 s
        assert got == pytest.approx(want), cls
    assert s["classes"]["tight"]["sla"]["worst_window"] != s["classes"]["loose"]["sla"][
        "worst_window"]


def test_worst_window_s_default_and_validation(raw: dict[str, Any]) -> None:
    d = copy.deepcopy(raw)
    del d["sla"]["worst_window_s"]
    assert scenario_from_dict(d).sla.worst_window_s == 300.0
    d["sla"]["worst_window_s"] = 0
    with pytest.raises(ScenarioError, match=r"worst_window_s.*greater than 0"):
        scenario_from_dict(d)


def test_flat_run_row_has_per_class_sla_columns(raw: dict[str, Any], res: Any) -> None:
    """Constraints such as classes.tight.sla.violation_rate<=0.01 name columns of the
    per-run table (the flattened summary), as do the worst-window metrics."""
    row = run_task(RunTask(raw, "<dict>", ".", (), SEED, {}))
    for name in ("classes.tight.sla.violation_rate", "classes.loose.sla.in_flight_violations",
                 "classes.tight.sla.worst_window.violation_rate", "sla.in_flight_violations",
                 "worst_window_violation_rate"):
        assert metric_column(name) in row, name
    assert row[metric_column("worst_window_violation_rate")] == pytest.approx(
        res.summary["sla"]["worst_window"]["violation_rate"])
    assert row["classes.tight.sla.violation_rate"] == pytest.approx(
        res.summary["classes"]["tight"]["sla"]["violation_rate"])


def _render(summary: dict[str, Any]) -> str:
    con = Console(width=200, record=True, color_system=None)
    con.print(format_summary(summary))
    return con.export_text()


def test_printed_table_shows_each_class_slo(res: Any) -> None:
    text = _render(res.summary)
    assert "> 100 ms" not in text  # sla.slo_ms is no class's SLO here
    assert "per-class SLOs" in text and "in flight past SLO" in text
    for c, slo in SLO_MS.items():
        line = next(ln for ln in text.splitlines() if f"class {c} " in ln)
        assert f"SLO {slo:,.0f} ms" in line
        rate = res.summary["classes"][c]["sla"]["violation_rate"]
        assert f"{100 * rate:.3f}%" in line and "worst window" in line
    assert f"worst {3 * INTERVAL:g} s window" in text
    for doubled in ("ms ms", "s s ", "%%"):
        assert doubled not in text


def test_single_class_keeps_one_slo_in_the_label(raw: dict[str, Any]) -> None:
    d = copy.deepcopy(raw)
    d["workload"]["classes"] = [{"name": "only", "share": 1.0, "slo_ms": 2500.0}]
    r = run(scenario_from_dict(d), seed=SEED)
    text = _render(r.summary)
    assert "> 2,500 ms" in text and "> 100 ms" not in text
    assert "class only" not in text  # per-class rows only with 2+ classes
    assert {"arrivals.only", "violations.only"} <= set(r.timeseries.columns)
    check_invariants(r)


def test_check_sla_catches_inconsistent_accounting(res: Any) -> None:
    from simulator.testing.invariants import check_sla

    check_invariants(res)  # the genuine run is clean

    def broken(mutate: Any) -> Any:
        r = copy.copy(res)
        r.summary = copy.deepcopy(res.summary)
        r.timeseries = res.timeseries.copy()
        mutate(r)
        return r

    def ts_moved(r: Any) -> None:  # one violation moved to another interval
        ts = r.timeseries
        k = int(np.flatnonzero(ts["violations.tight"].to_numpy() > 0)[-1])
        ts.loc[k, "violations"] -= 1
        ts.loc[k - 1, "violations"] += 1
        ts.loc[k, "violations.tight"] -= 1
        ts.loc[k - 1, "violations.tight"] += 1

    def in_flight_dropped(r: Any) -> None:  # in-flight violations forgotten in one class
        sla = r.summary["classes"]["loose"]["sla"]
        sla["violations"] -= sla["in_flight_violations"]
        r.summary["sla"]["violations"] -= sla["in_flight_violations"]

    def class_sum(r: Any) -> None:
        r.summary["classes"]["tight"]["sla"]["in_flight_violations"] += 1

    for mutate in (ts_moved, in_flight_dropped, class_sum):
        with pytest.raises(InvariantError, match="SLA accounting"):
            check_sla(broken(mutate))


def test_worst_window_edges() -> None:
    """Ties go to the earliest window; a window longer than the intervals left is clipped to
    them (window_s says so); windows without counted requests are skipped; NaN when none."""
    from simulator.metrics import worst_window

    iv = 10.0
    viol = np.array([5, 1, 0, 2, 0])
    counted = np.array([5, 4, 0, 2, 0])
    # from interval 1, two wide: [1, 3) 1/4, [2, 4) 2/2, [3, 5) 2/2: the first 2/2 wins
    assert worst_window(viol, counted, 1, 2, iv) == {
        "window_s": 2 * iv, "violation_rate": 1.0, "start_s": 2 * iv, "violations": 2,
        "requests": 2}
    clipped = worst_window(viol, counted, 3, 10, iv)  # only intervals 3 and 4 are left
    assert clipped["window_s"] == 2 * iv and clipped["start_s"] == 3 * iv
    empty = worst_window(viol, counted, 4, 1, iv)  # interval 4 has no counted request
    assert math.isnan(empty["violation_rate"]) and math.isnan(empty["start_s"])
    assert (empty["violations"], empty["requests"], empty["window_s"]) == (0, 0, iv)
    none_left = worst_window(viol, counted, 5, 3, iv)
    assert none_left["window_s"] == 3 * iv and math.isnan(none_left["violation_rate"])
