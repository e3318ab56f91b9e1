"""Borrowed training GPUs, the pure side (simulator/borrowing.py): the loan terms' validation,
lending calendars and traces as capacity schedules, the cost formula, the windows planned
around peaks and the Alibaba DLRM 2025 trace mapping."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from simulator.borrowing import (
    BorrowCfg,
    BorrowWindow,
    CapacitySchedule,
    alibaba_gpu_demand,
    borrow_cost_usd,
    borrow_windows_for_peaks,
    capacity_from_alibaba_trace,
    capacity_schedule,
    schedule_from_calendar,
    schedule_from_trace,
    wanted_at,
    write_schedule_csv,
)
from simulator.sections import PeakCfg
from tests.conftest import ROOT, SHARED_TRACES

ALIBABA = SHARED_TRACES / "alibaba_dlrm_2025" / "disaggregated_DLRM_trace.csv"


def _cal(*windows: tuple[object, object, int]) -> BorrowCfg:
    return BorrowCfg(calendar=[{"from": a, "to": b, "nodes": n} for a, b, n in windows])


# ----------------------------------------------------------------------------- validation
def test_exactly_one_of_calendar_and_trace() -> None:
    for kw in ({}, {"calendar": [{"from": 0, "to": 10, "nodes": 1}], "trace": "x.csv"}):
        with pytest.raises(ValidationError, match=r"exactly one of 'calendar'.*or 'trace'"):
            BorrowCfg(**kw)
    assert BorrowCfg(trace="x.csv").trace == "x.csv"


def test_defaults_are_the_documented_ones() -> None:
    c = BorrowCfg(trace="x.csv")
    assert (c.borrow_delay.distribution, c.borrow_delay.mean_s, c.borrow_delay.cv) == (
        "lognormal", 120.0, 0.5)
    assert (c.reclaim_notice_s, c.checkpoint_overhead_s, c.lead_s, c.return_after_s) == (
        120.0, 120.0, 600.0, 600.0)
    assert c.training_value_usd_per_gpu_hour == 4.92 and c.gpus_per_node == 8


@pytest.mark.parametrize(("window", "message"), [
    ({"from": "11-11 02:00", "to": "2001-11-11 03:00", "nodes": 1}, "gives a year"),
    ({"from": "2001-11-11 03:00", "to": "2001-11-11 02:00", "nodes": 1}, "must be after"),
    ({"from": 100, "to": 100, "nodes": 1}, r"'to' \(100 s\) must be after 'from'"),
    ({"from": 0, "to": "11-11 02:00", "nodes": 1}, "both as calendar times or both as seconds"),
    ({"from": -5, "to": 10, "nodes": 1}, "finite, >= 0"),
    ({"from": float("nan"), "to": 10, "nodes": 1}, "finite, >= 0"),
    ({"from": True, "to": 10, "nodes": 1}, "got True"),
    ({"from": "tomorrow", "to": 10, "nodes": 1}, "not a calendar time"),
    ({"from": 0, "to": 10, "nodes": -1}, "greater than or equal to 0"),
    ({"from": 0, "to": 10, "nodes": 1, "node": 2}, "Extra inputs are not permitted"),
    ({"from_": 0, "to": 10, "nodes": 1}, "from"),
])
def test_window_validation_messages(window: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BorrowWindow.model_validate(window)


def test_nan_and_negative_fields_refused() -> None:
    with pytest.raises(ValidationError, match="reclaim_notice_s"):
        BorrowCfg(trace="x.csv", reclaim_notice_s=float("nan"))
    with pytest.raises(ValidationError, match="training_value_usd_per_gpu_hour"):
        BorrowCfg(trace="x.csv", training_value_usd_per_gpu_hour=-1)
    with pytest.raises(ValidationError, match="calendar"):
        BorrowCfg(calendar=[])


def test_dump_round_trips_with_the_from_key() -> None:
    c = _cal(("11-10 23:00", "11-11 02:00", 16))
    d = c.model_dump(mode="json")
    assert d["calendar"][0] == {"from": "11-10 23:00", "to": "11-11 02:00", "nodes": 16}
    assert BorrowCfg.model_validate(d) == c


# ----------------------------------------------------------------------------- calendar
def test_calendar_schedule_edges() -> None:
    # run begins at 11-10 22:00 (start 22:10, warm-up 600 s); 23:00 is t = 3600
    c = _cal(("11-10 23:00", "11-11 02:00", 16))
    s = schedule_from_calendar(c, "11-10 22:10", warmup_s=600.0)
    assert s.changes() == [(0.0, 0), (3600.0, 16), (3600.0 + 3 * 3600, 0)]
    assert s.at(3599.999) == 0 and s.at(3600.0) == 16
    assert s.at(14399.999) == 16 and s.at(14400.0) == 0
    assert s.at(-10.0) == 0 and s.max() == 16


def test_calendar_window_before_the_run_clamps_and_year_rolls() -> None:
    # a year-less window across New Year, begun before the run: at t = 0 it already lends 4
    c = _cal(("12-31 23:00", "01-01 02:00", 4))
    s = schedule_from_calendar(c, "01-01 00:30", warmup_s=0.0)
    assert s.changes() == [(0.0, 4), (5400.0, 0)]
    gone = schedule_from_calendar(_cal(("12-31 20:00", "12-31 21:00", 4)), "01-01 00:30")
    assert gone.changes() == [(0.0, 0)] and gone.max() == 0


def test_calendar_adjacent_windows_step_and_overlap_is_refused() -> None:
    s = schedule_from_calendar(_cal((100, 200, 8), (0, 100, 2), (300, 400, 5)), None)
    assert s.changes() == [(0.0, 2), (100.0, 8), (200.0, 0), (300.0, 5), (400.0, 0)]
    with pytest.raises(ValueError, match=r"calendar\[0\] and borrow.calendar\[1\] overlap"):
        schedule_from_calendar(_cal((0, 150, 2), (100, 200, 8)), None)
    with pytest.raises(ValueError, match=r"calendar\[1\] and borrow.calendar\[0\] overlap"):
        schedule_from_calendar(_cal(("11-11 01:00", "11-11 03:00", 2),
                                    ("11-11 00:00", "11-11 01:30", 3)), "11-11 00:00")


def test_calendar_times_need_the_calendar_form() -> None:
    with pytest.raises(ValueError, match=r"calendar\[0\].*need simulation.start"):
        schedule_from_calendar(_cal(("11-11 00:00", "11-11 01:00", 2)), None)
    with pytest.raises(ValueError, match="no 'calendar'"):
        schedule_from_calendar(BorrowCfg(trace="x.csv"), "11-11 00:00")


def test_schedule_invariants_refused() -> None:
    with pytest.raises(ValueError, match="starts at t = 0"):
        CapacitySchedule(((5.0, 1),))
    with pytest.raises(ValueError, match="must increase"):
        CapacitySchedule(((0.0, 1), (5.0, 2), (5.0, 3)))
    with pytest.raises(ValueError, match="bad capacity step"):
        CapacitySchedule(((0.0, -1),))


# ----------------------------------------------------------------------------- trace
def _csv(tmp_path: Path, text: str, name: str = "lend.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_trace_schedule(tmp_path: Path) -> None:
    p = _csv(tmp_path, "time_s,nodes\n-60,3\n-10,5\n30,5\n30.5,0\n100,7.0\n\n")
    s = schedule_from_trace(p)
    assert s.changes() == [(0.0, 5), (30.5, 0), (100.0, 7)]
    later = schedule_from_trace(_csv(tmp_path, "time_s,nodes\n10,2\n", "b.csv"))
    assert later.changes() == [(0.0, 0), (10.0, 2)] and later.at(9.99) == 0
    cfg = BorrowCfg(trace="lend.csv")
    assert capacity_schedule(cfg, base_dir=tmp_path) == s


@pytest.mark.parametrize(("text", "where"), [
    ("time,nodes\n0,1\n", r"row 1 \(header\)"),
    ("time_s,nodes,extra\n0,1,2\n", r"row 1 \(header\)"),
    ("time_s,nodes\n0,1\nnan,2\n", "row 3, column time_s: 'nan' is not finite"),
    ("time_s,nodes\n0,1\n5,inf\n", "row 3, column nodes: 'inf' is not finite"),
    ("time_s,nodes\n0,1\n5,-2\n", "row 3, column nodes: '-2' is not a whole number"),
    ("time_s,nodes\n0,1\n5,2.5\n", "row 3, column nodes: '2.5' is not a whole number"),
    ("time_s,nodes\n0,1\n10,2\n5,3\n", "row 4, column time_s: 5 is not after"),
    ("time_s,nodes\n0,1\n10,2\n10,3\n", "row 4, column time_s: 10 is not after"),
    ("time_s,nodes\n0,1\nabc,2\n", "row 3, column time_s: 'abc' is not a number"),
    ("time_s,nodes\n0,\n", "row 2, column nodes: '' is not a number"),
    ("time_s,nodes\n0,1,3\n", "row 2 has 3 fields"),
    ("time_s,nodes\n2e9,1\n", "row 2, column time_s: 2e\\+09 is beyond"),
    ("time_s,nodes\n", "no data rows"),
    ("", "empty"),
])
def test_trace_errors_name_file_row_and_column(tmp_path: Path, text: str, where: str) -> None:
    p = _csv(tmp_path, text)
    with pytest.raises(ValueError, match=rf"borrow trace .*lend\.csv: .*{where}"):
        schedule_from_trace(p)


def test_trace_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"nope\.csv: cannot read"):
        schedule_from_trace(tmp_path / "nope.csv")


def test_written_schedule_reads_back(tmp_path: Path) -> None:
    s = CapacitySchedule(((0.0, 3), (12.25, 0), (40.0, 9)))
    write_schedule_csv(s, tmp_path / "w.csv")
    assert schedule_from_trace(tmp_path / "w.csv") == s


# ----------------------------------------------------------------------------- cost
def test_cost_formula_by_hand() -> None:
    cfg = BorrowCfg(trace="x.csv", training_value_usd_per_gpu_hour=4.0,
                    checkpoint_overhead_s=90.0)
    # 16 nodes x 3 h lent = 172,800 node-s x 8 GPUs / 3600 = 384 GPU-h
    # 16 borrows x 90 s x 8 GPUs / 3600 = 3.2 GPU-h; (384 + 3.2) x 4 = 1548.8 USD
    c = borrow_cost_usd(172_800.0, 16, 8, cfg)
    assert c["lent_gpu_hours"] == pytest.approx(384.0)
    assert c["checkpoint_gpu_hours"] == pytest.approx(3.2)
    assert c["lost_training_gpu_hours"] == pytest.approx(387.2)
    assert c["lent_usd"] == pytest.approx(1536.0)
    assert c["checkpoint_usd"] == pytest.approx(12.8)
    assert c["total_usd"] == pytest.approx(1548.8)
    assert c["usd_per_gpu_hour"] == 4.0
    assert borrow_cost_usd(0.0, 0, 1, cfg)["total_usd"] == 0.0


@pytest.mark.parametrize(("args", "message"), [
    ((-1.0, 1, 8), "borrowed_node_seconds"), ((math.nan, 1, 8), "borrowed_node_seconds"),
    ((1.0, -1, 8), "borrows"), ((1.0, 1.5, 8), "borrows"), ((1.0, 1, 0), "gpus_per_node"),
])
def test_cost_refuses_bad_inputs(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        borrow_cost_usd(*args, BorrowCfg(trace="x.csv"))


# ----------------------------------------------------------------------------- planning
def test_windows_for_peaks_by_hand() -> None:
    lin = PeakCfg(start_s=3600, ramp_s=120, hold_s=600, decay_s=1800, decay="linear",
                  multiplier=10)
    exp = PeakCfg(start_s=20_000, ramp_s=60, hold_s=0, decay_s=1000, multiplier=5)
    # linear: 3600 - 600 .. 3600 + 120 + 600 + 1800 + 300 = 6420
    # exponential: active for 3 time constants: 20000 - 600 .. 20000 + 60 + 3000 + 300
    w = borrow_windows_for_peaks([exp, lin], lead_s=600, return_after_s=300)
    assert w == [(3000.0, 6420.0), (19_400.0, 23_360.0)]
    assert wanted_at(w, 3000.0) and not wanted_at(w, 6420.0) and not wanted_at(w, 10_000.0)


def test_windows_for_peaks_merge_clamp_and_drop() -> None:
    p = PeakCfg(start_s=0, ramp_s=100, hold_s=0, decay_s=100, decay="linear", multiplier=2)
    # starts -1000 (ends -1000 + 200 + 50 < 0: dropped), 50 (-50..300 -> 0..300),
    # 300 (200..550: merged)
    w = borrow_windows_for_peaks([p, p, p], 100, 50, starts_s=[-1000, 50, 300])
    assert w == [(0.0, 550.0)]
    # touching windows merge too
    assert borrow_windows_for_peaks([p, p], 0, 0, starts_s=[0, 200]) == [(0.0, 400.0)]
    assert borrow_windows_for_peaks([p, p], 0, 0, starts_s=[0, 201]) == [(0.0, 200.0),
                                                                        (201.0, 401.0)]


def test_windows_for_peaks_refusals() -> None:
    cal = PeakCfg(at="11-11 00:00", multiplier=3)
    with pytest.raises(ValueError, match="need starts_s"):
        borrow_windows_for_peaks([cal], 0, 0)
    with pytest.raises(ValueError, match="one start per peak"):
        borrow_windows_for_peaks([cal], 0, 0, starts_s=[1.0, 2.0])
    with pytest.raises(ValueError, match="lead_s"):
        borrow_windows_for_peaks([], -1, 0)
    assert borrow_windows_for_peaks([cal], 0, 0, starts_s=[10.0]) == [(10.0, 10.0 + 120 + 10800)]


# ----------------------------------------------------------------------------- Alibaba
_HEADER = ("instance_sn,role,app_name,cpu_request,cpu_limit,gpu_request,gpu_limit,rdma_request,"
           "rdma_limit,memory_request,memory_limit,disk_request,disk_limit,"
           "max_instance_per_node,creation_time,scheduled_time,deletion_time\n")


def _ali(tmp_path: Path, rows: list[str]) -> Path:
    p = tmp_path / "ali.csv"
    p.write_text(_HEADER + "".join(f"i{k},{r}\n" for k, r in enumerate(rows)))
    return p


def _row(role: str, gpus: object, created: str, sched: str, gone: str) -> str:
    return f"{role},app,8,8,{gpus},{gpus},0,0,40,40,0,0,-1,{created},{sched},{gone}"


def test_alibaba_mapping_by_hand(tmp_path: Path) -> None:
    p = _ali(tmp_path, [
        _row("HN", 2, "", "", ""),           # alive throughout: 2 GPUs
        _row("HN", 4, "", "", "100"),        # from before the trace until 100
        _row("HN", 8, "40", "50", "300"),    # created 40, holds GPUs from scheduling at 50
        _row("CN", 0, "10", "10", "20"),     # CPU node: no GPUs
        _row("HN", 1, "400", "400", ""),     # until after the end; end of trace = 400
    ])
    t, held, end = alibaba_gpu_demand(p)
    assert list(t) == [0.0, 50.0, 100.0, 300.0, 400.0]
    assert list(held) == [6, 14, 10, 2, 3] and end == 400.0
    # 16 GPUs shared, 4 per node: floor((16 - held) / 4) = 2, 0, 1, 3, 3
    s = capacity_from_alibaba_trace(p, training_cluster_gpus=16, gpus_per_node=4)
    assert s.changes() == [(0.0, 2), (50.0, 0), (100.0, 1), (300.0, 3)]
    # a pool smaller than serving's holding lends nothing (clamped, not negative)
    assert capacity_from_alibaba_trace(p, training_cluster_gpus=1, gpus_per_node=1).max() == 0
    # trace time 60 becomes t = 0; 250 s kept (the change at 300 = t 240 kept, none after 310)
    w = capacity_from_alibaba_trace(p, training_cluster_gpus=16, gpus_per_node=4,
                                    start_s=60, duration_s=250)
    assert w.changes() == [(0.0, 0), (40.0, 1), (240.0, 3)]
    cut = capacity_from_alibaba_trace(p, training_cluster_gpus=16, gpus_per_node=4,
                                      start_s=60, duration_s=240)
    assert cut.changes() == [(0.0, 0), (40.0, 1)]


@pytest.mark.parametrize(("row", "where"), [
    (_row("HN", "x", "", "", ""), "row 3, column gpu_request: 'x'"),
    (_row("HN", "", "", "", ""), "row 3, column gpu_request"),
    (_row("HN", -1, "", "", ""), "row 3, column gpu_request"),
    (_row("HN", 1, "5", "5", "-3"), "row 3, column deletion_time"),
    (_row("HN", 1, "5", "5", "inf"), "row 3, column deletion_time"),
    (_row("GN", 1, "", "", ""), "row 3, column role: 'GN'"),
    (_row("HN", 1, "5", "", ""), "row 3, column scheduled_time"),
    (_row("HN", 1, "5", "9", "7"), "row 3, column deletion_time: before scheduled_time"),
])
def test_alibaba_malformed_rows_are_named(tmp_path: Path, row: str, where: str) -> None:
    p = _ali(tmp_path, [_row("HN", 1, "", "", "10"), row])
    with pytest.raises(ValueError, match=rf"Alibaba trace .*ali\.csv: {where}"):
        alibaba_gpu_demand(p)


def test_alibaba_argument_checks(tmp_path: Path) -> None:
    p = _ali(tmp_path, [_row("HN", 1, "", "", "10")])
    with pytest.raises(ValueError, match="start_s must lie in the trace"):
        capacity_from_alibaba_trace(p, training_cluster_gpus=4, gpus_per_node=1, start_s=10)
    with pytest.raises(ValueError, match="duration_s"):
        capacity_from_alibaba_trace(p, training_cluster_gpus=4, gpus_per_node=1, duration_s=0)
    with pytest.raises(ValueError, match="gpus_per_node"):
        capacity_from_alibaba_trace(p, training_cluster_gpus=4, gpus_per_node=0)
    with pytest.raises(ValueError, match="training_cluster_gpus"):
        capacity_from_alibaba_trace(p, training_cluster_gpus=-1, gpus_per_node=1)
    with pytest.raises(ValueError, match="cannot read the columns"):
        capacity_from_alibaba_trace(tmp_path / "missing.csv", training_cluster_gpus=4,
                                    gpus_per_node=1)


def _real_trace() -> Path:
    if not ALIBABA.is_file():
        pytest.skip(f"the Alibaba DLRM 2025 trace is not here ({ALIBABA})")
    return ALIBABA


def test_alibaba_mapping_on_the_real_trace() -> None:
    path = _real_trace()
    s = capacity_from_alibaba_trace(path, training_cluster_gpus=3600, gpus_per_node=8)
    # README: 3,123 HN instances (1 GPU each) alive when the trace starts -> (3600-3123)//8
    assert s.at(0.0) == 59
    # cross-check against a direct count of the instances alive at a few times
    df = pd.read_csv(path)
    hn = df[df.role == "HN"]
    begin = hn.scheduled_time.fillna(0.0)
    end = hn.deletion_time.fillna(np.inf)
    for tau in (0.0, 86_400.0, 1_000_000.0, 2_000_000.0, 2_677_000.0):
        alive = int(hn.gpu_request[(begin <= tau) & (end > tau)].sum())
        assert s.at(tau) == max(0, 3600 - alive) // 8, tau
    assert 3000 < alive < 3500
    # one simulated day from trace day 10
    day = capacity_from_alibaba_trace(path, training_cluster_gpus=3600, gpus_per_node=8,
                                      start_s=10 * 86_400.0, duration_s=86_400.0)
    assert day.at(0.0) == s.at(10 * 86_400.0)
    assert all(0.0 <= t < 86_400.0 for t, _ in day.changes())


def test_benchmark_script_writes_a_readable_trace(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "borrow_capacity_from_trace", ROOT / "benchmarks" / "borrow_capacity_from_trace.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    src = _ali(tmp_path, [_row("HN", 2, "", "", "100"), _row("HN", 1, "", "", "")])
    out = tmp_path / "out.csv"
    assert mod.main([str(out), "--training-cluster-gpus", "7", "--gpus-per-node", "2",
                     "--trace", str(src)]) == 0
    assert schedule_from_trace(out).changes() == [(0.0, 2), (100.0, 3)]
    assert mod.main([str(out), "--training-cluster-gpus", "-3", "--trace", str(src)]) == 2
