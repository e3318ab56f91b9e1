"""Paths in a scenario (issue 15, item 3): relative paths are read from the scenario file's
folder, whatever the current directory; scenario.json records the resolved path and hash of
every input; workers without the client's disk get the input files' bytes with the task, and
a worker's error names the worker."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from click.testing import CliRunner

from simulator.cli import main
from simulator.executors import RunTask, on_worker, run_task
from simulator.input_copies import bundle, installed
from simulator.scenario import ScenarioError, load_scenario, scenario_from_dict
from tests.conftest import ROOT, mmc_dict


@pytest.fixture
def elsewhere(tmp_path: Path) -> Iterator[Path]:
    """Run the test from another directory than the repository."""
    cwd = Path.cwd()
    d = tmp_path / "cwd"
    d.mkdir()
    os.chdir(d)
    try:
        yield d
    finally:
        os.chdir(cwd)


def _trace(path: Path, n: int) -> None:
    t = np.sort(np.random.default_rng(n).uniform(0, 300, n))
    path.write_text("t\n" + "\n".join(f"{x:.6f}" for x in t) + "\n")


def _scenario_in(folder: Path, n: int = 300) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    _trace(folder / "trace.csv", n)
    d = mmc_dict(duration_s=300, warmup_s=0)
    d["workload"]["arrival"] = {"process": "trace", "trace": {"path": "trace.csv",
                                                              "column": "t"}}
    p = folder / "s.toml"
    p.write_text(tomli_w.dumps(d))
    return p


def test_relative_paths_are_read_from_the_scenario_folder(elsewhere: Path,
                                                          tmp_path: Path) -> None:
    src = _scenario_in(tmp_path / "a", 300)
    _trace(elsewhere / "trace.csv", 900)  # a file of the same name where we stand
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["run", str(src), "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "summary.json").read_text())["requests"]["arrived"] == 300


def test_shipped_scenarios_work_from_any_directory(elsewhere: Path) -> None:
    for p in sorted((ROOT / "scenarios").glob("*.toml")):
        load_scenario(p)  # raises when a profile is looked for in the current directory
        r = CliRunner().invoke(main, ["validate", str(p)])
        assert r.exit_code == 0, (p, r.output)


def test_a_missing_file_says_where_it_was_looked_for(tmp_path: Path, elsewhere: Path) -> None:
    src = _scenario_in(tmp_path / "a")
    (tmp_path / "a" / "trace.csv").rename(elsewhere / "trace.csv")
    with pytest.raises(ScenarioError) as e:
        load_scenario(src)
    msg = str(e.value)
    assert "workload.arrival.trace.path" in msg and str(tmp_path / "a") in msg
    assert "exists relative to the current directory" in msg


def test_scenario_json_records_resolved_inputs_and_reruns_anywhere(tmp_path: Path,
                                                                   elsewhere: Path) -> None:
    src = _scenario_in(tmp_path / "a")
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["run", str(src), "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    saved = json.loads((out / "scenario.json").read_text())
    trace = tmp_path / "a" / "trace.csv"
    (entry,) = saved["inputs"]
    assert entry["field"] == "workload.arrival.trace.path"
    assert Path(entry["path"]) == trace
    assert entry["sha256"] == hashlib.sha256(trace.read_bytes()).hexdigest()
    assert Path(saved["scenario"]["workload"]["arrival"]["trace"]["path"]) == trace
    again = scenario_from_dict(saved["scenario"], "scenario.json", base_dir=tmp_path / "x")
    assert again.resolve_path(again.workload.arrival.trace.path) == trace


def test_a_worker_reads_input_files_sent_with_the_task(tmp_path: Path) -> None:
    """The client's folder does not exist on the worker: the bytes sent along are read."""
    src = _scenario_in(tmp_path / "client", 300)
    files = bundle([tmp_path / "client" / "trace.csv"])
    raw = json.loads(json.dumps(load_scenario(src).model_dump(mode="json")))
    gone = tmp_path / "client"
    for f in gone.iterdir():
        f.unlink()
    gone.rmdir()
    task = RunTask(raw, str(src), str(gone), (), 1, {})
    with pytest.raises(ScenarioError, match="file not found"):
        run_task(task)
    row = on_worker(task, run_task, files)
    assert row["requests.arrived"] == 300
    with installed(files):  # a second task reuses the copy
        assert run_task(task)["requests.arrived"] == 300
    with pytest.raises(ScenarioError, match="file not found"):  # copies last one task
        run_task(task)


def test_a_worker_error_names_the_worker(tmp_path: Path) -> None:
    import socket

    task = RunTask(mmc_dict(workload={"arrival": {"process": "trace", "trace": {
        "path": "nowhere.csv", "column": "t"}}}), "s.toml", str(tmp_path), (), 1, {})
    with pytest.raises(ScenarioError) as e:
        on_worker(task, run_task)
    assert f"on worker {socket.gethostname()} (pid {os.getpid()})" in str(e.value)
    assert "nowhere.csv" in str(e.value)


def test_dask_ships_input_files(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    from simulator.executors import DaskExecutor

    src = _scenario_in(tmp_path / "a", 300)
    raw = load_scenario(src).model_dump(mode="json")
    tasks = [RunTask(raw, str(src), str(tmp_path / "a"), (), s, {}) for s in (1, 2)]
    ex = DaskExecutor("local", 1, ship_inputs=True)
    try:
        rows = dict(ex.imap_unordered(run_task, tasks))
    finally:
        ex.close()
    assert [rows[i]["requests.arrived"] for i in (0, 1)] == [300, 300]
