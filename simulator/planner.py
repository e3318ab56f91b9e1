"""Capacity planning: the cheapest knob values meeting every constraint with confidence.

Bisection on monotone integer knobs (node counts) and sequential replications that stop as soon
as each constraint's confidence interval clears its threshold; every point tried is reported.
Built on the replication machinery of :mod:`simulator.experiment`.
"""

from __future__ import annotations

import itertools
import json
import re
import warnings as _warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import stats
from simulator.executors import Executor, Runner, RunTask
from simulator.experiment import (
    ExperimentWarning,
    as_overrides,
    load_base,
    metric_column,
    replication_seed,
    resolve_warmup,
    run_warnings,
)
from simulator.output import write_json, write_parquet
from simulator.scenario import Scenario, ScenarioError, parse_value


# ----------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class Vary:
    """A knob to plan over: an integer range (bisected; ``hi`` None = search upwards) or an
    explicit list of values (enumerated)."""

    key: str
    lo: int = 1
    hi: int | None = None
    values: tuple[Any, ...] | None = None

    @classmethod
    def parse(cls, text: str) -> Vary:
        """``key``, ``key:lo..hi``, ``key:lo..`` or ``key=v1,v2,...``."""
        if "=" in text:
            key, vals = text.split("=", 1)
            return cls(key.strip(), values=tuple(parse_value(v.strip())
                                                 for v in vals.split(",")))
        key, _, rng = text.partition(":")
        if not rng:
            return cls(key.strip())
        m = re.fullmatch(r"\s*(\d*)\s*\.\.\s*(\d*)\s*", rng)
        if not m:
            raise ScenarioError(f"--vary {text}: expected KEY, KEY:LO..HI or KEY=V1,V2")
        return cls(key.strip(), int(m.group(1) or 1), int(m.group(2)) if m.group(2) else None)


def smallest_feasible(feasible: Callable[[int], bool], lo: int, hi: int | None,
                      start: int | None = None, cap: int = 4096) -> int | None:
    """Smallest integer x in [lo, hi] with ``feasible(x)``, assuming feasibility is monotone
    (once feasible, feasible for every larger x). Bisection; with ``hi`` None it first doubles
    from ``start`` until feasible (up to ``cap``). None when nothing in range is feasible."""
    below = lo - 1
    if hi is None:
        x = max(lo, start or lo)
        while not feasible(x):
            if x >= cap:
                return None
            below, x = x, min(cap, 2 * x)
        hi = x
    elif not feasible(hi):
        return None
    while hi - below > 1:
        mid = (below + hi) // 2
        if feasible(mid):
            hi = mid
        else:
            below = mid
    return hi


def _current(raw: Any, key: str) -> Any:
    """The value at a dotted key of a scenario dict (list items by name or index), or None."""
    for part in key.split("."):
        if isinstance(raw, list):
            named = [it for it in raw if isinstance(it, dict) and it.get("name") == part]
            raw = named[0] if named else (raw[int(part)] if part.isdigit()
                                          and int(part) < len(raw) else None)
        else:
            raw = raw.get(part) if isinstance(raw, dict) else None
    return raw


@dataclass
class PlanResult:
    """The cheapest feasible point (``best``, None if none) and every point tried."""

    best: dict[str, Any] | None
    points: list[dict[str, Any]]
    runs: pd.DataFrame
    meta: dict[str, Any]
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        """The content of ``plan.json``."""
        return {"best": self.best, "points": self.points, **self.meta, "warnings": self.warnings}

    def write(self, out_dir: Path) -> None:
        """Atomically write ``plan.json`` and ``runs.parquet`` into ``out_dir``."""
        write_parquet(Path(out_dir) / "runs.parquet", self.runs)
        write_json(Path(out_dir) / "plan.json", self.to_dict())


