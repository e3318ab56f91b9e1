"""A self-contained HTML report of a run, a comparison or a sweep.

``build_report(results)`` makes the figures (matplotlib ``Figure`` objects) and tables that fit
the kind of results, and the HTML page: provenance (who made the results, with which command,
scenario file, overrides per variant, input files and their SHA-256, seeds, warm-up), the
command that reproduces them, tables, figures embedded as base64 PNG, and the scenario as run
(per variant for a comparison). ``write_report`` also writes every figure as PNG and SVG next to
``report.html``.

The scenario as run comes from the results themselves (``scenario.json`` of a run,
``compare.json['scenarios_as_run']``, ``plan.json``/``sweep.json['scenario_as_run']``, member
runs' ``scenario.json``); only directories that record none of these fall back to the scenario
file named in ``compare.json``/``plan.json``, labelled :data:`FILE_NOTE`.
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

from analysis import cascade_plots as cp
from analysis import plots
from analysis import scenario_info as si
from analysis.results import (
    CompareResults,
    Results,
    RunResults,
    SweepResults,
    load_results,
    result_doc,
)
from analysis.style import name_scenario, palette, to_bytes
from analysis.tables import (
    CostBasis,
    differences_table,
    fmt_num,
    mean_costs,
    policy_table,
    run_costs,
    run_headline,
    sections_table,
    sweep_points,
    with_per_day_cost,
)

PROFILE_FIELDS = ("name", "source", "device.kind", "device.name", "provenance.date",
                  "provenance.torch_version", "provenance.command", "provenance.projected_from",
                  "provenance.method", "provenance.gpu")

#: How a scenario read back from its file (not recorded with the results) is labelled.
FILE_NOTE = "file on disk now, not necessarily as run"


@dataclass
class Report:
    """Figures (name -> (Figure, caption)), tables (title -> DataFrame) and the HTML page.

    ``scenarios`` maps a label (a variant, ``run``, ``as run``) to the scenario as run
    (``{"source", "overrides", "scenario"}``); ``scenario`` is the first of them;
    ``scenario_note`` says where they come from; ``command`` reproduces the results.
    """

    title: str
    figures: dict[str, tuple[Figure, str]] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    scenario: dict[str, Any] | None = None
    scenarios: dict[str, dict[str, Any]] = field(default_factory=dict)
    scenario_note: str = ""
    command: str | None = None
    html: str = ""


# ----------------------------------------------------------------------------- inputs
def _prov(doc: Mapping[str, Any]) -> dict[str, Any]:
    p = doc.get("provenance")
    return dict(p) if isinstance(p, Mapping) else {}


def _source(doc: Mapping[str, Any]) -> str | None:
    src = (_prov(doc).get("scenario") or {}).get("path")
    if src:
        return str(src)
    return doc["scenario"] if isinstance(doc.get("scenario"), str) else None


def _strs(v: Any) -> list[str]:
    if isinstance(v, list | tuple):
        return [str(x) for x in v]
    return [str(v)] if v not in (None, "") else []


def _variant_overrides(doc: Mapping[str, Any]) -> dict[str, list[str]]:
    """Each variant's own overrides: provenance ``variant_overrides``, else compare.json's
    ``variants`` (both record them as run)."""
    vo = _prov(doc).get("variant_overrides")
    if not isinstance(vo, Mapping):
        vo = doc.get("variants") if isinstance(doc.get("variants"), Mapping) else {}
    return {str(k): _strs(v) for k, v in vo.items()}


def scenarios_as_run(res: Results) -> tuple[dict[str, dict[str, Any]], str]:
    """The scenario(s) as run and where they come from.

    Returns ({label: {"source", "overrides", "scenario"}}, note). Labels are the variants of a
    comparison (``scenarios_as_run`` in ``compare.json``, else each variant's first member
    run), ``run`` for a run, ``as run`` for a plan/sweep (``scenario_as_run``). Directories
    that record none fall back to the scenario file named in their JSON (label ``file``, no
    ``overrides`` key, note :data:`FILE_NOTE`); ({}, "") when nothing is found.
    """
    if isinstance(res, RunResults):
        return ({"run": dict(res.scenario)}, "scenario.json of the run") if res.scenario \
            else ({}, "")
    doc = result_doc(res)
    prov = _prov(doc)
    src = _source(doc)
    common = _strs(prov.get("overrides"))
    many = doc.get("scenarios_as_run")
    if isinstance(many, Mapping) and many:
        vo = _variant_overrides(doc)
        return ({str(k): {"source": src, "overrides": [*common, *vo.get(str(k), [])],
                          "scenario": si.inner(v)} for k, v in many.items()
                 if isinstance(v, Mapping)}, "as run (recorded in compare.json)")
    one = doc.get("scenario_as_run")
    if isinstance(one, Mapping) and one:
        where = "plan.json" if isinstance(res, SweepResults) and res.plan and (
            "scenario_as_run" in res.plan) else "sweep.json"
        return ({"as run": {"source": src, "overrides": common, "scenario": si.inner(one)}},
                f"as run (recorded in {where})")
    if isinstance(doc.get("scenario"), Mapping):
        sc = dict(doc["scenario"])
        return {"as run": sc if "scenario" in sc else {"scenario": sc}}, "as run"
    if isinstance(res, CompareResults):
        found: dict[str, dict[str, Any]] = {}
        for variant, path in res.members:
            key = variant or path.name
            if key not in found and (path / "scenario.json").is_file():
                try:
                    found[key] = json.loads((path / "scenario.json").read_text())
                except (OSError, ValueError):
                    continue
        if found:
            return found, "as run (scenario.json of member runs)"
    if src:
        path = next((b / src for b in (Path.cwd(), res.path, res.path.parent)
                     if (b / src).is_file()), None)
        if path is not None and path.suffix == ".toml":
            import tomllib

            with path.open("rb") as fh:
                return {"file": {"source": src, "scenario": tomllib.load(fh)}}, FILE_NOTE
    return {}, ""


def scenario_of(res: Results) -> dict[str, Any] | None:
    """The (first) scenario as run (``{"source", "overrides", "scenario"}``), see
    :func:`scenarios_as_run`; None when nothing records it."""
    found, _ = scenarios_as_run(res)
    return next(iter(found.values()), None)


def _profile_paths(sc: Mapping[str, Any]) -> list[str]:
    return list(si.profile_uses(sc))


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


def _kv(v: Any) -> str:
    if isinstance(v, Mapping):
        return ", ".join(f"{k}={_kv(x)}" for k, x in v.items()) or "none"
    if isinstance(v, list | tuple):
        return ", ".join(_kv(x) for x in v) or "none"
    return str(v)


def provenance(res: Results, sc: Mapping[str, Any] | None,
               profiles: list[dict[str, Any]], *, doc: Mapping[str, Any] | None = None,
               note: str = "", scenario_known: bool | None = None) -> dict[str, Any]:
    """Where the numbers come from, as (row -> value) for the Provenance table.

    Everything the results' ``provenance`` block records (versions, creation time, command,
    scenario file and SHA-256, global and per-variant overrides, input files with SHA-256,
    seeds, warm-up), plus the results path, report time and calibration profiles. Without a
    ``provenance`` block the scenario's recorded source and overrides are shown; a scenario
    file read back from disk (``note`` = :data:`FILE_NOTE`) is labelled so and its overrides
    are "not recorded".
    """
    import simulator

    doc = doc if doc is not None else result_doc(res)
    prov = _prov(doc)
    out: dict[str, Any] = {"results": str(res.path), "kind": res.kind}
    if prov.get("peaksim_version"):
        out["PeakSim version (results)"] = prov["peaksim_version"]
    if prov.get("python"):
        out["Python (results)"] = prov["python"]
    if prov.get("created_utc"):
        out["results created (UTC)"] = prov["created_utc"]
    out["PeakSim version (report)"] = simulator.__version__
    out["report generated (UTC)"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    command = prov.get("command") or doc.get("command")
    if command:
        out["command"] = command
    if prov:
        scen = prov.get("scenario") or {}
        out["scenario file"] = scen.get("path") or _source(doc) or "n/a"
        out["scenario file SHA-256"] = scen.get("sha256") or "n/a (not readable when run)"
        if "overrides" in prov:
            out["overrides (--set, every variant)"] = _kv(_strs(prov["overrides"]))
    elif sc and note == FILE_NOTE:
        out["scenario source"] = f"{sc.get('source', 'n/a')} ({FILE_NOTE})"
        out["overrides (--set)"] = "not recorded with these results"
    elif sc:
        out["scenario source"] = sc.get("source", "n/a")
        out["overrides (--set)" + (f", {note}" if note else "")] = _kv(
            _strs(sc.get("overrides")))
    for variant, ov in _variant_overrides(doc).items():
        out[f"overrides of variant {variant}"] = ", ".join(ov) or "none (the scenario as given)"
    inputs = [i for i in prov.get("inputs") or [] if isinstance(i, Mapping)]
    roles = [str(i.get("role", "input")) for i in inputs]
    for k, (i, role) in enumerate(zip(inputs, roles, strict=True)):
        n = roles[:k].count(role)
        key = f"input: {role}" + (f" #{n + 1}" if roles.count(role) > 1 else "")
        sha = i.get("sha256")
        out[key] = f"{i.get('path', '?')} (SHA-256 {sha})" if sha else \
            f"{i.get('path', '?')} (SHA-256 n/a: not readable when run)"
    if prov.get("seed") is not None or doc.get("seed") is not None:
        out["experiment seed"] = prov.get("seed", doc.get("seed"))
    if prov.get("replication_seeds"):
        out["replication seeds"] = _kv(prov["replication_seeds"])
    out["seeds (in the runs)"] = ", ".join(str(s) for s in res.seeds) or "n/a"
    seeding = prov.get("seeding") or (doc.get("seeds") if isinstance(doc.get("seeds"), str)
                                      else None)
    if seeding:
        out["seeding"] = seeding
    warm = prov.get("warmup", doc.get("warmup"))
    if warm not in (None, {}, ""):
        out["warm-up"] = _kv(warm)
    known = bool(sc) if scenario_known is None else scenario_known
    out["calibration profiles"] = ("; ".join(
        f"{p.get('name', p['path'])}: {p.get('source', 'unknown')}" for p in profiles)
        or ("none (service-time distributions)" if known
            else "unknown (the scenario as run is not recorded with these results)"))
    return out


# ----------------------------------------------------------------------------- figures
def zoom_window(window: Any, sc: Mapping[str, Any] | None, duration_s: float,
                ts: pd.DataFrame | None = None) -> Any:
    """The zoom of a timeline: ``window`` when given, else around the scenario's first peak
    (``start_s`` or calendar ``at``), else around the maximum arrival rate of ``ts``."""
    if window is not None:
        return window
    return si.peak_window(sc, duration_s) or (
        si.rate_peak_window(ts, duration_s) if ts is not None else None)


def _duration(sc: Mapping[str, Any] | None, fallback: Any = None) -> float:
    d = si.simulation(sc).get("duration_s")
    try:
        return float(d if d is not None else (fallback or 0.0))
    except (TypeError, ValueError):
        return 0.0


def _run_figures(run: RunResults, rep: Report, window: Any, colors: dict[str, str],
                 basis: CostBasis) -> None:
    s, sc = run.summary, run.scenario_dict
    start_hour = si.start_hour(sc)
    slo = (s.get("sla") or {}).get("slo_ms")
    slos = si.class_slos(sc) or {
        str(k): float(v["slo_ms"]) for k, v in (s.get("classes") or {}).items()
        if isinstance(v, Mapping) and v.get("slo_ms") is not None}
    ts = run.timeseries
    if not ts.empty and "unit" in ts:  # a cascade: one end-to-end series for the timeline
        ts = cp.end_to_end_series(ts, run.e2e_series)
    if not ts.empty:
        kw = {"pool_series": run.pool_series, "events": run.events, "slo_ms": slo,
              "start_hour": start_hour, "warmup_s": float(s.get("warmup_s") or 0.0),
              "slo_ms_by_class": slos or None}
        rep.figures["timeline"] = (plots.peak_timeline(ts, **kw),
                                   "Whole run: load, fleet (ready, busy, starting), queue and "
                                   "p99 latency vs the SLO; grey: warm-up (not measured).")
        zoom = zoom_window(window, run.scenario or {},
                           _duration(sc, s.get("sim_duration_s")), ts)
        if zoom is not None:
            rep.figures["timeline_peak"] = (
                plots.peak_timeline(ts, window=zoom, **kw),
                "Zoom on the promotion peak.")
    recs = run.records
    if recs is not None and not recs.empty and "latency_ms" in recs:
        done = recs[recs["outcome"] == "completed"] if "outcome" in recs else recs
        groups = {str(k): g["latency_ms"].to_numpy() for k, g in done.groupby("class")} \
            if "class" in done and done["class"].nunique() > 1 else {}
        samples = {"all requests": done["latency_ms"].to_numpy(), **groups}
        rep.figures["latency_cdf"] = (
            plots.latency_cdf(samples, slo, colors, slo_ms_by_class=slos or None),
            "Latency CDF of completed requests, per request class.")
        tail = {c: {"run": v} for c, v in groups.items()} or {
            "all requests": {"run": done["latency_ms"].to_numpy()}}
        rep.figures["latency_tail"] = (
            plots.latency_tail(tail, slos or ({"all requests": slo} if slo else None), colors),
            "Share of completed requests slower than x (log-log), per class, against the "
            "class's SLO: the curve's height at the SLO line is the fraction over the SLO.")
    rep.figures["cost_breakdown"] = (plots.cost_breakdown(run_costs(s), basis),
                                     f"Cost of the run by component ({basis.label}); right "
                                     f"axis: {basis.per_day_note}.")


def _compare_figures(res: CompareResults, rep: Report, colors: dict[str, str],
                     basis: CostBasis, window: Any) -> None:
    sc = rep.scenario
    rep.figures["policy_comparison"] = (
        plots.policy_comparison(res.runs, metrics=plots.comparison_metrics(basis),
                                colors=colors),
        f"Mean over replications per policy with 95% Student-t confidence intervals; cost in "
        f"{basis.label}.")
    costs = mean_costs(res.runs)
    if not costs.empty:
        rep.figures["cost_breakdown"] = (plots.cost_breakdown(costs, basis),
                                         f"Mean cost per policy by component ({basis.label}); "
                                         f"right axis: {basis.per_day_note}.")
    slos: dict[str, float] = {}
    for s in rep.scenarios.values():
        for k, v in si.class_slos(s).items():
            slos.setdefault(k, v)
    ts = res.timeseries
    if ts is not None and not ts.empty and {"variant", "t_s"} <= set(ts.columns):
        warm = si.warmup_s(sc) if sc else float(
            res.runs["warmup_s"].iloc[0] if "warmup_s" in res.runs.columns else 0.0)
        kw = {"slo_ms_by_class": slos, "warmup_s": warm, "start_hour": si.start_hour(sc),
              "colors": colors}
        rep.figures["compare_timeline"] = (
            plots.compare_timeline(ts, **kw),
            "Policies over time (means over replications): load, ready (solid) and busy "
            "(dashed) nodes, p99 latency per interval against each class's SLO (band: min-max "
            "over replications), SLA violations per interval; grey: warm-up (not measured).")
        dur = _duration(sc, res.runs["sim_duration_s"].iloc[0]
                        if "sim_duration_s" in res.runs.columns else float(ts["t_s"].max()))
        zoom = zoom_window(window, sc, dur, ts)
        if zoom is not None:
            rep.figures["compare_timeline_peak"] = (
                plots.compare_timeline(ts, window=zoom, **kw),
                "The same, zoomed on the promotion peak.")
    lat: dict[str, list[np.ndarray]] = {}
    by_class: dict[str, dict[str, list[np.ndarray]]] = {}
    slo = None
    for variant, run in res.member_runs():
        if variant is not None and run.records is not None and "latency_ms" in run.records:
            r = run.records
            done = r[r["outcome"] == "completed"] if "outcome" in r else r
            lat.setdefault(variant, []).append(done["latency_ms"].to_numpy())
            if "class" in done:
                for c, g in done.groupby("class"):
                    by_class.setdefault(str(c), {}).setdefault(variant, []).append(
                        g["latency_ms"].to_numpy())
            slo = slo or (run.summary.get("sla") or {}).get("slo_ms")
    if lat:
        samples = {v: np.concatenate(a) for v, a in lat.items()}
        rep.figures["latency_cdf"] = (
            plots.latency_cdf(samples, slo, colors, slo_ms_by_class=slos or None),
            "Latency CDF per policy (all replications pooled).")
        tail = {c: {v: np.concatenate(a) for v, a in d.items()} for c, d in by_class.items()} \
            or {"all requests": samples}
        rep.figures["latency_tail"] = (
            plots.latency_tail(tail, slos or ({"all requests": slo} if slo else None), colors),
            "Share of completed requests slower than x per policy (log-log, replications "
            "pooled), one panel per class with its SLO.")


def _cascade_run(run: RunResults, rep: Report) -> None:
    """Per-stage breakdown of a cascade run: stacked mean latency, cost per stage, a timeline
    per stage and the stage table (nothing for a single-stage run)."""
    s = run.summary
    if not cp.is_cascade_summary(s):
        return
    table = cp.stage_table(s)
    stages = list(table["stage"])
    scolors = palette(stages)
    e2e = (s.get("latency_ms") or {}).get("mean")
    segs = cp.latency_segments(table)
    rep.figures["stage_latency"] = (
        cp.stage_latency(segs, {"run": float(e2e)} if e2e is not None else None, scolors),
        "Mean latency per stage, stacked in cascade order (network hops hatched); diamond: the "
        "end-to-end mean latency." + _bottleneck_note(s))
    rep.figures["stage_cost"] = (
        cp.stage_cost(table.set_index("stage")[[cp.COST_COL]].T.rename(index={cp.COST_COL:
                                                                               "run"}),
                      scolors),
        "Cost per stage (USD per simulated window: the stage's units' total).")
    if not run.timeseries.empty and {"stage", "unit"} <= set(run.timeseries.columns):
        sc = run.scenario_dict
        rep.figures["stage_timeline"] = (
            cp.stage_timelines(run.timeseries, stages, warmup_s=float(s.get("warmup_s") or 0.0),
                               start_hour=si.start_hour(sc)),
            "Requests in each stage (queued + in service) over time, one line per unit (the "
            "channels of a fork stage apart); grey: warm-up (not measured).")
    rep.tables["Stages (cascade, in order)"] = table


def _bottleneck_note(s: Mapping[str, Any]) -> str:
    b = s.get("bottleneck")
    if isinstance(b, Mapping) and b.get("stage"):
        why = f" ({b['why']})" if b.get("why") else ""
        return f" Scale first: stage {b['stage']}{why}."
    return ""


def _cascade_compare(res: CompareResults, rep: Report, colors: dict[str, str]) -> None:
    """Per-stage breakdown per variant (means over replications): stacked latency and cost,
    and the stage table (nothing unless the runs have ``stages.*`` columns)."""
    table = cp.stage_runs_table(res.runs)
    if table.empty:
        return
    stages = list(dict.fromkeys(table["stage"]))
    scolors = palette(stages)
    e2e = None
    if "latency_ms.mean" in res.runs.columns:
        e2e = pd.to_numeric(res.runs["latency_ms.mean"], errors="coerce").groupby(
            res.runs["variant"].astype(str), sort=False).mean().to_dict()
    rep.figures["stage_latency"] = (
        cp.stage_latency(cp.latency_segments(table, "variant"), e2e, scolors,
                         title="Mean latency per stage and policy"),
        "Mean latency per stage per policy (means over replications), stacked in cascade "
        "order (network hops hatched); diamond: the end-to-end mean latency.")
    costs = table.pivot(index="variant", columns="stage", values=cp.COST_COL)
    costs = costs.reindex(index=list(dict.fromkeys(table["variant"])), columns=stages)
    rep.figures["stage_cost"] = (
        cp.stage_cost(costs, scolors, title="Cost per stage and policy"),
        "Mean cost per policy, stacked by stage (USD per simulated window, means over "
        "replications).")
    rep.tables["Stages per policy (cascade; means over replications)"] = table


def _sweep_figures(res: SweepResults, rep: Report, basis: CostBasis) -> pd.DataFrame:
    sweep = with_per_day_cost(res.sweep) if res.sweep is not None else None
    pts = sweep_points(sweep, res.params, res.plan)
    plan = res.plan or {}
    chosen = plan.get("best") or None
    cons = [str(c) for c in plan.get("constraints") or []]
    unit = basis.axis_unit if basis.hours is not None else "USD per simulated window"
    rep.figures["pareto"] = (
        plots.pareto_front(pts, chosen=chosen, params=res.params, constraints=cons,
                           x_label=f"mean total cost ({unit})"),
        "Mean cost vs SLA-violation rate per configuration: solid blue = feasible and "
        "non-dominated, faded = dominated, red crosses = infeasible, dashed red = the "
        f"plan's constraints, star = the plan's choice; cost in {basis.label}.")
    return pts


def _doc_tables(rep: Report, doc: Mapping[str, Any]) -> None:
    """Tables from ``compare.json`` / ``plan.json``: paired differences, variants, settings,
    warnings (whatever of these the file holds)."""
    diffs = doc.get("differences")
    if isinstance(diffs, list) and diffs:
        rep.tables["Paired differences against the baseline (95% CI)"] = differences_table(
            diffs)
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


def _cost_basis(res: Results, sc: Mapping[str, Any] | None) -> CostBasis:
    hour = si.start_hour(sc) if sc else None
    sim = si.simulation(sc)
    cal = (str(sim["start"]), str(sim["end"])) if sim.get("start") and sim.get("end") else None
    if isinstance(res, RunResults):
        return CostBasis.of(res.summary, hour, cal)
    table = res.runs if isinstance(res, CompareResults) else res.sweep
    if table is None or table.empty:
        return CostBasis(None)
    return CostBasis.of(table.iloc[0], hour, cal)


def _name(res: Results, sc: Mapping[str, Any] | None) -> str | None:
    name = si.scenario_name(sc)
    if name:
        return name
    if isinstance(res, RunResults):
        return str(res.summary["scenario"]) if res.summary.get("scenario") else None
    table = res.runs if isinstance(res, CompareResults) else res.sweep
    if table is not None and "scenario" in table.columns and len(table):
        return str(table["scenario"].iloc[0])
    return None


def _calibration(rep: Report, res: Results, profile: str | Path | None,
                 doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Calibration figures (one per profile the scenario uses, its variants highlighted) and
    the profiles' metadata rows."""
    uses: dict[str, list[str]] = {}
    for s in rep.scenarios.values():
        for path, vs in si.profile_uses(s).items():
            have = uses.setdefault(path, [])
            have += [v for v in vs if v not in have]
    bases = [Path.cwd(), res.path, res.path.parent]
    for s in rep.scenarios.values():
        if s.get("source"):
            bases.append(Path(str(s["source"])).parent)
    recorded = [Path(str(i["path"])) for i in _prov(doc).get("inputs") or []
                if isinstance(i, Mapping) and i.get("role") == "profile" and i.get("path")]
    found: list[tuple[Path, list[str]]] = []
    if profile:
        p = Path(profile)
        found.append((p, next((vs for q, vs in uses.items() if Path(q).name == p.name), [])))
    else:
        for text, vs in uses.items():
            p = resolve_profile(text, bases) or next(
                (r for r in recorded if r.is_file() and (str(r) == text or r.name ==
                                                         Path(text).name)), None)
            if p is not None:
                found.append((p, vs))
    metas = [profile_metadata(p) for p, _ in found]
    for i, ((p, vs), meta) in enumerate(zip(found, metas, strict=True)):
        if "error" in meta:
            continue
        name = "calibration" if i == 0 else f"calibration_{i + 1}"
        used = f"; bold: the variant(s) the scenario runs ({', '.join(vs)})" if vs else ""
        rep.figures[name] = (plots.calibration_latency(p, used=vs),
                             f"Batch latency vs batch size per variant ({p}): model forward "
                             f"(solid) and forward + serving overheads as simulated "
                             f"(dashed){used}.")
    return metas


