"""The public Python API: run a scenario and get its summary, time series and records."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from simulator.preflight import preflight
from simulator.scenario import Scenario, load_scenario, scenario_from_dict
from simulator.summary import build_summary


@dataclass
class RunResult:
    """What one run produced.

    summary: the figures of ``summary.json``; timeseries: one row per interval; records:
    per-request rows when kept in memory (None when written to Parquet or disabled).
    """

    scenario: Scenario
    summary: dict[str, Any]
    timeseries: pd.DataFrame
    records: pd.DataFrame | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def run(
    scenario: Scenario | dict[str, Any] | str | Path,
    *,
    seed: int | None = None,
    overrides: list[str] | None = None,
    records: str | None = None,
    records_path: Path | None = None,
) -> RunResult:
    """Run one simulation.

    ``scenario`` is a Scenario, a raw dict or a TOML path; ``overrides`` are ``KEY=VALUE``
    strings as for ``--set``; ``records`` overrides ``simulation.records``; with
    ``records_path`` records stream to that Parquet file instead of memory.
    """
    if isinstance(scenario, (str, Path)):
        sc = load_scenario(scenario, overrides or None)
    elif isinstance(scenario, dict):
        from simulator.scenario import parse_overrides

        sc = scenario_from_dict(scenario, overrides=parse_overrides(overrides or []))
    else:
        sc = scenario
        if overrides:
            from simulator.scenario import parse_overrides

            sc = scenario_from_dict(sc.model_dump(), sc.source, parse_overrides(overrides),
                                    sc._base_dir)
    # checked and assembled as `peaksim validate` checks it, with this call's records
    # (kept in memory without records_path): a ScenarioError, never a failure mid-build
    sim = preflight(sc, seed=seed, records=records, records_path=records_path)
    rec = sim.run()
    if sc.stages is not None:  # a cascade: end-to-end summary, each stage's series
        from simulator.cascade.summary import build_cascade_summary, cascade_frames

        frames = cascade_frames(rec)
        if rec.records is not None and records_path is not None:  # kept, then written once
            from simulator.output import write_parquet

            write_parquet(Path(records_path), rec.records)
        return RunResult(sc, build_cascade_summary(rec), frames.pop("timeseries"),
                         rec.records if records_path is None else None, frames)
    extras = {"timeseries_pools": rec.pool_series, "events": rec.events}
    return RunResult(sc, build_summary(rec), rec.timeseries, rec.records, extras)
