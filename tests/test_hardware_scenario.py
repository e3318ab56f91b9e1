"""The shipped buy / spot / borrow comparison (scenarios/singles_day_gpu.toml): every option
assembles, and compare reports GPU-hours as a headline with its paired difference."""

from __future__ import annotations

import warnings

import pytest

from simulator.calendar_time import shift
from simulator.engine.simulation import Simulation
from simulator.experiment import ExperimentWarning, compare, load_base, parse_variants
from tests.conftest import ROOT

PATH = ROOT / "scenarios/singles_day_gpu.toml"


def test_every_option_assembles_with_its_hardware() -> None:
    base = load_base(PATH)
    vs = parse_variants(None, base)
    assert list(vs) == ["buy_for_peak", "spot", "borrow"]
    for name, ov in vs.items():
        sim = Simulation(base.validate(ov))
        for p, hw in zip(sim.pools, sim.hardware, strict=True):
            assert hw.node_type is not None and hw.node_type.gpus == 8, (name, p.name)
            assert p.instances == 8 and hw.device_groups == 8  # one instance per H100
            assert hw.plan is not None and hw.plan.world_size == 1  # int8 fits one GPU
        kinds = {p.cfg.purchase for p in sim.pools}
        assert kinds == {"buy_for_peak": {"reserved"}, "spot": {"on_demand", "spot"},
                         "borrow": {"on_demand", "borrowed"}}[name]


def test_compare_reports_gpu_hours() -> None:
    """Four simulated minutes before the peak: buying for the peak holds 2 nodes (16 GPUs),
    the other options 1 on-demand node; GPU-hours are a headline with a paired CI."""
    start = load_base(PATH).validate().simulation.start
    assert start is not None
    end = shift(start, 240.0 - 60.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentWarning)
        res = compare(PATH, replications=2, workers=1, keep_series=False,
                      overrides=[f'simulation.end="{end}"', "simulation.warmup_s=60",
                                 "workload.arrival.rate_qps=5"])
    t = res.table.set_index(["variant", "metric"])
    window_h = 180.0 / 3600
    assert t.loc[("buy_for_peak", "gpu_hours"), "mean"] == pytest.approx(16 * window_h)
    assert t.loc[("borrow", "gpu_hours"), "mean"] == pytest.approx(8 * window_h)
    d = res.diffs.set_index(["variant", "metric"])
    assert d.loc[("spot", "gpu_hours"), "verdict"] == "fewer GPU-hours"
