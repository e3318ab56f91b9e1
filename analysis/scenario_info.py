"""Reading a scenario as run (the validated scenario dict a result records) for reports.

A scenario may come wrapped as ``scenario.json`` writes it (``{"source", "overrides",
"scenario": {...}}``) or bare (the sections ``simulation``/``workload``/``service``/...); every
function here takes either. Nothing here validates: results record validated scenarios, and
older results may lack fields (then the defaults of ``simulator.sections`` are assumed:
``start_hour`` 0, ``warmup_s`` 0, a class SLO of ``sla.slo_ms``).

Times are seconds since the run's start (t = 0 at the clock hour ``simulation.start_hour``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

#: How far a peak window reaches either side of the peak: 10% of the run, at most 30 min.
PEAK_MARGIN_S = 1800.0


def inner(sc: Mapping[str, Any] | None) -> dict[str, Any]:
    """The scenario sections of a wrapped (``scenario.json``) or bare scenario dict."""
    if not sc:
        return {}
    got = sc.get("scenario")
    return dict(got) if isinstance(got, Mapping) else dict(sc)


def scenario_name(sc: Mapping[str, Any] | None) -> str | None:
    """The scenario's ``name`` (None when not recorded)."""
    name = inner(sc).get("name")
    return str(name) if name else None


def simulation(sc: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(inner(sc).get("simulation") or {})


def start_hour(sc: Mapping[str, Any] | None) -> float:
    """Clock hour at t = 0 (``simulation.start_hour``, default 0)."""
    return float(simulation(sc).get("start_hour") or 0.0)


def warmup_s(sc: Mapping[str, Any] | None) -> float:
    """``simulation.warmup_s`` (s, default 0)."""
    return float(simulation(sc).get("warmup_s") or 0.0)


def class_slos(sc: Mapping[str, Any] | None) -> dict[str, float]:
    """SLO (ms) per request class: ``workload.classes[*].slo_ms``, else ``sla.slo_ms``.

    A scenario without classes gives ``{"all requests": sla.slo_ms}``; classes without any SLO
    (neither their own nor ``sla.slo_ms``) are left out.
    """
    d = inner(sc)
    default = (d.get("sla") or {}).get("slo_ms")
    classes = (d.get("workload") or {}).get("classes") or []
    out: dict[str, float] = {}
    for i, c in enumerate(classes):
        if not isinstance(c, Mapping):
            continue
        slo = c.get("slo_ms") if c.get("slo_ms") is not None else default
        if slo is not None:
            out[str(c.get("name", f"class{i}"))] = float(slo)
    if not out and default is not None and not classes:
        out["all requests"] = float(default)
    return out


# ----------------------------------------------------------------------------- calendar
def peak_start_s(peak: Mapping[str, Any], sim: Mapping[str, Any]) -> float | None:
    """Start of a ``workload.peaks`` entry, s since the run's beginning: its ``start_s``, or
    its calendar ``at`` converted by ``simulator.calendar_time`` (the one place that reads
    calendar strings: the run begins at ``simulation.start - warmup_s``); None when it has
    neither or ``at`` cannot be read (no ``simulation.start``)."""
    if peak.get("start_s") is not None:
        return float(peak["start_s"])
    if not peak.get("at"):
        return None
    try:
        from simulator.calendar_time import peak_start_s as _calendar_start
    except ImportError:  # a simulator without calendar scenarios
        return None
    try:
        return float(_calendar_start(start_s=None, at=str(peak["at"]),
                                     sim_start=sim.get("start"),
                                     warmup_s=float(sim.get("warmup_s") or 0.0)))
    except ValueError:
        return None


def peak_window(sc: Mapping[str, Any] | None, duration_s: float) -> tuple[float, float] | None:
    """(t0, t1) around the scenario's first peak: its ramp, hold and decay (a linear decay's
    length, 3 time constants of an exponential one), with 10% of the run (at most 30 min)
    either side; None without peaks or when the window would cover most of the run (nothing
    to zoom)."""
    d = inner(sc)
    peaks = (d.get("workload") or {}).get("peaks") or []
    if not peaks or not isinstance(peaks[0], Mapping) or duration_s <= 0:
        return None
    p = peaks[0]
    start = peak_start_s(p, d.get("simulation") or {})
    if start is None:
        return None
    decay = float(p.get("decay_s") or 0)
    end = start + float(p.get("ramp_s") or 0) + float(p.get("hold_s") or 0) + (
        decay if p.get("decay") == "linear" else 3 * decay)
    return _clamp(start, end, duration_s)


def _clamp(start: float, end: float, duration_s: float) -> tuple[float, float] | None:
    margin = min(PEAK_MARGIN_S, 0.1 * duration_s)
    t0, t1 = max(0.0, start - margin), min(duration_s, end + margin)
    return (t0, t1) if t1 > t0 and (t1 - t0) < 0.8 * duration_s else None


def rate_peak_window(ts: pd.DataFrame, duration_s: float | None = None
                     ) -> tuple[float, float] | None:
    """(t0, t1) around the peak of the (mean over variants/replications) arrival rate: the
    intervals around its maximum where it stays above half-way between median and maximum,
    with the margin of :func:`peak_window`; None when the series is empty or flat (maximum
    within 10% of the median)."""
    if ts is None or ts.empty or "t_s" not in ts.columns:
        return None
    col = "arrival_rate_qps" if "arrival_rate_qps" in ts.columns else "arrivals"
    if col not in ts.columns:
        return None
    rate = ts.groupby("t_s", sort=True)[col].mean()
    v = rate.to_numpy(float)
    ok = np.isfinite(v)
    if not ok.any():
        return None
    med = float(np.median(v[ok]))
    peak = float(np.nanmax(v))
    if not peak > 1.1 * med:
        return None
    t = rate.index.to_numpy(float)
    i = j = int(np.nanargmax(v))
    high = np.nan_to_num(v, nan=-np.inf) >= med + 0.5 * (peak - med)  # the peak's plateau
    while i > 0 and high[i - 1]:
        i -= 1
    while j < len(v) - 1 and high[j + 1]:
        j += 1
    step = float(np.diff(t).min()) if len(t) > 1 else 0.0
    span = float(duration_s) if duration_s else float(t.max() + step)
    return _clamp(float(t[i]), float(t[j]) + step, span)


# ----------------------------------------------------------------------------- profiles
def profile_uses(sc: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """Calibration profile path -> the profile variants the scenario runs on it
    (``service.profile``/``variant`` and each pool's ``service``); empty without profiles."""
    d = inner(sc)
    svcs = [d.get("service") or {}]
    svcs += [p.get("service") or {} for p in (d.get("cluster") or {}).get("pools") or []
             if isinstance(p, Mapping)]
    out: dict[str, list[str]] = {}
    for s in svcs:
        if isinstance(s, Mapping) and s.get("profile"):
            used = out.setdefault(str(s["profile"]), [])
            if s.get("variant") and str(s["variant"]) not in used:
                used.append(str(s["variant"]))
    return out


def clock(t_s: float, start_hour_: float) -> str:
    """``HH:MM`` of time ``t_s`` (s since the run's start), ``+Nd`` appended after day 0
    (``00:00+1d``)."""
    total = start_hour_ * 3600.0 + t_s
    day = math.floor(total / 86400.0)
    s = total - day * 86400.0
    text = f"{int(s // 3600):02d}:{int(s % 3600 // 60):02d}"
    return f"{text}+{day}d" if day > 0 else text
