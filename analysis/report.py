"""A self-contained HTML report of a run, a comparison or a sweep.

``build_report(results)`` makes the figures (matplotlib ``Figure`` objects) and tables that fit
the kind of results, and the HTML page: figures embedded as base64 PNG, tables, the scenario as
run, and provenance (PeakSim version, seeds, calibration profiles and whether each was measured
or projected). ``write_report`` also writes every figure as PNG and SVG next to ``report.html``.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis import plots
from analysis.results import CompareResults, Results, RunResults, SweepResults, load_results
from analysis.style import palette, to_bytes
from analysis.tables import (
    fmt_num,
    interval_table,
    mean_costs,
    run_costs,
    run_headline,
    sections_table,
    sweep_points,
)

PROFILE_FIELDS = ("name", "source", "device.kind", "device.name", "provenance.date",
                  "provenance.torch_version", "provenance.command", "provenance.projected_from",
                  "provenance.method", "provenance.gpu")


@dataclass
class Report:
    """Figures (name -> (Figure, caption)), tables (title -> DataFrame) and the HTML page."""

    title: str
    figures: dict[str, tuple[Figure, str]] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    scenario: dict[str, Any] | None = None
    html: str = ""


# ----------------------------------------------------------------------------- inputs
def scenario_of(res: Results) -> dict[str, Any] | None:
    """The scenario as run (``scenario.json`` content) of a run, or of a comparison's first
    member run or its ``compare.json['scenario']``; None when nothing records it."""
    if isinstance(res, RunResults):
        return res.scenario
    doc = res.compare if isinstance(res, CompareResults) else (res.plan or {})
    if isinstance(doc.get("scenario"), Mapping):
        sc = dict(doc["scenario"])
        return sc if "scenario" in sc else {"scenario": sc}
    src = doc.get("scenario")
    if isinstance(src, str):  # compare.json / plan.json record the scenario file's path
        path = next((b / src for b in (Path.cwd(), res.path, res.path.parent)
                     if (b / src).is_file()), None)
        if path is not None and path.suffix == ".toml":
            import tomllib

            with path.open("rb") as fh:
                return {"source": src, "overrides": [], "scenario": tomllib.load(fh)}
    if isinstance(res, CompareResults):
        for _, run in res.member_runs():
            if run.scenario:
                return run.scenario
    return None


def _profile_paths(sc: Mapping[str, Any]) -> list[str]:
    inner = sc.get("scenario") or {}
    svcs = [inner.get("service") or {}]
    svcs += [p.get("service") or {} for p in (inner.get("cluster") or {}).get("pools") or []]
    return list(dict.fromkeys(s["profile"] for s in svcs if s.get("profile")))


def resolve_profile(path: str, bases: list[Path]) -> Path | None:
    """A profile path from a scenario: absolute, else relative to each base directory."""
    p = Path(path)
    if p.is_absolute():
        return p if p.is_file() else None
    return next((b / p for b in bases if (b / p).is_file()), None)


def profile_metadata(path: Path) -> dict[str, Any]:
    """Who made a profile and how: name, measured/projected/placeholder, device, date, ..."""
    from analysis.calibration_plots import read_profile
    from analysis.results import flatten

    try:
        flat = flatten({k: v for k, v in read_profile(path).items()
                        if k in ("name", "source", "device", "provenance")})
    except (OSError, ValueError) as exc:
        return {"path": str(path), "error": str(exc)}
    return {"path": str(path), **{k: flat[k] for k in PROFILE_FIELDS if k in flat}}


def provenance(res: Results, sc: Mapping[str, Any] | None,
               profiles: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the numbers come from: PeakSim version, results, seeds, scenario source."""
    import simulator

    out: dict[str, Any] = {
        "PeakSim version": simulator.__version__, "results": str(res.path),
        "kind": res.kind, "report generated (UTC)":
            datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "seeds": ", ".join(str(s) for s in res.seeds) or "n/a",
    }
    if sc:
        out["scenario source"] = sc.get("source", "n/a")
        out["overrides"] = ", ".join(sc.get("overrides") or []) or "none"
    out["calibration profiles"] = ("; ".join(
        f"{p.get('name', p['path'])}: {p.get('source', 'unknown')}" for p in profiles)
        or "none (service-time distributions)")
    return out


# ----------------------------------------------------------------------------- figures
def _peak_window(sc: Mapping[str, Any], duration_s: float) -> tuple[float, float] | None:
    peaks = ((sc.get("scenario") or {}).get("workload") or {}).get("peaks") or []
    if not peaks:
        return None
    p = peaks[0]
    start = float(p.get("start_s", 0.0))
    end = start + float(p.get("ramp_s", 0)) + float(p.get("hold_s", 0)) + 3 * float(
        p.get("decay_s", 0) or 0)
    margin = min(1800.0, 0.1 * duration_s)  # 23:30-01:1x for a midnight peak in a day
    t0, t1 = max(0.0, start - margin), min(duration_s, end + margin)
    return (t0, t1) if t1 > t0 and (t1 - t0) < 0.8 * duration_s else None


