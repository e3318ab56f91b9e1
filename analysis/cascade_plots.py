"""Per-stage breakdown of a recommendation cascade (a scenario with ``[[stages]]``).

A cascade run's ``summary.json`` has ``stages`` (stage name -> latency, share of the end-to-end
latency, cost, utilisation, nodes, requests, budget); a comparison's ``runs.parquet`` has the
same fields flattened (``stages.NAME.latency_ms.mean``, ``stages.NAME.cost_usd``, ...). The
tables here read either; the figures draw them:

- :func:`stage_latency`: horizontal stacked bars of mean latency per stage (one bar per run or
  variant, stages in cascade order, network hops as a last hatched segment), the end-to-end
  mean marked;
- :func:`stage_cost`: cost per stage (one bar per stage for one run; stacked per variant);
- :func:`stage_timelines`: one panel per stage of ``in_system`` (or another column) over time,
  a line per unit (the channels of a fork stage apart), on the clock axis with the warm-up
  shaded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.style import empty_note, new_figure, palette
from analysis.timeline import _clock_axis, _integer_ticks, _shade_warmup

#: Columns of the per-stage table: (column, summary key path inside a stage).
STAGE_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("mean latency (ms)", ("latency_ms", "mean")),
    ("p50 latency (ms)", ("latency_ms", "p50")),
    ("p99 latency (ms)", ("latency_ms", "p99")),
    ("share of e2e latency", ("share_of_e2e_latency",)),
    ("network hop (ms)", ("network_ms",)),
    ("utilisation", ("utilization",)),
    ("mean nodes", ("nodes", "mean")),
    ("cost (USD)", ("cost_usd",)),
    ("budget (ms)", ("budget_ms",)),
    ("over-budget rate", ("over_budget_rate",)),
    ("skipped", ("requests", "skipped")),
    ("shrunk", ("requests", "shrunk")),
)
MEAN_COL = "mean latency (ms)"
COST_COL = "cost (USD)"
NETWORK_COL = "network hop (ms)"
NETWORK_LABEL = "network hops"
_LAT_SUFFIX = ".latency_ms.mean"


def _num(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


def is_cascade_summary(summary: Mapping[str, Any] | None) -> bool:
    """True when a run's summary has a per-stage breakdown."""
    st = (summary or {}).get("stages")
    return isinstance(st, Mapping) and bool(st)


def stage_names_of_columns(columns: Sequence[str]) -> list[str]:
    """Stage names, in cascade order, from flattened columns ``stages.NAME.latency_ms.mean``."""
    return [c[len("stages."):-len(_LAT_SUFFIX)] for c in map(str, columns)
            if c.startswith("stages.") and c.endswith(_LAT_SUFFIX)]


def stage_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    """One row per stage (in cascade order) of a run's summary: the columns of
    :data:`STAGE_FIELDS` (NaN where a stage has no budget)."""
    rows = []
    for name, st in (summary.get("stages") or {}).items():
        row: dict[str, Any] = {"stage": str(name)}
        for col, path in STAGE_FIELDS:
            v: Any = st
            for k in path:
                v = v.get(k) if isinstance(v, Mapping) else None
            row[col] = _num(v)
        rows.append(row)
    return pd.DataFrame(rows, columns=["stage", *(c for c, _ in STAGE_FIELDS)])


def stage_runs_table(runs: pd.DataFrame, by: str = "variant") -> pd.DataFrame:
    """Per ``by`` (variant) and stage, the mean over replications of each field of
    :data:`STAGE_FIELDS` from a runs table's flattened columns (variants and stages in order
    of appearance)."""
    stages = stage_names_of_columns(list(runs.columns))
    if not stages or by not in runs.columns:
        return pd.DataFrame()
    df = runs.assign(**{by: runs[by].astype(str)})
    names = [str(v) for v in pd.unique(df[by])]
    rows = []
    for v in names:
        g = df[df[by] == v]
        for s in stages:
            row: dict[str, Any] = {by: v, "stage": s}
            for col, path in STAGE_FIELDS:
                key = ".".join(("stages", s, *path))
                row[col] = (float(pd.to_numeric(g[key], errors="coerce").mean())
                            if key in g.columns else math.nan)
            rows.append(row)
    out = pd.DataFrame(rows)
    out["replications"] = [int((df[by] == v).sum()) for v in out[by]]
    return out


