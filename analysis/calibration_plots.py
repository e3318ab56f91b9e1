"""Calibration figures: batch latency vs batch size per variant, and real-vs-simulated fidelity.

Profiles are read as plain JSON (the schema of ``simulator.profiles``): per variant the measured
``batch_sizes`` (items), ``latency_ms.median``/``p99`` (ms), the fitted forward-pass curve
``fit.x`` / ``fit.y_ms``, which the simulator interpolates piecewise-linearly (so the drawn
polyline is the model), and the serving overheads ``overhead_ms_per_batch`` (ms) and
``overhead_ms_per_item`` (ms per item) the simulator adds to it: a batch of q items takes
``fit(q) + overhead_ms_per_batch + overhead_ms_per_item * q`` (times a residual drawn around 1).

Fidelity rows come from ``simulator.calibration.fidelity`` (objects with ``load``,
``rate_qps``, ``real``, ``sim`` dicts of p50/p95/p99 in ms) or any table of the same content.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from analysis.style import empty_note, new_figure, palette

PERCENTILES = ("p50", "p95", "p99")


def read_profile(profile: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A profile as a dict (from a path or an already loaded mapping)."""
    if isinstance(profile, Mapping):
        return dict(profile)
    return dict(json.loads(Path(profile).read_text()))


def serving_ms(variant: Mapping[str, Any], items: Sequence[float] | np.ndarray) -> np.ndarray:
    """Fitted forward time plus serving overheads (ms) at ``items`` per batch, at the fit's
    points: ``fit.y_ms + overhead_ms_per_batch + overhead_ms_per_item * items`` (the
    simulator's mean-residual-free batch time between fitted points)."""
    fit = variant.get("fit") or {}
    x = np.asarray(items, dtype=float)
    y = np.interp(x, np.asarray(fit.get("x") or [], dtype=float),
                  np.asarray(fit.get("y_ms") or [], dtype=float))
    return (y + float(variant.get("overhead_ms_per_batch") or 0.0)
            + float(variant.get("overhead_ms_per_item") or 0.0) * x)


def calibration_latency(profile: str | Path | Mapping[str, Any],
                        variants: Sequence[str] | None = None,
                        colors: Mapping[str, str] | None = None,
                        show_p99: bool = True, used: Sequence[str] = (),
                        overheads: bool = True) -> Figure:
    """Batch latency (ms) vs batch size (items), log-log, per variant: measured and fit.

    Per variant V: measured medians as markers (gid ``V:measured``), measured p99 as faint
    crosses (gid ``V:p99``), the fitted model forward (gid ``V:fit``) and, when the profile
    has serving overheads and ``overheads``, forward + serving overheads as simulated (dashed,
    gid ``V:serving``). Variants in ``used`` (the ones the scenario runs) are drawn bold (fit
    linewidth > 2) and marked "used by the scenario"; the other variants are then reduced to a
    faded fit line and median markers (no p99, no overhead line, one legend entry each).
    """
    prof = read_profile(profile)
    fig = new_figure(8.5, 6.4)
    allv = prof.get("variants") or {}
    names = [v for v in (variants or list(allv)) if v in allv]
    if not names:
        return empty_note(fig, "profile has no variants")
    ax = fig.subplots()
    cmap = palette(names, colors)
    chosen = [v for v in used if v in allv]
    for v in names:
        d = allv[v]
        hot = v in chosen
        full = hot or not chosen  # drawn in full: a used variant, or every one when none is
        alpha = 1.0 if full else 0.3
        tag = " (used by the scenario)" if hot else ""
        x = np.asarray(d.get("batch_sizes") or [], dtype=float)
        lat = d.get("latency_ms") or {}
        med = np.asarray(lat.get("median") or [], dtype=float)
        if x.size and med.size == x.size:
            ax.plot(x, med, "o", color=cmap[v], ms=6 if hot else 4, alpha=alpha,
                    label=f"{v} measured median{tag}" if full else None, gid=f"{v}:measured")
        p99 = np.asarray(lat.get("p99") or [], dtype=float)
        if show_p99 and full and x.size and p99.size == x.size:
            ax.plot(x, p99, "x", color=cmap[v], ms=4, alpha=0.45, gid=f"{v}:p99")
        fit = d.get("fit") or {}
        if fit.get("x") and fit.get("y_ms"):
            err = fit.get("max_rel_error")
            extra = f", max err {100 * err:.0f}%" if isinstance(err, int | float) else ""
            ax.plot(fit["x"], fit["y_ms"], "-", color=cmap[v], lw=2.8 if hot else 1.3,
                    alpha=alpha, gid=f"{v}:fit",
                    label=(f"{v} model forward (fit: {fit.get('kind', 'piecewise')}{extra})"
                           if full else f"{v} model forward (not used)"))
            ob = float(d.get("overhead_ms_per_batch") or 0.0)
            oi = float(d.get("overhead_ms_per_item") or 0.0)
            if overheads and full and (ob or oi):
                ax.plot(fit["x"], serving_ms(d, fit["x"]), "--", color=cmap[v],
                        lw=2.2 if hot else 1.2, gid=f"{v}:serving",
                        label=f"{v} forward + serving overheads ({ob:.3g} ms per batch + "
                              f"{oi:.3g} ms per item)")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    ax.set_yscale("log")
    ax.set_xlabel("batch size (items)")
    ax.set_ylabel("batch latency (ms)")
    ax.grid(alpha=0.3, which="both")
    fig.legend(fontsize=7, ncols=2, loc="outside lower center")
    dev = prof.get("device") or {}
    used_txt = f"bold: the variant the scenario runs ({', '.join(chosen)}); " if chosen else ""
    ax.set_title(f"Calibration profile '{prof.get('name', '?')}' ({prof.get('source', '?')}, "
                 f"{dev.get('kind', '?')}: {dev.get('name', '?')})\n{used_txt}dashed: "
                 "forward + serving overheads (as simulated); x: measured p99", fontsize=9)
    return fig


