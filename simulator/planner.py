"""Capacity planning: the cheapest setting of some knobs that meets every constraint.

Method (``method="search"``, the default), documented in docs/experiments.md:

1. **Feasible region.** Integer-range knobs (``KEY:LO..HI``, e.g. node counts) are capacity:
   feasibility is assumed non-decreasing in each of them. The first one is the primary knob;
   for every combination of the other knobs' values its smallest feasible value is found by
   an exponential search up from the range's low end, then bisection (an open-ended range
   doubles from the scenario's value instead). A point below a point shown
   infeasible, or above one shown feasible (in every integer knob, the list knobs equal), is
   decided by that monotonicity without simulating and reported as skipped.
2. **Cost search.** The objective (cost) is *not* assumed monotone: SLA penalties make a
   bigger fleet cheaper. Feasible candidates (primary knob at or above its smallest feasible
   value) are visited in increasing order of a lower bound on the objective computed from the
   scenario alone (the compute cost of the nodes a pool keeps at least, plus the fixed human
   cost; see :func:`objective_lower_bound`). The search stops when the next candidate's bound
   reaches the upper end of the best feasible point's confidence interval: no remaining
   candidate can then be cheaper (its true mean is at least its bound). Every skipped
   candidate is listed with this reason.
3. **Ranking.** Feasible points whose objective interval overlaps the best one's get more
   replications (``step`` at a time, common random numbers, paired differences) until the
   paired interval of each against the best excludes zero or ``max_replications`` is reached;
   points still tied are reported as such.

Each point is evaluated with sequential replications: ``min_replications``, then ``step`` more
until every constraint's CI is clear of its threshold (met or violated) or
``max_replications`` (then it counts as infeasible: not proven). ``method="exhaustive"``
evaluates every point of the (bounded) grid the same way and ranks the same way: the reference
the search is benchmarked against (benchmarks/bench_planner.py). The schedule does not depend
on the executor, so neither does the answer.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import math
import re
import warnings as _warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import stats
from simulator.executors import Executor, Runner, RunTask
from simulator.experiment import (
    ExperimentWarning,
    as_overrides,
    check_metrics,
    load_base,
    metric_column,
    replication_seed,
    require_columns,
    resolve_warmup,
    run_warnings,
)
from simulator.output import write_json, write_parquet
from simulator.profile_guards import strict_check
from simulator.provenance import command_line, format_override, provenance
from simulator.run_cache import experiment_cache
from simulator.scenario import Scenario, ScenarioError, parse_value, scenario_warnings

METHODS = ("search", "exhaustive")


# ----------------------------------------------------------------------------- knobs
@dataclass(frozen=True)
class Vary:
    """A knob to plan over: an integer range (capacity: feasibility non-decreasing in it;
    ``hi`` None = search upwards) or an explicit list of values (enumerated)."""

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

    @property
    def is_range(self) -> bool:
        return self.values is None

    def __str__(self) -> str:
        if self.values is not None:
            return f"{self.key}=" + ",".join(str(v) for v in self.values)
        return f"{self.key}:{self.lo}..{'' if self.hi is None else self.hi}"


def smallest_feasible(feasible: Callable[[int], bool], lo: int, hi: int | None,
                      start: int | None = None, cap: int = 4096, gallop: bool = False
                      ) -> int | None:
    """Smallest integer x in [lo, hi] with ``feasible(x)``, assuming feasibility is monotone
    (once feasible, feasible for every larger x). None when nothing in range is feasible.

    With ``hi`` None it first doubles from ``start`` until feasible (up to ``cap``), then
    bisects. With ``hi`` given it bisects [lo, hi] starting at ``hi``, or, with ``gallop``,
    searches exponentially upwards from ``lo`` (lo, lo+1, lo+3, lo+7, ...; then ``hi``) and
    bisects the last gap: about 2 log2(x - lo) questions, fewer than bisection when the
    answer lies near the bottom of a generous range (the usual capacity question).
    """
    below = lo - 1
    if hi is None:
        x = max(lo, start or lo)
        while not feasible(x):
            if x >= cap:
                return None
            below, x = x, min(cap, 2 * x)
        hi = x
    elif gallop:
        step, x = 1, lo
        while True:
            if feasible(x):
                hi = x
                break
            if x >= hi:
                return None
            below, x, step = x, min(hi, lo + 2 * step - 1), 2 * step
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


# ----------------------------------------------------------------------------- bound
def objective_lower_bound(sc: Scenario, objective: str) -> float | None:
    """A lower bound of the objective's mean from the scenario alone; None when there is none.

    ``cost`` (USD over the measurement window): every pool bills at least its autoscaling
    floor (``min_nodes``, else ``nodes``) for the whole window at its price per node-hour,
    except pools with spot preemptions or failures (a lost node may be unbilled for a while:
    they count 0), plus the fixed human cost. Energy, storage and penalties are >= 0.
    ``cost_usd.compute``: the compute part alone. ``node_hours``: the floors in node-hours.
    Other objectives (latency, violation rate) have no bound: the search then visits every
    feasible candidate of the (bounded) range.
    """
    from simulator import cost

    col = metric_column(objective)
    if col not in ("cost_usd.total", "cost_usd.compute", "node_hours"):
        return None
    window_h = (sc.simulation.duration_s - sc.simulation.warmup_s) / 3600.0
    floor_h = usd = 0.0
    for p in sc.cluster.pools:
        if p.spot is not None or p.failures is not None:
            continue
        floor_h += p.lo * window_h
        usd += p.lo * window_h * p.price_per_hour_usd
    if col == "node_hours":
        return floor_h
    if col == "cost_usd.compute":
        return usd
    c = sc.cost
    return usd + cost.human_usd(c.engineers, c.engineer_monthly_usd, c.effort_hours,
                                c.hours_per_month)


# ----------------------------------------------------------------------------- result
@dataclass
class PlanResult:
    """The cheapest feasible point (``best``, None if none), every point evaluated, every
    candidate skipped (with the reason), and the per-run table."""

    best: dict[str, Any] | None
    points: list[dict[str, Any]]
    runs: pd.DataFrame
    meta: dict[str, Any]
    warnings: list[str]
    skipped: list[dict[str, Any]] = field(default_factory=list)

    @property
    def simulations(self) -> int:
        """Simulation runs the plan used (warm-up pilots excluded)."""
        return len(self.runs)

    def to_dict(self) -> dict[str, Any]:
        """The content of ``plan.json``."""
        return {"best": self.best, "simulations": self.simulations, "points": self.points,
                "skipped": self.skipped, **self.meta, "warnings": self.warnings}

    def write(self, out_dir: Path) -> None:
        """Atomically write ``plan.json`` and ``runs.parquet`` into ``out_dir``."""
        write_parquet(Path(out_dir) / "runs.parquet", self.runs)
        write_json(Path(out_dir) / "plan.json", self.to_dict())


# ----------------------------------------------------------------------------- planner
class _Planner:
    """State of one plan: runs per point, decisions, skips (see the module docstring)."""

    def __init__(self, base: Any, knobs: list[Vary], cons: list[stats.Constraint],
                 objective: str, common: list[Any], runner: Runner, seed: int, level: float,
                 min_replications: int, step: int, max_replications: int) -> None:
        self.base, self.knobs, self.cons, self.objective = base, knobs, cons, objective
        self.metrics = list(dict.fromkeys([c.metric for c in cons] + [objective]))
        self.extra = tuple(m for m in self.metrics if m.startswith("wait_exceeds:"))
        self.common, self.runner, self.seed, self.level = common, runner, seed, level
        self.min_r, self.step, self.max_r = min_replications, step, max_replications
        self.wov: list[Any] = []
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.evaluated: dict[str, dict[str, Any]] = {}
        self.skipped: dict[str, dict[str, Any]] = {}
        self.bounds: dict[str, float | None] = {}
        self.order: list[str] = []
        self.strict = False  # refuse points that stretch a profile (plan(strict=True))

    # -- points
    def point(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {k.key: values[k.key] for k in self.knobs}

    @staticmethod
    def key(point: Mapping[str, Any]) -> str:
        return json.dumps(point, sort_keys=True, default=str)

    def scenario(self, point: Mapping[str, Any]) -> Scenario:
        try:
            return self.base.validate(self.common + list(point.items()) + self.wov)
        except ScenarioError as exc:
            raise ScenarioError(f"plan point {json.dumps(point, default=str)}: {exc}") from None

    def lower_bound(self, point: Mapping[str, Any]) -> float | None:
        k = self.key(point)
        if k not in self.bounds:
            self.bounds[k] = objective_lower_bound(self.scenario(point), self.objective)
        return self.bounds[k]

    # -- simulation
    def _run_to(self, point: dict[str, Any], n: int, phase: str) -> None:
        k = self.key(point)
        have = self.rows.setdefault(k, [])
        if n <= len(have):
            return
        if self.strict and not have:  # a point between the checked ends
            strict_check(self.scenario(point), f"plan point {json.dumps(point, default=str)}")
        ov = tuple(self.common + list(point.items()) + self.wov)
        label = ", ".join(f"{a}={b}" for a, b in point.items())
        tasks = [RunTask(self.base.raw, self.base.source, self.base.base_dir, ov,
                         replication_seed(self.seed, r), {**point, "replication": r},
                         self.extra) for r in range(len(have), n)]
        have += self.runner.run(tasks, f"plan {label} ({phase}): runs {len(have) + 1}-{n}")

    def _summarise(self, point: dict[str, Any], phase: str) -> dict[str, Any]:
        k = self.key(point)
        df = pd.DataFrame(self.rows[k])
        require_columns(df, self.metrics)
        cis = {m: stats.t_ci(df[metric_column(m)], self.level) for m in self.metrics}
        decision = stats.sequential_decision([cis[c.metric] for c in self.cons], self.cons)
        for c in self.cons:  # t_ci drops infinite values; one that breaks the bound decides
            vals = pd.to_numeric(df[metric_column(c.metric)], errors="coerce").to_numpy(float)
            if any(math.isinf(v) and not c.holds(v) for v in vals):
                decision = "violated"
        rec = self.evaluated.get(k) or {**point, "phase": phase}
        rec.update({"mean": {m: ci.mean for m, ci in cis.items()},
                    "ci95": {m: [ci.lo, ci.hi] for m, ci in cis.items()},
                    "n": len(df), "decision": decision, "feasible": decision == "met",
                    "lower_bound": self.lower_bound(point)})
        if "bottleneck.stage" in df:  # a cascade: the stage to scale first, most often
            rec["bottleneck"] = str(df["bottleneck.stage"].mode().iat[0])
        if k not in self.evaluated:
            self.order.append(k)
        self.evaluated[k] = rec
        self.skipped.pop(k, None)
        return rec

    def assess(self, point: dict[str, Any], phase: str) -> dict[str, Any]:
        """Sequential replications until the constraints are decided (or the maximum)."""
        k = self.key(point)
        if k in self.evaluated:
            return self.evaluated[k]
        n = 0
        while True:
            n = min(self.max_r, self.min_r if n == 0 else n + self.step)
            self._run_to(point, n, phase)
            rec = self._summarise(point, phase)
            if rec["decision"] != "undecided" or n >= self.max_r:
                return rec

    # -- monotonicity
    def implied(self, point: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """('feasible'|'infeasible', witness) when monotonicity in the integer knobs decides
        ``point`` from an evaluated one (list knobs equal)."""
        ranges = [k.key for k in self.knobs if k.is_range]
        lists = [k.key for k in self.knobs if not k.is_range]
        for rec in self.evaluated.values():
            if rec["decision"] == "undecided" or any(rec[x] != point[x] for x in lists):
                continue
            if rec["feasible"] and all(point[x] >= rec[x] for x in ranges):
                return "feasible", rec
            if rec["decision"] == "violated" and all(point[x] <= rec[x] for x in ranges):
                return "infeasible", rec
        return None

    def skip(self, point: dict[str, Any], reason: str) -> None:
        k = self.key(point)
        if k not in self.evaluated:
            self.skipped[k] = {**point, "reason": reason}

    def skip_range(self, fixed: dict[str, Any], prim: Vary, a: int, b: int,
                   reason: Callable[[int, int], str]) -> None:
        """Record the values a..b of the primary knob not simulated, as runs of consecutive
        values (one entry ``{KEY: "a..b"}`` per run), each with ``reason(first, last)``."""
        run: list[int] = []
        for x in [*range(a, b + 1), None]:
            done = x is None or self.key(self.point({**fixed, prim.key: x})) in self.evaluated
            if not done:
                run.append(x)  # type: ignore[arg-type]
                continue
            if run:
                v: Any = run[0] if len(run) == 1 else f"{run[0]}..{run[-1]}"
                self.skip(self.point({**fixed, prim.key: v}), reason(run[0], run[-1]))
                run = []

    # -- phases
    def frontier(self, prim: Vary, fixed: dict[str, Any], start: int | None,
                 cap: int) -> int | None:
        """Smallest feasible primary value for the other knobs at ``fixed``."""
        def feasible(x: int) -> bool:
            pt = self.point({**fixed, prim.key: x})
            known = self.implied(pt)
            if known is not None:  # decided by an evaluated point: no run needed
                return known[0] == "feasible"
            return bool(self.assess(pt, "feasible region")["feasible"])

        return smallest_feasible(feasible, prim.lo, prim.hi, start, cap, gallop=True)

    def best(self) -> dict[str, Any] | None:
        ok = [r for r in self.evaluated.values() if r["feasible"]]
        return min(ok, key=lambda r: r["mean"][self.objective]) if ok else None

    def cost_search(self, prim: Vary, starts: dict[str, tuple[dict[str, Any], int]],
                    cap: int) -> list[str]:
        """Visit feasible candidates in order of the objective's lower bound (phase 2)."""
        warns: list[str] = []
        heap: list[tuple[float, int, str, int]] = []
        tick = itertools.count()
        combos = {ck: fixed for ck, (fixed, _) in starts.items()}
        top = prim.hi if prim.hi is not None else cap

        def push(ck: str, x: int) -> None:
            if x > top:
                return
            lb = self.lower_bound(self.point({**combos[ck], prim.key: x}))
            heapq.heappush(heap, (-math.inf if lb is None else lb, next(tick), ck, x))

        for ck, (_, x0) in starts.items():
            push(ck, x0)
        last_lb: dict[str, float] = {}
        while heap:
            lb, _, ck, x = heapq.heappop(heap)
            pt = self.point({**combos[ck], prim.key: x})
            b = self.best()
            bound = b["ci95"][self.objective][1] if b is not None else math.inf
            if lb > -math.inf and lb >= bound:
                for _, _, ck2, x2 in [(lb, 0, ck, x), *heap]:
                    self.skip_range(combos[ck2], prim, x2, top,
                                    lambda u, v, f=combos[ck2], bd=bound: self._bound_reason(
                                        f, prim, u, v, bd))
                return warns
            if lb == -math.inf and prim.hi is None:
                raise ScenarioError(f"--vary {prim.key}: the objective '{self.objective}' has no "
                                    "lower bound, so an open-ended range cannot be searched: "
                                    f"give {prim.key}:LO..HI")
            if ck in last_lb and lb < last_lb[ck]:
                warns.append(f"the lower bound of {self.objective} decreases along "
                             f"{prim.key}: the stopping rule assumes it does not")
            last_lb[ck] = lb
            self.assess(pt, "cost search")
            nxt = x + 1
            if prim.hi is None and lb > -math.inf:
                lb_next = self.lower_bound(self.point({**combos[ck], prim.key: nxt}))
                if lb_next is not None and lb_next <= lb:
                    raise ScenarioError(
                        f"--vary {prim.key}: the lower bound of {self.objective} does not grow "
                        f"with {prim.key} (e.g. min_nodes is set), so an open-ended range "
                        f"cannot be searched: give {prim.key}:LO..HI")
            push(ck, nxt)
        return warns

    def _bound_reason(self, fixed: dict[str, Any], prim: Vary, a: int, b: int,
                      bound: float) -> str:
        lo = self.lower_bound(self.point({**fixed, prim.key: a}))
        best = self.best()
        what = (f"lower bound {lo:,.6g}" if a == b else
                f"lower bounds from {lo:,.6g} (growing with {prim.key})")
        return (f"{what} >= upper CI end {bound:,.6g} of the best point "
                f"({_label(self.point(best) if best else None)}): cannot be cheaper")

    def rank(self) -> list[dict[str, Any]]:
        """Phase 3: more replications where they decide the answer (paired differences)."""
        obj = self.objective
        col = metric_column(obj)
        while True:
            b = self.best()
            if b is None:
                return []
            bk = self.key(self.point(b))
            out, grow = [], []
            for k, rec in self.evaluated.items():
                if k == bk or not rec["feasible"]:
                    continue
                if rec["ci95"][obj][0] > b["ci95"][obj][1]:
                    out.append({**self.point(rec), "verdict": "worse (intervals disjoint)"})
                    continue
                n = min(len(self.rows[k]), len(self.rows[bk]))
                a = pd.DataFrame(self.rows[k][:n])[col].to_numpy(float)
                z = pd.DataFrame(self.rows[bk][:n])[col].to_numpy(float)
                d = stats.paired_ci(a, z, self.level)
                if d.excludes(0.0):
                    out.append({**self.point(rec), "difference": d.mean,
                                "difference_ci95": [d.lo, d.hi],
                                "verdict": "worse (paired difference excludes 0)"
                                if d.mean > 0 else "better"})
                elif max(len(self.rows[k]), len(self.rows[bk])) >= self.max_r:
                    out.append({**self.point(rec), "difference": d.mean,
                                "difference_ci95": [d.lo, d.hi],
                                "verdict": f"tied after {self.max_r} replications"})
                else:
                    grow.append(k)
            if not grow:
                return out
            for k in [bk, *grow]:
                pt = self.point(self.evaluated[k])
                n = min(self.max_r, len(self.rows[k]) + self.step)
                self._run_to(pt, n, "ranking")
                self._summarise(pt, "ranking")


