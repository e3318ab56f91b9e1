"""The ``peaksim compare``, ``sweep`` and ``plan`` commands (replicated experiments)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)

_path = click.Path(dir_okay=False, path_type=Path)
_dir = click.Path(file_okay=False, path_type=Path)


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options every experiment command takes."""
    opts = [
        click.option("--seed", type=int, default=None,
                     help="Experiment seed (default simulation.seed); replication r gets "
                          "SeedSequence(seed).spawn child r."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Override a scenario field for every run."),
        click.option("--workers", type=int, default=None,
                     help="Parallel runs (default: all cores; 1 = in this process)."),
        click.option("--dask", default=None, metavar="local|tcp://HOST:PORT",
                     help="Run on Dask: 'local' starts a LocalCluster, else a scheduler address."),
        click.option("--out", type=_dir, default=None,
                     help="Write results into this directory; its finished runs are kept "
                          "(runs/, keyed by content), so rerunning the command resumes."),
        click.option("--overwrite", is_flag=True,
                     help="Replace another command's results in --out (PeakSim's files "
                          "only, the kept runs included)."),
        click.option("--plugin", "plugins", multiple=True, metavar="MODULE",
                     help="Import a module that registers policies (dotted name or .py file; "
                          "repeatable); every worker imports it too."),
        click.option("--strict", is_flag=True,
                     help="Refuse (exit 2) before any run, instead of warning, when a variant "
                          "or point stretches a profile: batches more than twice its largest "
                          "measured size, or a test profile (calibrate --quick)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _warmup_opt(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--warmup", default=None, metavar="SECONDS|mser5[:COLUMN]",
        help="Warm-up deletion: fixed seconds, or MSER-5 on a pilot run's time-series column "
             "(default column in_system). Default: the scenario's warmup_s.")(f)


def _warmup_value(text: str | None) -> float | str | None:
    if text is None or text.startswith("mser"):
        return text
    try:
        return float(text)
    except ValueError:
        raise click.BadParameter("expected seconds or mser5[:COLUMN]",
                                 param_hint="--warmup") from None


def _fmt(v: float, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if unit == "":
        return f"{v:.4%}"
    return f"{v:,.4g}"


def metric_label(metric: str, unit: str = "") -> str:
    """``p99_ms`` + ``ms`` -> ``p99 (ms)``; ``cost`` + ``USD`` -> ``cost (USD)``: one unit."""
    metric, _, cls = metric.partition("[")
    name = metric[: -len(unit) - 1] if unit and metric.endswith("_" + unit) else metric
    name = name.replace("_hours", "-hours").replace("_", " ")
    name = f"{name}, class {cls.rstrip(']')}" if cls else name
    return f"{name} ({unit})" if unit else name


def _print_warnings(ws: list[str]) -> None:
    from rich.text import Text

    for w in ws:  # user text (names, paths): never markup
        err_console.print(Text.assemble(("warning: ", "bold yellow"), w), highlight=False,
                          soft_wrap=True)


@click.command("compare")
@click.argument("scenario", type=_path)
@click.option("--variant", "variants", multiple=True, metavar="NAME:KEY=VALUE[,KEY=VALUE]",
              help="A variant (repeatable); default: the file's [[compare.variants]].")
@click.option("--baseline", default=None, help="Variant the others are compared with "
                                               "(default: the first).")
@click.option("--replications", type=click.IntRange(min=2), default=None,
              help="Replications per variant (at least 2: a CI needs two).")
@click.option("--rel-precision", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Add replications until every CI half-width <= this fraction of its mean.")
@click.option("--max-replications", type=click.IntRange(min=2), default=100, show_default=True)
@_warmup_opt
@_common
def compare_cmd(scenario: Path, variants: tuple[str, ...], baseline: str | None,
                replications: int | None, rel_precision: float | None, max_replications: int,
                warmup: str | None, seed: int | None, sets: tuple[str, ...],
                workers: int | None, dask: str | None, out: Path | None, overwrite: bool,
                plugins: tuple[str, ...], strict: bool) -> None:
    """Compare policy variants of SCENARIO with common random numbers and 95% CIs."""
    from simulator.experiment import compare

    if replications is not None and rel_precision is not None:
        raise click.UsageError("give --replications or --rel-precision, not both")
    try:
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            res = compare(scenario, list(variants) or None, baseline=baseline,
                          replications=replications, rel_precision=rel_precision, seed=seed,
                          overrides=sets, warmup=_warmup_value(warmup),
                          max_replications=max_replications, workers=workers, dask=dask,
                          progress=True, out_dir=out, plugins=plugins, overwrite=overwrite,
                          strict=strict)
    except ValueError as exc:
        if type(exc) is not ValueError:
            raise
        raise click.UsageError(str(exc)) from None
    m = res.meta
    t = Table(title=f"{m['scenario']}: {m['replications']} replications, seed {m['seed']}, "
                    f"95% CI ({m['ci_method']})")
    for col in ("variant", "metric", "mean", "95% CI"):
        t.add_column(col, justify="left" if col in ("variant", "metric") else "right")
    for r in res.table.to_dict(orient="records"):
        t.add_row(r["variant"], metric_label(r["metric"], r["unit"]), _fmt(r["mean"], r["unit"]),
                  f"[{_fmt(r['lo'], r['unit'])}, {_fmt(r['hi'], r['unit'])}]")
    console.print(t)
    d = Table(title=f"paired differences vs '{res.baseline}' ({m['difference_method']})")
    for col in ("variant", "metric", "difference", "95% CI", "verdict"):
        d.add_column(col, justify="right" if col in ("difference", "95% CI") else "left")
    for r in res.diffs.to_dict(orient="records"):
        d.add_row(r["variant"], metric_label(r["metric"], r["unit"]), _fmt(r["mean"], r["unit"]),
                  f"[{_fmt(r['lo'], r['unit'])}, {_fmt(r['hi'], r['unit'])}]", r["verdict"])
    console.print(d)
    if "bottleneck.stage" in res.runs:  # a cascade: the stage to scale first, per variant
        for name, grp in res.runs.groupby("variant", sort=False):
            console.print(f"scale first ({name}): stage "
                          f"{grp['bottleneck.stage'].mode().iat[0]}", markup=False,
                          highlight=False)
    console.print(f"warm-up: {m['warmup']['method']}, {m['warmup']['warmup_s']:g} s; "
                  f"executor: {m['executor']}", markup=False, highlight=False)
    _print_warnings(res.warnings)
    if out:
        console.print(f"results: {out}", markup=False, highlight=False)


def _grid(items: tuple[str, ...]) -> dict[str, str]:
    grid: dict[str, str] = {}
    for g in items:
        if "=" not in g:
            raise click.BadParameter(f"'{g}': expected KEY=V1,V2,...", param_hint="--grid")
        k, v = g.split("=", 1)
        grid[k.strip()] = v
    return grid


@click.command("sweep")
@click.argument("scenario", type=_path)
@click.option("--grid", "grid", multiple=True, metavar="KEY=V1,V2,...",
              help="A parameter and its values (repeatable; the Cartesian product is run).")
@click.option("--replications", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--metric", "metrics", multiple=True, metavar="wait_exceeds:T_MS",
              help="Extra per-run metric (needs per-request records).")
@_common
def sweep_cmd(scenario: Path, grid: tuple[str, ...], replications: int,
              metrics: tuple[str, ...], seed: int | None, sets: tuple[str, ...],
              workers: int | None, dask: str | None, out: Path | None, overwrite: bool,
              plugins: tuple[str, ...], strict: bool) -> None:
    """Run a grid of SCENARIO variants x replications into a Parquet dataset (resumable)."""
    from simulator.experiment import sweep
    from simulator.output import default_out_dir

    out_dir = out or default_out_dir(f"{scenario.stem}-sweep")
    try:
        df = sweep(scenario, _grid(grid), replications, out_dir=out_dir, seed=seed,
                   overrides=sets, extra_metrics=metrics, workers=workers, dask=dask,
                   progress=True, plugins=plugins, overwrite=overwrite, strict=strict)
    except ValueError as exc:
        if type(exc) is not ValueError:
            raise
        raise click.UsageError(str(exc)) from None
    console.print(sweep_table(df, list(_grid(grid)), list(metrics)))
    if "profile_guards.warnings" in df:  # profile guard rails, once each (issue 16)
        _print_warnings(list(dict.fromkeys(
            str(w) for ws in df["profile_guards.warnings"].dropna() for w in ws)))
    console.print(f"{len(df)} runs; results: {out_dir / 'sweep.parquet'} "
                  f"(one file per run under {out_dir / 'runs'})", markup=False,
                  highlight=False)


#: (column, label) of the per-point sweep table
SWEEP_COLUMNS = (("cost_usd.total", "cost (USD)"), ("sla.violation_rate", "violation rate"),
                 ("latency_ms.p99", "p99 (ms)"), ("utilization", "utilisation"),
                 ("node_hours", "node-hours"))


def sweep_table(df: object, params: list[str], extra: list[str]) -> Table:
    """Means and 95% CIs per grid point (over replications) as a rich table."""
    import pandas as pd

    from analysis import stats

    assert isinstance(df, pd.DataFrame)
    cols = [(c, lab) for c, lab in SWEEP_COLUMNS if c in df.columns]
    classes = sorted({c.split(".")[1] for c in df.columns
                      if c.startswith("classes.") and c.endswith(".sla.violation_rate")})
    if len(classes) > 1:
        cols += [(f"classes.{c}.sla.violation_rate", f"{c} violation rate") for c in classes]
    cols += [(m, m) for m in extra if m in df.columns]
    t = Table(title=f"sweep: mean [95% CI] over replications per point ({len(df)} runs)")
    for p in params:
        t.add_column(p, justify="right")
    t.add_column("runs", justify="right")
    for _, lab in cols:
        t.add_column(lab, justify="right")
    if df.empty:
        return t
    keys = [p for p in params if p in df.columns]
    groups = df.groupby(keys, sort=False, dropna=False) if keys else [((), df)]
    for gkey, g in groups:
        vals = gkey if isinstance(gkey, tuple) else (gkey,)
        cells = []
        for c, lab in cols:
            ci = stats.t_ci(pd.to_numeric(g[c], errors="coerce"))
            pct = lab.endswith("violation rate") or lab == "utilisation"
            f = (lambda v: "n/a" if not math.isfinite(v) else f"{100 * v:.3g}%") if pct \
                else _num
            cells.append(f(ci.mean) if ci.n < 2 else f"{f(ci.mean)} [{f(ci.lo)}, {f(ci.hi)}]")
        t.add_row(*[str(v) for v in vals], str(len(g)), *cells)
    return t


@click.command("plan")
@click.argument("scenario", type=_path)
@click.option("--vary", "vary", multiple=True, required=True,
              metavar="KEY[:LO..HI] | KEY=V1,V2",
              help="Knob to search: integer range (capacity: feasibility grows with it) or a "
                   "list of values (repeatable).")
@click.option("--objective", default="cost", show_default=True,
              help="Metric to minimise (cost, node_hours, p99_ms, ... or a summary field).")
@click.option("--constraint", "constraints", multiple=True, required=True,
              metavar="METRIC<=VALUE",
              help="violation_rate, worst_window_violation_rate, p99_ms, p95_ms, p50_ms, "
                   "mean_ms, cost, utilization, wait_exceeds:T_MS or a dotted summary field "
                   "such as classes.ads.sla.violation_rate (repeatable).")
@click.option("--method", type=click.Choice(["search", "exhaustive"]), default="search",
              show_default=True, help="search: feasible region by bisection, then candidates "
              "by a lower bound on the objective; exhaustive: every point of the grid.")
@click.option("--min-replications", type=click.IntRange(min=2), default=4, show_default=True)
@click.option("--max-replications", type=click.IntRange(min=2), default=40, show_default=True)
@click.option("--cap", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Largest value an open-ended --vary range may reach.")
@_warmup_opt
@_common
def plan_cmd(scenario: Path, vary: tuple[str, ...], objective: str,
             constraints: tuple[str, ...], method: str, min_replications: int,
             max_replications: int, cap: int, warmup: str | None, seed: int | None,
             sets: tuple[str, ...], workers: int | None, dask: str | None, out: Path | None,
             overwrite: bool, plugins: tuple[str, ...], strict: bool) -> None:
    """Find the cheapest setting of the --vary knobs meeting every --constraint with 95%
    confidence (method: docs/experiments.md)."""
    from simulator.planner import plan

    try:
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            res = plan(scenario, list(vary), list(constraints), objective=objective,
                       method=method, seed=seed, overrides=sets, warmup=_warmup_value(warmup),
                       min_replications=min_replications, max_replications=max_replications,
                       cap=cap, workers=workers, dask=dask, progress=True, out_dir=out,
                       plugins=plugins, overwrite=overwrite, strict=strict)
    except ValueError as exc:
        if type(exc) is not ValueError:
            raise
        raise click.UsageError(str(exc)) from None
    keys = [v.split(":")[0].split("=")[0] for v in vary]
    cons = [c.split("<")[0].split(">")[0] for c in res.meta["constraints"]]
    t = Table(title=f"plan: minimise {objective} s.t. {', '.join(res.meta['constraints'])} "
                    f"({res.simulations} simulations)")
    cascade = any("bottleneck" in p for p in res.points)  # the stage to scale, per point
    for col in [*keys, "phase", "runs", *res.meta["constraints"], f"{objective} [95% CI]",
                "lower bound", "decision", *(["scale first"] if cascade else [])]:
        t.add_column(col, justify="right")
    for p in res.points:
        cells = [f"{_num(p['mean'][c])} [{_num(p['ci95'][c][0])}, {_num(p['ci95'][c][1])}]"
                 for c in cons]
        lb = p.get("lower_bound")
        t.add_row(*[str(p[k]) for k in keys], p.get("phase", ""), str(p["n"]), *cells,
                  f"{_num(p['mean'][objective])} [{_num(p['ci95'][objective][0])}, "
                  f"{_num(p['ci95'][objective][1])}]", "n/a" if lb is None else _num(lb),
                  p["decision"], *([p.get("bottleneck", "")] if cascade else []))
    console.print(t)
    if res.skipped:
        s = Table(title="not simulated")
        for col in [*keys, "reason"]:
            s.add_column(col, justify="left" if col == "reason" else "right")
        for p in res.skipped:
            s.add_row(*[str(p.get(k, "")) for k in keys], p["reason"])
        console.print(s)
    console.print(f"best: {res.best}" if res.best else "[bold red]no feasible point[/]",
                  highlight=False)
    _print_warnings(res.warnings)
    if out:
        console.print(f"results: {out}", markup=False, highlight=False)


def _num(v: float | None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:,.4g}"


compare = compare_cmd
sweep = sweep_cmd
plan = plan_cmd