def _run_figures(run: RunResults, rep: Report, window: Any, colors: dict[str, str]) -> None:
    s, sc = run.summary, run.scenario_dict
    start_hour = float((sc.get("simulation") or {}).get("start_hour", 0.0))
    slo = (s.get("sla") or {}).get("slo_ms")
    if not run.timeseries.empty:
        kw = {"pool_series": run.pool_series, "events": run.events, "slo_ms": slo,
              "start_hour": start_hour}
        rep.figures["timeline"] = (plots.peak_timeline(run.timeseries, **kw),
                                   "Whole run: load, fleet, queue and p99 latency vs the SLO.")
        zoom = window or _peak_window(run.scenario or {}, float(s.get("sim_duration_s") or 0))
        if zoom is not None:
            rep.figures["timeline_peak"] = (
                plots.peak_timeline(run.timeseries, window=zoom, **kw),
                "Zoom on the promotion peak.")
    recs = run.records
    if recs is not None and not recs.empty and "latency_ms" in recs:
        done = recs[recs["outcome"] == "completed"] if "outcome" in recs else recs
        groups = {str(k): g["latency_ms"].to_numpy() for k, g in done.groupby("class")} \
            if "class" in done and done["class"].nunique() > 1 else {}
        samples = {"all requests": done["latency_ms"].to_numpy(), **groups}
        rep.figures["latency_cdf"] = (plots.latency_cdf(samples, slo, colors),
                                      "Latency CDF of completed requests, per request class.")
    rep.figures["cost_breakdown"] = (plots.cost_breakdown(run_costs(s)),
                                     "Cost of the run by component (USD).")


def _compare_figures(res: CompareResults, rep: Report, colors: dict[str, str]) -> None:
    rep.figures["policy_comparison"] = (
        plots.policy_comparison(res.runs, colors=colors),
        "Mean over replications per policy with 95% Student-t confidence intervals.")
    costs = mean_costs(res.runs)
    if not costs.empty:
        rep.figures["cost_breakdown"] = (plots.cost_breakdown(costs),
                                         "Mean cost per policy by component (USD).")
    lat: dict[str, list[np.ndarray]] = {}
    slo = None
    for variant, run in res.member_runs():
        if variant is not None and run.records is not None and "latency_ms" in run.records:
            r = run.records
            done = r[r["outcome"] == "completed"] if "outcome" in r else r
            lat.setdefault(variant, []).append(done["latency_ms"].to_numpy())
            slo = slo or (run.summary.get("sla") or {}).get("slo_ms")
    if lat:
        samples = {v: np.concatenate(a) for v, a in lat.items()}
        rep.figures["latency_cdf"] = (plots.latency_cdf(samples, slo, colors),
                                      "Latency CDF per policy (all replications pooled).")


def _sweep_figures(res: SweepResults, rep: Report) -> pd.DataFrame:
    pts = sweep_points(res.sweep, res.params, res.plan)
    chosen = (res.plan or {}).get("best") or None
    rep.figures["pareto"] = (plots.pareto_front(pts, chosen=chosen, params=res.params),
                             "Mean cost vs SLA-violation rate per configuration; faded points "
                             "are dominated; the star is the plan's choice.")
    return pts


def _doc_tables(rep: Report, doc: Mapping[str, Any]) -> None:
    """Tables from ``compare.json`` / ``plan.json``: paired differences, variants, settings,
    warnings (whatever of these the file holds)."""
    diffs = doc.get("differences")
    if isinstance(diffs, list) and diffs:
        rep.tables["Paired differences against the baseline (95% CI)"] = pd.DataFrame(diffs)
    variants = doc.get("variants")
    if isinstance(variants, Mapping) and variants:
        rep.tables["Variants"] = pd.DataFrame(
            [{"variant": k, "overrides": ", ".join(map(str, v)) if isinstance(v, list) else v}
             for k, v in variants.items()])
    keys = ("baseline", "objective", "constraints", "replications", "level", "ci_method",
            "difference_method", "method", "seeds", "executor")
    meta = [{"setting": k, "value": ", ".join(map(str, doc[k])) if isinstance(doc[k], list)
             else str(doc[k])} for k in keys if k in doc]
    if meta:
        rep.tables["Experiment settings"] = pd.DataFrame(meta)
    if doc.get("warnings"):
        rep.tables["Warnings"] = pd.DataFrame({"warning": list(doc["warnings"])})


