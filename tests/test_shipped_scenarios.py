"""Every shipped scenario validates and runs (a short window of it) without error."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator import load_scenario, run
from simulator.testing import check_invariants

SCENARIOS = sorted((Path(__file__).resolve().parents[1] / "scenarios").glob("*.toml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenario_runs(path: Path) -> None:
    sc = load_scenario(path, ["simulation.duration_s=240", "simulation.warmup_s=20",
                              "simulation.timeseries_interval_s=10"])
    res = run(sc, records="all")
    check_invariants(res)
    assert res.summary["requests"]["arrived"] > 0


def test_singles_day_peak_is_30x_the_mean(root: Path) -> None:
    import numpy as np

    from simulator.workload import Workload

    sc = load_scenario(root / "scenarios/singles_day.toml")
    curve = Workload(sc).curve
    peak = curve.rate(np.array([14400 + 300.0]))[0]  # 00:05, inside the hold
    assert peak == pytest.approx(30 * sc.workload.arrival.rate_qps)
    night = curve.rate(np.array([14400 - 60.0]))[0]  # 23:59, before the ramp
    assert night < peak / 10


def test_scenario_reference_is_up_to_date(root: Path) -> None:
    from simulator.docgen import render

    committed = (root / "docs/scenario-reference.md").read_text()
    hint = "run: python -m simulator.docgen > docs/scenario-reference.md"
    assert committed == render() + "\n", hint
