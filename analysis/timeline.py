"""Timelines over (clock) time: one run's promotion peak, and policies side by side.

:func:`peak_timeline` (one run): four stacked panels sharing the time axis: arrival rate
(requests/s); nodes (per pool ready, busy, starting = provisioning + loading, and desired, when
``timeseries_pools.parquet`` exists, else the run's provisioned and busy nodes); queue length
(requests); per-interval p99 latency (ms) against the SLO line. Scale events, preemptions and
failures are vertical lines on every panel.

:func:`compare_timeline` (a comparison's ``timeseries.parquet``): arrival rate, ready and busy
nodes per variant, p99 latency per variant against each class's SLO, SLA violations per
interval per variant; means over replications.

Times are seconds since the run's start; ticks show the wall clock (``start_hour`` at t = 0);
the warm-up (not measured) is shaded grey (patch gid ``warmup``); node axes have integer ticks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, MultipleLocator

from analysis.style import EVENT_COLORS, empty_note, new_figure, palette

DAY_S = 86400.0
_TICK_STEPS_S = (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def clock_to_t(clock: str, start_hour: float, after_s: float = 0.0) -> float:
    """Seconds since the run's start of the first ``HH:MM`` at or after ``after_s``."""
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", clock)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ValueError(f"'{clock}': expected a clock time HH:MM")
    tod = int(m.group(1)) * 3600 + int(m.group(2)) * 60
    t = (tod - start_hour * 3600.0) % DAY_S
    while t < after_s:
        t += DAY_S
    return t


def parse_window(window: str | tuple[float | str, float | str],
                 start_hour: float = 0.0) -> tuple[float, float]:
    """A window as (t0_s, t1_s) since the run's start.

    Accepts seconds (``(41400, 46800)`` or ``"41400-46800"``) or clock times
    (``("23:30", "01:00")`` or ``"23:30-01:00"``, resolved against ``start_hour``; the end is
    the first such time after the start, so windows may cross midnight).
    """
    if isinstance(window, str):
        parts = re.split(r"\s*(?:-|\.\.|,)\s*(?=\d)", window.strip(), maxsplit=1)
        if len(parts) != 2:
            raise ValueError(f"'{window}': expected T0-T1 (seconds) or HH:MM-HH:MM")
        a, b = parts[0], parts[1]
    else:
        a, b = window
    t0 = clock_to_t(a, start_hour) if isinstance(a, str) and ":" in a else float(a)
    t1 = clock_to_t(b, start_hour, t0) if isinstance(b, str) and ":" in b else float(b)
    if not t1 > t0:
        raise ValueError(f"window end {t1:g} s is not after its start {t0:g} s")
    return t0, t1


def _clock_formatter(start_hour: float) -> FuncFormatter:
    def fmt(t: float, _pos: int | None = None) -> str:
        total = start_hour * 3600.0 + t
        day = math.floor(total / DAY_S)
        s = total - day * DAY_S
        label = f"{int(s // 3600):02d}:{int(s % 3600 // 60):02d}"
        return f"{label}\n+{day}d" if day > 0 else label
    return FuncFormatter(fmt)


def _tick_step(span_s: float) -> float:
    return next((s for s in _TICK_STEPS_S if span_s / s <= 8), _TICK_STEPS_S[-1])


def _clock_axis(ax: Axes, t0: float, t1: float, start_hour: float) -> None:
    ax.set_xlim(t0, t1)
    step = _tick_step(t1 - t0)
    ax.xaxis.set_major_locator(MultipleLocator(step, offset=(-start_hour * 3600.0) % step))
    ax.xaxis.set_major_formatter(_clock_formatter(start_hour))
    ax.set_xlabel(f"clock time (hh:mm; t = 0 s at {_clock_formatter(start_hour)(0.0)})")


def _shade_warmup(axes: list[Axes], warmup_s: float | None, t0: float, t1: float) -> None:
    """Grey span over the warm-up on every panel (gid ``warmup``), labelled on the first."""
    if not warmup_s or warmup_s <= t0:
        return
    for i, ax in enumerate(axes):
        ax.axvspan(t0, min(float(warmup_s), t1), color="#9e9e9e", alpha=0.18, lw=0,
                   gid="warmup", label="warm-up (not measured)" if i == 0 else None, zorder=0)


