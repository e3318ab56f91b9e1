"""Where experiment runs execute (in-process, a local process pool, a Dask cluster), and the
one-run task they execute.

Every executor maps a picklable top-level function over a list of tasks and yields
``(index, result)`` pairs as they finish; callers order results by index, so nothing depends on
which worker ran what or when. Seeds travel inside the tasks, never from the executor.

- ``SerialExecutor``: in this process (tests, debugging, ``--workers 1``).
- ``PoolExecutor``: ``concurrent.futures.ProcessPoolExecutor`` with the *spawn* start method
  (safe with threads, same behaviour on Linux, macOS and Windows); the default.
- ``DaskExecutor``: ``dask.distributed``: ``"local"`` starts a ``LocalCluster`` of single-threaded
  worker processes; ``"tcp://host:8786"`` connects to a running scheduler. Workers need PeakSim
  installed; the input files a scenario reads (trace, profile, ...) are sent to remote workers
  with the tasks (:mod:`simulator.input_copies`), so no shared filesystem is needed.

Every worker stops when the process that started it is gone, even killed (SIGKILL); an error
raised on a worker names it (host, pid).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from simulator.input_copies import bundle
from simulator.output import flatten

Override = tuple[str, Any]
WAIT_EXCEEDS = re.compile(r"wait_exceeds:([0-9.eE+-]+)")


class RunStore(Protocol):
    """Where finished runs are kept (:class:`simulator.run_cache.RunCache`)."""

    def get(self, task: RunTask) -> dict[str, Any] | None:
        """The finished run's row, or None."""
        ...

    def put(self, task: RunTask, row: dict[str, Any]) -> None:
        """Keep a finished run."""
        ...


class Executor(Protocol):
    """Runs tasks; ``workers`` is how many run at once."""

    workers: int
    name: str

    def imap_unordered(self, fn: Callable[[Any], Any], tasks: Sequence[Any]
                       ) -> Iterator[tuple[int, Any]]:
        """Yield ``(i, fn(tasks[i]))`` for every task, in completion order."""
        ...

    def close(self) -> None:
        """Release workers (idempotent)."""
        ...


