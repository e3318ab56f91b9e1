"""Throughput of the experiment executors: 2 workers against 1, process pool and Dask.

Runs the same batch of independent M/M/c replications (each ~0.5 s of CPU) on a process pool
and on a dask.distributed LocalCluster with 1 and then 2 workers, after starting the workers
(start-up is reported separately, not timed in the throughput). Prints runs per second and
the speed-up ratios, plus the machine's load average: other work on a shared machine lowers
the ratio, so read it together with the load.

    .venv/bin/python benchmarks/bench_executors.py [--tasks 16] [--duration-s 8000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

from simulator.executors import DaskExecutor, PoolExecutor, RunTask, run_task
from simulator.experiment import Base, replication_seed


def _tasks(n: int, duration_s: float) -> list[RunTask]:
    raw: dict[str, Any] = {
        "name": "bench-mmc",
        "simulation": {"duration_s": duration_s, "warmup_s": duration_s / 10, "records": "none"},
        "workload": {"arrival": {"process": "poisson", "rate_qps": 7.2}},
        "service": {"time": {"distribution": "exponential", "mean_ms": 1000.0}},
        "cluster": {"pools": [{"name": "gpu", "nodes": 8}]},
        "sla": {"slo_ms": 3000},
    }
    base = Base(raw)
    base.validate()
    return [RunTask(raw, "<bench>", ".", (), replication_seed(1, r), {"replication": r})
            for r in range(n)]


def _throughput(make: Callable[[], Any], tasks: list[RunTask]) -> tuple[float, float, float]:
    """(start-up s, runs per s, busy workers) of one executor over ``tasks`` (workers started
    first). Busy workers = summed in-run wall time / elapsed: about the worker count when the
    executor keeps every worker busy, whatever else the machine is doing."""
    t0 = time.perf_counter()
    ex = make()
    try:
        ex.warm_up()
        list(ex.imap_unordered(run_task, tasks[: ex.workers]))  # imports and caches warm
        t1 = time.perf_counter()
        res = [r for _, r in ex.imap_unordered(run_task, tasks)]
        t2 = time.perf_counter()
    finally:
        ex.close()
    return t1 - t0, len(tasks) / (t2 - t1), sum(r["wall_s"] for r in res) / (t2 - t1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=16, help="runs per measurement")
    ap.add_argument("--duration-s", type=float, default=8000.0, help="simulated s per run")
    ap.add_argument("--repeat", type=int, default=1,
                    help="measure each configuration this many times and keep the best "
                         "(a shared machine's other work only ever slows a measurement)")
    args = ap.parse_args()
    tasks = _tasks(args.tasks, args.duration_s)
    print(f"cores: {os.cpu_count()}, load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    t = time.perf_counter()
    run_task(tasks[0])
    print(f"one run in-process: {time.perf_counter() - t:.2f} s wall")
    rows = []
    for name, make in (("process pool", PoolExecutor),
                       ("dask LocalCluster", lambda w: DaskExecutor("local", w))):
        res = {w: max((_throughput(lambda w=w, make=make: make(w), tasks)
                       for _ in range(args.repeat)), key=lambda r: r[1]) for w in (1, 2)}
        ratio = res[2][1] / res[1][1]
        rows.append((name, res, ratio))
        print(f"{name:18s} 1 worker {res[1][1]:.2f} runs/s, 2 workers {res[2][1]:.2f} runs/s "
              f"-> {ratio:.2f}x  (busy workers {res[1][2]:.2f} / {res[2][2]:.2f}; "
              f"start-up {res[1][0]:.1f} s / {res[2][0]:.1f} s)")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for name, _, ratio in rows:
        print(f"speed-up {name}: {ratio:.2f}x {'(meets 1.8x)' if ratio >= 1.8 else '(< 1.8x)'}")


if __name__ == "__main__":
    main()