def build_report(res: Results | str | Path, *, window: Any = None,
                 profile: str | Path | None = None, fidelity: pd.DataFrame | None = None,
                 colors: Mapping[str, str] | None = None, render: bool = True) -> Report:
    """All figures, tables and the HTML page for a results object or directory.

    ``window`` zooms the timelines (see ``analysis.timeline.parse_window``; default: around
    the scenario's first peak, else around the maximum arrival rate); ``profile`` overrides
    the calibration profile plotted (default: the scenario's, only when it uses one);
    ``fidelity`` is a fidelity table (``plots.fidelity_table``) to plot; ``render=False``
    leaves ``html`` empty (``render_html`` makes it later).
    """
    if not isinstance(res, RunResults | CompareResults | SweepResults):
        res = load_results(res)
    found, note = scenarios_as_run(res)
    sc = next(iter(found.values()), None)
    doc = result_doc(res)
    names = res.variants if isinstance(res, CompareResults) else []
    cmap = palette(names, colors)
    name = _name(res, sc)
    basis = _cost_basis(res, sc)
    rep = Report(title=f"PeakSim report: {res.path.name or res.path} ({res.kind})"
                       + (f", scenario {name}" if name else ""),
                 scenario=sc, scenarios=found, scenario_note=note,
                 command=_prov(doc).get("command") or doc.get("command") or None)
    if isinstance(res, RunResults):
        _run_figures(res, rep, window, cmap, basis)
        rep.tables["Headline figures"] = run_headline(res.summary, basis)
        for key, title in (("pools", "Pools"), ("classes", "Request classes")):
            t = sections_table(res.summary.get(key) or {}, key[:-1] if key == "pools" else "class")
            if not t.empty:
                rep.tables[title] = t
        _cascade_run(res, rep)
    elif isinstance(res, CompareResults):
        _compare_figures(res, rep, cmap, basis, window)
        rep.tables[f"Per policy: mean and 95% CI over replications (costs in {basis.label}; "
                   f"{basis.per_day_note})"] = policy_table(res.runs)
        _cascade_compare(res, rep, cmap)
        _doc_tables(rep, res.compare)
    else:
        pts = _sweep_figures(res, rep, basis)
        if res.plan and res.plan.get("best"):
            rep.tables["Plan: chosen configuration"] = pd.DataFrame([res.plan["best"]])
        if not pts.empty:
            rep.tables[f"Configurations (means over replications; costs in {basis.label}; "
                       f"{basis.per_day_note})"] = pts
        _doc_tables(rep, res.plan or {})
    metas = _calibration(rep, res, profile, doc)
    if fidelity is not None:
        rep.figures["fidelity"] = (plots.calibration_fidelity(fidelity),
                                   "Real vs simulated latency percentiles per load.")
        rep.tables["Calibration fidelity"] = fidelity
    if metas:
        rep.tables["Calibration profiles"] = pd.DataFrame(metas)
    for fig, _ in rep.figures.values():
        name_scenario(fig, name)
    rep.provenance = provenance(res, sc, metas, doc=doc, note=note,
                                scenario_known=bool(found) and note != FILE_NOTE)
    if render:
        rep.html = render_html(rep)
    return rep


