"""Benchmark: central dispatch with dynamic batching at high load vs a plain heapq event loop.

PeakSim (SimPy clock, events per batch and per node state change) against a minimal heapq
simulation of the same system written for speed (one heap event per batch), in one process.
Target: >= 1,000,000 simulated requests per wall second.

    .venv/bin/python benchmarks/bench_batched.py [--seconds 100]
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this tree's simulator (also from a git worktree)

from simulator import run, scenario_from_dict  # noqa: E402

RATE, NODES, MAX_BATCH, WAIT_S, BASE_S, PER_REQ_S = 20000.0, 8, 64, 0.005, 0.002, 0.00005


def heapq_loop(seconds: float, seed: int = 1) -> int:
    """Minimal batched central queue: free nodes take up to MAX_BATCH once full or waited."""
    rng = np.random.default_rng(seed)
    arr = np.sort(rng.random(rng.poisson(RATE * seconds)) * seconds).tolist()
    n = len(arr)
    free = NODES
    heap: list[tuple[float, int]] = []
    head = 0
    now = 0.0
    served = 0
    while head < n or heap:
        # dispatch while a node is free and a batch is ready
        while free and head < n:
            full_t = arr[min(head + MAX_BATCH - 1, n - 1)]
            ready_t = min(arr[head] + WAIT_S, full_t)
            if ready_t > now:
                break
            k = min(MAX_BATCH, bisect.bisect_right(arr, now) - head)
            head += k
            served += k
            free -= 1
            heapq.heappush(heap, (now + BASE_S + PER_REQ_S * k, 1))
        nxt = heap[0][0] if heap else np.inf
        if free and head < n:
            nxt = min(nxt, min(arr[head] + WAIT_S, arr[min(head + MAX_BATCH - 1, n - 1)]))
        if nxt == np.inf:
            break
        now = nxt
        while heap and heap[0][0] <= now:
            heapq.heappop(heap)
            free += 1
    return served


def peaksim(seconds: float) -> int:
    raw = {
        "name": "batched-bench",
        "simulation": {"duration_s": seconds, "warmup_s": 0, "seed": 1, "records": "none",
                       "timeseries_interval_s": 10},
        "workload": {"arrival": {"process": "poisson", "rate_qps": RATE}},
        "service": {"time": {"distribution": "deterministic", "mean_ms": BASE_S * 1000,
                             "per_request_ms": PER_REQ_S * 1000}},
        "cluster": {"pools": [{"name": "gpu", "nodes": NODES}]},
        "policy": {"dispatch": "central",
                   "batching": {"name": "dynamic", "max_batch": MAX_BATCH,
                                "max_wait_ms": WAIT_S * 1000}},
        "sla": {"slo_ms": 50},
    }
    return int(run(scenario_from_dict(raw)).summary["requests"]["completed"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=100.0)
    a = ap.parse_args()
    rates = {}
    for name, fn in (("heapq loop", heapq_loop), ("PeakSim", peaksim)):
        t0 = time.perf_counter()
        served = fn(a.seconds)
        rates[name] = served / (time.perf_counter() - t0)
        print(f"  {name:10s}: {rates[name]:12,.0f} simulated req/s ({served:,} requests)")
    print(f"  PeakSim / heapq = {rates['PeakSim'] / rates['heapq loop']:.2f}x; "
          "target >= 1,000,000 req/s")


if __name__ == "__main__":
    main()
