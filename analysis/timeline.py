"""The promotion-peak timeline: load, fleet, queue and tail latency over (clock) time.

Four stacked panels sharing the time axis: arrival rate (requests/s); nodes (per pool ready,
starting = provisioning + loading, and desired, when ``timeseries_pools.parquet`` exists, else
the run's provisioned and busy nodes); queue length (requests); per-interval p99 latency (ms)
against the SLO line. Scale events, preemptions and failures are vertical lines on every panel.
Times are seconds since the run's start; ticks show the wall clock (``start_hour`` at t = 0).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MultipleLocator

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
                  title: str = "Promotion-peak timeline") -> Figure:
    """The four-panel timeline of a run, optionally zoomed to ``window`` (see parse_window).

    Line gids: ``arrival_rate``; ``POOL:ready``/``POOL:starting``/``POOL:desired`` or
    ``provisioned``/``busy``; ``queue_len``; ``p99``; ``slo``; event line collections
    ``event:KIND``.
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
    if slo_ms:
        axes[3].axhline(slo_ms, color="#d62728", ls="--", lw=1.2, label=f"SLO {slo_ms:g} ms",
                        gid="slo")
    finite = p99[np.isfinite(p99) & (p99 > 0)]
    if finite.size and finite.max() / max(finite.min(), 1e-9) > 50:
        axes[3].set_yscale("log")
    axes[3].set_ylabel("p99 latency (ms)")
    _events(axes, _clip(events, t0, t1))
    for ax in axes:
        ax.grid(alpha=0.3)
    for ax in (axes[0], axes[2], axes[3]):
        ax.legend(loc="upper left", fontsize=7)
    axes[-1].set_xlim(t0, t1)
    step = _tick_step(t1 - t0)
    axes[-1].xaxis.set_major_locator(MultipleLocator(step, offset=(-start_hour * 3600.0) % step))
    axes[-1].xaxis.set_major_formatter(_clock_formatter(start_hour))
    axes[-1].set_xlabel(f"clock time (hh:mm; t = 0 s at {_clock_formatter(start_hour)(0.0)})")
    fig.suptitle(title if window is None else f"{title} (zoom)")
    return fig