def fidelity_table(rows: Iterable[Any]) -> pd.DataFrame:
    """Fidelity rows (``fidelity.Row`` objects or dicts) as a table.

    Columns: ``load`` (predicted utilisation, 0-1), ``rate_qps``, ``real_util``, ``sim_util``
    and for each percentile P in p50/p95/p99 ``real_P_ms``, ``sim_P_ms`` and ``err_P``
    ((sim - real) / real).
    """
    out = []
    for r in rows:
        get = r.get if isinstance(r, Mapping) else lambda k, _r=r: getattr(_r, k, None)
        real, sim = get("real") or {}, get("sim") or {}
        row: dict[str, Any] = {"load": get("load"), "rate_qps": get("rate_qps"),
                               "real_util": get("real_util"), "sim_util": get("sim_util")}
        for p in PERCENTILES:
            if p in real and p in sim:
                row[f"real_{p}_ms"], row[f"sim_{p}_ms"] = real[p], sim[p]
                row[f"err_{p}"] = (sim[p] - real[p]) / real[p] if real[p] else np.nan
        out.append(row)
    return pd.DataFrame(out)


def calibration_fidelity(table: pd.DataFrame, targets: Mapping[str, float] | None = None
                         ) -> Figure:
    """Real vs simulated latency percentiles at each load.

    Left: simulated vs real (ms, log-log) with the y = x line (gid ``parity``), one marker
    series per percentile (gid ``P``). Right: relative error (%) vs load (%) per percentile
    (gid ``err:P``) with the +-target bands (default p50 10%, p99 20%).
    """
    fig = new_figure(11.0, 4.8)
    ps = [p for p in PERCENTILES if f"real_{p}_ms" in table and f"sim_{p}_ms" in table]
    if table.empty or not ps:
        return empty_note(fig, "no fidelity rows (columns real_P_ms / sim_P_ms)")
    targets = dict(targets or {"p50": 0.10, "p99": 0.20})
    left, right = fig.subplots(1, 2)
    cmap = palette(ps)
    lo, hi = np.inf, 0.0
    load = table["load"].to_numpy(float) * 100 if "load" in table else np.arange(len(table))
    for p in ps:
        real, sim = table[f"real_{p}_ms"].to_numpy(float), table[f"sim_{p}_ms"].to_numpy(float)
        lo, hi = min(lo, real.min(), sim.min()), max(hi, real.max(), sim.max())
        left.plot(real, sim, "o", color=cmap[p], label=p, gid=p)
        err = (sim - real) / real * 100
        right.plot(load, err, "o-", color=cmap[p], label=p, gid=f"err:{p}")
        if p in targets:
            right.axhspan(-100 * targets[p], 100 * targets[p], color=cmap[p], alpha=0.08)
    span = np.array([lo / 1.3, hi * 1.3])
    left.plot(span, span, "k--", lw=1, label="sim = real", gid="parity")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("real latency (ms)")
    left.set_ylabel("simulated latency (ms)")
    left.legend(fontsize=8)
    left.grid(alpha=0.3, which="both")
    right.axhline(0, color="black", lw=0.8)
    right.set_xlabel("load (% of predicted capacity)")
    right.set_ylabel("simulated - real (% of real)")
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    fig.suptitle("Calibration fidelity: real serving vs PeakSim (bands: targets)")
    return fig
