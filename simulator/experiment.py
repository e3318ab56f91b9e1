"""Replicated experiments: compare variants, sweep grids, plan the cheapest feasible capacity.

Independence and common random numbers by construction: replication r of an experiment with
seed S runs with ``replication_seed(S, r)`` (numpy ``SeedSequence(S).spawn`` child r), and every
variant or grid point uses that same seed in replication r, so they see identical arrivals and
service noise. Seeds never depend on the executor, worker count or completion order, and the
number of replications follows a schedule that does not either: results are identical whichever
executor runs them.
"""

from __future__ import annotations

import contextlib
import difflib
import itertools
import json
import re
import tomllib
import warnings as _warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import stats
from simulator.executors import Executor, Override, Runner, RunTask
from simulator.output import write_json, write_parquet
from simulator.policies.registry import load_plugins, policy_modules
from simulator.profile_guards import strict_check
from simulator.provenance import command_line, format_override, provenance
from simulator.run_cache import experiment_cache
from simulator.scenario import (
    EXPERIMENT_TABLES,
    Scenario,
    ScenarioError,
    parse_overrides,
    parse_value,
    scenario_from_dict,
    scenario_warnings,
)

#: short metric names (CLI, constraints) -> columns of the per-run table
ALIASES: dict[str, str] = {
    "cost": "cost_usd.total", "violation_rate": "sla.violation_rate",
    "p99_ms": "latency_ms.p99", "p95_ms": "latency_ms.p95", "p50_ms": "latency_ms.p50",
    "mean_ms": "latency_ms.mean", "utilization": "utilization", "node_hours": "node_hours",
    "gpu_hours": "gpu_hours",
    "wait_mean_ms": "queue_wait_ms.mean", "wait_p99_ms": "queue_wait_ms.p99",
    "worst_window_violation_rate": "sla.worst_window.violation_rate",
}
#: (label, column, unit) of the figures ``compare`` reports; lower is better for all four
HEADLINE: tuple[tuple[str, str, str], ...] = (
    ("cost", "cost_usd.total", "USD"), ("violation_rate", "sla.violation_rate", ""),
    ("p99_ms", "latency_ms.p99", "ms"), ("node_hours", "node_hours", "h"),
)


def metric_column(name: str) -> str:
    """Column of the per-run table for a metric name (alias, ``wait_exceeds:T_MS`` or dotted)."""
    return ALIASES.get(name, name)


#: top-level sections of summary.json a dotted metric may start with
SUMMARY_SECTIONS = ("requests", "latency_ms", "queue_wait_ms", "sla", "utilization", "nodes",
                    "cost_usd", "degradation", "batches", "pools", "queues", "classes",
                    "node_hours", "gpu_hours", "stages")