def _log_if_spans(ax: Axes, values: np.ndarray, ratio: float = 50.0) -> None:
    """Log y scale when the positive finite values span more than ``ratio``."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if v.size and v.max() / max(v.min(), 1e-12) > ratio:
        ax.set_yscale("log")


def _integer_ticks(ax: Axes) -> None:
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _clip(df: pd.DataFrame | None, t0: float, t1: float) -> pd.DataFrame | None:
    if df is None or df.empty or "t_s" not in df.columns:
        return None
    return df[(df["t_s"] >= t0) & (df["t_s"] <= t1)]


def _nodes_panel(ax: Axes, ts: pd.DataFrame, pools: pd.DataFrame | None,
                 colors: Mapping[str, str] | None) -> None:
    if pools is not None and not pools.empty and "pool" in pools.columns:
        names = [str(p) for p in pd.unique(pools["pool"])]
        cmap = palette(names, colors)
        for name in names:
            g = pools[pools["pool"].astype(str) == name].sort_values("t_s")
            t = g["t_s"].to_numpy(float)
            if "ready" in g:
                ax.plot(t, g["ready"], color=cmap[name], lw=1.6, drawstyle="steps-post",
                        label=f"{name} ready", gid=f"{name}:ready")
            starting = sum((g[c] for c in ("provisioning", "loading") if c in g),
                           start=pd.Series(0.0, index=g.index))
            ax.plot(t, starting, color=cmap[name], lw=1.2, ls="--", drawstyle="steps-post",
                    label=f"{name} provisioning+loading", gid=f"{name}:starting")
            if "busy" in g:
                ax.plot(t, g["busy"], color=cmap[name], lw=1.2, ls="-.", alpha=0.8,
                        label=f"{name} busy (mean)", gid=f"{name}:busy")
            if "desired" in g:
                ax.plot(t, g["desired"], color=cmap[name], lw=0.9, ls=":",
                        drawstyle="steps-post", label=f"{name} desired", gid=f"{name}:desired")
    else:
        t = ts["t_s"].to_numpy(float)
        ax.plot(t, ts["provisioned_nodes"], color="#1f77b4", lw=1.6, label="provisioned",
                gid="provisioned")
        ax.plot(t, ts["busy_nodes"], color="#ff7f0e", lw=1.2, ls="--", label="busy (mean)",
                gid="busy")
    ax.set_ylabel("nodes (count)")
    _integer_ticks(ax)
    ax.legend(loc="upper left", fontsize=7, ncols=2)


#: per-node lifecycle records and desired-count changes in events.parquet: kept in the file,
#: not drawn (scale events, preemptions and failures already mark what happened)
NODE_LEVEL = frozenset({"desired", "provisioning", "loading", "ready", "draining",
                        "terminated", "failed"})


def _events(axes: list[Axes], events: pd.DataFrame | None) -> None:
    if events is None or events.empty or "kind" not in events.columns:
        return
    for kind in [str(k) for k in pd.unique(events["kind"]) if str(k) not in NODE_LEVEL]:
        t = events.loc[events["kind"].astype(str) == kind, "t_s"].to_numpy(float)
        color = EVENT_COLORS.get(kind, "#7f7f7f")
        for i, ax in enumerate(axes):
            ax.vlines(t, 0, 1, transform=ax.get_xaxis_transform(), colors=color, lw=0.8,
                      alpha=0.6, linestyles=":", gid=f"event:{kind}",
                      label=f"{kind} ({len(t)})" if i == 0 else None)


def peak_timeline(timeseries: pd.DataFrame, *, pool_series: pd.DataFrame | None = None,
                  events: pd.DataFrame | None = None, slo_ms: float | None = None,
                  window: str | tuple[float | str, float | str] | None = None,
                  start_hour: float = 0.0, colors: Mapping[str, str] | None = None,
                  title: str = "Promotion-peak timeline", warmup_s: float | None = None,
                  slo_ms_by_class: Mapping[str, float] | None = None) -> Figure:
    """The four-panel timeline of a run, optionally zoomed to ``window`` (see parse_window).

    Line gids: ``arrival_rate``; ``POOL:ready``/``POOL:busy``/``POOL:starting``/
    ``POOL:desired`` or ``provisioned``/``busy``; ``queue_len``; ``p99``; ``slo`` (or, with
    ``slo_ms_by_class`` whose classes' SLOs differ, ``slo:CLASS`` per class, see
    :func:`slo_lines`); event line collections ``event:KIND``; the warm-up ``[0, warmup_s)`` is
    a grey span (gid ``warmup``).
    """
    fig = new_figure(10.0, 9.0)
    if timeseries is None or timeseries.empty:
        return empty_note(fig, "no time series")
    t_all = timeseries["t_s"].to_numpy(float)
    t0, t1 = (parse_window(window, start_hour) if window is not None
              else (float(t_all.min()), float(t_all.max())))
    ts = _clip(timeseries, t0, t1)
    assert ts is not None
    axes = list(fig.subplots(4, 1, sharex=True))
    t = ts["t_s"].to_numpy(float)
    rate = ts["arrival_rate_qps"] if "arrival_rate_qps" in ts else ts["arrivals"] / (
        np.diff(t_all).min() if len(t_all) > 1 else 1.0)
    axes[0].plot(t, rate, color="#1f77b4", lw=1.4, label="arrival rate", gid="arrival_rate")
    axes[0].set_ylabel("arrival rate (req/s)")
    _nodes_panel(axes[1], ts, _clip(pool_series, t0, t1), colors)
    axes[2].plot(t, ts["queue_len"], color="#8c564b", lw=1.4, label="queue length",
                 gid="queue_len")
    axes[2].set_ylabel("queue length (requests)")
    p99 = ts["p99_latency_ms"].to_numpy(float)
    axes[3].plot(t, p99, color="#9467bd", lw=1.4, label="p99 latency (per interval)", gid="p99")
    slo_lines(axes[3], slo_ms_by_class or ({"all requests": slo_ms} if slo_ms else None))
    _log_if_spans(axes[3], p99)
    axes[3].set_ylabel("p99 latency (ms)")
    _events(axes, _clip(events, t0, t1))
    _shade_warmup(axes, warmup_s, t0, t1)
    for ax in axes:
        ax.grid(alpha=0.3)
    for ax in (axes[0], axes[2], axes[3]):
        ax.legend(loc="upper left", fontsize=7)
    _clock_axis(axes[-1], t0, t1, start_hour)
    fig.suptitle(title if window is None else f"{title} (zoom)")
    return fig


# ----------------------------------------------------------------------------- comparison
#: Line styles of per-class SLO lines (one class per style, in class order).
SLO_STYLES: tuple[Any, ...] = ("--", "-.", ":", (0, (6, 2)), (0, (2, 1, 1, 1)))
SLO_COLORS: tuple[str, ...] = ("#d62728", "#8b0000", "#e377c2", "#ff7f0e", "#7f7f7f")


def slo_lines(ax: Axes, slo_ms_by_class: Mapping[str, float] | None, *,
              vertical: bool = False) -> None:
    """SLO lines on a latency axis: one (gid ``slo``, ``SLO 50 ms``) when every class shares
    it, else one per class (gid ``slo:CLASS``, ``home_feed SLO 100 ms``), each written at its
    line's end as well as in the legend."""
    slos = {str(k): float(v) for k, v in (slo_ms_by_class or {}).items()
            if v is not None and math.isfinite(float(v))}
    if not slos:
        return
    values = sorted(set(slos.values()))
    if len(values) == 1:
        names = list(slos)
        who = f"{names[0]} " if len(names) == 1 and names[0] != "all requests" else ""
        lines = [("slo", f"{who}SLO {values[0]:g} ms", values[0])]
    else:
        lines = [(f"slo:{c}", f"{c} SLO {v:g} ms", v) for c, v in slos.items()]
    for i, (gid, label, v) in enumerate(lines):
        style = dict(color=SLO_COLORS[i % len(SLO_COLORS)], ls=SLO_STYLES[i % len(SLO_STYLES)],
                     lw=1.2, label=label, gid=gid)
        if vertical:
            ax.axvline(v, **style)
            ax.text(v, 0.98, f" {label}", transform=ax.get_xaxis_transform(), rotation=90,
                    va="top", ha="right", fontsize=7, color=style["color"])
        else:
            ax.axhline(v, **style)
            ax.text(0.995, v, label, transform=ax.get_yaxis_transform(), ha="right",
                    va="bottom", fontsize=7, color=style["color"])


