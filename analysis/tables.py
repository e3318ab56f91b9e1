"""Result tables as pandas DataFrames: a run's headline figures, per-pool and per-class rows,
per-policy means with confidence intervals, and per-configuration sweep points.

Units are in the column names (``_ms``, ``_usd``, ``_s``); rates are fractions (0-1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from analysis.reduce import group_intervals, wide_means
from analysis.results import COST_COMPONENTS, flatten, plan_points

#: Columns of a runs/sweep table reported per policy or configuration: (column, display name).
KEY_METRICS: tuple[tuple[str, str], ...] = (
    ("cost_usd.total", "total cost (USD)"),
    ("sla.violation_rate", "SLA violation rate (0-1)"),
    ("latency_ms.p99", "p99 latency (ms)"),
    ("latency_ms.p50", "p50 latency (ms)"),
    ("node_hours", "node-hours (h)"),
    ("nodes.node_seconds", "node-seconds (s)"),
    ("utilization", "utilisation (0-1)"),
)


def fmt_num(v: Any) -> str:
    """A number as shown in reports: thousands separators, 2 decimals from 1 up, else 4
    significant digits; NaN/None as ``n/a``."""
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return f"{v:,}"
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    if x != x:
        return "n/a"
    if x.is_integer() and abs(x) >= 1e3:
        return f"{x:,.0f}"
    return f"{x:,.2f}" if abs(x) >= 1 else f"{x:.4g}"


def run_headline(summary: Mapping[str, Any]) -> pd.DataFrame:
    """The headline figures of one run's ``summary.json`` as (metric, value) rows."""
    r, lat = summary.get("requests", {}), summary.get("latency_ms", {})
    wait, sla = summary.get("queue_wait_ms", {}), summary.get("sla", {})
    nodes, cost = summary.get("nodes", {}), summary.get("cost_usd", {})
    rows: list[tuple[str, Any]] = [
        ("scenario", summary.get("scenario")), ("seed", summary.get("seed")),
        ("simulated time (s)", summary.get("sim_duration_s")),
        ("warm-up (s)", summary.get("warmup_s")),
        ("requests arrived", r.get("arrived")), ("completed", r.get("completed")),
        ("dropped", r.get("dropped")), ("timed out", r.get("timed_out")),
        ("in flight at end", r.get("in_flight")),
    ]
    rows += [(f"latency {k} (ms)", lat.get(k)) for k in ("mean", "p50", "p95", "p99", "max")]
    rows += [(f"queue wait {k} (ms)", wait.get(k)) for k in ("mean", "p99")]
    rows += [("SLO (ms)", sla.get("slo_ms")), ("SLA violations", sla.get("violations")),
             ("SLA violation rate (0-1)", sla.get("violation_rate")),
             ("utilisation (0-1)", summary.get("utilization")),
             ("nodes mean", nodes.get("mean")), ("nodes max", nodes.get("max")),
             ("node-seconds (s)", nodes.get("node_seconds"))]
    rows += [(f"cost {k.replace('_', ' ')} (USD)", cost.get(k))
             for k in (*COST_COMPONENTS, "total")]
    rows.append(("overloaded", summary.get("overloaded")))
    if summary.get("overload_reason"):
        rows.append(("overload reason", summary["overload_reason"]))
    return pd.DataFrame(rows, columns=["metric", "value"])


def sections_table(section: Mapping[str, Any], key: str) -> pd.DataFrame:
    """A ``pools`` or ``classes`` section of ``summary.json`` flattened to one row per entry."""
    rows = [{key: name, **flatten(v)} for name, v in section.items() if isinstance(v, Mapping)]
    return pd.DataFrame(rows)


def run_costs(summary: Mapping[str, Any], label: str | None = None) -> pd.DataFrame:
    """One run's cost components (USD) as a one-row table indexed by ``label``."""
    c = summary.get("cost_usd", {})
    name = label or str(summary.get("scenario", "run"))
    return pd.DataFrame([{k: c.get(k, 0.0) for k in COST_COMPONENTS}],
                        index=pd.Index([name], name="run"))


def mean_costs(runs: pd.DataFrame, by: str = "variant") -> pd.DataFrame:
    """Mean cost components (USD) per group of a runs table (``cost_usd.*`` columns)."""
    cols = {f"cost_usd.{k}": k for k in COST_COMPONENTS if f"cost_usd.{k}" in runs.columns}
    if not cols or by not in runs.columns:
        return pd.DataFrame()
    g = runs.assign(**{by: runs[by].astype(str)}).groupby(by, sort=False)[list(cols)].mean()
    return g.rename(columns=cols)


def interval_table(runs: pd.DataFrame, by: str | list[str] = "variant",
                   metrics: Sequence[tuple[str, str]] = KEY_METRICS,
                   confidence: float = 0.95) -> pd.DataFrame:
    """Per group: ``NAME mean`` and ``NAME +-CI`` (Student t half-width) for each metric, and
    ``runs`` (replications)."""
    keys = [by] if isinstance(by, str) else list(by)
    present = [(c, n) for c, n in metrics if c in runs.columns]
    long = group_intervals(runs, keys, [c for c, _ in present], confidence)
    if long.empty:
        return pd.DataFrame(columns=keys)
    out = long[keys].drop_duplicates().reset_index(drop=True)
    pct = f"+-{round(confidence * 100)}% CI"
    for col, name in present:
        sub = long[long["metric"] == col][[*keys, "mean", "half_width", "n"]]
        sub = sub.rename(columns={"mean": f"{name} mean", "half_width": f"{name} {pct}",
                                  "n": "runs"})
        out = out.merge(sub, on=keys, how="left", suffixes=("", "_dup"))
        out = out.drop(columns=[c for c in out.columns if c.endswith("_dup")])
    return out


def sweep_points(sweep: pd.DataFrame | None, params: Sequence[str],
                 plan: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One row per configuration: its parameters, the mean of each key metric over its
    replications, ``runs`` and (when the plan lists it) ``feasible``.

    Without a sweep table the plan's points are used (their ``mean`` values, under the same
    dotted metric names when the plan uses them).
    """
    keys = [p for p in params if sweep is not None and p in sweep.columns]
    if sweep is not None and not sweep.empty and keys:
        metrics = [c for c, _ in KEY_METRICS if c in sweep.columns]
        long = group_intervals(sweep, keys, metrics)
        pts = wide_means(long, keys)
        n = sweep.groupby(keys, sort=False).size().rename("runs").reset_index()
        pts = pts.merge(n, on=keys, how="left")
    elif plan:
        pts = plan_points(plan)
        pts.columns = [_plan_metric(c) for c in pts.columns]
    else:
        return pd.DataFrame()
    if plan and "feasible" not in pts.columns:
        feas = plan_points(plan)
        pk = [k for k in keys if k in feas.columns]
        if pk and "feasible" in feas.columns:
            pts = pts.merge(feas[[*pk, "feasible"]].drop_duplicates(pk), on=pk, how="left")
    return pts


_PLAN_ALIASES = {"cost": "cost_usd.total", "total_cost": "cost_usd.total",
                 "violation_rate": "sla.violation_rate", "p99_ms": "latency_ms.p99",
                 "p99": "latency_ms.p99", "node_hours": "nodes.node_hours"}


def _plan_metric(col: str) -> str:
    """``mean.cost_usd.total`` -> ``cost_usd.total``; ``mean.cost`` -> ``cost_usd.total``."""
    if col.startswith("mean."):
        rest = col[5:]
        return _PLAN_ALIASES.get(rest, rest)
    return col
