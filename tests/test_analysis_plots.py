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
from analysis import scenario_info as si
from analysis.calibration_plots import read_profile
from analysis.reduce import pareto_mask, t_interval
from analysis.results import load_compare, load_run, load_sweep
from analysis.tables import PER_DAY, CostBasis, run_costs, sweep_points, with_per_day_cost
from analysis.timeline import parse_window
from tests.test_analysis_data import (
    CLASS_SLO,
    CONTRACT_VARIANTS,
    PROFILE,
    VARIANTS,
    compare_dir,
    contract_scenario,
    contract_timeseries,
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
    assert np.isinf(t_interval([2.0])[1]) and t_interval([2.0, 2.0])[1] == 0.0


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
    # a panel per metric the runs have (GPU-hours only where pools have GPUs)
    present = [m for m in plots.COMPARISON_METRICS if m.column in runs.columns]
    assert "gpu_hours" not in runs.columns and len(present) == len(plots.COMPARISON_METRICS) - 1
    assert len(fig.axes) == len(present)
    assert_units(fig, categorical_x=True)
    for ax, m in zip(fig.axes, present, strict=True):
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


# ----------------------------------------------------------------------------- issue 14
# Each test below fails on the code before issue 14 (missing function, gid, scale or label).
def patches(ax: Axes, gid: str) -> list[object]:
    return [p for p in ax.patches if p.get_gid() == gid]


def test_compare_timeline_panels_share_the_clock_and_show_each_policy() -> None:
    ts = contract_timeseries()
    colors = plots.palette(CONTRACT_VARIANTS)
    fig = plots.compare_timeline(ts, slo_ms_by_class=CLASS_SLO, warmup_s=600.0,
                                 start_hour=22.0, colors=colors)
    assert_units(fig)
    a_rate, a_nodes, a_p99, a_viol = fig.axes
    # common random numbers: one load line, the mean over replications
    rate = line(a_rate, "arrival_rate")
    one = ts[ts["variant"] == "hpa"].groupby("t_s")["arrival_rate_qps"].mean()
    assert np.allclose(rate[:, 1], one.to_numpy())
    for name in CONTRACT_VARIANTS:
        mine = ts[ts["variant"] == name].groupby("t_s")
        ready = line(a_nodes, f"{name}:ready")
        assert np.allclose(ready[:, 1], mine["ready_nodes"].mean().to_numpy())
        assert [ln.get_linestyle() for ln in a_nodes.get_lines()
                if ln.get_gid() == f"{name}:busy"] == ["--"]
        assert np.allclose(line(a_nodes, f"{name}:busy")[:, 1], mine["busy_nodes"].mean())
        assert np.allclose(line(a_p99, f"{name}:p99")[:, 1], mine["p99_latency_ms"].mean())
        sums = mine[["violations", "arrivals"]].sum()
        assert np.allclose(line(a_viol, f"{name}:violation_rate")[:, 1],
                           100 * sums["violations"] / sums["arrivals"])
        assert any(c.get_gid() == f"{name}:p99_band" for c in a_p99.collections)
        hit = next(ln for ln in a_nodes.get_lines() if ln.get_gid() == f"{name}:ready")
        assert hit.get_color() == colors[name]
    # one SLO line per class, labelled with the class
    assert line(a_p99, "slo:home_feed")[0, 1] == 100.0
    assert line(a_p99, "slo:search")[0, 1] == 250.0
    labels = {ln.get_label() for ln in a_p99.get_lines()}
    assert {"home_feed SLO 100 ms", "search SLO 250 ms"} <= labels
    assert a_p99.get_yscale() == "log"  # 20 ms .. seconds: decades
    assert a_nodes.yaxis.get_major_locator()._integer  # node counts: integer ticks
    for ax in fig.axes:  # the warm-up shaded on every panel
        (span,) = patches(ax, "warmup")
        assert span.get_x() == 0.0 and span.get_width() == pytest.approx(600.0)
    assert a_viol.xaxis.get_major_formatter()(0.0) == "22:00"
    assert a_viol.get_xlim() == (0.0, 7140.0)


def test_compare_timeline_one_slo_line_and_older_series() -> None:
    ts = contract_timeseries().drop(columns=["violations", "ready_nodes"])
    ts.loc[ts["variant"] == "hpa", "arrival_rate_qps"] *= 1.5  # loads differ: one line each
    fig = plots.compare_timeline(ts, slo_ms_by_class={"home_feed": 80.0, "search": 80.0},
                                 window="22:50-23:40", start_hour=22.0)
    a_rate, a_nodes, a_p99, a_viol = fig.axes
    assert {ln.get_gid() for ln in a_rate.get_lines()} == {
        f"{v}:arrival_rate" for v in CONTRACT_VARIANTS}
    line(a_nodes, "hpa:provisioned")
    nan_ready = contract_timeseries().assign(ready_nodes=np.nan)  # no pool series in the runs
    fig2 = plots.compare_timeline(nan_ready, slo_ms_by_class=CLASS_SLO)
    assert np.allclose(line(fig2.axes[1], "scheduled:provisioned")[:, 1],
                       nan_ready[nan_ready["variant"] == "scheduled"].groupby("t_s")[
                           "provisioned_nodes"].mean())
    assert line(a_p99, "slo")[0, 1] == 80.0
    assert not any(str(ln.get_gid()).startswith("slo:") for ln in a_p99.get_lines())
    lost = ts[ts["variant"] == "hpa"].assign(lost=lambda d: d["timed_out"] + d["dropped"])
    lost = lost[(lost["t_s"] >= 3000) & (lost["t_s"] <= 6000)].groupby("t_s")["lost"].mean()
    assert np.allclose(line(a_viol, "hpa:lost")[:, 1], lost)
    assert a_viol.get_xlim() == (3000.0, 6000.0)
    assert not patches(a_rate, "warmup")  # the zoom starts after the warm-up


def test_peak_window_reads_start_s_calendar_at_and_falls_back_to_the_load() -> None:
    sc = contract_scenario()
    assert si.peak_window(sc, 7200.0) == (3600.0 - 720.0, 5100.0 + 720.0)
    cal = contract_scenario(simulation={"start": "11-10 22:10", "end": "11-11 00:00"},
                            workload={"peaks": [{"name": "midnight", "at": "11-10 23:00",
                                                 "start_s": None, "ramp_s": 300.0,
                                                 "hold_s": 600.0, "decay": "linear",
                                                 "decay_s": 600.0, "multiplier": 3.0}]})
    # the run begins at start - warmup_s = 22:00, so 23:00 is t = 3600 s
    assert si.peak_window(cal, 7200.0) == (3600.0 - 720.0, 5100.0 + 720.0)
    flat = contract_scenario(workload={"peaks": []})
    assert si.peak_window(flat, 7200.0) is None
    t0, t1 = si.rate_peak_window(contract_timeseries(), 7200.0)
    assert (t0, t1) == (3600.0 - 720.0, 5100.0 + 720.0)  # the load's plateau, same margin


def test_run_timeline_draws_busy_nodes_and_the_warmup() -> None:
    r = load_run(elastic_run_dir())
    fig = plots.peak_timeline(r.timeseries, pool_series=r.pool_series, slo_ms=50,
                              start_hour=23.5, warmup_s=20.0)
    nodes = fig.axes[1]
    for pool in ("cpu", "gpu"):
        ps = r.pool_series[r.pool_series["pool"] == pool]
        assert np.allclose(line(nodes, f"{pool}:busy")[:, 1], ps["busy"])
    assert nodes.yaxis.get_major_locator()._integer
    for ax in fig.axes:
        (span,) = patches(ax, "warmup")
        assert span.get_width() == pytest.approx(20.0)


def pareto_points() -> pd.DataFrame:
    """Nine configurations whose costs and violation rates span decades."""
    nodes = np.arange(1, 10)
    cost = 5.0 * nodes**2
    viol = np.array([0.3, 0.1, 0.04, 0.012, 0.006, 0.002, 0.0008, 0.0003, 0.0])
    return pd.DataFrame({"cluster.pools.cpu.nodes": nodes, "cost_usd.total": cost,
                         "sla.violation_rate": viol})


def test_pareto_log_axes_constraint_line_and_feasibility() -> None:
    pts = pareto_points()
    pts.loc[len(pts)] = {"cluster.pools.cpu.nodes": 20, "cost_usd.total": 2000.0,
                         "sla.violation_rate": 0.05}  # dominated and infeasible
    pts.loc[len(pts)] = {"cluster.pools.cpu.nodes": 30, "cost_usd.total": 900.0,
                         "sla.violation_rate": 0.004}  # dominated, feasible
    fig = plots.pareto_front(pts, params=["cluster.pools.cpu.nodes"],
                             constraints=["violation_rate<=0.01"],
                             chosen={"cluster.pools.cpu.nodes": 5})
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"  # 5 .. 2000 USD
    assert ax.get_yscale() == "symlog"  # 0 .. 30 %: log, zero still shown
    assert line(ax, "constraint:violation_rate<=0.01")[0, 1] == pytest.approx(1.0)  # in %
    coll = {c.get_gid(): c for c in ax.collections}
    x, y = pts["cost_usd.total"].to_numpy(), pts["sla.violation_rate"].to_numpy() * 100
    feas = pts["sla.violation_rate"].to_numpy() <= 0.01
    front = brute_front(x, y)
    got = {k: {tuple(p) for p in coll[k].get_offsets()} for k in
           ("front", "dominated", "infeasible")}
    assert got["infeasible"] == {(x[i], y[i]) for i in range(len(x)) if not feas[i]}
    assert got["front"] == {(x[i], y[i]) for i in front if feas[i]}
    assert got["dominated"] == {(x[i], y[i]) for i in range(len(x))
                                if feas[i] and i not in front}
    labels = {t.get_text() for t in ax.get_legend().get_texts()}
    assert {"Pareto front (feasible)", "dominated (feasible)",
            "infeasible (misses a constraint)", "constraint violation_rate<=0.01",
            "plan's choice"} <= labels


def test_pareto_labels_never_overlap() -> None:
    pts = pareto_points()
    crowd = pd.DataFrame({"cluster.pools.cpu.nodes": np.arange(100, 130),
                          "cost_usd.total": np.linspace(50, 52, 30),
                          "sla.violation_rate": np.linspace(0.02, 0.019, 30)})
    pts = pd.concat([pts, crowd], ignore_index=True)
    fig = plots.pareto_front(pts, params=["cluster.pools.cpu.nodes"])
    ax = fig.axes[0]
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts if t.get_gid() == "label"]
    assert len(boxes) >= 5
    for i, a in enumerate(boxes):
        assert not any(a.overlaps(b) for b in boxes[i + 1:])