def latency_segments(table: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """The stacked latency bars' data: one row per bar (``by`` value, or ``run``), a column per
    stage (its mean latency, ms) and :data:`NETWORK_LABEL` (the sum of the hops, ms) when any."""
    groups = [("run", table)] if by is None else [
        (str(k), g) for k, g in table.groupby(by, sort=False)]
    rows = {}
    for k, g in groups:
        row = dict(zip(g["stage"], g[MEAN_COL].fillna(0.0), strict=True))
        net = float(g[NETWORK_COL].fillna(0.0).sum()) if NETWORK_COL in g else 0.0
        if net > 0:
            row[NETWORK_LABEL] = net
        rows[k] = row
    return pd.DataFrame.from_dict(rows, orient="index").fillna(0.0)


def stage_latency(segments: pd.DataFrame, e2e_ms: Mapping[str, float] | None = None,
                  colors: Mapping[str, str] | None = None,
                  title: str = "Mean latency per stage") -> Figure:
    """Horizontal stacked bars: one bar per row of ``segments`` (a run or a variant), one
    segment per column (a stage, in cascade order; ``network hops`` hatched grey), widths the
    stages' mean latencies (ms). Each segment series is a ``BarContainer`` labelled with the
    stage, its patches with gid ``stage:NAME``; ``e2e_ms`` (row -> end-to-end mean) is marked
    by a black diamond per bar (gid ``e2e``)."""
    fig = new_figure(9.0, 1.6 + 0.7 * max(len(segments), 1))
    if segments.empty:
        return empty_note(fig, "no per-stage latency")
    ax = fig.subplots()
    labels = [str(i) for i in segments.index]
    y = np.arange(len(labels))
    stages = [c for c in segments.columns if c != NETWORK_LABEL]
    cmap = palette(stages, colors)
    left = np.zeros(len(labels))
    for c in segments.columns:
        w = segments[c].to_numpy(float)
        net = c == NETWORK_LABEL
        bars = ax.barh(y, w, left=left, height=0.55, label=str(c),
                       color="#d0d0d0" if net else cmap[c], hatch="//" if net else None,
                       edgecolor="white", lw=0.6)
        for b in bars:
            b.set_gid(f"stage:{c}")
        for yi, (li, wi) in enumerate(zip(left, w, strict=True)):
            if wi > 0.06 * max(float(segments.to_numpy(float).sum(axis=1).max()), 1e-9):
                ax.text(li + wi / 2, yi, f"{wi:.1f}", ha="center", va="center", fontsize=7)
        left += w
    if e2e_ms:
        ex = [float(e2e_ms.get(k, math.nan)) for k in labels]
        ax.scatter(ex, y, marker="D", color="black", s=30, zorder=4, gid="e2e",
                   label="end-to-end mean")
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("mean latency (ms)")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=8)
    ax.set_title(title)
    return fig


