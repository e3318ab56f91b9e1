"""Calendar windows: simulation.start/end (the measurement window, warm-up before it), peaks
placed ``at`` a calendar time, the derived duration_s/start_hour, dumps that re-validate,
``--set`` on the shipped files, and the warm-up/peak warnings."""

from __future__ import annotations

import json
import math
import tomllib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from simulator import calendar_time as ct
from simulator.api import run
from simulator.cli import main
from simulator.scenario import (
    ScenarioError,
    load_scenario,
    scenario_from_dict,
    scenario_warnings,
)
from simulator.workload import Workload
from tests.conftest import ROOT, mmc_dict

SCEN = ROOT / "scenarios"
BF = SCEN / "black_friday.toml"
SD = SCEN / "singles_day.toml"
Y = 2001  # any common year: only differences of datetimes are used below


def _cal(start: str, end: str, warmup_s: float = 0.0, **extra: Any) -> dict[str, Any]:
    """An M/M/c scenario dict in the calendar form."""
    raw = mmc_dict(**extra)
    raw["simulation"] = {"start": start, "end": end, "warmup_s": warmup_s, "seed": 3,
                         "records": "none"}
    return raw


def _err(raw: dict[str, Any], *overrides: tuple[str, Any]) -> str:
    with pytest.raises(ScenarioError) as e:
        scenario_from_dict(raw, "s.toml", list(overrides))
    return str(e.value)


def _hour(d: datetime) -> float:
    return d.hour + d.minute / 60 + (d.second + d.microsecond / 1e6) / 3600


# ----------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(("text", "expect"), [
    ("11-11 00:00", datetime(Y, 11, 11, 0, 0)),
    ("2026-11-27 09:30", datetime(2026, 11, 27, 9, 30)),
    ("11-10 23:30:15", datetime(Y, 11, 10, 23, 30, 15)),
    (" 2028-02-29 12:00 ", datetime(2028, 2, 29, 12, 0)),
])
def test_calendar_formats(text: str, expect: datetime) -> None:
    t = ct.parse_calendar(text)
    assert t.has_year == (expect.year != Y)
    assert (t.when if t.has_year else t.when.replace(year=Y)) == expect
    assert ct.calendar_text(text) == text.strip()


def test_toml_local_datetime_is_accepted() -> None:
    raw = tomllib.loads('start = 2026-11-27 00:00:00')
    assert ct.calendar_text(raw["start"]) == "2026-11-27 00:00:00"


@pytest.mark.parametrize("text", ["11/11 00:00", "11-11", "13-01 00:00", "11-11 24:00",
                                  "11-31 00:00", "2026-11-11", "noon"])
def test_bad_calendar_text_names_the_formats(text: str) -> None:
    msg = _err(_cal(text, "11-12 00:00"))
    assert "field 'simulation.start'" in msg and ct.FORMATS in msg


def test_feb_29_needs_a_year() -> None:
    msg = _err(_cal("02-29 00:00", "03-01 00:00"))
    assert "field 'simulation.start'" in msg and "leap" in msg
    sc = scenario_from_dict(_cal("2028-02-28 12:00", "2028-03-01 12:00"))
    assert sc.simulation.duration_s == 2 * 86400  # over 02-29


def test_end_before_start_rolls_into_the_next_year() -> None:
    sc = scenario_from_dict(_cal("12-31 22:00", "01-01 02:00", warmup_s=60))
    expect = (datetime(Y + 1, 1, 1, 2) - datetime(Y, 12, 31, 22)).total_seconds() + 60
    assert sc.simulation.duration_s == expect
    # a year on start only: the end takes it (and rolls over)
    sc2 = scenario_from_dict(_cal("2026-12-31 22:00", "01-01 02:00", warmup_s=60))
    assert sc2.simulation.duration_s == expect


@pytest.mark.parametrize(("sim", "fields"), [
    ({"start": "11-11 00:00"}, ["simulation.start", "simulation.end"]),
    ({"end": "11-11 00:00", "duration_s": 100}, ["simulation.end", "simulation.start"]),
    ({"start": "11-11 01:00", "end": "11-11 01:00"}, ["simulation.end", "must be after"]),
    ({"start": "11-11 00:00", "end": "2026-11-12 00:00"}, ["simulation.end", "year"]),
    ({}, ["simulation.duration_s", "simulation.start"]),
    ({"start": "11-11 00:00", "end": "11-11 01:00", "warmup_s": 600, "start_hour": 0.0},
     ["simulation.start_hour", "23.8333"]),
    ({"start": "11-11 00:00", "end": "11-11 01:00", "duration_s": 7200},
     ["simulation.duration_s", "simulation.end"]),
])
def test_window_errors_name_the_fields(sim: dict[str, Any], fields: list[str]) -> None:
    raw = mmc_dict()
    raw["simulation"] = sim
    msg = _err(raw)
    assert all(f in msg for f in fields), msg