def check_metrics(names: Sequence[str], sc: Scenario) -> None:
    """Refuse metric names no run can produce, before any run (naming the allowed forms).

    Allowed: the short names of ``ALIASES``, ``wait_exceeds:T_MS`` and dotted summary fields
    (``classes.<class>.sla.violation_rate``, ``pools.<pool>.utilization``, ...); class and
    pool names must exist in the scenario.
    """
    classes = [c.name for c in sc.workload.classes]
    pools = [p.name for p in sc.cluster.pools]
    for name in names:
        if name in ALIASES:
            continue
        if name.startswith("wait_exceeds:"):
            if sc.stages is not None:
                raise ValueError(f"metric '{name}': a cascade has no one queue to wait in (a "
                                 "queue per stage): use stages.<stage>.latency_ms.p99, "
                                 "p99_ms or violation_rate")
            try:
                float(name.split(":", 1)[1])
                continue
            except ValueError:
                raise ValueError(f"metric '{name}': expected wait_exceeds:T_MS with T_MS a "
                                 "number of milliseconds") from None
        head, _, rest = name.partition(".")
        if head not in SUMMARY_SECTIONS or (head not in ("utilization", "node_hours",
                                                         "gpu_hours")
                                            and not rest):
            raise ValueError(f"unknown metric '{name}': use {', '.join(ALIASES)}, "
                             "wait_exceeds:T_MS or a dotted summary field such as "
                             "sla.violation_rate or classes.<class>.sla.violation_rate")
        stages = [x.name for x in sc.stages or []]
        if head == "stages" and not stages:
            raise ValueError(f"metric '{name}': the scenario has no stages (a cascade's "
                             "per-stage figures are stages.<stage>.<field>)")
        for section, known in (("classes", classes), ("pools", pools), ("stages", stages)):
            if head == section:
                item = next((k for k in sorted(known, key=len, reverse=True)
                             if rest == k or rest.startswith(k + ".")), None)
                if item is None:
                    what = {"classes": "class", "pools": "pool", "stages": "stage"}[section]
                    raise ValueError(f"metric '{name}': no {what} of that name; {section}: "
                                     + ", ".join(known))
                if section == "stages" and rest[len(item) + 1:].startswith("over_budget"):
                    cfg = next(x for x in sc.stages or [] if x.name == item)
                    if cfg.budget_ms is None:
                        raise ValueError(f"metric '{name}': stage {item} has no budget_ms "
                                         f"(give stages.{item}.budget_ms to count its runs "
                                         "over budget)")


def require_columns(df: pd.DataFrame, names: Sequence[str]) -> None:
    """Refuse metrics the runs' summaries do not have (a dotted field check_metrics could not
    rule out before the runs: ``latency_ms.p999``, or a field one kind of run lacks), naming
    the metric and the nearest fields. The runs are kept (with an output folder) for a rerun.
    """
    for name in names:
        col = metric_column(name)
        if col in df.columns:
            continue
        head = col.split(".", 1)[0]
        near = difflib.get_close_matches(col, [str(c) for c in df.columns], n=5, cutoff=0.6)
        near = near or sorted(str(c) for c in df.columns if str(c).startswith(head + "."))[:12]
        raise ScenarioError(f"metric '{name}': the runs' summaries have no field '{col}'"
                            + (f"; fields like it: {', '.join(near)}" if near else ""))


def replication_seed(experiment_seed: int, r: int) -> int:
    """Seed of replication ``r``: child r of ``SeedSequence(experiment_seed)`` as a 63-bit int."""
    child = np.random.SeedSequence(experiment_seed).spawn(r + 1)[r]
    lo, hi = (int(v) for v in child.generate_state(2, np.uint32))
    return ((hi << 32) | lo) & ((1 << 63) - 1)


# ----------------------------------------------------------------------------- base scenario
@dataclass
class Base:
    """A scenario as a raw dict plus where it came from (tasks rebuild it in the worker).

    ``local_policies``: policies it names that are defined in ``__main__`` (a script or
    ``python -c``): a worker process cannot import them, so they run in this process only.
    """

    raw: dict[str, Any]
    source: str = "<dict>"
    base_dir: str = "."
    tables: dict[str, Any] = field(default_factory=dict)  # experiment tables of the file
    local_policies: list[str] = field(default_factory=list)

    def require_portable(self, executor: Executor) -> None:
        """Refuse to send tasks to other processes when they name a ``__main__`` policy."""
        if self.local_policies and getattr(executor, "name", "") != "serial":
            raise ScenarioError(
                f"{self.source}: field 'policy': {', '.join(self.local_policies)} defined in "
                f"__main__, which {executor.name} workers cannot import: move it to a module "
                "and name it in policy.plugins (or --plugin MODULE), or run with --workers 1")

    @property
    def seed(self) -> int:
        """The scenario's own ``simulation.seed`` (the default experiment seed)."""
        return int(self.raw.get("simulation", {}).get("seed", 0))

    def validate(self, overrides: Sequence[Override] = ()) -> Scenario:
        """The validated scenario with ``overrides`` (raises ScenarioError naming the field)."""
        return scenario_from_dict(self.raw, self.source, list(overrides), Path(self.base_dir))


