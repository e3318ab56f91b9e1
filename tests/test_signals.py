"""SIGTERM stops a command and its workers, and leaves no temporary file (issue 15, items 1
and 4, part). Real processes: the CLI is started as a subprocess and signalled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w

from tests.conftest import mmc_dict

psutil = pytest.importorskip("psutil")
PEAKSIM = [sys.executable, "-c", "from simulator.cli import main; main()"]
ROOT = Path(__file__).resolve().parents[1]


def _long(tmp_path: Path) -> Path:
    """An M/M/8 run of several seconds (a few million requests)."""
    p = tmp_path / "long.toml"
    p.write_text(tomli_w.dumps(mmc_dict(lam=720.0, mean_ms=10.0, duration_s=20000,
                                        warmup_s=100)))
    return p


def _start(args: list[str], tmp_path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*PEAKSIM, *args], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})


def _wait_for(pred: object, timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while not pred():  # type: ignore[operator]
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out waiting")
        time.sleep(0.2)


def test_sigterm_stops_a_sweep_and_all_its_workers(tmp_path: Path) -> None:
    src = _long(tmp_path)
    proc = _start(["sweep", str(src), "--grid", "cluster.pools.gpu.nodes=8,9,10,11",
                   "--workers", "2", "--out", str(tmp_path / "s")], tmp_path)
    parent = psutil.Process(proc.pid)
    # the pool's workers are running simulations (a worker uses CPU)
    _wait_for(lambda: len(parent.children(recursive=True)) >= 2)
    workers = parent.children(recursive=True)
    time.sleep(3.0)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, f"workers still running after SIGTERM: {[p.pid for p in alive]}"
    assert not list((tmp_path / "s").glob("runs/*.tmp")) and not list(
        (tmp_path / "s").rglob(".*.tmp"))


def test_sigterm_during_a_run_leaves_no_partial_records(tmp_path: Path) -> None:
    src = _long(tmp_path)
    out = tmp_path / "r"
    proc = _start(["run", str(src), "--out", str(out), "--records", "all", "--quiet"],
                  tmp_path)
    # records are streamed to a temporary Parquet file as chunks finish
    _wait_for(lambda: any(out.glob(".records.parquet.*.tmp")) or proc.poll() is not None)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    assert not (out / "records.parquet").exists() and not (out / "summary.json").exists()


def test_sigkill_to_a_sweep_leaves_no_worker_running(tmp_path: Path) -> None:
    """SIGKILL runs no code in the killed process: the workers must notice by themselves."""
    src = _long(tmp_path)
    proc = _start(["sweep", str(src), "--grid", "cluster.pools.gpu.nodes=8,9,10,11",
                   "--workers", "2", "--out", str(tmp_path / "s")], tmp_path)
    parent = psutil.Process(proc.pid)
    _wait_for(lambda: len(parent.children(recursive=True)) >= 2)
    workers = parent.children(recursive=True)
    time.sleep(3.0)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    _, alive = psutil.wait_procs(workers, timeout=30)
    for p in alive:  # do not leave them behind for the next test
        p.kill()
    assert not alive, f"workers still running after SIGKILL: {[p.pid for p in alive]}"