def build_report(res: Results | str | Path, *, window: Any = None,
                 profile: str | Path | None = None, fidelity: pd.DataFrame | None = None,
                 colors: Mapping[str, str] | None = None, render: bool = True) -> Report:
    """All figures, tables and the HTML page for a results object or directory.

    ``window`` zooms the run timeline (see ``analysis.timeline.parse_window``; default: around
    the scenario's first peak); ``profile`` overrides the calibration profile plotted (default:
    the scenario's); ``fidelity`` is a fidelity table (``plots.fidelity_table``) to plot;
    ``render=False`` leaves ``html`` empty (``render_html`` makes it later).
    """
    if not isinstance(res, RunResults | CompareResults | SweepResults):
        res = load_results(res)
    sc = scenario_of(res)
    names = res.variants if isinstance(res, CompareResults) else []
    cmap = palette(names, colors)
    rep = Report(title=f"PeakSim report: {res.path.name or res.path} ({res.kind})", scenario=sc)
    if isinstance(res, RunResults):
        _run_figures(res, rep, window, cmap)
        rep.tables["Headline figures"] = run_headline(res.summary)
        for key, title in (("pools", "Pools"), ("classes", "Request classes")):
            t = sections_table(res.summary.get(key) or {}, key[:-1] if key == "pools" else "class")
            if not t.empty:
                rep.tables[title] = t
    elif isinstance(res, CompareResults):
        _compare_figures(res, rep, cmap)
        rep.tables["Per policy: mean and 95% CI over replications"] = interval_table(res.runs)
        _doc_tables(rep, res.compare)
    else:
        pts = _sweep_figures(res, rep)
        if res.plan and res.plan.get("best"):
            rep.tables["Plan: chosen configuration"] = pd.DataFrame([res.plan["best"]])
        if not pts.empty:
            rep.tables["Configurations (means over replications)"] = pts
        _doc_tables(rep, res.plan or {})
    bases = [Path.cwd(), res.path, res.path.parent]
    if sc and sc.get("source"):
        bases.append(Path(str(sc["source"])).parent)
    paths = [Path(profile)] if profile else [
        p for p in (resolve_profile(x, bases) for x in _profile_paths(sc or {})) if p]
    metas = [profile_metadata(p) for p in paths]
    if paths and "error" not in metas[0]:
        rep.figures["calibration"] = (plots.calibration_latency(paths[0]),
                                      f"Batch latency vs batch size per variant ({paths[0]}).")
    if fidelity is not None:
        rep.figures["fidelity"] = (plots.calibration_fidelity(fidelity),
                                   "Real vs simulated latency percentiles per load.")
        rep.tables["Calibration fidelity"] = fidelity
    if metas:
        rep.tables["Calibration profiles"] = pd.DataFrame(metas)
    rep.provenance = provenance(res, sc, metas)
    if render:
        rep.html = render_html(rep)
    return rep


# ----------------------------------------------------------------------------- HTML
_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1150px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}figure{margin:1em 0 2em}
img{max-width:100%}figcaption{color:#555;font-size:.9em}pre{background:#f7f7f7;padding:1em;
overflow:auto;font-size:.8em}"""


def _table_html(df: pd.DataFrame) -> str:
    shown = df.map(fmt_num) if not df.empty else df
    return shown.to_html(index=False, escape=True, border=0, na_rep="n/a")


def render_html(rep: Report, png: Mapping[str, bytes] | None = None) -> str:
    """The self-contained page; ``png`` (name -> bytes) reuses already rendered figures."""
    e = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(rep.title)}"
             f"</title><style>{_CSS}</style></head><body><h1>{e(rep.title)}</h1>",
             "<h2>Provenance</h2><table>"]
    parts += [f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in rep.provenance.items()]
    parts.append("</table>")
    for title, df in rep.tables.items():
        parts.append(f"<h2>{e(title)}</h2>{_table_html(df)}")
    parts.append("<h2>Figures</h2>")
    for name, (fig, caption) in rep.figures.items():
        data = (png or {}).get(name) or to_bytes(fig, "png")
        b64 = base64.b64encode(data).decode("ascii")
        parts.append(f"<figure id='fig-{e(name)}'><img alt='{e(name)}' "
                     f"src='data:image/png;base64,{b64}'><figcaption><b>{e(name)}</b>: "
                     f"{e(caption)}</figcaption></figure>")
    parts.append("<h2>Scenario as run</h2>")
    if rep.scenario:
        text = json.dumps(rep.scenario, indent=2, default=str)
        parts.append(f"<details open><summary>scenario.json</summary><pre>{e(text)}</pre>"
                     "</details>")
    else:
        parts.append("<p>Not recorded with these results.</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(res: Results | str | Path, out_dir: str | Path,
                 formats: tuple[str, ...] = ("png", "svg"), **kwargs: Any) -> Path:
    """Write ``NAME.png``/``NAME.svg`` per figure and ``report.html`` into ``out_dir``.

    Files are written atomically; returns the path of ``report.html``. ``kwargs`` go to
    :func:`build_report`.
    """
    from simulator.output import atomic_write

    out = Path(out_dir)
    rep = build_report(res, render=False, **kwargs)
    png: dict[str, bytes] = {}
    for name, (fig, _) in rep.figures.items():
        for fmt in formats:
            data = to_bytes(fig, fmt)
            if fmt == "png":
                png[name] = data
            atomic_write(out / f"{name}.{fmt}", lambda p, d=data: p.write_bytes(d))
    page = render_html(rep, png)
    target = out / "report.html"
    atomic_write(target, lambda p: p.write_text(page, encoding="utf-8"))
    return target