def load_base(scenario: Scenario | Mapping[str, Any] | str | Path,
              plugins: Sequence[str] = ()) -> Base:
    """Read a scenario (TOML path, raw dict or Scenario). Experiment tables (``[compare]``,
    ``[sweep]``, ``[plan]``) are taken out of a file before the scenario is validated.

    ``plugins`` (module names or ``.py`` paths, relative to the working directory) join the
    scenario's ``policy.plugins``, so every worker imports them; so do the modules of policies
    the scenario names that were registered at run time from an importable module.
    """
    if isinstance(scenario, Scenario):
        return Base(scenario.model_dump(mode="json"), scenario.source, str(scenario._base_dir))
    if isinstance(scenario, Mapping):
        raw, source, base_dir = dict(scenario), "<dict>", str(Path.cwd())
    else:
        p = Path(scenario)
        if not p.is_file():
            raise ScenarioError(f"{p}: scenario file not found")
        try:
            raw = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ScenarioError(f"{p}: not valid TOML ({exc})") from None
        source, base_dir = str(p), str(p.parent.absolute())
    tables = {k: raw.pop(k) for k in EXPERIMENT_TABLES if k in raw}
    base = Base(raw, source, base_dir, tables)
    if plugins:
        add_plugins(base.raw, plugins)
    sc = base.validate()
    for kind, name, mod in policy_modules(used_policies(sc)):
        if mod == "__main__":
            base.local_policies.append(f"{kind} '{name}'")
        else:
            add_plugins(base.raw, [mod])
    return base


def add_plugins(raw: dict[str, Any], specs: Sequence[str]) -> None:
    """Add plugin modules to a raw scenario's ``policy.plugins`` (files made absolute)."""
    load_plugins(list(specs), Path.cwd())
    pol = raw.setdefault("policy", {})
    have = list(pol.get("plugins") or [])
    for spec in specs:
        if spec.endswith(".py") or "/" in spec:
            spec = str(Path(spec).resolve())
        if spec not in have:
            have.append(spec)
    pol["plugins"] = have


def used_policies(sc: Scenario) -> list[tuple[str, str]]:
    """(kind, name) of every policy a scenario names (``max`` children included)."""
    pol = sc.policy
    out = [("router", pol.routing.name), ("batcher", pol.batching.name)]
    specs = [pol.autoscaling, *(p.autoscaler for p in sc.cluster.pools if p.autoscaler)]
    while specs:
        spec = specs.pop()
        if isinstance(spec, dict):
            name, children = str(spec["name"]), spec.get("policies") or []
        else:
            name, children = spec.name, spec.params.get("policies") or []
        out.append(("autoscaler", name))
        specs.extend(children)
    return list(dict.fromkeys(out))


def as_overrides(spec: Sequence[str] | Mapping[str, Any] | Sequence[Override]) -> list[Override]:
    """``["k=v", ...]``, ``{"k": v}`` or ``[("k", v)]`` -> ``[("k", v), ...]``."""
    if isinstance(spec, Mapping):
        return list(spec.items())
    return [parse_overrides([s])[0] if isinstance(s, str) else (s[0], s[1]) for s in spec]