def test_latency_tail_is_a_complementary_cdf_per_class_with_its_slo() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.lognormal(3, 0.6, 20_000), rng.lognormal(3.4, 0.8, 20_000)
    fig = plots.latency_tail({"home_feed": {"hpa": a, "static-4": b}, "search": {"hpa": b}},
                             CLASS_SLO)
    assert_units(fig)
    home, search = [ax for ax in fig.axes if ax.get_visible()]
    assert home.get_xscale() == "log" and home.get_yscale() == "log"
    for lat, xy in ((a, line(home, "home_feed:hpa")), (b, line(home, "home_feed:static-4"))):
        assert np.all(np.diff(xy[:, 0]) >= 0) and np.all(np.diff(xy[:, 1]) <= 0)
        for q in (0.5, 0.9, 0.99, 0.999):  # P(L > x_q) = 1 - q
            x_q = np.quantile(lat, q)
            assert np.interp(x_q, xy[:, 0], xy[:, 1]) == pytest.approx(1 - q, rel=0.05)
    assert line(home, "slo")[0, 0] == 100.0 and line(search, "slo")[0, 0] == 250.0
    assert {ln.get_label() for ln in home.get_lines()} >= {"home_feed SLO 100 ms"}


def test_calibration_marks_the_used_variant_and_serving_overheads() -> None:
    prof = read_profile(PROFILE)
    fig = plots.calibration_latency(PROFILE, used=["int8"])
    ax = fig.axes[0]
    v = prof["variants"]["int8"]
    fit_x = np.asarray(v["fit"]["x"], dtype=float)
    serving = line(ax, "int8:serving")
    assert np.allclose(serving, np.c_[fit_x, np.asarray(v["fit"]["y_ms"])
                                      + v["overhead_ms_per_batch"]
                                      + v["overhead_ms_per_item"] * fit_x])
    width = {ln.get_gid(): ln.get_linewidth() for ln in ax.get_lines()}
    assert width["int8:fit"] > 2 and all(w < 2 for g, w in width.items()
                                         if g.endswith(":fit") and g != "int8:fit")
    texts = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert "int8 measured median (used by the scenario)" in texts
    assert "fp32 model forward (not used)" in texts


def test_cost_axis_names_the_simulated_window_and_the_day() -> None:
    s = load_run(run_dir()).summary
    basis = CostBasis.of(s, start_hour=23.5)
    assert basis.label == "USD per simulated window (23:30-23:34, 0.0611 h)"
    fig = plots.cost_breakdown(run_costs(s), basis)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "cost (USD per simulated window 23:30-23:34, 0.0611 h)"
    (right,) = [c for c in ax.child_axes if c.get_gid() == "per_day"]
    assert right.get_ylabel() == "cost (USD per day, scaled)"
    day = with_per_day_cost(pd.DataFrame([{"cost_usd.total": 2.0,
                                           "measurement_window_s": 7200.0}]))
    assert day[PER_DAY].iloc[0] == pytest.approx(24.0)