# ----------------------------------------------------------------------------- derived values
@pytest.mark.parametrize(("start", "end", "warmup_s"), [
    ("11-27 00:00", "11-28 00:00", 600.0),
    ("11-10 20:00", "11-11 20:00", 0.0),
    ("2026-11-26 23:30:30", "2026-11-27 01:00", 45.5),
])
def test_derived_duration_and_start_hour(start: str, end: str, warmup_s: float) -> None:
    sim = scenario_from_dict(_cal(start, end, warmup_s)).simulation
    s = datetime.fromisoformat(start if start[4] == "-" else f"{Y}-{start}")
    e = datetime.fromisoformat(end if end[4] == "-" else f"{Y}-{end}")
    assert sim.duration_s == pytest.approx((e - s).total_seconds() + warmup_s, abs=1e-9)
    assert sim.start_hour == pytest.approx(_hour(s - timedelta(seconds=warmup_s)), abs=1e-12)
    # a value given that agrees is accepted (a dump carries them)
    raw = _cal(start, end, warmup_s)
    raw["simulation"].update(duration_s=sim.duration_s, start_hour=sim.start_hour)
    assert scenario_from_dict(raw).simulation == sim


# ----------------------------------------------------------------------------- peaks
def test_peak_errors_name_the_fields() -> None:
    peak = {"name": "p", "ramp_s": 60, "hold_s": 60, "decay_s": 60, "multiplier": 2}
    both = mmc_dict(workload={"peaks": [{**peak, "start_s": 10, "at": "11-11 00:00"}]})
    assert "'start_s'" in _err(both) and "'at'" in _err(both)
    assert "workload.peaks.p" in _err(both)
    neither = mmc_dict(workload={"peaks": [peak]})
    assert "'start_s'" in _err(neither) and "'at'" in _err(neither)
    legacy_at = mmc_dict(workload={"peaks": [{**peak, "at": "11-11 00:00"}]})
    msg = _err(legacy_at)
    assert "workload.peaks.p.at" in msg and "simulation.start" in msg
    cal = _cal("11-10 23:30", "11-11 01:00", 600)
    cal["workload"]["peaks"] = [{**peak, "start_s": 1800}]
    msg = _err(cal)
    # start_s 1800 s after the run's beginning (23:20) is 23:50: the message says so
    assert "workload.peaks.p.start_s" in msg and 'at = "11-10 23:50"' in msg
    cal["workload"]["peaks"] = [{**peak, "at": "2026-11-11 00:00"}]
    assert "workload.peaks.p.at" in _err(cal)
    cal["workload"]["peaks"] = [{**peak, "at": "11-11 25:00"}]
    assert ct.FORMATS in _err(cal)


def _rate_at(sc: Any, clock: datetime) -> float:
    """The built arrival curve's rate at calendar time ``clock`` (year Y)."""
    begin = datetime.fromisoformat(f"{Y}-{sc.simulation.start}") - timedelta(
        seconds=sc.simulation.warmup_s)
    t = (clock - begin).total_seconds()
    assert 0 <= t < sc.simulation.duration_s
    return float(Workload(sc).curve.rate(np.array([t]))[0])


def test_peak_keeps_its_clock_time_when_the_window_moves() -> None:
    day = load_scenario(SD)  # 11-10 20:00 .. 11-11 20:00, peak at 11-11 00:00
    night = load_scenario(SD, ['simulation.start="11-10 23:30"',
                               'simulation.end="11-11 01:00"'])
    assert night.simulation.duration_s < day.simulation.duration_s
    at = datetime(Y, 11, 11, 0, 0)
    for sc in (day, night):
        begin = datetime.fromisoformat(f"{Y}-{sc.simulation.start}") - timedelta(
            seconds=sc.simulation.warmup_s)
        assert sc.peak_starts_s() == [(at - begin).total_seconds()]
    t = at + timedelta(minutes=5)  # inside the hold: 30x the mean
    p = day.workload.peaks[0]
    assert p.ramp_s < 300 < p.ramp_s + p.hold_s
    assert _rate_at(day, t) == pytest.approx(_rate_at(night, t), rel=1e-12)
    assert _rate_at(night, t) == pytest.approx(p.multiplier * day.workload.arrival.rate_qps)
    # before the ramp both follow the same diurnal base, well below the peak
    before = at - timedelta(minutes=1)
    assert _rate_at(day, before) == pytest.approx(_rate_at(night, before), rel=1e-12)
    assert _rate_at(night, before) < _rate_at(night, t) / 10