# ----------------------------------------------------------------------------- warm-up
def resolve_warmup(runner: Runner, base: Base, variants: Sequence[Sequence[Override]],
                   warmup: float | str | None, seed: int) -> tuple[list[Override], dict[str, Any]]:
    """The warm-up override every run gets, and a description of how it was chosen.

    ``None``: the scenario's ``warmup_s``; a number: that many seconds; ``"mser5"`` or
    ``"mser5:COLUMN"``: MSER-5 on a pilot run (replication 0's seed) of every variant, on the
    time-series column (default ``in_system``), taking the latest truncation point so that
    all variants share one measurement window (needed for paired comparisons).
    """
    if warmup is None:
        first = variants[0] if variants else ()
        return [], {"method": "fixed (scenario)",
                    "warmup_s": base.validate(first).simulation.warmup_s}
    if not isinstance(warmup, str) or not warmup.startswith("mser"):
        w = float(warmup)
        return [("simulation.warmup_s", w)], {"method": "fixed", "warmup_s": w}
    column = warmup.split(":", 1)[1] if ":" in warmup else "in_system"
    tasks = [RunTask(base.raw, base.source, base.base_dir, tuple(v), replication_seed(seed, 0),
                     {}, series_column=column) for v in variants]
    cut, warnings = 0.0, []
    for res in runner.run(tasks, "warm-up pilots"):
        y = np.asarray(res["_series"], dtype=float)
        d = stats.mser5(y)
        if d >= (y.size // 5) // 2 * 5 and y.size:
            warnings.append("MSER-5 truncation at half the pilot run: the run may be too short "
                            "to reach steady state")
        cut = max(cut, float(res["_t_s"][d]) if d < y.size else float(res["_t_s"][-1]))
    info = {"method": f"MSER-5 on time-series column '{column}' of a pilot run per variant "
            "(latest truncation point)", "warmup_s": cut, "warnings": warnings}
    return [("simulation.warmup_s", cut)], info


def run_warnings(runs: pd.DataFrame, min_requests_per_node: float) -> list[str]:
    """Warnings about runs too short or unstable for steady-state statistics."""
    out = []
    per_node = runs["requests.arrived"] / runs["nodes.mean"].clip(lower=1e-9)
    if len(runs) and float(per_node.min()) < min_requests_per_node:
        out.append(f"runs too short for the asked precision: as few as {per_node.min():.0f} "
                   f"requests per node after warm-up (< {min_requests_per_node:g}); lengthen "
                   "the run (simulation.end, or simulation.duration_s)")
    if "overloaded" in runs and runs["overloaded"].astype(bool).any():
        n = int(runs["overloaded"].astype(bool).sum())
        out.append(f"{n} run(s) overloaded: no steady state, means depend on the run length")
    return out


def _parse_variant(text: str) -> tuple[str, list[Override]]:
    """``NAME:key=value[,key=value]``: commas inside a value are kept when not before a key,
    or inside an inline table or array (``policy.autoscaling={name='hpa', target=0.5}``)."""
    name, _, rest = text.partition(":")
    if not name.strip():
        raise ScenarioError(f"--variant {text}: expected NAME:key=value[,key=value]")
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(rest):
        if ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        elif (ch == "," and depth == 0
              and re.match(r"\s*[A-Za-z_][\w.\-]*\s*=", rest[i + 1:])):
            parts.append(rest[start:i])
            start = i + 1
    parts.append(rest[start:])
    return name.strip(), parse_overrides([p for p in parts if p.strip()])


def parse_variants(spec: Sequence[str] | Mapping[str, Any] | None, base: Base
                   ) -> dict[str, list[Override]]:
    """Variants from CLI strings, a mapping NAME -> overrides, or the file's
    ``[[compare.variants]]`` (each ``name`` plus ``set`` = table or list of 'k=v')."""
    if spec is None:
        spec = {v["name"]: v.get("set", {}) for v in base.tables.get("compare", {})
                .get("variants", [])}
        if not spec:
            raise ScenarioError(f"{base.source}: no variants (give --variant or "
                                "[[compare.variants]])")
    if isinstance(spec, Mapping):
        out = {str(k): as_overrides(v) for k, v in spec.items()}
    else:
        pairs = [_parse_variant(s) for s in spec]
        names = [name for name, _ in pairs]
        dup = sorted({x for x in names if names.count(x) > 1})
        if dup:
            raise ScenarioError(f"--variant: name {', '.join(repr(x) for x in dup)} given more "
                                "than once (each variant needs its own name)")
        out = dict(pairs)
    for name, ov in out.items():
        try:
            base.validate(ov)
        except ScenarioError as exc:
            raise ScenarioError(f"variant '{name}': {exc}") from None
    return out


def grid_points(grid: Mapping[str, Sequence[Any] | str]) -> list[dict[str, Any]]:
    """Cartesian product of ``{key: [v1, v2]}`` (or ``{key: "v1,v2"}``) as override dicts."""
    keys = list(grid)
    values = [[parse_value(x.strip()) for x in v.split(",")] if isinstance(v, str) else list(v)
              for v in grid.values()]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def _verdict(label: str, ci: stats.CI) -> str:
    """Words for a paired difference (variant - baseline; lower is better for every headline)."""
    if not ci.excludes(0.0):
        return "no significant difference"
    if label == "cost":
        return "cheaper" if ci.hi < 0 else "more expensive"
    if label == "node_hours":
        return "fewer node-hours" if ci.hi < 0 else "more node-hours"
    if label == "gpu_hours":
        return "fewer GPU-hours" if ci.hi < 0 else "more GPU-hours"
    return "better" if ci.hi < 0 else "worse"


# ----------------------------------------------------------------------------- compare
@dataclass
class CompareResult:
    """Per-run table, per-variant CIs, paired differences against the baseline, each run's
    time series (``variant``, ``replication`` and the run's time-series columns), and
    warnings."""

    runs: pd.DataFrame
    table: pd.DataFrame  # variant, metric, unit, mean, lo, hi, half_width, rel_precision, n
    diffs: pd.DataFrame  # variant, baseline, metric, mean, lo, hi, verdict
    baseline: str
    meta: dict[str, Any]
    warnings: list[str]
    timeseries: pd.DataFrame = field(default_factory=pd.DataFrame)

    def to_dict(self) -> dict[str, Any]:
        """The content of ``compare.json``."""
        return {**self.meta, "baseline": self.baseline,
                "results": self.table.to_dict(orient="records"),
                "differences": self.diffs.to_dict(orient="records"), "warnings": self.warnings}

    def write(self, out_dir: Path) -> None:
        """Atomically write ``compare.json``, ``runs.parquet`` and ``timeseries.parquet``."""
        write_parquet(Path(out_dir) / "runs.parquet", self.runs)
        if not self.timeseries.empty:
            write_parquet(Path(out_dir) / "timeseries.parquet", self.timeseries)
        write_json(Path(out_dir) / "compare.json", self.to_dict())


def compare(scenario: Scenario | Mapping[str, Any] | str | Path,
            variants: Sequence[str] | Mapping[str, Any] | None = None, *,
            baseline: str | None = None, replications: int | None = None,
            rel_precision: float | None = None, seed: int | None = None,
            overrides: Sequence[str] = (), warmup: float | str | None = None,
            level: float = 0.95, min_replications: int = 5, max_replications: int = 100,
            precision_metrics: Sequence[str] = ("cost", "violation_rate", "p99_ms",
                                                "node_hours"),
            min_requests_per_node: float = 200.0, executor: Executor | None = None,
            workers: int | None = None, dask: str | None = None, progress: bool = False,
            out_dir: Path | None = None, plugins: Sequence[str] = (),
            keep_series: bool = True, overwrite: bool = False,
            strict: bool = False) -> CompareResult:
    """Run every variant R times with common random numbers and compare them to ``baseline``.

    ``variants``: ``["NAME:key=value,key=value", ...]``, ``{NAME: {key: value}}`` or None for
    the file's ``[[compare.variants]]``. With ``rel_precision`` (e.g. 0.05) replications grow
    from ``min_replications`` until every ``precision_metrics`` CI half-width is within that
    fraction of its mean (at most ``max_replications``); otherwise ``replications`` runs
    (default: the file's ``compare.replications``, else 10). ``warmup``: see
    :func:`resolve_warmup`. Results are also written to ``out_dir`` when given. ``plugins``:
    modules that register policies (see :func:`load_base`). ``keep_series``: keep every run's
    time series (``CompareResult.timeseries``, ``timeseries.parquet``) for the timeline report.
    With ``out_dir`` every finished run is kept in ``out_dir/runs`` (keyed by content, see
    :mod:`simulator.run_cache`), so a stopped compare resumes; ``out_dir`` is checked and
    locked before any run (:func:`simulator.run_dir.claim_experiment`; ``overwrite``).
    ``strict``: refuse, before any run, when a variant stretches a profile
    (:func:`simulator.profile_guards.strict_check`).
    """
    if replications is not None and replications < 2:
        raise ValueError(f"replications = {replications}: need at least 2 for a confidence "
                         "interval")
    with contextlib.ExitStack() as stack:
        base = load_base(scenario, plugins)
        ctab = base.tables.get("compare", {})
        vs = parse_variants(variants, base)
        baseline = baseline or ctab.get("baseline") or next(iter(vs))
        if baseline not in vs:
            raise ScenarioError(f"baseline '{baseline}' is not a variant ({', '.join(vs)})")
        if replications is None and rel_precision is None:
            replications, rel_precision = ctab.get("replications"), ctab.get("rel_precision")
            replications = replications or (None if rel_precision else 10)
        seed = base.seed if seed is None else seed
        common = as_overrides(overrides)
        if strict:
            for name, ov in vs.items():
                strict_check(base.validate(common + ov), f"variant '{name}'")
        rows: list[dict[str, Any]] = []
        series: list[pd.DataFrame] = []
        warns: list[str] = []
        cache = stack.enter_context(experiment_cache(out_dir, "compare", overwrite))
        with Runner(executor, workers, dask, progress, cache) as runner:
            base.require_portable(runner.executor)
            wov, winfo = resolve_warmup(runner, base, [common + v for v in vs.values()],
                                        warmup, seed)

            def batch(r0: int, r1: int) -> None:
                tasks = [RunTask(base.raw, base.source, base.base_dir, tuple(common + ov + wov),
                                 replication_seed(seed, r), {"variant": name, "replication": r},
                                 keep_series=keep_series)
                         for r in range(r0, r1) for name, ov in vs.items()]
                for row in runner.run(tasks, f"compare: replications {r0 + 1}-{r1}"):
                    ts = row.pop("_timeseries", None)
                    if ts is not None:
                        series.append(ts.assign(variant=row["variant"],
                                                replication=row["replication"]))
                    rows.append(row)

            n = replications or min_replications
            batch(0, n)
            require_columns(pd.DataFrame(rows), [*precision_metrics,
                                                 *(c for _, c, _ in HEADLINE)])
            while rel_precision is not None:
                df = pd.DataFrame(rows)
                need = max(stats.replications_needed(df.loc[df["variant"] == v, metric_column(m)],
                                                     rel_precision, level)
                           for v in vs for m in precision_metrics)
                if need <= n:
                    break
                if n >= max_replications:
                    warns.append(f"relative precision {rel_precision:g} not reached after "
                                 f"{n} replications (max_replications)")
                    break
                new_n = min(max_replications, max(n + 1, min(need, 2 * n)))
                batch(n, new_n)
                n = new_n
            executor_name = runner.executor.name
        runs = pd.DataFrame(rows)
        table, diffs = [], []
        base_runs = runs[runs["variant"] == baseline]
        as_run = {name: base.validate(common + ov + wov) for name, ov in vs.items()}
        sc_first = next(iter(as_run.values()))
        per_class = [] if len(sc_first.workload.classes) < 2 else [
            (f"violation_rate[{c.name}]", f"classes.{c.name}.sla.violation_rate", "")
            for c in sc_first.workload.classes]
        # GPU pools (known node types): the GPU-hours each option held, a headline too
        gpus = [("gpu_hours", "gpu_hours", "h")] if "gpu_hours" in runs.columns else []
        if gpus:
            runs["gpu_hours"] = runs["gpu_hours"].fillna(0.0)
            base_runs = runs[runs["variant"] == baseline]
        for name in vs:
            mine = runs[runs["variant"] == name]
            for label, col, unit in [*HEADLINE, *gpus, *per_class]:
                ci = stats.t_ci(mine[col], level)
                table.append({"variant": name, "metric": label, "unit": unit, **ci.as_dict(),
                              "rel_precision": ci.rel_precision})
                if name != baseline:
                    d = stats.paired_ci(mine[col].to_numpy(), base_runs[col].to_numpy(), level)
                    diffs.append({"variant": name, "baseline": baseline, "metric": label,
                                  "unit": unit, **d.as_dict(), "verdict": _verdict(label, d)})
        warns += winfo.pop("warnings", []) + run_warnings(runs, min_requests_per_node)
        warns += list(dict.fromkeys(w for sc in as_run.values()
                                    for w in scenario_warnings(sc, outside=False)))
        opts: list[tuple[str, Any]] = [("--variant", f"{name}:" + ",".join(
            format_override(a, b) for a, b in ov)) for name, ov in vs.items()]
        opts += [("--baseline", baseline), ("--seed", seed)]
        opts += ([("--rel-precision", rel_precision), ("--max-replications", max_replications)]
                 if rel_precision is not None else [("--replications", n)])
        opts += [("--set", format_override(a, b)) for a, b in common]
        if warmup is not None:
            opts.append(("--warmup", warmup))
        opts += [("--plugin", p) for p in plugins]
        cmd = command_line("compare", base.source, opts)
        first = next(iter(as_run.values()))
        meta = {"scenario": base.source, "scenario_name": first.name, "seed": seed,
                "replications": n, "level": level,
                "rel_precision_target": rel_precision, "executor": executor_name,
                "ci_method": stats.T_METHOD, "difference_method": stats.PAIRED_METHOD,
                "seeds": "replication r uses SeedSequence(seed).spawn child r, same for every "
                         "variant (common random numbers)",
                "warmup": winfo, "overrides": [format_override(a, b) for a, b in common],
                "variants": {k: [format_override(a, b) for a, b in v] for k, v in vs.items()},
                "command": cmd,
                "provenance": provenance(
                    base.validate(common + wov), source=base.source, overrides=common, seed=seed,
                    replication_seeds=[replication_seed(seed, r) for r in range(n)], command=cmd,
                    warmup=winfo, variant_overrides=vs, extra_inputs=list(as_run.values())),
                "scenarios_as_run": {k: v.model_dump(mode="json") for k, v in as_run.items()}}
        ts_all = pd.DataFrame()
        if series:
            ts_all = pd.concat(series, ignore_index=True)
            ts_all = ts_all[["variant", "replication",
                             *[c for c in ts_all.columns if c not in ("variant", "replication")]]]
        res = CompareResult(runs, pd.DataFrame(table), pd.DataFrame(diffs), baseline, meta, warns,
                            ts_all)
        for w in warns:
            _warnings.warn(w, ExperimentWarning, stacklevel=2)
        if out_dir is not None:
            res.write(Path(out_dir))
        return res


class ExperimentWarning(UserWarning):
    """A statistical caveat: runs too short, precision not reached, overload."""


# ----------------------------------------------------------------------------- sweep
def sweep(scenario: Scenario | Mapping[str, Any] | str | Path,
          grid: Mapping[str, Sequence[Any] | str], replications: int = 1, *,
          out_dir: Path | None = None, seed: int | None = None, overrides: Sequence[str] = (),
          extra_metrics: Sequence[str] = (), executor: Executor | None = None,
          workers: int | None = None, dask: str | None = None,
          progress: bool = False, plugins: Sequence[str] = (),
          overwrite: bool = False, strict: bool = False) -> pd.DataFrame:
    """Cartesian ``grid`` x ``replications``: one row per run (parameters, ``point``,
    ``replication``, ``seed``, every summary field).

    With ``out_dir`` every run is written atomically to ``out_dir/runs/<key>.parquet`` as it
    finishes (key: a hash of everything the result depends on, input files' contents
    included: :mod:`simulator.run_cache`); runs already there are read instead of re-run, so
    an interrupted sweep resumes. ``out_dir`` is checked and locked before any run
    (:func:`simulator.run_dir.claim_experiment`; ``overwrite``). ``sweep.parquet`` holds
    all rows at the end. Replication r of every point shares one seed (common random numbers).
    ``plugins``: modules that register policies (see :func:`load_base`). ``strict``: refuse,
    before any run, when a point stretches a profile
    (:func:`simulator.profile_guards.strict_check`).
    """
    if replications < 1:
        raise ValueError(f"replications = {replications}: need at least 1")
    base = load_base(scenario, plugins)
    seed = base.seed if seed is None else seed
    common = as_overrides(overrides)
    points = grid_points(grid) if grid else [{}]
    scenarios = [base.validate(common + list(p.items())) for p in points]
    if strict:
        for p, sc in zip(points, scenarios, strict=True):
            strict_check(sc, f"point {json.dumps(p, default=str)}" if p else "")
    bad = [m for m in extra_metrics if not m.startswith("wait_exceeds:")]
    if bad:
        raise ValueError(f"--metric {', '.join(bad)}: extra per-run metrics are "
                         "wait_exceeds:T_MS (every summary field is in the table already)")
    check_metrics(list(extra_metrics), base.validate(common))
    tasks = [RunTask(base.raw, base.source, base.base_dir, tuple(common + list(p.items())),
                     replication_seed(seed, r), {**p, "point": pi, "replication": r},
                     tuple(extra_metrics))
             for pi, p in enumerate(points) for r in range(replications)]
    with experiment_cache(out_dir, "sweep", overwrite) as cache, \
            Runner(executor, workers, dask, progress, cache) as runner:
        base.require_portable(runner.executor)
        rows = runner.run(tasks, "sweep")
        df = pd.DataFrame(rows)
        if out_dir is not None:
            write_parquet(Path(out_dir) / "sweep.parquet", df)
            write_json(Path(out_dir) / "sweep.json",
                       sweep_meta(base, common, scenarios, grid, replications, seed,
                                  extra_metrics, plugins))
    return df


def sweep_meta(base: Base, common: list[Override], scenarios: list[Scenario],
               grid: Mapping[str, Sequence[Any] | str], replications: int, seed: int,
               extra_metrics: Sequence[str], plugins: Sequence[str]) -> dict[str, Any]:
    """The content of ``sweep.json``: grid, provenance, the scenario as run, the command."""
    def values(v: Sequence[Any] | str) -> list[Any]:
        return [parse_value(x.strip()) for x in v.split(",")] if isinstance(v, str) else list(v)

    opts: list[tuple[str, Any]] = [("--grid", f"{k}=" + ",".join(str(x) for x in values(v)))
                                   for k, v in grid.items()]
    opts += [("--replications", replications), ("--seed", seed)]
    opts += [("--metric", m) for m in extra_metrics]
    opts += [("--set", format_override(a, b)) for a, b in common]
    opts += [("--plugin", p) for p in plugins]
    cmd = command_line("sweep", base.source, opts)
    sc = base.validate(common)
    return {"scenario": base.source, "scenario_name": sc.name, "seed": seed,
            "replications": replications, "grid": {k: values(v) for k, v in grid.items()},
            "points": len(scenarios), "metrics": list(extra_metrics), "command": cmd,
            "provenance": provenance(
                sc, source=base.source, overrides=common, seed=seed,
                replication_seeds=[replication_seed(seed, r) for r in range(replications)],
                command=cmd, extra_inputs=scenarios),
            "scenario_as_run": sc.model_dump(mode="json")}
