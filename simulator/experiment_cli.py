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
        click.option("--out", type=_dir, default=None, help="Write results into this directory."),
        click.option("--plugin", "plugins", multiple=True, metavar="MODULE",
                     help="Import a module that registers policies (dotted name or .py file; "
                          "repeatable); every worker imports it too."),
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


def _print_warnings(ws: list[str]) -> None:
    for w in ws:
        err_console.print(f"[bold yellow]warning:[/] {w}", highlight=False, soft_wrap=True)


@click.command("compare")
@click.argument("scenario", type=_path)
@click.option("--variant", "variants", multiple=True, metavar="NAME:KEY=VALUE[,KEY=VALUE]",
              help="A variant (repeatable); default: the file's [[compare.variants]].")
@click.option("--baseline", default=None, help="Variant the others are compared with "
                                               "(default: the first).")
@click.option("--replications", type=int, default=None, help="Replications per variant.")
@click.option("--rel-precision", type=float, default=None,
              help="Add replications until every CI half-width <= this fraction of its mean.")
@click.option("--max-replications", type=int, default=100, show_default=True)
@_warmup_opt
@_common
def compare_cmd(scenario: Path, variants: tuple[str, ...], baseline: str | None,
                replications: int | None, rel_precision: float | None, max_replications: int,
                warmup: str | None, seed: int | None, sets: tuple[str, ...],
                workers: int | None, dask: str | None, out: Path | None,
                plugins: tuple[str, ...]) -> None:
    """Compare policy variants of SCENARIO with common random numbers and 95% CIs."""
    from simulator.experiment import compare

    if replications is not None and rel_precision is not None:
        raise click.UsageError("give --replications or --rel-precision, not both")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        res = compare(scenario, list(variants) or None, baseline=baseline,
                      replications=replications, rel_precision=rel_precision, seed=seed,
                      overrides=sets, warmup=_warmup_value(warmup),
                      max_replications=max_replications, workers=workers, dask=dask,
                      progress=True, out_dir=out, plugins=plugins)
    m = res.meta
    t = Table(title=f"{m['scenario']}: {m['replications']} replications, seed {m['seed']}, "
                    f"95% CI ({m['ci_method']})")
    for col in ("variant", "metric", "mean", "95% CI"):
        t.add_column(col, justify="left" if col in ("variant", "metric") else "right")
    for r in res.table.to_dict(orient="records"):
        t.add_row(r["variant"], f"{r['metric']} {r['unit']}".strip(), _fmt(r["mean"], r["unit"]),
                  f"[{_fmt(r['lo'], r['unit'])}, {_fmt(r['hi'], r['unit'])}]")
    console.print(t)
    d = Table(title=f"paired differences vs '{res.baseline}' ({m['difference_method']})")
    for col in ("variant", "metric", "difference", "95% CI", "verdict"):
        d.add_column(col, justify="right" if col in ("difference", "95% CI") else "left")
    for r in res.diffs.to_dict(orient="records"):
        d.add_row(r["variant"], f"{r['metric']} {r['unit']}".strip(), _fmt(r["mean"], r["unit"]),
                  f"[{_fmt(r['lo'], r['unit'])}, {_fmt(r['hi'], r['unit'])}]", r["verdict"])
    console.print(d)
    console.print(f"warm-up: {m['warmup']['method']}, {m['warmup']['warmup_s']:g} s; "
                  f"executor: {m['executor']}")
    _print_warnings(res.warnings)
    if out:
        console.print(f"results: {out}")


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
@click.option("--replications", type=int, default=1, show_default=True)
@click.option("--metric", "metrics", multiple=True, metavar="wait_exceeds:T_MS",
              help="Extra per-run metric (needs per-request records).")
@_common
def sweep_cmd(scenario: Path, grid: tuple[str, ...], replications: int,
              metrics: tuple[str, ...], seed: int | None, sets: tuple[str, ...],
              workers: int | None, dask: str | None, out: Path | None,
              plugins: tuple[str, ...]) -> None:
    """Run a grid of SCENARIO variants x replications into a Parquet dataset (resumable)."""
    from simulator.experiment import sweep
    from simulator.output import default_out_dir

    out_dir = out or default_out_dir(f"{scenario.stem}-sweep")
    df = sweep(scenario, _grid(grid), replications, out_dir=out_dir, seed=seed, overrides=sets,
               extra_metrics=metrics, workers=workers, dask=dask, progress=True,
               plugins=plugins)
    console.print(f"{len(df)} runs; results: {out_dir / 'sweep.parquet'} "
                  f"(one file per run under {out_dir / 'runs'})")


@click.command("plan")
@click.argument("scenario", type=_path)
@click.option("--vary", "vary", multiple=True, required=True,
              metavar="KEY[:LO..HI] | KEY=V1,V2",
              help="Knob to search: integer range (bisected) or list of values.")
@click.option("--objective", default="cost", show_default=True,
              help="Metric to minimise (cost, node_hours, p99_ms, ... or a summary field).")
@click.option("--constraint", "constraints", multiple=True, required=True,
              metavar="METRIC<=VALUE",
              help="violation_rate, p99_ms, p95_ms, p50_ms, mean_ms, cost, utilization, "
                   "wait_exceeds:T_MS or a dotted summary field (repeatable).")
@click.option("--min-replications", type=int, default=4, show_default=True)
@click.option("--max-replications", type=int, default=40, show_default=True)
@click.option("--cap", type=int, default=1024, show_default=True,
              help="Largest value an open-ended --vary range may reach.")
@_warmup_opt
@_common
def plan_cmd(scenario: Path, vary: tuple[str, ...], objective: str,
             constraints: tuple[str, ...], min_replications: int, max_replications: int, cap: int,
             warmup: str | None, seed: int | None, sets: tuple[str, ...], workers: int | None,
             dask: str | None, out: Path | None, plugins: tuple[str, ...]) -> None:
    """Find the cheapest setting of the --vary knobs meeting every --constraint with 95%
    confidence."""
    from simulator.planner import plan

    try:
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            res = plan(scenario, list(vary), list(constraints), objective=objective, seed=seed,
                       overrides=sets, warmup=_warmup_value(warmup),
                       min_replications=min_replications, max_replications=max_replications,
                       cap=cap, workers=workers, dask=dask, progress=True, out_dir=out,
                       plugins=plugins)
    except ValueError as exc:
        if type(exc) is not ValueError:
            raise
        raise click.UsageError(str(exc)) from None
    keys = [v.split(":")[0].split("=")[0] for v in vary]
    t = Table(title=f"plan: minimise {objective} s.t. {', '.join(res.meta['constraints'])}")
    for col in [*keys, "runs", *res.meta["constraints"], objective, "decision"]:
        t.add_column(col, justify="right")
    cons = [c.split("<")[0].split(">")[0] for c in res.meta["constraints"]]
    for p in res.points:
        cells = [f"{p['mean'][c]:.4g} [{p['ci95'][c][0]:.4g}, {p['ci95'][c][1]:.4g}]"
                 for c in cons]
        t.add_row(*[str(p[k]) for k in keys], str(p["n"]), *cells,
                  f"{p['mean'][objective]:,.4g}", p["decision"])
    console.print(t)
    console.print(f"best: {res.best}" if res.best else "[bold red]no feasible point[/]")
    _print_warnings(res.warnings)
    if out:
        console.print(f"results: {out}")


compare = compare_cmd
sweep = sweep_cmd
plan = plan_cmd
