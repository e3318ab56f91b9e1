"""Loading PeakSim results directories (a run, a compare or a sweep) into pandas.

The kind of a directory is told by the files in it:

- run: ``summary.json`` (+ ``timeseries.parquet``, optional ``records.parquet``,
  ``scenario.json``, ``timeseries_pools.parquet``, ``events.parquet``);
- compare: ``compare.json`` (or a lone ``runs.parquet``) (one row per run: variant, replication,
  seed and flattened summary fields with dotted names), optional ``timeseries.parquet`` (long:
  ``variant``, ``replication``, ``t_s`` and every run time-series column); run directories below
  it, if any, are found and matched to variants by a path component named like the variant;
- sweep: ``sweep.parquet`` (grid parameters by dotted scenario key, replication, seed, summary
  fields), optional ``sweep.json`` (``provenance``, ``scenario_as_run``, ``grid``, ``command``)
  and/or ``plan.json`` (``{"best": {...}, "points": [...]}``; a plan directory's
  ``runs.parquet`` is read as its per-run table).

``compare.json`` / ``plan.json`` / ``sweep.json`` may carry ``provenance``, the scenario as run
(``scenarios_as_run`` per variant, or ``scenario_as_run``) and ``command``: see
:func:`result_doc` and ``analysis.report``.

Nothing here imports the simulation engine; optional files that are absent load as ``None``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from simulator.output import flatten

#: Sections of a scenario: a dotted column starting with one is a sweep parameter.
SCENARIO_SECTIONS = frozenset({"simulation", "workload", "service", "cluster", "policy",
                               "sla", "cost"})
#: Settings of the scenario's ``sla`` section (other ``sla.*`` columns are summary fields).
SLA_SETTINGS = frozenset({"sla.penalty_usd_per_violation", "sla.penalty_usd_per_degraded",
                          "sla.worst_window_s"})
#: Keys of a plan point that are not parameters.
PLAN_POINT_KEYS = frozenset({"mean", "ci95", "feasible", "n", "decision"})
#: Cost components of ``summary.json``'s ``cost_usd``, in stacking order.
COST_COMPONENTS = ("compute", "energy", "storage", "human", "sla_penalty")


class ResultsError(ValueError):
    """A results directory is missing, or holds none of the files PeakSim writes."""


@dataclass
class RunResults:
    """One run: its summary (dict), time series and optional records, pool series and events.

    ``scenario`` is ``scenario.json``'s content (``{"source", "overrides", "scenario"}``) or
    None. Times are in seconds since the run's start, latencies in ms.
    """

    path: Path
    summary: dict[str, Any]
    timeseries: pd.DataFrame
    records: pd.DataFrame | None = None
    scenario: dict[str, Any] | None = None
    pool_series: pd.DataFrame | None = None
    events: pd.DataFrame | None = None
    e2e_series: pd.DataFrame | None = None  # a cascade's end-to-end series (timeseries_e2e)
    kind: str = field(default="run", init=False)

    @property
    def scenario_dict(self) -> dict[str, Any]:
        """The scenario as run (empty when ``scenario.json`` is absent)."""
        return dict((self.scenario or {}).get("scenario") or {})

    @property
    def seeds(self) -> list[int]:
        return [int(self.summary["seed"])] if self.summary.get("seed") is not None else []


@dataclass
class CompareResults:
    """A policy comparison: ``runs`` has one row per (variant, replication).

    ``members`` lists (variant or None, run directory) for run directories found below it;
    ``timeseries`` is ``timeseries.parquet`` (None in directories written before it existed).
    """

    path: Path
    compare: dict[str, Any]
    runs: pd.DataFrame
    members: list[tuple[str | None, Path]] = field(default_factory=list)
    timeseries: pd.DataFrame | None = None
    kind: str = field(default="compare", init=False)

    @property
    def variants(self) -> list[str]:
        """Variant names in order of first appearance."""
        if "variant" not in self.runs.columns:
            return []
        return [str(v) for v in pd.unique(self.runs["variant"].astype(str))]

    @property
    def seeds(self) -> list[int]:
        return _seeds(self.runs)

    def member_runs(self) -> Iterator[tuple[str | None, RunResults]]:
        """Load each run directory below the comparison (lazily, one at a time)."""
        for variant, p in self.members:
            yield variant, load_run(p)


@dataclass
class SweepResults:
    """A sweep (``sweep``: one row per run) and/or a plan (``plan``: best and points tried).

    ``params`` are the grid parameters' dotted scenario keys; ``doc`` is ``sweep.json`` (None
    when absent).
    """

    path: Path
    sweep: pd.DataFrame | None
    plan: dict[str, Any] | None
    params: list[str]
    doc: dict[str, Any] | None = None
    kind: str = field(default="sweep", init=False)

    @property
    def seeds(self) -> list[int]:
        return _seeds(self.sweep) if self.sweep is not None else []


Results = RunResults | CompareResults | SweepResults


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: expected a JSON object")
    return data


def _read_parquet(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.is_file() else None


def _seeds(df: pd.DataFrame) -> list[int]:
    if "seed" not in df.columns:
        return []
    return sorted({int(s) for s in df["seed"].dropna()})


def detect_kind(path: str | Path) -> str:
    """``"run"``, ``"compare"`` or ``"sweep"``, from the files in the directory."""
    p = Path(path)
    if not p.is_dir():
        raise ResultsError(f"{p}: no such results directory")
    if (p / "summary.json").is_file():
        return "run"
    if (p / "compare.json").is_file():
        return "compare"
    if any((p / f).is_file() for f in ("sweep.parquet", "sweep.json", "plan.json")):
        return "sweep"  # a plan directory holds plan.json + runs.parquet
    if (p / "runs.parquet").is_file():
        return "compare"
    raise ResultsError(
        f"{p}: not a PeakSim results directory (expected summary.json for a run, compare.json "
        "or runs.parquet for a comparison, sweep.parquet or plan.json for a sweep)"
    )


def load_run(path: str | Path) -> RunResults:
    """Read a run directory written by ``peaksim run --out DIR``."""
    p = Path(path)
    if not (p / "summary.json").is_file():
        raise ResultsError(f"{p}: no summary.json (not a run directory)")
    ts = _read_parquet(p / "timeseries.parquet")
    return RunResults(
        path=p,
        summary=_read_json(p / "summary.json"),
        timeseries=ts if ts is not None else pd.DataFrame(),
        records=_read_parquet(p / "records.parquet"),
        scenario=_read_json(p / "scenario.json") if (p / "scenario.json").is_file() else None,
        pool_series=_read_parquet(p / "timeseries_pools.parquet"),
        events=_read_parquet(p / "events.parquet"),
        e2e_series=_read_parquet(p / "timeseries_e2e.parquet"),
    )


def _members(root: Path, variants: list[str]) -> list[tuple[str | None, Path]]:
    found: list[tuple[str | None, Path]] = []
    for summ in sorted(root.rglob("summary.json")):
        d = summ.parent
        if d == root:
            continue
        parts = d.relative_to(root).parts
        match = next((v for v in variants if v in parts), None)
        found.append((match, d))
    return found


def load_compare(path: str | Path) -> CompareResults:
    """Read a comparison directory (``compare.json``, ``runs.parquet``, run directories)."""
    p = Path(path)
    comp = _read_json(p / "compare.json") if (p / "compare.json").is_file() else {}
    runs = _read_parquet(p / "runs.parquet")
    if runs is None:
        raw = comp.get("runs")
        if not isinstance(raw, list):
            raise ResultsError(f"{p}: no runs.parquet and no 'runs' list in compare.json")
        runs = pd.DataFrame([flatten(r) for r in raw])
    res = CompareResults(p, comp, runs, timeseries=_read_parquet(p / "timeseries.parquet"))
    res.members = _members(p, res.variants)
    return res


def sweep_params(columns: list[str], plan: Mapping[str, Any] | None = None,
                 table: pd.DataFrame | None = None,
                 grid: Mapping[str, Any] | None = None) -> list[str]:
    """The grid parameters among a sweep table's ``columns`` (dotted scenario keys).

    A column is a parameter when it is a key of ``grid`` (``sweep.json``'s), when it names a
    key of the plan's ``best`` / ``points``, or when it
    is a dotted key into a scenario section (``cluster.``, ``policy.``, ``workload.``, ...) and
    not a summary field (of ``sla.*`` only the settings :data:`SLA_SETTINGS`); ``sla.slo_ms``
    (also a summary field) only when it varies in ``table``.
    """
    from_plan: list[str] = [str(k) for k in grid or {}]
    if plan:
        keys = list((plan.get("best") or {}).keys())
        for pt in plan.get("points") or []:
            keys += [k for k in pt if k not in PLAN_POINT_KEYS]
        from_plan = list(dict.fromkeys([*from_plan, *keys]))
    # ``sla`` is both a scenario section and a summary section: only its settings count
    guess = [c for c in columns if "." in c and c.split(".", 1)[0] in SCENARIO_SECTIONS
             and (not c.startswith("sla.") or c in SLA_SETTINGS)]
    if (table is not None and "sla.slo_ms" in table.columns
            and table["sla.slo_ms"].nunique() > 1):
        guess.append("sla.slo_ms")
    return list(dict.fromkeys([*from_plan, *guess]))


def load_sweep(path: str | Path) -> SweepResults:
    """Read a sweep directory (``sweep.parquet``, ``sweep.json``) and/or a plan directory
    (``plan.json``)."""
    p = Path(path)
    sweep = _read_parquet(p / "sweep.parquet")
    plan = _read_json(p / "plan.json") if (p / "plan.json").is_file() else None
    doc = _read_json(p / "sweep.json") if (p / "sweep.json").is_file() else None
    if sweep is None and plan is not None:
        sweep = _read_parquet(p / "runs.parquet")  # the plan's runs, same shape
    if sweep is None and plan is None:
        raise ResultsError(f"{p}: neither sweep.parquet nor plan.json")
    cols = list(sweep.columns) if sweep is not None else []
    grid = (doc or {}).get("grid")
    return SweepResults(p, sweep, plan, sweep_params(cols, plan, sweep,
                                                     grid if isinstance(grid, Mapping) else None),
                        doc)


def load_results(path: str | Path) -> Results:
    """Load any results directory; its kind is detected from the files present."""
    kind = detect_kind(path)
    loader = {"run": load_run, "compare": load_compare, "sweep": load_sweep}[kind]
    return loader(path)  # type: ignore[operator]


def result_doc(res: Results) -> dict[str, Any]:
    """The experiment's JSON record: ``compare.json``; for a sweep/plan ``plan.json`` over
    ``sweep.json`` (plan keys win); a run has none (empty dict)."""
    if isinstance(res, CompareResults):
        return dict(res.compare)
    if isinstance(res, SweepResults):
        return {**(res.doc or {}), **(res.plan or {})}
    return {}


def plan_points(plan: Mapping[str, Any]) -> pd.DataFrame:
    """``plan.json``'s points as a table: parameters, ``feasible`` and ``mean.*``/``ci95.*``."""
    return pd.DataFrame([flatten(pt) for pt in plan.get("points") or []])