class SerialExecutor:
    """Runs every task in the calling process, in order."""

    name = "serial"

    def __init__(self) -> None:
        self.workers = 1

    def imap_unordered(self, fn: Callable[[Any], Any], tasks: Sequence[Any]
                       ) -> Iterator[tuple[int, Any]]:
        for i, t in enumerate(tasks):
            yield i, fn(t)

    def close(self) -> None:
        pass

    def __enter__(self) -> SerialExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PoolExecutor:
    """A pool of ``workers`` spawned processes (started once, reused across calls)."""

    name = "process-pool"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._pool = ProcessPoolExecutor(max_workers=self.workers,
                                         mp_context=multiprocessing.get_context("spawn"),
                                         initializer=die_with_parent, initargs=(os.getpid(),))

    def warm_up(self) -> None:
        """Start every worker process now (spawn plus imports take about a second each)."""
        list(self._pool.map(_noop, range(self.workers)))

    def imap_unordered(self, fn: Callable[[Any], Any], tasks: Sequence[Any]
                       ) -> Iterator[tuple[int, Any]]:
        futures: dict[Future[Any], int] = {self._pool.submit(on_worker, t, fn): i
                                           for i, t in enumerate(tasks)}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    yield futures[f], f.result()
        finally:
            for f in pending:
                f.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def terminate(self) -> None:
        """Stop now (interrupted: Ctrl-C, SIGTERM, an error): kill the worker processes, whose
        current runs are abandoned, instead of waiting for them to finish."""
        # the pool's process table is private, but the only handle on its workers; a worker
        # already gone is skipped
        for proc in list(getattr(self._pool, "_processes", {}).values()):
            if proc.is_alive():
                proc.terminate()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> PoolExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DaskExecutor:
    """A ``dask.distributed`` client: ``address='local'`` starts a LocalCluster of ``workers``
    single-threaded processes; otherwise ``address`` is a scheduler such as ``tcp://host:8786``."""

    name = "dask"

    def __init__(self, address: str = "local", workers: int | None = None,
                 ship_inputs: bool | None = None) -> None:
        from distributed import Client, LocalCluster

        # remote workers need not share the client's disk: send input files with the tasks
        self.ship_inputs = address != "local" if ship_inputs is None else ship_inputs

        self._cluster: Any = None
        if address == "local":
            n = max(1, workers or os.cpu_count() or 1)
            self._cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                         dashboard_address=None, silence_logs=40)
            self.client = Client(self._cluster)
            self.name = "dask-local"
        else:
            self.client = Client(address)
            self.name = f"dask {address}"
        self.client.wait_for_workers(1)
        self.workers = max(1, sum(self.client.nthreads().values()))

    def warm_up(self) -> None:
        """Nothing to do: LocalCluster workers are running when the constructor returns."""

    def imap_unordered(self, fn: Callable[[Any], Any], tasks: Sequence[Any]
                       ) -> Iterator[tuple[int, Any]]:
        from distributed import as_completed

        files: Any = {}
        if self.ship_inputs:  # once per call, broadcast: not once per task
            data = bundle(input_paths(tasks))
            files = self.client.scatter(data, broadcast=True) if data else {}
        futures = self.client.map(on_worker, list(tasks), fn=fn, files=files, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for f in as_completed(futures):
                yield index[f.key], f.result()
        finally:
            self.client.cancel([f for f in futures if not f.done()])

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def terminate(self) -> None:
        """Stop now: cancel pending work, close the client and any local cluster."""
        self.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def on_worker(task: Any, fn: Callable[[Any], Any], files: Mapping[str, bytes] | None = None
              ) -> Any:
    """``fn(task)`` in a worker process, with the input files sent along readable under the
    client's paths (:mod:`simulator.input_copies`). An error names the worker (host, pid):
    a scenario, profile or plugin error keeps its type (the command line reports it as an
    input error), anything else gets a note."""
    from simulator.input_copies import installed
    from simulator.policies.registry import PluginError, worker_name
    from simulator.profiles import ProfileError
    from simulator.scenario import ScenarioError

    try:
        with installed(files or {}):
            return fn(task)
    except (ScenarioError, ProfileError, PluginError) as exc:
        if "on " + worker_name() in str(exc):
            raise
        raise type(exc)(f"on worker {worker_name()}: {exc}") from None
    except Exception as exc:
        exc.add_note(f"raised on worker {worker_name()}")
        raise


def input_paths(tasks: Sequence[Any]) -> list[str]:
    """Every input file the scenarios of ``tasks`` read (one validation per distinct
    scenario and overrides)."""
    from simulator.provenance import input_files
    from simulator.scenario import scenario_from_dict

    seen: set[str] = set()
    out: list[str] = []
    for t in tasks:
        if not isinstance(t, RunTask):
            continue
        memo = repr((id(t.raw), t.base_dir, t.overrides))
        if memo in seen:
            continue
        seen.add(memo)
        sc = scenario_from_dict(t.raw, t.source, list(t.overrides), Path(t.base_dir))
        out += [str(f["path"]) for f in input_files(sc)]
    return list(dict.fromkeys(out))


def make_executor(workers: int | None = None, dask: str | None = None) -> Executor:
    """The executor the CLI options ask for: ``dask`` ('local' or an address) wins; else a
    process pool of ``workers`` (default: all cores); ``workers=1`` runs in-process."""
    if dask:
        return DaskExecutor(dask, workers)
    if workers == 1:
        return SerialExecutor()
    return PoolExecutor(workers)


# ----------------------------------------------------------------------------- one run
@dataclass(frozen=True)
class RunTask:
    """Everything a worker needs for one run; small and picklable."""

    raw: dict[str, Any]
    source: str
    base_dir: str
    overrides: tuple[Override, ...]
    seed: int
    labels: dict[str, Any]
    extra_metrics: tuple[str, ...] = ()
    series_column: str | None = None  # return this time-series column (warm-up detection)
    keep_series: bool = False  # return the whole time series (compare timelines)


def run_task(task: RunTask) -> dict[str, Any]:
    """Run one replication; return labels, seed, the flattened summary and extra metrics."""
    from simulator.api import run
    from simulator.scenario import scenario_from_dict

    sc = scenario_from_dict(task.raw, task.source, list(task.overrides), Path(task.base_dir))
    need_records = any(WAIT_EXCEEDS.fullmatch(m) for m in task.extra_metrics)
    res = run(sc, seed=task.seed, records="all" if need_records else "none")
    row: dict[str, Any] = {**task.labels, "seed": task.seed}
    row.update(flatten(res.summary))
    row["node_hours"] = res.summary["nodes"]["node_seconds"] / 3600.0
    gpu = [p["hardware"]["gpu_hours"] for p in (res.summary.get("pools") or {}).values()
           if p.get("hardware", {}).get("gpus_per_node")]
    if gpu:  # pools of known GPU node types: the GPU-hours they held (summed)
        row["gpu_hours"] = float(sum(gpu))
    for m in task.extra_metrics:
        match = WAIT_EXCEEDS.fullmatch(m)
        if match and res.records is not None:
            row[m] = wait_exceeds(res.records, res.summary["warmup_s"], float(match.group(1)))
    if task.series_column:
        row["_t_s"] = res.timeseries["t_s"].to_numpy().tolist()
        row["_series"] = res.timeseries[task.series_column].to_numpy().tolist()
    if task.keep_series:
        row["_timeseries"] = series_with_fleet(res.timeseries, res.extras.get("timeseries_pools"))
    return row


def series_with_fleet(ts: pd.DataFrame, pools: pd.DataFrame | None) -> pd.DataFrame:
    """A run's time series plus ``ready_nodes`` and ``desired_nodes`` summed over its pools
    (per interval, from the pool series; NaN where a pool series is absent)."""
    out = ts.copy()
    if pools is None or pools.empty:
        out["ready_nodes"] = float("nan")
        out["desired_nodes"] = float("nan")
        return out
    tot = pools.groupby("t_s", sort=True)[["ready", "desired"]].sum()
    idx = pd.Index(out["t_s"])
    out["ready_nodes"] = tot["ready"].reindex(idx).to_numpy(float)
    out["desired_nodes"] = tot["desired"].reindex(idx).to_numpy(float)
    return out


def wait_exceeds(records: pd.DataFrame, warmup_s: float, t_ms: float) -> float:
    """Fraction of requests arriving after warm-up whose queue wait exceeded ``t_ms``
    (dropped and timed-out requests count as exceeding; requests still in flight are left out)."""
    sel = records[(records["arrival_s"] >= warmup_s) & (records["outcome"] != "in_flight")]
    if sel.empty:
        return math.nan
    w = sel["queue_wait_ms"].to_numpy(dtype=float)
    return float(np.mean(~(w <= t_ms)))


class Runner:
    """Runs batches of tasks on an executor (its own unless given) with a rich progress bar.

    With a ``cache`` (a :class:`simulator.run_cache.RunCache`) finished runs are read back
    instead of run again, and every new run is stored as soon as it finishes: an experiment
    stopped at any point resumes where it stopped."""

    def __init__(self, executor: Executor | None = None, workers: int | None = None,
                 dask: str | None = None, progress: bool = False,
                 cache: RunStore | None = None) -> None:
        self._own = executor is None
        self.executor = executor or make_executor(workers, dask)
        self.progress = progress
        self.cache = cache
        self.reused = 0  # runs read back from the cache instead of run

    def run(self, tasks: Sequence[RunTask], desc: str = "runs",
            on_result: Callable[[int, dict[str, Any]], None] | None = None
            ) -> list[dict[str, Any]]:
        """Results in task order (whatever order they finished in)."""
        out: list[dict[str, Any]] = [{} for _ in tasks]
        todo = list(range(len(tasks)))
        if self.cache is not None:
            todo = []
            for i, t in enumerate(tasks):
                hit = self.cache.get(t)
                if hit is None:
                    todo.append(i)
                    continue
                out[i] = hit
                self.reused += 1
                if on_result:
                    on_result(i, hit)
            if len(todo) < len(tasks):
                desc += f" ({len(tasks) - len(todo)} done before)"
        if not todo:
            return out
        bar, task_id = _progress_bar(self.progress, desc, len(todo))
        try:
            for j, res in self.executor.imap_unordered(run_task, [tasks[i] for i in todo]):
                i = todo[j]
                if self.cache is not None:
                    self.cache.put(tasks[i], res)
                out[i] = res
                if on_result:
                    on_result(i, res)
                if bar is not None:
                    bar.advance(task_id)
        finally:
            if bar is not None:
                bar.stop()
        return out

    def close(self) -> None:
        if self._own:
            self.executor.close()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None and self._own and hasattr(self.executor, "terminate"):
            self.executor.terminate()  # interrupted: no worker keeps running
            return
        self.close()


def _progress_bar(enabled: bool, desc: str, total: int) -> tuple[Any, Any]:
    if not enabled:
        return None, None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                   console=Console(stderr=True))
    bar.start()
    return bar, bar.add_task(desc, total=total)


def die_with_parent(parent_pid: int) -> None:
    """Worker initializer: end this worker when the process that started it is gone, even
    killed with SIGKILL (no Python code of its own runs then, so it cannot stop us). On
    Linux the kernel sends SIGTERM at once (``PR_SET_PDEATHSIG``); everywhere a daemon thread
    also checks every second that the parent is still ours."""
    import ctypes
    import signal
    import sys
    import threading
    import time

    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the call
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="peaksim-parent-watch", daemon=True).start()


def _noop(x: int) -> int:
    return x