def _per_variant(ts: pd.DataFrame, col: str, how: str = "mean") -> dict[str, pd.Series]:
    """Per variant, ``col`` aggregated over replications at each ``t_s`` (sorted by time)."""
    out: dict[str, pd.Series] = {}
    for v, g in ts.groupby("variant", sort=False):
        out[str(v)] = pd.to_numeric(g[col], errors="coerce").groupby(g["t_s"]).agg(how)
    return out


def compare_timeline(ts: pd.DataFrame, *, slo_ms_by_class: Mapping[str, float] | None = None,
                     warmup_s: float = 0.0, start_hour: float = 0.0,
                     window: str | tuple[float | str, float | str] | None = None,
                     colors: Mapping[str, str] | None = None,
                     title: str = "Policies over the promotion night", band: bool = True
                     ) -> Figure:
    """Policies side by side over time, from a comparison's long ``timeseries.parquet``.

    ``ts`` has columns ``variant``, ``replication``, ``t_s`` and the run time-series columns
    (``arrival_rate_qps``, ``ready_nodes`` or ``provisioned_nodes``, ``busy_nodes``,
    ``p99_latency_ms``, ``arrivals``, and ``violations`` or ``timed_out``/``dropped``). Four
    panels sharing the clock axis, each a mean over replications at each interval:

    1. arrival rate (req/s): one line (gid ``arrival_rate``) when every variant saw the same
       load (common random numbers), else one per variant (gid ``V:arrival_rate``);
    2. nodes: ready (solid, gid ``V:ready``; ``V:provisioned`` where ``ready_nodes`` is absent
       or all NaN, as in runs without a pool series) and busy (dashed, gid ``V:busy``) per
       variant, integer ticks;
    3. per-interval p99 latency (ms) per variant (gid ``V:p99``, min-max over replications as a
       band ``V:p99_band``), log scale when it spans decades, with the SLO line(s) of
       ``slo_ms_by_class`` (see :func:`slo_lines`);
    4. SLA violations per interval: the violation rate (% of the interval's arrivals, pooled
       over replications; gid ``V:violation_rate``) when ``violations`` exists, else timeouts
       + drops (requests per interval, gid ``V:lost``).

    The warm-up is shaded (gid ``warmup``); ``window`` zooms as in :func:`parse_window`.
    """
    fig = new_figure(10.0, 10.0)
    need = {"variant", "t_s"}
    if ts is None or ts.empty or not need <= set(ts.columns):
        return empty_note(fig, "no comparison time series (timeseries.parquet)")
    ts = ts.assign(variant=ts["variant"].astype(str))
    t_all = ts["t_s"].to_numpy(float)
    t0, t1 = (parse_window(window, start_hour) if window is not None
              else (float(t_all.min()), float(t_all.max())))
    clip = _clip(ts, t0, t1)
    assert clip is not None
    names = [str(v) for v in pd.unique(ts["variant"])]
    cmap = palette(names, colors)
    axes = list(fig.subplots(4, 1, sharex=True))
    n_reps = int(ts.groupby("variant")["replication"].nunique().max()) if (
        "replication" in ts.columns) else 1

    # 1. load
    if "arrival_rate_qps" in clip.columns:
        rate = _per_variant(clip, "arrival_rate_qps")
    else:
        step = float(np.diff(np.unique(t_all)).min()) if np.unique(t_all).size > 1 else 1.0
        rate = {k: v / step for k, v in _per_variant(clip, "arrivals").items()}
    series = list(rate.values())
    same = all(s.index.equals(series[0].index) and np.allclose(
        s.to_numpy(float), series[0].to_numpy(float), equal_nan=True) for s in series[1:])
    if same and series:
        axes[0].plot(series[0].index, series[0].to_numpy(float), color="#333333", lw=1.4,
                     label="arrival rate (every variant: common random numbers)",
                     gid="arrival_rate")
    else:
        for v, s in rate.items():
            axes[0].plot(s.index, s.to_numpy(float), color=cmap[v], lw=1.3,
                         label=f"{v} arrival rate", gid=f"{v}:arrival_rate")
    axes[0].set_ylabel("arrival rate (req/s)")
    axes[0].set_ylim(bottom=0)
    axes[0].margins(y=0.12)  # the peak's plateau stays clear of the frame and the legend

    # 2. fleet: ready nodes; provisioned where a variant has no ready count (no pool series)
    ready = _per_variant(clip, "ready_nodes") if "ready_nodes" in clip.columns else {}
    prov = (_per_variant(clip, "provisioned_nodes") if "provisioned_nodes" in clip.columns
            else {})
    for v in names:
        s, kind = ready.get(v), "ready"
        if s is None or not np.isfinite(s.to_numpy(float)).any():
            s, kind = prov.get(v), "provisioned"
        if s is not None:
            axes[1].plot(s.index, s.to_numpy(float), color=cmap[v], lw=1.6,
                         drawstyle="steps-post", label=f"{v} {kind}", gid=f"{v}:{kind}")
    if "busy_nodes" in clip.columns:
        for v, s in _per_variant(clip, "busy_nodes").items():
            axes[1].plot(s.index, s.to_numpy(float), color=cmap[v], lw=1.1, ls="--",
                         label=f"{v} busy (mean)", gid=f"{v}:busy")
    axes[1].set_ylabel("nodes (count)")
    _integer_ticks(axes[1])

    # 3. tail latency
    p99_all: list[np.ndarray] = []
    if "p99_latency_ms" in clip.columns:
        lo, hi = _per_variant(clip, "p99_latency_ms", "min"), _per_variant(
            clip, "p99_latency_ms", "max")
        for v, s in _per_variant(clip, "p99_latency_ms").items():
            y = s.to_numpy(float)
            p99_all.append(y)
            axes[2].plot(s.index, y, color=cmap[v], lw=1.4, label=f"{v} p99", gid=f"{v}:p99")
            if band and n_reps > 1:
                axes[2].fill_between(s.index, lo[v].to_numpy(float), hi[v].to_numpy(float),
                                     color=cmap[v], alpha=0.15, lw=0, gid=f"{v}:p99_band")
                p99_all += [lo[v].to_numpy(float), hi[v].to_numpy(float)]
    slo_lines(axes[2], slo_ms_by_class)
    if p99_all:
        _log_if_spans(axes[2], np.concatenate(p99_all), ratio=30.0)
    axes[2].set_ylabel("p99 latency (ms)")

    # 4. violations
    if "violations" in clip.columns and "arrivals" in clip.columns:
        for v, g in clip.groupby("variant", sort=False):
            sums = g.groupby("t_s")[["violations", "arrivals"]].sum()
            arr = sums["arrivals"].to_numpy(float)
            rate_v = np.divide(sums["violations"].to_numpy(float) * 100.0, arr,
                               out=np.full(arr.shape, np.nan), where=arr > 0)
            axes[3].plot(sums.index, rate_v, color=cmap[str(v)], lw=1.3,
                         label=f"{v}", gid=f"{v}:violation_rate")
        axes[3].set_ylabel("SLA violations (% of arrivals)")
    else:
        lost_cols = [c for c in ("timed_out", "dropped") if c in clip.columns]
        if lost_cols:
            lost = clip.assign(_lost=clip[lost_cols].sum(axis=1))
            for v, s in _per_variant(lost, "_lost").items():
                axes[3].plot(s.index, s.to_numpy(float), color=cmap[v], lw=1.3, label=f"{v}",
                             gid=f"{v}:lost")
        axes[3].set_ylabel("timeouts + drops (requests)")

    step_s = float(np.diff(np.unique(t_all)).min()) if np.unique(t_all).size > 1 else 0.0
    per = f"per {step_s:g} s interval" if step_s else "per interval"
    for ax, text in zip(axes, ("Load", "Fleet: ready (solid) and busy (dashed) nodes",
                               f"Tail latency {per} (by arrival time) vs the SLO",
                               f"SLA violations {per}"), strict=True):
        ax.set_title(text, loc="left", fontsize=9)
    for ax in (axes[1], axes[3]):  # counts and rates start at 0
        ax.set_ylim(bottom=0)
    _shade_warmup(axes, warmup_s, t0, t1)
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", fontsize=7, ncols=2)
    _clock_axis(axes[-1], t0, t1, start_hour)
    reps = f"mean of {n_reps} replications" if n_reps > 1 else "one replication"
    fig.suptitle(f"{title}{' (zoom)' if window is not None else ''}: {reps} per variant")
    return fig
