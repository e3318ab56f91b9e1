"""Every shipped scenario validates and runs (a short window of it) without error."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator import load_scenario, run
from simulator.calendar_time import shift
from simulator.testing import check_invariants

SCENARIOS = sorted((Path(__file__).resolve().parents[1] / "scenarios").glob("*.toml"))


def _short(path: Path, run_s: float = 240.0, warmup_s: float = 20.0) -> list[str]:
    """Overrides for a run of ``run_s`` (warm-up included) from the scenario's beginning: in
    the calendar form the window's end moves (the warm-up lies before simulation.start)."""
    start = load_scenario(path).simulation.start
    if start is None:
        length = f"simulation.duration_s={run_s}"
    else:
        length = f'simulation.end="{shift(start, run_s - warmup_s)}"'
    return [length, f"simulation.warmup_s={warmup_s}", "simulation.timeseries_interval_s=10"]


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenario_runs(path: Path) -> None:
    sc = load_scenario(path, _short(path))
    assert sc.simulation.duration_s == 240.0
    if sc.stages is not None:  # a cascade: its flow's invariants, every unit's own
        from tests.test_cascade import check_flow

        sc = load_scenario(path, _short(path, warmup_s=0.0))  # every count the whole run
        s = check_flow(sc, sc.simulation.seed)
        assert s["requests"]["arrived"] > 0 and set(s["stages"]) == {x.name for x in sc.stages}
        return
    res = run(sc, records="all")
    check_invariants(res)
    assert res.summary["requests"]["arrived"] > 0


def test_singles_day_peak_is_30x_the_mean(root: Path) -> None:
    import numpy as np

    from simulator.workload import Workload

    sc = load_scenario(root / "scenarios/singles_day.toml")
    curve = Workload(sc).curve
    (t0,) = sc.peak_starts_s()  # 00:00 on 11-11, s since the run's beginning
    p = sc.workload.peaks[0]
    assert p.ramp_s < 300 < p.ramp_s + p.hold_s
    peak = curve.rate(np.array([t0 + 300.0]))[0]  # 00:05, inside the hold
    assert peak == pytest.approx(30 * sc.workload.arrival.rate_qps)
    night = curve.rate(np.array([t0 - 60.0]))[0]  # 23:59, before the ramp
    assert night < peak / 10


def test_scenario_reference_is_up_to_date(root: Path) -> None:
    from simulator.docgen import render

    committed = (root / "docs/scenario-reference.md").read_text()
    hint = "run: python -m simulator.docgen > docs/scenario-reference.md"
    assert committed == render() + "\n", hint