def plan(scenario: Scenario | Mapping[str, Any] | str | Path, vary: Sequence[str | Vary],
         constraints: Sequence[str | stats.Constraint], *, objective: str = "cost",
         seed: int | None = None, overrides: Sequence[str] = (),
         warmup: float | str | None = None, level: float = 0.95, min_replications: int = 4,
         step: int = 4, max_replications: int = 40, cap: int = 4096,
         min_requests_per_node: float = 200.0, executor: Executor | None = None,
         workers: int | None = None, dask: str | None = None, progress: bool = False,
         out_dir: Path | None = None, plugins: Sequence[str] = ()) -> PlanResult:
    """The point minimising the mean ``objective`` among points whose every constraint holds
    with confidence ``level`` (the whole CI on the right side of the threshold).

    The first integer-range knob is bisected (feasibility assumed monotone in it, e.g. node
    counts, and the objective non-decreasing, so the smallest feasible value is the cheapest);
    other knobs are enumerated. Each point runs ``min_replications``, then ``step`` more at a
    time until every constraint's CI is clear of its threshold, one is clearly violated, or
    ``max_replications`` is reached (then the point counts as infeasible: not proven). The
    schedule does not depend on the executor, so neither does the answer.
    """
    base = load_base(scenario, plugins)
    seed = base.seed if seed is None else seed
    knobs = [v if isinstance(v, Vary) else Vary.parse(v) for v in vary]
    cons = [c if isinstance(c, stats.Constraint) else stats.Constraint.parse(c)
            for c in constraints]
    metrics = list(dict.fromkeys([c.metric for c in cons] + [objective]))
    extra = tuple(m for m in metrics if m.startswith("wait_exceeds:"))
    common = as_overrides(overrides)
    evaluated: dict[str, dict[str, Any]] = {}
    all_rows: list[dict[str, Any]] = []
    with Runner(executor, workers, dask, progress) as runner:
        base.require_portable(runner.executor)
        wov, winfo = resolve_warmup(runner, base, [common], warmup, seed)

        def evaluate(point: dict[str, Any]) -> bool:
            key = json.dumps(point, sort_keys=True, default=str)
            if key in evaluated:
                return bool(evaluated[key]["feasible"])
            ov = common + list(point.items()) + wov
            base.validate(ov)
            rows: list[dict[str, Any]] = []
            n, decision = 0, "undecided"
            while decision == "undecided" and n < max_replications:
                new_n = min(max_replications, min_replications if n == 0 else n + step)
                label = ", ".join(f"{k}={v}" for k, v in point.items())
                rows += runner.run([RunTask(base.raw, base.source, base.base_dir, tuple(ov),
                                            replication_seed(seed, r), {**point, "replication": r},
                                            extra) for r in range(n, new_n)],
                                   f"plan {label}: runs {n + 1}-{new_n}")
                n = new_n
                df = pd.DataFrame(rows)
                cis = {m: stats.t_ci(df[metric_column(m)], level) for m in metrics}
                decision = stats.sequential_decision([cis[c.metric] for c in cons], cons)
            all_rows.extend(rows)
            evaluated[key] = {**point, "mean": {m: ci.mean for m, ci in cis.items()},
                              "ci95": {m: [ci.lo, ci.hi] for m, ci in cis.items()},
                              "n": n, "decision": decision, "feasible": decision == "met"}
            return decision == "met"

        bisect = next((k for k in knobs if k.values is None), None)
        others = [k for k in knobs if k is not bisect]
        if any(k.values is None and k.hi is None for k in others):
            raise ScenarioError("only one --vary range may be open-ended (KEY:LO..HI for others)")
        choices = [k.values if k.values is not None else range(k.lo, (k.hi or k.lo) + 1)
                   for k in others]
        start = _current(base.validate(common).model_dump(), bisect.key) if bisect else None
        for combo in itertools.product(*choices):
            fixed = dict(zip([k.key for k in others], combo, strict=True))
            if bisect is None:
                evaluate(fixed)
                continue
            smallest_feasible(lambda x, fixed=fixed: evaluate(_ordered(knobs, {**fixed,
                                                                              bisect.key: x})),
                              bisect.lo, bisect.hi, start if isinstance(start, int) else None,
                              cap)
        executor_name = runner.executor.name
    points = list(evaluated.values())
    feasible = [p for p in points if p["feasible"]]
    best_point = min(feasible, key=lambda p: p["mean"][objective]) if feasible else None
    best = {k.key: best_point[k.key] for k in knobs} if best_point else None
    runs = pd.DataFrame(all_rows)
    warns = winfo.pop("warnings", []) + run_warnings(runs, min_requests_per_node)
    warns += [f"point {json.dumps({k.key: p[k.key] for k in knobs})} undecided after "
              f"{p['n']} replications: counted infeasible" for p in points
              if p["decision"] == "undecided"]
    if best is None:
        warns.append("no point meets every constraint with confidence")
    if bisect is not None and any(
            p[bisect.key] < q[bisect.key] and p["feasible"] and q["decision"] == "violated"
            and all(p[k.key] == q[k.key] for k in others) for p in points for q in points):
        warns.append(f"feasibility is not monotone in {bisect.key}: bisection may miss the "
                     "cheapest point; enumerate it with KEY=V1,V2,... instead")
    meta = {"objective": objective, "constraints": [str(c) for c in cons], "level": level,
            "scenario": base.source, "seed": seed, "executor": executor_name,
            "ci_method": stats.T_METHOD, "warmup": winfo,
            "method": "bisection on the first integer knob (monotone feasibility), other knobs "
                      f"enumerated; sequential replications {min_replications}+{step}k up to "
                      f"{max_replications}, stopping when every CI is clear of its threshold"}
    res = PlanResult(best, points, runs, meta, warns)
    for w in warns:
        _warnings.warn(w, ExperimentWarning, stacklevel=2)
    if out_dir is not None:
        res.write(Path(out_dir))
    return res


def _ordered(knobs: Sequence[Vary], point: dict[str, Any]) -> dict[str, Any]:
    return {k.key: point[k.key] for k in knobs}
