"""Determinism across executors: serial, local process pool and a real Dask LocalCluster give
identical per-run results (invariant 7), because seeds travel with the tasks."""

from __future__ import annotations

import pandas as pd
import pytest

from simulator.executors import DaskExecutor, PoolExecutor, SerialExecutor, make_executor
from simulator.experiment import compare, sweep
from simulator.planner import plan
from tests.conftest import mmc_dict

SCENARIO = mmc_dict(duration_s=800, warmup_s=80)
GRID = {"cluster.pools.gpu.nodes": [8, 9], "policy.routing.name": ["random", "round_robin"]}
OVERRIDES = ["policy.dispatch=per_node"]


def _summaries(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["wall_s"]).reset_index(drop=True)


def _experiments(ex: object) -> tuple[pd.DataFrame, pd.DataFrame, object]:
    sw = sweep(SCENARIO, GRID, 2, seed=3, overrides=OVERRIDES, executor=ex)  # type: ignore[arg-type]
    cmp = compare(SCENARIO, ["a", "b:cluster.pools.gpu.nodes=9"], rel_precision=0.2,
                  precision_metrics=["p99_ms"], min_replications=2, max_replications=6,
                  seed=4, executor=ex)  # type: ignore[arg-type]
    pl = plan(SCENARIO, ["cluster.pools.gpu.nodes:7..10"], ["violation_rate<=0.12"], seed=5,
              min_replications=2, step=2, max_replications=6, executor=ex)  # type: ignore[arg-type]
    return _summaries(sw), _summaries(cmp.runs), pl.best


# statistical caveats of these deliberately short runs are beside the point here
@pytest.mark.filterwarnings("ignore::simulator.experiment.ExperimentWarning")
def test_identical_results_serial_pool_dask() -> None:
    serial = _experiments(SerialExecutor())
    with PoolExecutor(2) as pool:
        pooled = _experiments(pool)
    with DaskExecutor("local", 2) as dask:
        assert dask.workers == 2
        dasked = _experiments(dask)
    for other in (pooled, dasked):
        pd.testing.assert_frame_equal(serial[0], other[0])
        pd.testing.assert_frame_equal(serial[1], other[1])
        assert serial[2] == other[2]
    # the runs differ between points and replications (the test is not vacuous)
    assert serial[0]["latency_ms.p99"].nunique() == len(serial[0])


def test_make_executor_choices() -> None:
    assert isinstance(make_executor(1), SerialExecutor)
    with make_executor(2) as ex:  # type: ignore[attr-defined]
        assert isinstance(ex, PoolExecutor) and ex.workers == 2
