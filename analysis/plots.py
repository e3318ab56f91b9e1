"""PeakSim figures: every function returns a ``matplotlib.figure.Figure`` (works in Jupyter).

Experiment figures live here (policy comparison with 95% CI bars, Pareto front, latency CDF
and tail, cost breakdown); the timelines and the calibration figures live in
``analysis.timeline`` and ``analysis.calibration_plots`` and are re-exported. Every numeric axis
names its unit in parentheses. Pass one ``colors`` mapping (see :func:`palette`) to every figure
so a policy keeps its colour throughout.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.text import Annotation
from matplotlib.ticker import FuncFormatter, NullFormatter

from analysis.calibration_plots import calibration_fidelity, calibration_latency, fidelity_table
from analysis.reduce import group_intervals, pareto_mask
from analysis.results import COST_COMPONENTS
from analysis.stats import Constraint
from analysis.style import COST_COLORS, empty_note, new_figure, palette
from analysis.tables import CostBasis, metric_column
from analysis.timeline import compare_timeline, peak_timeline, slo_lines

__all__ = [
    "COMPARISON_METRICS", "Metric", "calibration_fidelity", "calibration_latency",
    "compare_timeline", "comparison_metrics", "cost_breakdown", "fidelity_table",
    "latency_cdf", "latency_tail", "palette", "pareto_front", "peak_timeline",
    "policy_comparison",
]


@dataclass(frozen=True)
class Metric:
    """A column of a runs table, its axis label (with unit) and a display scale factor."""

    column: str
    label: str
    scale: float = 1.0


COMPARISON_METRICS: tuple[Metric, ...] = (
    Metric("cost_usd.total", "total cost (USD per simulated window)"),
    Metric("gpu_hours", "GPU-hours (h)"),
    Metric("sla.violation_rate", "SLA violation rate (%)", 100.0),
    Metric("latency_ms.p99", "p99 latency (ms)"),
)


def comparison_metrics(basis: CostBasis | None = None) -> tuple[Metric, ...]:
    """:data:`COMPARISON_METRICS` with the cost labelled by its ``basis`` (window, hours)."""
    if basis is None or basis.hours is None:
        return COMPARISON_METRICS
    return (Metric("cost_usd.total", f"total cost ({basis.axis_unit})"), *COMPARISON_METRICS[1:])


def policy_comparison(runs: pd.DataFrame, by: str = "variant",
                      metrics: Sequence[Metric] = COMPARISON_METRICS,
                      colors: Mapping[str, str] | None = None,
                      confidence: float = 0.95) -> Figure:
    """One panel per metric: the mean over replications per policy, with Student-t CI bars.

    ``runs`` has one row per run, a ``by`` column naming the policy/variant and the metric
    columns (flattened summary names). Bars are ``BarContainer``s labelled ``mean``; the CI is
    an ``ErrorbarContainer`` labelled ``95% CI`` (half-width NaN, hence no bar, with one run).
    """
    present = [m for m in metrics if m.column in runs.columns]
    fig = new_figure(4.0 * max(len(present), 1), 4.2)
    if not present or by not in runs.columns:
        return empty_note(fig, "no comparable runs")
    df = runs.assign(**{by: runs[by].astype(str)})
    ci = group_intervals(df, by, [m.column for m in present], confidence)
    names = [str(v) for v in pd.unique(df[by])]
    cmap = palette(names, colors)
    axes = fig.subplots(1, len(present), squeeze=False)[0]
    pct = f"{round(confidence * 100):d}% CI"
    for ax, m in zip(axes, present, strict=True):
        sub = ci[ci["metric"] == m.column].set_index(by).reindex(names)
        x = np.arange(len(names))
        means = sub["mean"].to_numpy(float) * m.scale
        half = sub["half_width"].to_numpy(float) * m.scale
        half = np.where(np.isfinite(half), half, np.nan)  # n < 2: no interval to draw
        ax.bar(x, means, color=[cmap[n] for n in names], label="mean", width=0.65)
        ax.errorbar(x, means, yerr=half, fmt="none", ecolor="black", capsize=5, lw=1.3,
                    label=pct)
        ax.set_xticks(x, names, rotation=20 if len(names) > 3 else 0)
        ax.set_ylabel(m.label.replace(" (", "\n(", 1) if len(m.label) > 40 else m.label)
        ax.set_title(m.label.split(" (")[0])
        ax.set_xlabel(by)
        ax.grid(axis="y", alpha=0.3)
    n = ci["n"].max() if len(ci) else 0
    fig.suptitle(f"Policy comparison: mean and {pct} over {n} replications (Student t)")
    return fig


def axis_scale(values: Sequence[float] | np.ndarray, decades: float = 1.0
               ) -> tuple[str, dict[str, float]]:
    """The scale for an axis of ``values``: ``linear`` unless the positive values span more
    than ``decades`` decades; then ``log``, or ``symlog`` (linear below the smallest positive
    value, so zeros stay visible) when some values are 0 or negative. Returns (scale, kwargs).
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    pos = v[v > 0]
    if pos.size < 2 or pos.max() / pos.min() <= 10.0 ** decades:
        return "linear", {}
    if (v <= 0).any():
        return "symlog", {"linthresh": float(pos.min())}
    return "log", {}