def stage_cost(costs: pd.DataFrame, colors: Mapping[str, str] | None = None,
               title: str = "Cost per stage") -> Figure:
    """Cost per stage (USD per simulated window). ``costs`` has a row per run or variant and a
    column per stage; one row draws one bar per stage (one ``BarContainer`` labelled ``cost``),
    several rows a stacked bar per row (a ``BarContainer`` per stage, labelled with it); every
    patch has gid ``stage:NAME``; the totals are written on top."""
    fig = new_figure(max(5.0, 1.2 * max(len(costs.columns), len(costs)) + 3.0), 4.4)
    if costs.empty:
        return empty_note(fig, "no per-stage cost")
    ax = fig.subplots()
    stages = [str(c) for c in costs.columns]
    cmap = palette(stages, colors)
    if len(costs) == 1:
        v = costs.iloc[0].fillna(0.0).to_numpy(float)
        x = np.arange(len(stages))
        bars = ax.bar(x, v, color=[cmap[s] for s in stages], width=0.6, label="cost")
        for b, st in zip(bars, stages, strict=True):
            b.set_gid(f"stage:{st}")
        tops = v
        ax.set_xticks(x, stages, rotation=20 if len(stages) > 4 else 0)
        ax.set_xlabel("stage")
    else:
        labels = [str(i) for i in costs.index]
        x = np.arange(len(labels))
        tops = np.zeros(len(labels))
        for s in stages:
            v = costs[s].fillna(0.0).to_numpy(float)
            bars = ax.bar(x, v, bottom=tops, color=cmap[s], width=0.6, label=s)
            for b in bars:
                b.set_gid(f"stage:{s}")
            tops = tops + v
        ax.set_xticks(x, labels, rotation=20 if len(labels) > 3 else 0)
        ax.set_xlabel("policy / variant")
        fig.legend(loc="outside right upper", fontsize=8)
    for xi, total in zip(x, tops, strict=True):
        ax.annotate(f"{total:,.3f}", (xi, total), ha="center", va="bottom", fontsize=8,
                    textcoords="offset points", xytext=(0, 2))
    ax.set_ylabel("cost (USD per simulated window)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title)
    return fig


def stage_timelines(ts: pd.DataFrame, stages: Sequence[str] | None = None, *,
                    column: str = "in_system", warmup_s: float | None = None,
                    start_hour: float = 0.0, colors: Mapping[str, str] | None = None,
                    title: str = "Requests in each stage over time") -> Figure:
    """One small panel per stage (cascade order) of ``column`` (default ``in_system``, else
    ``queue_len``) over time from a cascade run's time series (columns ``stage``, ``unit``):
    a line per unit (gid ``UNIT``; a fork stage's channels apart), clock axis, warm-up shaded
    (gid ``warmup``)."""
    need = {"t_s", "stage", "unit"}
    if ts is None or ts.empty or not need <= set(ts.columns):
        return empty_note(new_figure(8.0, 3.0), "no per-stage time series")
    if column not in ts.columns:
        column = "queue_len"
    names = [str(s) for s in (stages or pd.unique(ts["stage"].astype(str)))]
    names = [s for s in names if (ts["stage"].astype(str) == s).any()]
    cols = min(len(names), 2) or 1
    rows = math.ceil(len(names) / cols) or 1
    fig = new_figure(5.2 * cols + 0.6, 2.6 * rows + 0.8)
    axes = list(np.ravel(fig.subplots(rows, cols, squeeze=False, sharex=True)))
    t_all = ts["t_s"].to_numpy(float)
    t0, t1 = float(t_all.min()), float(t_all.max())
    units = [str(u) for u in pd.unique(ts["unit"].astype(str))]
    cmap = palette(units, colors)
    what = column.replace("_", " ")
    for ax, s in zip(axes, names, strict=False):
        g = ts[ts["stage"].astype(str) == s]
        for u, gu in g.groupby(g["unit"].astype(str), sort=False):
            gu = gu.sort_values("t_s")
            ax.plot(gu["t_s"].to_numpy(float), pd.to_numeric(gu[column], errors="coerce"),
                    color=cmap[str(u)], lw=1.3, label=str(u), gid=str(u))
        _shade_warmup([ax], warmup_s, t0, t1)
        ax.set_title(f"stage {s}", fontsize=10)
        ax.set_ylabel(f"{what} (requests)")
        _integer_ticks(ax)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=7)
        _clock_axis(ax, t0, t1, start_hour)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig


def end_to_end_series(ts: pd.DataFrame, e2e: pd.DataFrame | None = None) -> pd.DataFrame:
    """A cascade run's time series (one block per unit, columns ``stage`` and ``unit``) as
    one end-to-end series for the whole-run timeline: arrivals (every class's too) are the
    first unit's (every request enters stage 1), completions the last unit's, queues,
    requests in the system, drops, timeouts and nodes summed over the units. Per-interval
    latency and violations come from ``e2e`` (the run's ``timeseries_e2e``: p99 and mean
    latency, violations and completions end to end); without it, or for per-class columns,
    they are NaN (the units' are per stage, not end to end)."""
    units = list(dict.fromkeys(ts["unit"]))
    first = ts[ts["unit"] == units[0]].set_index("t_s")
    last = ts[ts["unit"] == units[-1]].set_index("t_s")
    num = ts.drop(columns=["stage", "unit"]).groupby("t_s").sum(numeric_only=True)
    out = num.copy()
    arr_cols = [c for c in out.columns if c == "arrivals" or c.startswith("arrivals.")
                or c == "arrival_rate_qps"]
    out[arr_cols] = first[arr_cols].reindex(out.index)
    out["completions"] = last["completions"].reindex(out.index)
    for c in out.columns:
        if "latency" in c or c == "violations" or c.startswith("violations."):
            out[c] = float("nan")
    if e2e is not None and not e2e.empty:
        e = e2e.set_index("t_s")
        for c in ("p99_latency_ms", "mean_latency_ms", "violations", "completions"):
            if c in e.columns:
                out[c] = e[c].reindex(out.index)
    return out.reset_index()