def _label(point: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (point or {}).items())


def plan(scenario: Scenario | Mapping[str, Any] | str | Path, vary: Sequence[str | Vary],
         constraints: Sequence[str | stats.Constraint], *, objective: str = "cost",
         method: str = "search", seed: int | None = None, overrides: Sequence[str] = (),
         warmup: float | str | None = None, level: float = 0.95, min_replications: int = 4,
         step: int = 4, max_replications: int = 40, cap: int = 4096,
         min_requests_per_node: float = 200.0, executor: Executor | None = None,
         workers: int | None = None, dask: str | None = None, progress: bool = False,
         out_dir: Path | None = None, plugins: Sequence[str] = (),
         overwrite: bool = False, strict: bool = False) -> PlanResult:
    """The point minimising the mean ``objective`` among points whose every constraint holds
    with confidence ``level`` (the whole CI on the right side of the threshold).

    See the module docstring for the method. ``vary``: ``KEY:LO..HI`` (integer, capacity:
    feasibility non-decreasing), ``KEY:LO..`` (open-ended; the first integer knob only),
    ``KEY=V1,V2`` (enumerated). ``method``: ``"search"`` or ``"exhaustive"``. With
    ``out_dir`` every finished run is kept in ``out_dir/runs`` (keyed by content:
    :mod:`simulator.run_cache`), so a stopped plan resumes with the same answer; ``out_dir``
    is checked and locked before any run (:func:`simulator.run_dir.claim_experiment`;
    ``overwrite``). ``strict``: refuse when a point stretches a profile
    (:func:`simulator.profile_guards.strict_check`): before any run for the scenario and every
    combination of the knobs' enumerated values and range ends, and before each point's runs.
    """
    if method not in METHODS:
        raise ValueError(f"method '{method}': allowed {', '.join(METHODS)}")
    if min_replications < 2 or step < 1 or max_replications < min_replications:
        raise ValueError("need min_replications >= 2, step >= 1 and max_replications >= "
                         "min_replications")
    base = load_base(scenario, plugins)
    seed = base.seed if seed is None else seed
    knobs = [v if isinstance(v, Vary) else Vary.parse(v) for v in vary]
    if not knobs:
        raise ValueError("give at least one --vary knob")
    dup = [k for k, n in pd.Series([k.key for k in knobs]).value_counts().items() if n > 1]
    if dup:
        raise ValueError(f"--vary names {', '.join(dup)} more than once")
    cons = [c if isinstance(c, stats.Constraint) else stats.Constraint.parse(c)
            for c in constraints]
    common = as_overrides(overrides)
    sc0 = base.validate(common)
    check_metrics([c.metric for c in cons] + [objective], sc0)
    ranges = [k for k in knobs if k.is_range]
    prim = ranges[0] if ranges else None
    if any(k.hi is None for k in ranges[1:]):
        raise ScenarioError("only the first --vary range may be open-ended (KEY:LO..HI for "
                            "the others)")
    if method == "exhaustive" and prim is not None and prim.hi is None:
        raise ScenarioError(f"method 'exhaustive' needs a bounded range: {prim.key}:LO..HI")
    firsts = [[k.lo] if k.is_range else list(k.values or ()) for k in knobs]
    for combo in itertools.islice(itertools.product(*firsts), 50):  # bad values fail early
        base.validate([*common, *zip([k.key for k in knobs], combo, strict=True)])
    if strict:  # guard rails grow with the knobs: check their ends before any run
        strict_check(sc0)
        ends = [sorted({k.lo, k.hi if k.hi is not None else cap}) if k.is_range
                else list(k.values or ()) for k in knobs]
        for combo in itertools.islice(itertools.product(*ends), 2000):
            pt = dict(zip([k.key for k in knobs], combo, strict=True))
            strict_check(base.validate([*common, *pt.items()]),
                         f"plan point {json.dumps(pt, default=str)}")
    others = [k for k in knobs if k is not prim]
    choices = [k.values if k.values is not None else range(k.lo, (k.hi or k.lo) + 1)
               for k in others]
    with contextlib.ExitStack() as stack:
        warns: list[str] = []
        cache = stack.enter_context(experiment_cache(out_dir, "plan", overwrite))
        with Runner(executor, workers, dask, progress, cache) as runner:
            base.require_portable(runner.executor)
            wov, winfo = resolve_warmup(runner, base, [common], warmup, seed)
            pl = _Planner(base, knobs, cons, objective, common, runner, seed, level,
                          min_replications, step, max_replications)
            pl.wov = wov
            pl.strict = strict
            sc_run = base.validate(common + wov)
            if method == "exhaustive" or prim is None:
                prim_vals = range(prim.lo, prim.hi + 1) if prim is not None and prim.hi else [None]
                for combo in itertools.product(*choices):
                    fixed = dict(zip([k.key for k in others], combo, strict=True))
                    for x in prim_vals:
                        pt = pl.point({**fixed, **({prim.key: x} if prim is not None else {})})
                        pl.assess(pt, "exhaustive" if method == "exhaustive" else "enumerated")
            else:
                cur = _current(sc0.model_dump(), prim.key)
                start = cur if isinstance(cur, int) else None
                starts: dict[str, tuple[dict[str, Any], int]] = {}
                for combo in itertools.product(*choices):
                    fixed = dict(zip([k.key for k in others], combo, strict=True))
                    x = pl.frontier(prim, fixed, start, cap)
                    top = prim.hi if prim.hi is not None else cap
                    if x is None:
                        pl.skip_range(fixed, prim, prim.lo, top, lambda a, b: (
                            "infeasible by monotonicity: no value up to the range's end is "
                            "feasible"))
                        continue
                    pl.skip_range(fixed, prim, prim.lo, x - 1, lambda a, b, x=x: (
                        f"infeasible by monotonicity: below the smallest feasible {prim.key} = "
                        f"{x}"))
                    starts[pl.key(fixed)] = (fixed, x)
                warns += pl.cost_search(prim, starts, cap)
            contenders = pl.rank()
            executor_name = runner.executor.name
        points = [pl.evaluated[k] for k in pl.order]
        b = pl.best()
        best = pl.point(b) if b is not None else None
        runs = pd.DataFrame([r for k in pl.order for r in pl.rows[k]])
        # an overloaded or short run at an infeasible point decides nothing: warn about the
        # runs of feasible points only (infeasible ones are reported as such)
        decisive = pd.DataFrame([r for k in pl.order if pl.evaluated[k]["feasible"]
                                 for r in pl.rows[k]])
        warns += winfo.pop("warnings", []) + (run_warnings(decisive, min_requests_per_node)
                                              if len(decisive) else [])
        warns += scenario_warnings(sc_run, outside=False)
        warns += [f"point {_label(pl.point(p))} undecided after {p['n']} replications: counted "
                  "infeasible" for p in points if p["decision"] == "undecided"]
        warns += [f"point {_label({k: c[k] for k in pl.point(c)})} is statistically tied with the "
                  f"best after {max_replications} replications: both are answers"
                  for c in contenders if str(c.get("verdict", "")).startswith("tied")]
        if best is None:
            warns.append("no point meets every constraint with confidence")
        if prim is not None:
            lists = [k.key for k in knobs if not k.is_range]
            rng = [k.key for k in knobs if k.is_range]
            if any(all(p[x] == q[x] for x in lists) and all(p[x] <= q[x] for x in rng)
                   and p["feasible"] and q["decision"] == "violated"
                   for p in points for q in points):
                warns.append(f"feasibility is not monotone in {', '.join(rng)}: the search may "
                             "miss the cheapest point; enumerate with KEY=V1,V2,... or use "
                             "method 'exhaustive'")
        skipped = list(pl.skipped.values())
        meta = _meta(base, sc_run, knobs, cons, objective, method, seed, common, winfo, level,
                     min_replications, step, max_replications, executor_name, runs, contenders,
                     warmup, plugins)
        res = PlanResult(best, points, runs, meta, warns, skipped)
        for w in warns:
            _warnings.warn(w, ExperimentWarning, stacklevel=2)
        if out_dir is not None:
            res.write(Path(out_dir))
        return res


