"""Each figure built from real small runs and inspected as an object: series, units, CI bars,
Pareto front membership; plus the pure helpers (t intervals, Pareto mask, windows)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from matplotlib.axes import Axes
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.figure import Figure
from scipy import stats

from analysis import plots
from analysis.calibration_plots import read_profile
from analysis.reduce import pareto_mask, t_interval
from analysis.results import load_compare, load_run, load_sweep
from analysis.tables import run_costs, sweep_points
from analysis.timeline import parse_window
from tests.test_analysis_data import (
    PROFILE,
    VARIANTS,
    compare_dir,
    elastic_run_dir,
    run_dir,
    sweep_dir,
)

UNIT = re.compile(r"\(.+\)")


def assert_units(fig: Figure, categorical_x: bool = False) -> None:
    """Every numeric axis of every panel names its unit in parentheses."""
    axes = [a for a in fig.axes if a.get_visible()]
    assert axes
    for ax in axes:
        assert UNIT.search(ax.get_ylabel()), ax.get_ylabel()
        if not categorical_x and ax.get_xlabel():
            assert UNIT.search(ax.get_xlabel()), ax.get_xlabel()
    if not categorical_x:
        assert UNIT.search(axes[-1].get_xlabel())


def line(ax: Axes, gid: str) -> np.ndarray:
    hits = [ln for ln in ax.get_lines() if ln.get_gid() == gid]
    assert len(hits) == 1, (gid, [ln.get_gid() for ln in ax.get_lines()])
    return np.asarray(hits[0].get_xydata())


# ----------------------------------------------------------------------------- statistics
def test_t_interval_matches_scipy() -> None:
    x = [3.0, 4.5, 5.0, 7.25]
    mean, half, n = t_interval(x)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert (mean - half, mean + half, n) == pytest.approx((lo, hi, 4))
    assert np.isnan(t_interval([2.0])[1]) and t_interval([2.0, 2.0])[1] == 0.0


def brute_front(x: np.ndarray, y: np.ndarray) -> set[int]:
    keep = set()
    for i in range(len(x)):
        if not (np.isfinite(x[i]) and np.isfinite(y[i])):
            continue
        dominated = any(x[j] <= x[i] and y[j] <= y[i] and (x[j] < x[i] or y[j] < y[i])
                        for j in range(len(x)) if np.isfinite(x[j]) and np.isfinite(y[j]))
        if not dominated:
            keep.add(i)
    return keep


coord = st.one_of(st.integers(0, 6).map(float), st.floats(0, 10), st.just(float("nan")))


@given(st.lists(st.tuples(coord, coord), max_size=40))
def test_pareto_mask_is_exactly_the_non_dominated_points(pts: list[tuple[float, float]]) -> None:
    x = np.array([p[0] for p in pts], dtype=float)
    y = np.array([p[1] for p in pts], dtype=float)
    assert set(np.flatnonzero(pareto_mask(x, y)).tolist()) == brute_front(x, y)


# ----------------------------------------------------------------------------- comparison
def test_policy_comparison_bars_and_ci_match_replications() -> None:
    runs = load_compare(compare_dir()).runs
    colors = plots.palette(VARIANTS)
    fig = plots.policy_comparison(runs, colors=colors)
    assert len(fig.axes) == len(plots.COMPARISON_METRICS)
    assert_units(fig, categorical_x=True)
    for ax, m in zip(fig.axes, plots.COMPARISON_METRICS, strict=True):
        bars = [c for c in ax.containers if isinstance(c, BarContainer)]
        errs = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        assert len(bars) == 1 and len(errs) == 1
        assert [t.get_text() for t in ax.get_xticklabels()] == list(VARIANTS)
        segs = errs[0].lines[2][0].get_segments()
        assert len(segs) == len(VARIANTS)
        for k, (name, rect, seg) in enumerate(zip(VARIANTS, bars[0], segs, strict=True)):
            vals = runs.loc[runs["variant"] == name, m.column].to_numpy(float) * m.scale
            mean = vals.mean()
            lo, hi = ((mean, mean) if vals.std() == 0 else
                      stats.t.interval(0.95, len(vals) - 1, loc=mean, scale=stats.sem(vals)))
            assert rect.get_height() == pytest.approx(mean, rel=1e-9, abs=1e-12)
            assert np.allclose(seg, [[k, lo], [k, hi]], rtol=1e-9, atol=1e-12)
            assert rect.get_facecolor()[:3] == pytest.approx(
                tuple(int(colors[name][i:i + 2], 16) / 255 for i in (1, 3, 5)))


def test_cost_breakdown_stacks_components_to_the_total() -> None:
    s = load_run(run_dir()).summary
    fig = plots.cost_breakdown(run_costs(s))
    assert_units(fig, categorical_x=True)
    ax = fig.axes[0]
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert [b.get_label() for b in bars] == ["compute", "energy", "storage", "human",
                                             "sla penalty"]
    top = bars[-1][0]
    assert top.get_y() + top.get_height() == pytest.approx(s["cost_usd"]["total"])


# ----------------------------------------------------------------------------- Pareto
def test_pareto_figure_marks_front_dominated_and_plan_choice() -> None:
    res = load_sweep(sweep_dir())
    pts = sweep_points(res.sweep, res.params, res.plan)
    assert len(pts) == 6 and (pts["runs"] == 2).all()
    fig = plots.pareto_front(pts, chosen=res.plan["best"], params=res.params)
    assert_units(fig)
    ax = fig.axes[0]
    coll = {c.get_gid(): c for c in ax.collections}
    x = pts["cost_usd.total"].to_numpy(float)
    y = pts["sla.violation_rate"].to_numpy(float) * 100
    front = brute_front(x, y)
    got_front = {tuple(p) for p in coll["front"].get_offsets()}
    assert got_front == {(x[i], y[i]) for i in front}
    got_dom = {tuple(p) for p in coll["dominated"].get_offsets()}
    assert got_dom == {(x[i], y[i]) for i in set(range(len(x))) - front}
    assert coll["dominated"].get_alpha() < 1
    best = res.plan["best"]
    i = pts.index[(pts["cluster.pools.cpu.nodes"] == best["cluster.pools.cpu.nodes"])
                  & (pts["policy.batching.max_batch"] == best["policy.batching.max_batch"])][0]
    assert np.allclose(coll["chosen"].get_offsets(), [[x[i], y[i]]])


# ----------------------------------------------------------------------------- timeline
def test_parse_window_clock_and_seconds() -> None:
    assert parse_window("23:30-01:00", start_hour=12.0) == (41400.0, 46800.0)
    assert parse_window(("23:30", "01:00"), start_hour=23.5) == (0.0, 5400.0)
    assert parse_window((100, 200.5)) == (100.0, 200.5)
    assert parse_window("100-250") == (100.0, 250.0)
    with pytest.raises(ValueError):
        parse_window("200-100")


def test_timeline_of_a_static_run() -> None:
    r = load_run(run_dir())
    slo = r.summary["sla"]["slo_ms"]
    fig = plots.peak_timeline(r.timeseries, slo_ms=slo, start_hour=23.5)
    assert_units(fig)
    a_rate, a_nodes, a_queue, a_p99 = fig.axes
    rate = line(a_rate, "arrival_rate")
    assert np.allclose(rate[:, 1], r.timeseries["arrival_rate_qps"])
    assert np.allclose(line(a_nodes, "provisioned")[:, 1], 2)
    line(a_nodes, "busy")
    line(a_queue, "queue_len")
    line(a_p99, "p99")
    assert np.allclose(line(a_p99, "slo")[:, 1], slo)
    assert a_p99.xaxis.get_major_formatter()(0.0) == "23:30"


def test_timeline_zooms_to_a_clock_window() -> None:
    r = load_run(run_dir())
    fig = plots.peak_timeline(r.timeseries, window="23:31-23:33", start_hour=23.5)
    assert fig.axes[0].get_xlim() == (60.0, 180.0)
    t = line(fig.axes[0], "arrival_rate")[:, 0]
    assert t.min() >= 60 and t.max() <= 180 and len(t) == 13


def test_timeline_draws_pools_and_scale_events_when_present() -> None:
    r = load_run(elastic_run_dir())
    fig = plots.peak_timeline(r.timeseries, pool_series=r.pool_series, events=r.events,
                              slo_ms=50, start_hour=23.5)
    assert_units(fig)
    nodes = fig.axes[1]
    for pool in ("cpu", "gpu"):
        ps = r.pool_series[r.pool_series["pool"] == pool]
        assert np.allclose(line(nodes, f"{pool}:ready")[:, 1], ps["ready"])
        assert np.allclose(line(nodes, f"{pool}:starting")[:, 1],
                           ps["provisioning"] + ps["loading"])
    for ax in fig.axes:
        ev = {c.get_gid(): c for c in ax.collections if str(c.get_gid()).startswith("event:")}
        assert {k: len(c.get_segments()) for k, c in ev.items()} == {
            "event:scale_up": 2, "event:scale_down": 1, "event:preemption": 1}
    zoom = plots.peak_timeline(r.timeseries, pool_series=r.pool_series, events=r.events,
                               window=(150, 240))
    kinds = {c.get_gid() for c in zoom.axes[0].collections}
    assert kinds == {"event:scale_down", "event:preemption"}


# ----------------------------------------------------------------------------- CDF
def test_latency_cdf_per_policy_from_records() -> None:
    res = load_compare(compare_dir())
    samples: dict[str, list[np.ndarray]] = {}
    for variant, run in res.member_runs():
        done = run.records[run.records["outcome"] == "completed"]
        samples.setdefault(str(variant), []).append(done["latency_ms"].to_numpy())
    data = {k: np.concatenate(v) for k, v in samples.items()}
    fig = plots.latency_cdf(data, slo_ms=50)
    assert_units(fig)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    for name, lat in data.items():
        xy = line(ax, name)
        assert xy[-1, 1] == pytest.approx(1.0)
        assert np.all(np.diff(xy[:, 1]) >= 0) and np.all(np.diff(xy[:, 0]) >= 0)
        assert xy[0, 0] == pytest.approx(lat.min()) and xy[-1, 0] == pytest.approx(lat.max())
        assert np.interp(np.median(lat), xy[:, 0], xy[:, 1]) == pytest.approx(0.5, abs=0.01)
    assert line(ax, "slo")[0, 0] == 50


def test_latency_cdf_without_records_says_so() -> None:
    fig = plots.latency_cdf({"a": np.array([])})
    assert not fig.axes and "records" in fig.texts[0].get_text()


# ----------------------------------------------------------------------------- calibration
def test_calibration_latency_shows_measured_points_and_fit_per_variant() -> None:
    prof = read_profile(PROFILE)
    fig = plots.calibration_latency(PROFILE)
    assert_units(fig)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    for name, v in prof["variants"].items():
        meas = line(ax, f"{name}:measured")
        assert np.allclose(meas, np.c_[v["batch_sizes"], v["latency_ms"]["median"]])
        assert np.allclose(line(ax, f"{name}:fit"), np.c_[v["fit"]["x"], v["fit"]["y_ms"]])


def test_calibration_fidelity_real_vs_simulated() -> None:
    rows = [{"load": 0.3, "rate_qps": 329, "real": {"p50": 3.5, "p95": 4.4, "p99": 5.17},
             "sim": {"p50": 3.34, "p95": 4.8, "p99": 5.61}, "real_util": 0.29, "sim_util": 0.3},
            {"load": 0.6, "rate_qps": 1643, "real": {"p50": 3.32, "p95": 6.0, "p99": 10.36},
             "sim": {"p50": 3.08, "p95": 6.7, "p99": 6.02}, "real_util": 0.46, "sim_util": 0.61}]
    table = plots.fidelity_table(rows)
    assert table["err_p99"].tolist() == pytest.approx([(5.61 - 5.17) / 5.17,
                                                      (6.02 - 10.36) / 10.36])
    fig = plots.calibration_fidelity(table)
    assert_units(fig)
    parity, err = fig.axes
    assert np.allclose(line(parity, "p99"), [[5.17, 5.61], [10.36, 6.02]])
    assert np.allclose(line(err, "err:p50"), [[30, (3.34 - 3.5) / 3.5 * 100],
                                             [60, (3.08 - 3.32) / 3.32 * 100]])
    line(parity, "parity")


def test_empty_inputs_give_a_figure_not_an_error() -> None:
    assert isinstance(plots.policy_comparison(pd.DataFrame()), Figure)
    assert isinstance(plots.pareto_front(pd.DataFrame()), Figure)
    assert isinstance(plots.cost_breakdown(pd.DataFrame()), Figure)
    assert isinstance(plots.peak_timeline(pd.DataFrame()), Figure)
