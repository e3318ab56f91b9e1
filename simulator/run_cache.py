"""Finished runs of an experiment folder, keyed by content, so that any experiment resumes.

``compare``, ``sweep`` and ``plan`` with an output folder keep every finished run in
``<out>/runs/<key>.parquet`` (one row: the run's summary and metrics; a compare run's time
series beside it in ``<key>.series.parquet``). The key hashes everything the run's result
depends on:

- the scenario (raw fields) and the overrides the run gets (variant, grid point, warm-up);
- the seed;
- the SHA-256 of every input file the scenario reads (trace, profile, diurnal CSV, spot trace,
  plugin file: :func:`simulator.provenance.input_files`), so a replaced trace is run again;
- what the run must return (extra metrics, time-series column, whole time series);
- the PeakSim version.

Labels (variant name, grid point, replication number) are not part of the key: a run is the
same run whichever experiment asked for it, and its row takes the asking task's labels. A run
is a cache hit only when its row file reads back whole (and its series file, when needed); an
unreadable file (a crash mid-write of an older version, a full disk) is a miss and the run is
done again. Files are written atomically, series first, so a row on disk means a finished run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from simulator.executors import RunTask
from simulator.output import write_parquet
from simulator.run_dir import CACHE, claim_experiment

SERIES = "_timeseries"


class RunCache:
    """Content-keyed store of finished runs in ``folder`` (usually ``<out>/runs``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._inputs: dict[str, list[tuple[str, str]]] = {}

    def _input_hashes(self, task: RunTask) -> list[tuple[str, str]]:
        """(role, sha256) of every file the task's scenario reads (validated once per
        distinct scenario and overrides)."""
        from simulator.provenance import input_files
        from simulator.scenario import scenario_from_dict

        memo = json.dumps([task.raw, task.base_dir, [list(o) for o in task.overrides]],
                          sort_keys=True, default=str)
        if memo not in self._inputs:
            sc = scenario_from_dict(task.raw, task.source, list(task.overrides),
                                    Path(task.base_dir))
            self._inputs[memo] = sorted((str(i.get("role")), str(i.get("sha256")))
                                        for i in input_files(sc))
        return self._inputs[memo]

    def key(self, task: RunTask) -> str:
        """The task's file name stem: a hash of everything its result depends on."""
        import simulator

        blob = json.dumps({"scenario": task.raw, "overrides": [list(o) for o in task.overrides],
                           "seed": task.seed, "inputs": self._input_hashes(task),
                           "metrics": sorted(task.extra_metrics),
                           "series_column": task.series_column,
                           "keep_series": task.keep_series,
                           "version": simulator.__version__}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def _paths(self, task: RunTask) -> tuple[Path, Path]:
        k = self.key(task)
        return self.folder / f"{k}.parquet", self.folder / f"{k}.series.parquet"

    def get(self, task: RunTask) -> dict[str, Any] | None:
        """The finished run's row with ``task``'s labels, or None (missing or unreadable)."""
        row_file, series_file = self._paths(task)
        if not row_file.is_file():
            return None
        try:  # any unreadable file is a cache miss, never a failed resume
            df = pd.read_parquet(row_file)
            series = pd.read_parquet(series_file) if task.keep_series else None
        except Exception:
            return None
        if len(df) != 1:
            return None
        row = {k: _plain(v) for k, v in df.iloc[0].to_dict().items()}
        out: dict[str, Any] = {**task.labels, **row}
        if series is not None:
            out[SERIES] = series
        return out

    def put(self, task: RunTask, row: dict[str, Any]) -> None:
        """Store a finished run (labels left out: they belong to the asking experiment)."""
        row_file, series_file = self._paths(task)
        series = row.get(SERIES)
        if isinstance(series, pd.DataFrame):
            write_parquet(series_file, series)
        # a label equal to the row's value is left out; one the summary overwrote stays
        keep = {k: v for k, v in row.items()
                if k != SERIES and not (k in task.labels and task.labels[k] == v)}
        write_parquet(row_file, pd.DataFrame([keep]))


def _plain(v: Any) -> Any:
    """numpy scalars and arrays read back from Parquet as the Python values a fresh run
    returns (lists for list columns)."""
    if hasattr(v, "tolist"):
        return v.tolist()
    return v


@contextlib.contextmanager
def experiment_cache(out_dir: Path | None, kind: str, overwrite: bool = False
                     ) -> Iterator[RunCache | None]:
    """Hold ``out_dir`` for a ``compare``, ``sweep`` or ``plan`` (see
    :func:`simulator.run_dir.claim_experiment`) and give its run cache; None without a
    folder (nothing is kept)."""
    if out_dir is None:
        yield None
        return
    with claim_experiment(Path(out_dir), kind, overwrite) as out:
        yield RunCache(out / CACHE)