def _meta(base: Any, sc0: Scenario, knobs: list[Vary], cons: list[stats.Constraint],
          objective: str, method: str, seed: int, common: list[Any], winfo: dict[str, Any],
          level: float, min_r: int, step: int, max_r: int, executor: str, runs: pd.DataFrame,
          contenders: list[dict[str, Any]], warmup: float | str | None,
          plugins: Sequence[str]) -> dict[str, Any]:
    n_rep = int(runs["replication"].max()) + 1 if len(runs) else 0
    opts: list[tuple[str, Any]] = [("--vary", str(k)) for k in knobs]
    opts += [("--constraint", str(c)) for c in cons]
    opts += [("--objective", objective), ("--method", method), ("--seed", seed),
             ("--min-replications", min_r), ("--max-replications", max_r)]
    opts += [("--set", format_override(k, v)) for k, v in common]
    if warmup is not None:
        opts.append(("--warmup", warmup))
    opts += [("--plugin", p) for p in plugins]
    cmd = command_line("plan", base.source, opts)
    how = ("bisection for the smallest feasible value of the first integer knob per "
           "combination of the others (feasibility non-decreasing in integer knobs), then "
           "candidates in increasing order of a lower bound on the objective until the bound "
           "reaches the upper CI end of the best feasible point, then paired replications on "
           "contenders" if method == "search" else
           "every point of the grid evaluated, then paired replications on contenders")
    return {"objective": objective, "constraints": [str(c) for c in cons], "level": level,
            "vary": [str(k) for k in knobs], "scenario": base.source, "seed": seed,
            "executor": executor, "ci_method": stats.T_METHOD, "warmup": winfo,
            "method": f"{method}: {how}; sequential replications {min_r}+{step}k up to "
                      f"{max_r} per point, stopping when every constraint's CI is clear of "
                      "its threshold",
            "lower_bound": objective_lower_bound.__doc__.split("\n\n")[1].strip()
            if objective_lower_bound.__doc__ else "",
            "contenders": contenders,
            "command": cmd,
            "provenance": provenance(sc0, source=base.source, overrides=common, seed=seed,
                                     replication_seeds=[replication_seed(seed, r)
                                                        for r in range(n_rep)],
                                     command=cmd, warmup=winfo),
            "scenario_as_run": sc0.model_dump(mode="json")}