def _peak_scenario(at: str, decay: str = "linear") -> Any:
    raw = _cal("11-11 00:00", "11-11 01:00", 0.0, lam=10.0)
    raw["workload"]["peaks"] = [{"name": "p", "at": at, "ramp_s": 600, "hold_s": 600,
                                 "decay_s": 1200, "decay": decay, "multiplier": 5}]
    return scenario_from_dict(raw)


def test_a_peak_that_began_before_the_run() -> None:
    # ramp 23:40-23:50, hold to 00:00, linear decay to 00:20: at t = 0 it is at full level
    sc = _peak_scenario("11-10 23:40")
    (a,) = sc.peak_starts_s()
    assert a == -1200.0
    curve = Workload(sc).curve
    p = sc.workload.peaks[0]
    lam = sc.workload.arrival.rate_qps
    t = np.array([0.0, 300.0, 600.0, 1199.0, 1500.0])
    shape = np.clip(1 - (t - (a + p.ramp_s + p.hold_s)) / p.decay_s, 0, 1)
    assert curve.rate(t) == pytest.approx(lam + (p.multiplier * lam - lam) * shape)
    # arrivals follow it (thinning bounds hold with a negative start)
    times = np.concatenate([c.time for c in Workload(sc).chunks()])
    expect = curve.cumulative(0.0, sc.simulation.duration_s)[1][-1]
    assert abs(len(times) - expect) < 5 * math.sqrt(expect)
    assert scenario_warnings(sc) and "began before the run" in scenario_warnings(sc)[0]


@pytest.mark.parametrize("at", ["11-10 20:00", "11-11 05:00"])
def test_a_peak_outside_the_run_adds_nothing(at: str) -> None:
    sc = _peak_scenario(at, decay="exponential")
    t = np.linspace(0.0, sc.simulation.duration_s, 3601)
    assert np.all(Workload(sc).curve.rate(t) == sc.workload.arrival.rate_qps)
    (w,) = scenario_warnings(sc)
    assert "'p'" in w and "entirely outside the run" in w


# ----------------------------------------------------------------------------- warm-up
def test_warmup_lies_before_the_window_and_is_not_counted() -> None:
    raw = _cal("11-11 00:00", "11-11 00:10", 120.0, c=2, lam=3.0, mean_ms=100.0)
    sc = scenario_from_dict(raw)
    assert sc.simulation.duration_s == 600 + 120
    res = run(sc, records="all")
    t = res.records["arrival_s"].to_numpy()
    begin = datetime(Y, 11, 11) - timedelta(seconds=120)
    clock = [begin + timedelta(seconds=float(x)) for x in t]
    before = np.array([c < datetime(Y, 11, 11) for c in clock])
    assert before.any() and not before.all()
    assert np.array_equal(before, t < sc.simulation.warmup_s)
    s = res.summary
    assert s["warmup_s"] == 120 and s["sim_duration_s"] == 720
    assert s["requests"]["arrived"] == int((~before).sum())
    assert s["requests"]["arrived_incl_warmup"] == len(t)


# ----------------------------------------------------------------------------- dumps, --set
@pytest.mark.parametrize("sets", [
    [], ['simulation.start="11-26 23:30"', 'simulation.end="11-27 01:00"'],
    ["simulation.warmup_s=0"], ['simulation.start="2026-11-27 06:00"',
                                'simulation.end="2026-11-27 12:00"'],
])
def test_dump_revalidates_to_the_same_scenario(sets: list[str]) -> None:
    sc = load_scenario(BF, sets)
    dump = json.loads(json.dumps(sc.model_dump(mode="json")))
    assert dump["simulation"]["duration_s"] == sc.simulation.duration_s
    again = scenario_from_dict(dump, base_dir=SCEN)  # its relative paths: from its folder
    assert again.model_dump() == sc.model_dump() and again.model_dump(mode="json") == dump
    assert ct.peak_starts_s(dump) == sc.peak_starts_s()


def test_overrides_on_a_dump_rederive_the_window() -> None:
    dump = load_scenario(BF).model_dump(mode="json")
    sc = scenario_from_dict(dump, overrides=[("simulation.warmup_s", 0.0)], base_dir=SCEN)
    assert (sc.simulation.duration_s, sc.simulation.start_hour) == (86400.0, 0.0)
    sc = scenario_from_dict(dump, overrides=[("simulation.end", "11-27 01:00")],
                            base_dir=SCEN)
    assert sc.simulation.duration_s == 3600 + 600
    # edited by hand, the stale derived value is refused, naming it
    stale = json.loads(json.dumps(dump))
    stale["simulation"]["end"] = "11-27 01:00"
    assert "simulation.duration_s" in _err(stale)


