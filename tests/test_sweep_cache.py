"""Sweep results are keyed by content (issue 15, item 2, part): a changed input file, new
metrics or a truncated cached run are run again, never served stale or crashing a resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from simulator.experiment import sweep
from tests.conftest import mmc_dict
from tests.test_experiment import CountingExecutor as Counting


def _trace(path: Path, n: int) -> None:
    t = np.sort(np.random.default_rng(n).uniform(0, 600, n))
    path.write_text("t\n" + "\n".join(f"{x:.6f}" for x in t) + "\n")


def _scenario(tmp_path: Path) -> dict[str, Any]:
    _trace(tmp_path / "trace.csv", 700)
    d = mmc_dict(duration_s=600, warmup_s=0)
    d["workload"]["arrival"] = {"process": "trace", "trace": {
        "path": str(tmp_path / "trace.csv"), "column": "t"}}
    return d


def test_a_replaced_trace_is_run_again(tmp_path: Path) -> None:
    d, out = _scenario(tmp_path), tmp_path / "sw"
    first = sweep(d, {"cluster.pools.gpu.nodes": "8"}, 1, out_dir=out, executor=Counting())
    assert int(first["requests.arrived"].iloc[0]) == 700
    _trace(tmp_path / "trace.csv", 7000)  # same file name, new content
    ex = Counting()
    second = sweep(d, {"cluster.pools.gpu.nodes": "8"}, 1, out_dir=out, executor=ex)
    assert ex.count == 1 and int(second["requests.arrived"].iloc[0]) == 7000
    ex = Counting()
    sweep(d, {"cluster.pools.gpu.nodes": "8"}, 1, out_dir=out, executor=ex)
    assert ex.count == 0  # unchanged inputs: served from the cache


def test_new_metrics_are_computed(tmp_path: Path) -> None:
    d, out = _scenario(tmp_path), tmp_path / "sw"
    sweep(d, {"cluster.pools.gpu.nodes": "8"}, 1, out_dir=out, executor=Counting())
    df = sweep(d, {"cluster.pools.gpu.nodes": "8"}, 1, out_dir=out, executor=Counting(),
               extra_metrics=["wait_exceeds:10"])
    assert "wait_exceeds:10" in df.columns and df["wait_exceeds:10"].notna().all()


def test_a_truncated_cached_run_is_run_again(tmp_path: Path) -> None:
    d, out = _scenario(tmp_path), tmp_path / "sw"
    sweep(d, {"cluster.pools.gpu.nodes": "8,9"}, 1, out_dir=out, executor=Counting())
    victim = sorted((out / "runs").glob("*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[:40])  # a crash mid-write of an older version
    ex = Counting()
    df = sweep(d, {"cluster.pools.gpu.nodes": "8,9"}, 1, out_dir=out, executor=ex)
    assert ex.count == 1 and len(df) == 2