def _plain_formatter() -> FuncFormatter:
    return FuncFormatter(lambda v, _p: f"{v:g}")


def place_labels(ax: Axes, points: Sequence[tuple[float, float]], texts: Sequence[str], *,
                 fontsize: float = 7, gid: str = "label") -> list[Annotation]:
    """Label data ``points`` without overlaps (greedy, no extra dependency).

    Each label tries a few offsets around its point (up-right first); the first whose box
    overlaps no label already placed, and stays inside the axes, wins; a label with no free
    place is left out. Returns the labels drawn (gid ``label``). Call it after the axes'
    limits and scales are final.
    """
    fig = ax.get_figure()
    assert fig is not None
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    fig.draw_without_rendering()  # settles the constrained layout: real positions
    renderer = canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed: list[Any] = []
    out: list[Annotation] = []
    offsets = ((5, 5), (5, -12), (-5, 5), (-5, -12), (8, 14), (8, -20), (-8, 14), (-8, -20))
    order = sorted(range(len(points)), key=lambda i: points[i][0])
    for i in order:
        if not texts[i]:
            continue
        for dx, dy in offsets:
            ann = ax.annotate(texts[i], points[i], textcoords="offset points", xytext=(dx, dy),
                              ha="left" if dx > 0 else "right", fontsize=fontsize, gid=gid)
            box = ann.get_window_extent(renderer).expanded(1.05, 1.1)
            inside = (box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0
                      and box.y1 <= frame.y1)
            if inside and not any(box.overlaps(b) for b in placed):
                placed.append(box)
                out.append(ann)
                break
            ann.remove()
    return out


def pareto_front(points: pd.DataFrame, x: str = "cost_usd.total", y: str = "sla.violation_rate",
                 chosen: Mapping[str, object] | None = None, params: Sequence[str] = (),
                 x_label: str = "mean total cost (USD per simulated window)",
                 y_label: str = "mean SLA violation rate (%)", y_scale: float = 100.0,
                 constraints: Sequence[str | Constraint] = (),
                 title: str = "Cost vs SLA violations: Pareto front (lower-left is better)"
                 ) -> Figure:
    """Cost vs SLA violation of each configuration; feasible front, dominated and infeasible
    points marked apart, the constraints drawn, labels that do not collide.

    ``points`` has one row per configuration (means over replications). Feasibility is the
    ``feasible`` column when present (a plan's decision, CI-based), else the ``constraints``
    checked on the means (unknown counts as feasible). Collections (gids): ``front`` feasible
    non-dominated points (solid), ``dominated`` feasible dominated points (faded), and
    ``infeasible`` (red crosses, dominated or not); ``front-line`` is the attainment step line
    through every non-dominated point; ``chosen`` is the star on the configuration equal to
    ``chosen`` on the ``params`` columns (e.g. the plan's best). A constraint on one of the axes
    (``violation_rate<=0.01``, ``cost<=500``; metric aliases as in ``compare``/``plan``) is a
    line (gid ``constraint:TEXT``). Axes switch to log (``symlog`` with zeros) when their values
    span more than one decade (:func:`axis_scale`). Front points (and the chosen one) are
    labelled with their ``params`` values where the label has room (:func:`place_labels`).
    """
    fig = new_figure(7.5, 5.0)
    if x not in points.columns or y not in points.columns or points.empty:
        return empty_note(fig, f"no points with '{x}' and '{y}'")
    ax = fig.subplots()
    xs = points[x].to_numpy(float)
    ys = points[y].to_numpy(float) * y_scale
    on = pareto_mask(xs, ys)
    cons = [c if isinstance(c, Constraint) else Constraint.parse(str(c)) for c in constraints]
    if "feasible" in points.columns:
        feas = np.array([v is not False and v != 0 and not (isinstance(v, str)
                                                               and v.lower() == "false")
                         for v in points["feasible"].tolist()], dtype=bool)
    else:
        feas = np.ones(len(points), dtype=bool)
        for c in cons:
            col = metric_column(c.metric)
            if col in points.columns:
                vals = points[col].to_numpy(float)
                feas &= np.array([not np.isfinite(v) or c.holds(v) for v in vals])
    groups = (("dominated", ~on & feas, dict(color="#7f7f7f", alpha=0.35, s=30,
                                             label="dominated (feasible)")),
              ("infeasible", ~feas, dict(color="#d62728", marker="x", s=40, alpha=0.8,
                                         label="infeasible (misses a constraint)")),
              ("front", on & feas, dict(color="#1f77b4", s=50, zorder=3,
                                        label="Pareto front (feasible)")))
    for gid, mask, kw in groups:
        if mask.any():
            ax.scatter(xs[mask], ys[mask], gid=gid, **kw)
    order = np.argsort(xs[on], kind="stable")
    ax.step(xs[on][order], ys[on][order], where="post", color="#1f77b4", lw=1.0, alpha=0.7,
            gid="front-line", label="attainment line (non-dominated)")
    hit = np.zeros(len(points), dtype=bool)
    if chosen and any(k in points.columns for k in chosen):
        hit = np.ones(len(points), dtype=bool)
        for k, v in chosen.items():
            if k in points.columns:
                hit &= _equal(points[k].to_numpy(), v)
        if hit.any():
            ax.scatter(xs[hit], ys[hit], marker="*", s=260, color="#ffbf00",
                       edgecolor="black", zorder=4, label="plan's choice", gid="chosen")
    for c in cons:
        col = metric_column(c.metric)
        style = dict(color="#d62728", ls="--", lw=1.1, gid=f"constraint:{c}",
                     label=f"constraint {c}")
        if col == y:
            ax.axhline(c.threshold * y_scale, **style)
        elif col == x:
            ax.axvline(c.threshold, **style)
    for axis, vals in (("x", xs), ("y", ys)):
        scale, kw = axis_scale(vals)
        (ax.set_xscale if axis == "x" else ax.set_yscale)(scale, **kw)
        if scale != "linear":
            getattr(ax, f"{axis}axis").set_major_formatter(_plain_formatter())
            getattr(ax, f"{axis}axis").set_minor_formatter(NullFormatter())
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="best", fontsize=7)
    ax.set_title(title)
    label_at = np.flatnonzero(on | hit)
    texts = [", ".join(f"{p.rsplit('.', 1)[-1]}={_fmt(points.iloc[i][p])}"
                       for p in params if p in points.columns) for i in label_at]
    if any(texts):
        place_labels(ax, [(xs[i], ys[i]) for i in label_at], texts)
    return fig


