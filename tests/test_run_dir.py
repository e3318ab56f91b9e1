"""A run's output folder is never mixed, stale or shared (issue 15, item 1, part)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomli_w
from click.testing import CliRunner

from simulator.cli import main
from simulator.run_dir import LOCK
from tests.conftest import mmc_dict


def _toml(tmp_path: Path) -> Path:
    p = tmp_path / "s.toml"
    p.write_text(tomli_w.dumps(mmc_dict(duration_s=300, warmup_s=30)))
    return p


def _run(*args: str) -> object:
    return CliRunner().invoke(main, ["run", *args, "--quiet"])


def test_a_second_run_does_not_leave_the_first_runs_records(tmp_path: Path) -> None:
    src, out = _toml(tmp_path), tmp_path / "out"
    r = _run(str(src), "--out", str(out), "--records", "all")
    assert r.exit_code == 0 and (out / "records.parquet").is_file()
    r = _run(str(src), "--out", str(out), "--records", "none")  # another command: refused
    assert r.exit_code == 2 and "another run" in r.output
    assert (out / "records.parquet").is_file()  # untouched
    r = _run(str(src), "--out", str(out), "--records", "none", "--overwrite")
    assert r.exit_code == 0, r.output
    assert not (out / "records.parquet").exists()  # the first run's records are gone
    assert not (out / LOCK).exists()


def test_the_same_command_may_run_again(tmp_path: Path) -> None:
    src, out = _toml(tmp_path), tmp_path / "out"
    for _ in range(2):
        r = _run(str(src), "--out", str(out), "--seed", "3")
        assert r.exit_code == 0, r.output


def test_foreign_files_are_kept_and_refused(tmp_path: Path) -> None:
    src, out = _toml(tmp_path), tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    r = _run(str(src), "--out", str(out))
    assert r.exit_code == 2 and "notes.txt" in r.output
    r = _run(str(src), "--out", str(out), "--overwrite")
    assert r.exit_code == 0 and (out / "notes.txt").read_text() == "mine"


def test_a_live_run_holds_the_folder(tmp_path: Path) -> None:
    src, out = _toml(tmp_path), tmp_path / "out"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK).write_text(str(other.pid))
        r = _run(str(src), "--out", str(out))
        assert r.exit_code == 2 and f"pid {other.pid}" in r.output
        assert not (out / "summary.json").exists()
    finally:
        other.kill()
        other.wait()
    r = _run(str(src), "--out", str(out))  # its owner is gone: the stale lock is taken over
    assert r.exit_code == 0, r.output


def test_an_unusable_out_is_refused_before_simulating(tmp_path: Path) -> None:
    src = _toml(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = _run(str(src), "--out", str(blocker / "sub"))
    assert r.exit_code == 2 and "cannot create" in r.output
    assert not list(tmp_path.rglob("summary.json"))  # refused before any simulation
