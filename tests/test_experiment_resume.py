"""compare and plan resume like sweep, and experiment folders are never mixed (issue 15,
items 1 and 2): finished runs are kept by content in ``<out>/runs``; a stopped experiment
resumes with the same answer; a folder holding another command's results or foreign files is
refused before any run; the previous results of the same command are removed first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from simulator.executors import SerialExecutor
from simulator.experiment import compare, sweep
from simulator.planner import plan
from simulator.run_dir import RunDirError
from tests.conftest import mmc_dict
from tests.test_experiment import CountingExecutor as Counting

#: M/M/c, 20 min: about 2,000 requests a run
SC = mmc_dict(c=4, lam=2.0, mean_ms=1000.0, duration_s=1200, warmup_s=100)
VARIANTS = ["four:cluster.pools.gpu.nodes=4", "five:cluster.pools.gpu.nodes=5"]


class Stopping(SerialExecutor):
    """Serial; raises KeyboardInterrupt (Ctrl-C) before the run number ``stop_at``."""

    def __init__(self, stop_at: int) -> None:
        super().__init__()
        self.stop_at, self.done = stop_at, 0

    def imap_unordered(self, fn: Any, tasks: Any) -> Any:
        for i, t in enumerate(tasks):
            if self.done >= self.stop_at:
                raise KeyboardInterrupt
            self.done += 1
            yield i, fn(t)


def _cmp(out: Path | None, ex: Any, **kw: Any) -> Any:
    return compare(SC, VARIANTS, replications=3, out_dir=out, executor=ex, keep_series=True,
                   **kw)


def test_compare_resumes_after_an_interruption_with_the_same_answer(tmp_path: Path) -> None:
    clean = _cmp(None, SerialExecutor())
    out = tmp_path / "c"
    with pytest.raises(KeyboardInterrupt):
        _cmp(out, Stopping(4))
    assert len(list((out / "runs").glob("*[0-9a-f].parquet"))) == 4
    assert not (out / "compare.json").exists()
    ex = Counting()
    again = _cmp(out, ex)
    assert ex.count == 2  # only the runs not finished before
    pd.testing.assert_frame_equal(again.table, clean.table)
    pd.testing.assert_frame_equal(again.diffs, clean.diffs)
    pd.testing.assert_frame_equal(again.timeseries, clean.timeseries)
    ex = Counting()
    _cmp(out, ex)
    assert ex.count == 0  # a finished compare reruns from its kept runs


def _plan(out: Path | None, ex: Any) -> Any:
    return plan(SC, ["cluster.pools.gpu.nodes:2..8"], ["violation_rate<=0.2"],
                objective="cost", min_replications=2, step=2, max_replications=4,
                out_dir=out, executor=ex)


def test_plan_resumes_after_an_interruption_with_the_same_answer(tmp_path: Path) -> None:
    clean = _plan(None, Counting())
    out = tmp_path / "p"
    with pytest.raises(KeyboardInterrupt):
        _plan(out, Stopping(3))
    ex = Counting()
    again = _plan(out, ex)
    assert again.best == clean.best and again.points == clean.points
    assert ex.count == clean.simulations - 3
    ex = Counting()
    _plan(out, ex)
    assert ex.count == 0


def test_an_experiment_refuses_another_commands_folder(tmp_path: Path) -> None:
    out = tmp_path / "x"
    sweep(SC, {"cluster.pools.gpu.nodes": "4"}, 1, out_dir=out, executor=Counting())
    ex = Counting()
    with pytest.raises(RunDirError, match="results of a PeakSim sweep"):
        _cmp(out, ex)
    assert ex.count == 0  # refused before any run
    res = _cmp(out, Counting(), overwrite=True)
    assert (out / "compare.json").is_file() and not (out / "sweep.parquet").exists()
    assert json.loads((out / "compare.json").read_text())["replications"] == 3
    assert len(res.runs) == 6
    with pytest.raises(RunDirError, match="results of a PeakSim compare"):
        _plan(out, Counting())


def test_an_experiment_refuses_foreign_files_and_a_run_folder(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(RunDirError, match=r"other files .*notes\.txt"):
        _cmp(mine, Counting())
    _cmp(mine, Counting(), overwrite=True)
    assert (mine / "notes.txt").read_text() == "keep me"  # overwrite removes PeakSim's only
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text("{}")
    with pytest.raises(RunDirError, match="results of a PeakSim run"):
        sweep(SC, {"cluster.pools.gpu.nodes": "4"}, 1, out_dir=run, executor=Counting())


def test_a_rerun_removes_the_previous_results_before_running(tmp_path: Path) -> None:
    out = tmp_path / "c"
    _cmp(out, Counting())
    with pytest.raises(KeyboardInterrupt):  # a rerun with other variants, stopped early
        compare(SC, ["six:cluster.pools.gpu.nodes=6", "seven:cluster.pools.gpu.nodes=7"],
                replications=3, out_dir=out, executor=Stopping(1))
    # no compare.json of the first command beside the second command's runs
    assert not (out / "compare.json").exists() and not (out / "runs.parquet").exists()


def test_a_live_experiment_holds_its_folder(tmp_path: Path) -> None:
    out = tmp_path / "c"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".peaksim.lock").write_text(str(holder.pid))
        ex = Counting()
        with pytest.raises(RunDirError, match=f"pid {holder.pid}"):
            _cmp(out, ex)
        assert ex.count == 0
    finally:
        holder.kill()
        holder.wait()
    _cmp(out, Counting())  # the owner is gone: its lock is taken over
    assert (out / "compare.json").is_file() and not (out / ".peaksim.lock").exists()


def test_an_unwritable_folder_is_found_before_any_run(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        ex = Counting()
        with pytest.raises(RunDirError, match="not writable"):
            _plan(ro / "sub", ex)
        with pytest.raises(RunDirError, match=r"not writable|cannot create"):
            _plan(ro, ex)
        assert ex.count == 0
    finally:
        ro.chmod(0o700)


def test_a_cached_run_takes_the_asking_experiments_labels(tmp_path: Path) -> None:
    out = tmp_path / "s"
    sweep(SC, {"cluster.pools.gpu.nodes": "4,5"}, 2, out_dir=out, executor=Counting())
    ex = Counting()
    df = sweep(SC, {"cluster.pools.gpu.nodes": "5,4"}, 2, out_dir=out, executor=ex)
    assert ex.count == 0
    assert list(df["point"]) == [0, 0, 1, 1]
    assert list(df["cluster.pools.gpu.nodes"]) == [5, 5, 4, 4]
    fresh = sweep(SC, {"cluster.pools.gpu.nodes": "5,4"}, 2, executor=Counting())
    cols = ["cluster.pools.gpu.nodes", "point", "replication", "seed", "requests.arrived",
            "latency_ms.p99", "cost_usd.total"]
    pd.testing.assert_frame_equal(df[cols], fresh[cols], check_dtype=False)