def _equal(col: np.ndarray, v: object) -> np.ndarray:
    try:
        return np.isclose(col.astype(float), float(v))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return col.astype(str) == str(v)


def _fmt(v: object) -> str:
    if isinstance(v, float | np.floating):
        return f"{v:g}"
    return str(v)


def latency_cdf(samples: Mapping[str, Sequence[float] | np.ndarray],
                slo_ms: float | None = None, colors: Mapping[str, str] | None = None,
                max_points: int = 2000,
                slo_ms_by_class: Mapping[str, float] | None = None) -> Figure:
    """Empirical CDF of request latency (ms, log x) per policy or class.

    ``samples`` maps a label to latencies (ms) of completed requests; each curve is a line
    whose label is the key (at most ``max_points`` quantiles drawn per curve). A dashed
    vertical line (gid ``slo``) marks ``slo_ms``; ``slo_ms_by_class`` draws one per class
    instead when the classes' SLOs differ (gid ``slo:CLASS``).
    """
    fig = new_figure(7.5, 4.8)
    data = {k: np.asarray(v, dtype=float) for k, v in samples.items()}
    data = {k: np.sort(v[np.isfinite(v) & (v > 0)]) for k, v in data.items()}
    data = {k: v for k, v in data.items() if v.size}
    if not data:
        return empty_note(fig, "no per-request records: run with --records all or sample:P")
    ax = fig.subplots()
    cmap = palette(data, colors)
    for k, v in data.items():
        n = v.size
        if n > max_points:
            p = np.linspace(0, 1, max_points)
            xs, ys = np.quantile(v, p), p
        else:
            xs, ys = v, np.arange(1, n + 1) / n
        ax.plot(xs, ys, color=cmap[k], lw=1.6, label=f"{k} (n={n:,})", gid=k)
    slo_lines(ax, slo_ms_by_class or ({"all requests": slo_ms} if slo_ms else None),
              vertical=True)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("cumulative fraction of requests (0-1)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right")
    ax.set_title("Latency CDF")
    return fig