# ----------------------------------------------------------------------------- HTML
_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1150px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}figure{margin:1em 0 2em}
img{max-width:100%}figcaption{color:#555;font-size:.9em}pre{background:#f7f7f7;padding:1em;
overflow:auto;font-size:.8em;white-space:pre-wrap}.note{color:#8a4b00}summary{cursor:pointer}"""


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
    if rep.command:
        parts.append("<h2>Reproduce</h2><p>The command that made these results:</p>"
                     f"<pre id='command'>{e(str(rep.command))}</pre>")
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
    scenarios = rep.scenarios or ({"scenario": rep.scenario} if rep.scenario else {})
    if rep.scenario_note == FILE_NOTE:
        parts.append(f"<p class='note'>Not recorded with these results: the scenario "
                     f"{FILE_NOTE} (overrides not recorded).</p>")
    elif rep.scenario_note:
        parts.append(f"<p>{e(rep.scenario_note.capitalize())}.</p>")
    for i, (label, sc) in enumerate(scenarios.items()):
        text = json.dumps(sc, indent=2, default=str)
        ov = sc.get("overrides") if isinstance(sc, Mapping) else None
        what = (f" (overrides: {', '.join(map(str, ov)) or 'none'})"
                if isinstance(ov, list) else "")
        parts.append(f"<details{' open' if i == 0 else ''}><summary>{e(str(label))}{e(what)}"
                     f"</summary><pre>{e(text)}</pre></details>")
    if not scenarios:
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
