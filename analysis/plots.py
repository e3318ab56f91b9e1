"""PeakSim figures: every function returns a ``matplotlib.figure.Figure`` (works in Jupyter).

Experiment figures live here (policy comparison with 95% CI bars, Pareto front, latency CDF,
cost breakdown); the promotion-peak timeline and the calibration figures live in
``analysis.timeline`` and ``analysis.calibration_plots`` and are re-exported. Every numeric axis
names its unit in parentheses. Pass one ``colors`` mapping (see :func:`palette`) to every figure
so a policy keeps its colour throughout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from analysis.calibration_plots import calibration_fidelity, calibration_latency, fidelity_table
from analysis.reduce import group_intervals, pareto_mask
from analysis.results import COST_COMPONENTS
from analysis.style import COST_COLORS, empty_note, new_figure, palette
from analysis.timeline import peak_timeline

__all__ = [
    "COMPARISON_METRICS", "Metric", "calibration_fidelity", "calibration_latency",
    "cost_breakdown", "fidelity_table", "latency_cdf", "palette", "pareto_front",
    "peak_timeline", "policy_comparison",
]


@dataclass(frozen=True)
class Metric:
    """A column of a runs table, its axis label (with unit) and a display scale factor."""

    column: str
    label: str
    scale: float = 1.0


COMPARISON_METRICS: tuple[Metric, ...] = (
    Metric("cost_usd.total", "total cost (USD)"),
    Metric("sla.violation_rate", "SLA violation rate (%)", 100.0),
    Metric("latency_ms.p99", "p99 latency (ms)"),
)


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
        ax.bar(x, means, color=[cmap[n] for n in names], label="mean", width=0.65)
        ax.errorbar(x, means, yerr=half, fmt="none", ecolor="black", capsize=5, lw=1.3,
                    label=pct)
        ax.set_xticks(x, names, rotation=20 if len(names) > 3 else 0)
        ax.set_ylabel(m.label)
        ax.set_title(m.label.split(" (")[0])
        ax.set_xlabel(by)
        ax.grid(axis="y", alpha=0.3)
    n = ci["n"].max() if len(ci) else 0
    fig.suptitle(f"Policy comparison: mean and {pct} over {n} replications (Student t)")
    return fig


def pareto_front(points: pd.DataFrame, x: str = "cost_usd.total", y: str = "sla.violation_rate",
                 chosen: Mapping[str, object] | None = None, params: Sequence[str] = (),
                 x_label: str = "mean total cost (USD)",
                 y_label: str = "mean SLA violation rate (%)", y_scale: float = 100.0) -> Figure:
    """Cost vs SLA violation of each grid point; the non-dominated front highlighted.

    ``points`` has one row per configuration (means over replications). Dominated points are
    faded (collection gid ``dominated``), front points are drawn solid (gid ``front``) and
    joined by a step line (gid ``front-line``); the configuration equal to ``chosen`` on the
    ``params`` columns (e.g. the plan's best) is marked with a star (gid ``chosen``).
    """
    fig = new_figure(7.5, 5.0)
    if x not in points.columns or y not in points.columns or points.empty:
        return empty_note(fig, f"no points with '{x}' and '{y}'")
    ax = fig.subplots()
    xs = points[x].to_numpy(float)
    ys = points[y].to_numpy(float) * y_scale
    on = pareto_mask(xs, ys)
    ax.scatter(xs[~on], ys[~on], color="#7f7f7f", alpha=0.3, s=30, label="dominated",
               gid="dominated")
    ax.scatter(xs[on], ys[on], color="#1f77b4", s=45, label="Pareto front", gid="front",
               zorder=3)
    order = np.argsort(xs[on], kind="stable")
    ax.step(xs[on][order], ys[on][order], where="post", color="#1f77b4", lw=1.2,
            gid="front-line")
    for i in np.flatnonzero(on):
        text = ", ".join(f"{p.rsplit('.', 1)[-1]}={_fmt(points.iloc[i][p])}"
                         for p in params if p in points.columns)
        if text:
            ax.annotate(text, (xs[i], ys[i]), textcoords="offset points", xytext=(5, 5),
                        fontsize=7)
    if chosen:
        hit = np.ones(len(points), dtype=bool)
        for k, v in chosen.items():
            if k in points.columns:
                hit &= _equal(points[k].to_numpy(), v)
        if hit.any() and any(k in points.columns for k in chosen):
            ax.scatter(xs[hit], ys[hit], marker="*", s=260, color="#d62728",
                       edgecolor="black", zorder=4, label="plan's choice", gid="chosen")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    ax.set_title("Cost vs SLA violations: Pareto front (lower-left is better)")
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
                max_points: int = 2000) -> Figure:
    """Empirical CDF of request latency (ms, log x) per policy or class.

    ``samples`` maps a label to latencies (ms) of completed requests; each curve is a line
    whose label is the key (at most ``max_points`` quantiles drawn per curve). A dashed
    vertical line (gid ``slo``) marks ``slo_ms``.
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
    if slo_ms:
        ax.axvline(slo_ms, color="#d62728", ls="--", lw=1.2, label=f"SLO {slo_ms:g} ms",
                   gid="slo")
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


def cost_breakdown(costs: pd.DataFrame) -> Figure:
    """Stacked cost bars per run/policy: compute, energy, storage, human, SLA penalty (USD).

    ``costs`` has one row per bar (the index labels it) and a column per component; each
    component present is one ``BarContainer`` labelled with its name.
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
    ax.set_ylabel("cost (USD)")
    ax.set_xlabel("run / policy")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Cost breakdown")
    return fig