def test_set_start_end_and_warmup_on_the_shipped_file(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["validate", str(BF), "--set", "simulation.start=11-26 23:30",
                                  "--set", "simulation.end=11-27 01:00"])
    assert r.exit_code == 0, r.output
    sim = json.loads(r.stdout[: r.stdout.rindex("}") + 1])["simulation"]
    assert sim["duration_s"] == 90 * 60 + sim["warmup_s"]
    assert sim["start_hour"] == pytest.approx(_hour(datetime(Y, 11, 26, 23, 30) - timedelta(
        seconds=sim["warmup_s"])))
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["run", str(BF), "--set", 'simulation.start="11-26 23:59"',
                                  "--set", 'simulation.end="11-27 00:01"',
                                  "--set", "simulation.warmup_s=0", "--records", "none",
                                  "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    saved = json.loads((out / "scenario.json").read_text())
    assert saved["scenario"]["simulation"]["duration_s"] == 120.0
    assert json.loads((out / "summary.json").read_text())["sim_duration_s"] == 120.0
    # the saved scenario re-runs as it is
    assert scenario_from_dict(saved["scenario"]).model_dump(mode="json") == saved["scenario"]


# ----------------------------------------------------------------------------- warnings
def _legacy_black_friday() -> dict[str, Any]:
    """The shipped Black Friday in the legacy form it had: t = 0 at 00:00, the doorbuster at
    start_s = 0 inside the 600-s warm-up."""
    raw = tomllib.loads(BF.read_text())
    raw["simulation"] = {k: v for k, v in raw["simulation"].items() if k not in ("start",
                                                                                 "end")}
    raw["simulation"].update(duration_s=86400, start_hour=0.0)
    raw["service"]["profile"] = str(SCEN / raw["service"]["profile"])
    for p in raw["workload"]["peaks"]:
        at = datetime.fromisoformat(f"{Y}-{p.pop('at')}")
        p["start_s"] = (at - datetime(Y, 11, 27)).total_seconds()
    return raw


def test_warning_when_the_warmup_swallows_a_peak() -> None:
    sc = scenario_from_dict(_legacy_black_friday())
    (w,) = scenario_warnings(sc)
    assert "doorbuster 00:00" in w and "warm-up" in w and "simulation.warmup_s" in w
    assert "00:00" in w and "00:10" in w  # both spans as clock times
    moved = load_scenario(BF, ['simulation.start="11-27 00:05"'])
    (w,) = scenario_warnings(moved)
    assert "doorbuster" in w and "11-26 23:55 to 11-27 00:05" in w
    assert "simulation.start" in w


@pytest.mark.parametrize("path", sorted(SCEN.glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_scenarios_have_no_warnings(path: Path) -> None:
    assert scenario_warnings(load_scenario(path)) == []


def test_cli_prints_warnings_on_stderr_as_plain_text(tmp_path: Path) -> None:
    raw = _legacy_black_friday()
    raw["workload"]["peaks"][0]["name"] = "[bold]door[/bold]"
    import tomli_w

    p = tmp_path / "bf.toml"
    p.write_text(tomli_w.dumps(raw))
    r = CliRunner().invoke(main, ["validate", str(p)])
    assert r.exit_code == 0, r.output
    assert "warning: peak '[bold]door[/bold]'" in r.stderr
    assert "warning:" not in r.stdout


# ----------------------------------------------------------------------------- legacy
def test_legacy_form_equals_its_calendar_equivalent() -> None:
    """A legacy scenario (start_hour, duration_s, a start_s peak) and the same run written in
    the calendar form give identical results."""
    peak = {"name": "p", "ramp_s": 60, "hold_s": 120, "decay_s": 90, "multiplier": 3.0}
    extra = {"c": 3, "lam": 4.0, "mean_ms": 300.0}
    legacy = mmc_dict(duration_s=1200, warmup_s=120, seed=3, **extra,
                      workload={"peaks": [{**peak, "start_s": 300}],
                                "diurnal": {"kind": "sinusoid", "peak_hour": 21.0}})
    legacy["simulation"].update(start_hour=23.5, records="all")
    cal = _cal("11-10 23:32", "11-10 23:50", 120.0, **extra,
               workload={"peaks": [{**peak, "at": "11-10 23:35"}],
                         "diurnal": {"kind": "sinusoid", "peak_hour": 21.0}})
    cal["simulation"]["records"] = "all"
    a, b = scenario_from_dict(legacy), scenario_from_dict(cal)
    assert a.simulation.start is None and a.peak_starts_s() == [300.0]
    assert (b.simulation.duration_s, b.simulation.start_hour) == (1200.0, 23.5)
    assert b.peak_starts_s() == [300.0]
    ra, rb = run(a), run(b)
    sa = {k: v for k, v in ra.summary.items() if k not in ("wall_s", "scenario")}
    sb = {k: v for k, v in rb.summary.items() if k not in ("wall_s", "scenario")}
    assert sa == sb
    assert ra.records.equals(rb.records)