def latency_tail(samples: Mapping[str, Mapping[str, Sequence[float] | np.ndarray]]
                 | Mapping[str, Sequence[float] | np.ndarray],
                 slo_ms_by_class: Mapping[str, float] | None = None,
                 colors: Mapping[str, str] | None = None, max_points: int = 2000,
                 title: str = "Latency tail: share of requests slower than x") -> Figure:
    """Complementary CDF P(latency > x) on log-log axes, one panel per request class.

    ``samples`` maps a class to {curve label (policy/variant or run): latencies (ms)}; a flat
    {label: latencies} mapping is one panel named ``all requests``. Each panel has a line per
    curve (gid ``CLASS:LABEL``; at most ``max_points`` points, denser in the tail; the largest
    value, where the fraction reaches 0, is not drawn on a log axis) and its class's SLO
    (vertical line gid ``slo``, from ``slo_ms_by_class``; a class missing there gets none). Read
    it as: at the SLO line, the curve's height is the fraction of requests over the SLO.
    """
    nested: dict[str, dict[str, np.ndarray]] = {}
    for k, v in samples.items():
        if isinstance(v, Mapping):
            nested[str(k)] = {str(a): np.asarray(b, dtype=float) for a, b in v.items()}
        else:
            nested.setdefault("all requests", {})[str(k)] = np.asarray(v, dtype=float)
    clean = {c: {k: np.sort(v[np.isfinite(v) & (v > 0)]) for k, v in d.items()}
             for c, d in nested.items()}
    clean = {c: {k: v for k, v in d.items() if v.size > 1} for c, d in clean.items()}
    clean = {c: d for c, d in clean.items() if d}
    n = len(clean)
    cols = min(n, 3) or 1
    rows = math.ceil(n / cols) if n else 1
    fig = new_figure(4.4 * cols + 1.0, 3.9 * rows + 0.6)
    if not clean:
        return empty_note(fig, "no per-request records: run with --records all or sample:P")
    labels = list(dict.fromkeys(k for d in clean.values() for k in d))
    cmap = palette(labels, colors)
    axes = list(np.ravel(fig.subplots(rows, cols, squeeze=False, sharey=True)))
    slos = dict(slo_ms_by_class or {})
    for ax, (cls, curves) in zip(axes, clean.items(), strict=False):
        for k, v in curves.items():
            m = v.size
            # ranks from the top: geometric spacing keeps the rare slow requests visible
            top = np.unique(np.round(np.geomspace(1, m - 1, min(max_points, m - 1)))).astype(int)
            idx = m - 1 - top  # the value with ``top`` requests above it
            xs, ys = v[idx], top / m
            order = np.argsort(xs, kind="stable")
            ax.plot(xs[order], ys[order], color=cmap[k], lw=1.5, label=f"{k} (n={m:,})",
                    gid=f"{cls}:{k}")
        slo = slos.get(cls)
        if slo is None and len(set(slos.values())) == 1:
            slo = next(iter(slos.values()))
        if slo is not None:
            slo_lines(ax, {cls: slo}, vertical=True)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(_plain_formatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("latency x (ms)")
        ax.set_ylabel("P(latency > x) (fraction of requests)")
        ax.set_title(cls if slo is None else f"{cls} (SLO {slo:g} ms)", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(loc="lower left", fontsize=7)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig


def cost_breakdown(costs: pd.DataFrame, basis: CostBasis | None = None) -> Figure:
    """Stacked cost bars per run/policy: compute, energy, storage, human, SLA penalty (USD).

    ``costs`` has one row per bar (the index labels it) and a column per component; each
    component present is one ``BarContainer`` labelled with its name. With a ``basis`` (the
    simulated window) the axis names it and a right axis shows the cost per day (scaled
    linearly from the window).
    """
    comps = [c for c in COST_COMPONENTS if c in costs.columns]
    fig = new_figure(max(5.0, 1.4 * len(costs) + 3.0), 4.6)
    if not comps or costs.empty:
        return empty_note(fig, "no cost figures")
    ax = fig.subplots()
    labels = [str(i) for i in costs.index]
    x = np.arange(len(labels))
    bottom = np.zeros(len(labels))
    for c in comps:
        v = costs[c].fillna(0.0).to_numpy(float)
        ax.bar(x, v, bottom=bottom, color=COST_COLORS[c], label=c.replace("_", " "), width=0.6)
        bottom += v
    for xi, total in zip(x, bottom, strict=True):
        ax.annotate(f"{total:,.2f}", (xi, total), ha="center", va="bottom", fontsize=8,
                    textcoords="offset points", xytext=(0, 2))
    ax.set_xticks(x, labels, rotation=20 if len(labels) > 3 else 0)
    if basis is not None and basis.hours is not None:
        ax.set_ylabel(f"cost ({basis.axis_unit})")
        f = basis.per_day_factor
        assert f is not None
        right = ax.secondary_yaxis("right", functions=(lambda v: v * f, lambda v: v / f))
        right.set_ylabel("cost (USD per day, scaled)")
        right.set_gid("per_day")
    else:
        ax.set_ylabel("cost (USD)")
    ax.set_xlabel("run / policy")
    fig.legend(loc="outside right upper")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Cost breakdown")
    return fig
