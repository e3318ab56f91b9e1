"""Result tables as pandas DataFrames: a run's headline figures, per-pool and per-class rows,
per-policy means with confidence intervals, and per-configuration sweep points.

Units are in the column names (``_ms``, ``_usd``, ``_s``); rates are fractions (0-1). Costs
are per simulated measurement window (warm-up excluded); ``cost_usd.total_per_day`` scales
the window's total linearly to 24 h (:class:`CostBasis`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis.reduce import group_intervals, wide_means
from analysis.results import COST_COMPONENTS, flatten, plan_points
from analysis.scenario_info import clock

#: Derived column: total cost scaled from the measurement window to a day (USD/day).
PER_DAY = "cost_usd.total_per_day"

#: Columns of a runs/sweep table reported per policy or configuration: (column, display name).
KEY_METRICS: tuple[tuple[str, str], ...] = (
    ("cost_usd.total", "total cost (USD per window)"),
    (PER_DAY, "total cost (USD per day, scaled)"),
    ("sla.violation_rate", "SLA violation rate (0-1)"),
    ("latency_ms.p99", "p99 latency (ms)"),
    ("latency_ms.p50", "p50 latency (ms)"),
    ("node_hours", "node-hours (h)"),
    ("gpu_hours", "GPU-hours (h)"),
    ("nodes.node_seconds", "node-seconds (s)"),
    ("utilization", "utilisation (0-1)"),
)


def fmt_num(v: Any) -> str:
    """A number as shown in reports: thousands separators, 2 decimals from 1 up, else 4
    significant digits; NaN, +-inf (an interval with fewer than 2 replications) and None as
    ``n/a``; strings unchanged."""
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, str):  # text stays as written ("3" replications, a version "1.10")
        return v
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(x):  # NaN, or the infinite half-width of a single replication
        return "n/a"
    if x.is_integer() and abs(x) >= 1e3:
        return f"{x:,.0f}"
    return f"{x:,.2f}" if abs(x) >= 1 else f"{x:.4g}"


def run_headline(summary: Mapping[str, Any], basis: CostBasis | None = None) -> pd.DataFrame:
    """The headline figures of one run's ``summary.json`` as (metric, value) rows; costs are
    labelled with their ``basis`` (default: from the summary's measurement window)."""
    basis = basis or CostBasis.of(summary)
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
    rows.append(("cost basis", basis.label))
    rows += [(f"cost {k.replace('_', ' ')} (USD per window)", cost.get(k))
             for k in (*COST_COMPONENTS, "total")]
    if basis.per_day_factor is not None and cost.get("total") is not None:
        rows.append(("cost total per day (USD per day, scaled)",
                     float(cost["total"]) * basis.per_day_factor))
    rows.append(("overloaded", summary.get("overloaded")))
    if summary.get("overload_reason"):
        rows.append(("overload reason", summary["overload_reason"]))
    return pd.DataFrame(rows, columns=["metric", "value"])


@dataclass(frozen=True)
class CostBasis:
    """What a cost figure is per: the simulated measurement window (``warmup_s`` to
    ``warmup_s + window_s``, s since the run's start) and its clock times when ``start_hour``
    is known. Per-day figures scale the window linearly (cost / window hours x 24)."""

    window_s: float | None
    warmup_s: float = 0.0
    start_hour: float | None = None
    #: the window as calendar times (``simulation.start``, ``simulation.end``) when recorded
    calendar: tuple[str, str] | None = None

    @classmethod
    def of(cls, summary: Mapping[str, Any] | pd.Series | None,
           start_hour: float | None = None,
           calendar: tuple[str, str] | None = None) -> CostBasis:
        """From a summary (or a runs-table row): ``measurement_window_s`` and ``warmup_s``."""
        s = summary if summary is not None else {}
        w, wu = s.get("measurement_window_s"), s.get("warmup_s")
        try:
            wf = float(w)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            wf = math.nan
        ok = math.isfinite(wf) and wf > 0
        try:
            wuf = float(wu or 0.0)
        except (TypeError, ValueError):
            wuf = 0.0
        return cls(wf if ok else None, wuf if math.isfinite(wuf) else 0.0, start_hour, calendar)

    @property
    def hours(self) -> float | None:
        return self.window_s / 3600.0 if self.window_s else None

    @property
    def per_day_factor(self) -> float | None:
        """24 / window hours (None when the window is unknown)."""
        return 24.0 / self.hours if self.hours else None

    @property
    def span(self) -> str:
        """``23:30-23:34, 0.0667 h`` (clock times only with a known start hour)."""
        if self.hours is None:
            return "window not recorded"
        h = f"{self.hours:.3g} h"
        if self.calendar is not None:
            return f"{self.calendar[0]} to {self.calendar[1]}, {h}"
        if self.start_hour is None or self.window_s is None:
            return h
        a = clock(self.warmup_s, self.start_hour)
        b = clock(self.warmup_s + self.window_s, self.start_hour)
        return f"{a}-{b}, {h}"

    @property
    def label(self) -> str:
        """``USD per simulated window (23:30-23:34, 0.0667 h)``."""
        return f"USD per simulated window ({self.span})"

    @property
    def axis_unit(self) -> str:
        """The unit as an axis shows it (no nested parentheses)."""
        return f"USD per simulated window {self.span}"

    @property
    def per_day_note(self) -> str:
        """How per-day figures are scaled from the window."""
        if self.hours is None:
            return "per-day figures need the window length (not recorded)"
        return f"per day = cost per window / {self.hours:.3g} h x 24 h (linear scaling)"


def with_per_day_cost(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` plus :data:`PER_DAY` (``cost_usd.total`` x 86400 / ``measurement_window_s``)
    when both columns exist; unchanged otherwise."""
    if runs is None or "cost_usd.total" not in runs.columns or (
            "measurement_window_s" not in runs.columns):
        return runs
    w = pd.to_numeric(runs["measurement_window_s"], errors="coerce")
    return runs.assign(**{PER_DAY: pd.to_numeric(runs["cost_usd.total"], errors="coerce")
                          * 86400.0 / w.where(w > 0)})


_CLASS_RATE = re.compile(r"^classes\.(.+)\.sla\.violation_rate$")


def class_names(runs: pd.DataFrame) -> list[str]:
    """Request classes with a ``classes.<name>.sla.violation_rate`` column, in column order."""
    return [m.group(1) for c in runs.columns if (m := _CLASS_RATE.match(str(c)))]


def policy_table(runs: pd.DataFrame, by: str | list[str] = "variant",
                 confidence: float = 0.95) -> pd.DataFrame:
    """:func:`interval_table` of the key metrics plus, per request class, its SLO (ms) and its
    SLA violation rate (mean and CI over replications); total cost also per day."""
    runs = with_per_day_cost(runs)
    classes = class_names(runs)
    metrics = [*KEY_METRICS, *((f"classes.{c}.sla.violation_rate",
                                f"{c}: SLA violation rate (0-1)") for c in classes)]
    out = interval_table(runs, by, metrics, confidence)
    keys = [by] if isinstance(by, str) else list(by)
    for c in classes:
        col = f"classes.{c}.slo_ms"
        if col not in runs.columns or out.empty:
            continue
        slo = runs.assign(**{k: runs[k].astype(str) for k in keys}).groupby(
            keys, sort=False)[col].first().rename(f"{c}: SLO (ms)").reset_index()
        out = out.assign(**{k: out[k].astype(str) for k in keys}).merge(slo, on=keys,
                                                                          how="left")
        rate = f"{c}: SLA violation rate (0-1) mean"
        if rate in out.columns:  # the SLO next to its class's rate
            cols = [x for x in out.columns if x != f"{c}: SLO (ms)"]
            cols.insert(cols.index(rate), f"{c}: SLO (ms)")
            out = out[cols]
    return out


#: Display names of ``compare.json`` metric labels (the unit goes in parentheses once).
DIFF_LABELS = {"cost": "total cost (USD per window)", "violation_rate": "SLA violation rate (0-1)",
               "p99_ms": "p99 latency (ms)", "node_hours": "node-hours (h)",
               "gpu_hours": "GPU-hours (h)"}


def metric_label(metric: str, unit: str | None = None) -> str:
    """A metric name with its unit once: ``p99_ms`` + ``ms`` -> ``p99 latency (ms)``;
    ``wait_p99_ms`` + ``ms`` -> ``wait_p99 (ms)``; a rate with no unit -> ``(0-1)``."""
    if metric in DIFF_LABELS:
        return DIFF_LABELS[metric]
    name = metric
    if unit and (name.endswith(f"_{unit}") or name.endswith(f".{unit}")):
        name = name[: -len(unit) - 1]
    return f"{name} ({unit})" if unit else name


def differences_table(diffs: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """``compare.json``'s paired differences: one row per (variant, metric), the metric shown
    with its unit once, mean / lo / hi / half-width of variant - baseline, n and verdict."""
    df = pd.DataFrame(list(diffs))
    if df.empty:
        return df
    if "metric" in df.columns:
        units = df["unit"] if "unit" in df.columns else pd.Series([None] * len(df))
        df["metric"] = [metric_label(str(m), u if isinstance(u, str) and u else None)
                        for m, u in zip(df["metric"], units, strict=True)]
    df = df.drop(columns=[c for c in ("unit", "method", "level", "rel_precision")
                          if c in df.columns])
    first = [c for c in ("variant", "baseline", "metric", "mean", "lo", "hi", "half_width",
                         "n", "verdict") if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]]


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


#: Metric aliases of ``compare``/``plan`` (as ``simulator.experiment.ALIASES``) -> column.
METRIC_ALIASES = {"cost": "cost_usd.total", "total_cost": "cost_usd.total",
                  "violation_rate": "sla.violation_rate", "p99_ms": "latency_ms.p99",
                  "p99": "latency_ms.p99", "p95_ms": "latency_ms.p95",
                  "p50_ms": "latency_ms.p50", "mean_ms": "latency_ms.mean",
                  "utilization": "utilization", "node_hours": "node_hours",
                  "wait_mean_ms": "queue_wait_ms.mean", "wait_p99_ms": "queue_wait_ms.p99"}


def metric_column(name: str) -> str:
    """The runs-table column of a metric name or alias (``violation_rate`` ->
    ``sla.violation_rate``); other names are columns already."""
    return METRIC_ALIASES.get(name, name)


def _plan_metric(col: str) -> str:
    """``mean.cost_usd.total`` -> ``cost_usd.total``; ``mean.cost`` -> ``cost_usd.total``."""
    if col.startswith("mean."):
        return metric_column(col[5:])
    return col
