"""Benchmark: per-node power-of-two routing, cost per request at 8 vs 128 nodes.

Same per-node load (rho = 0.7) in both; prints wall microseconds per request and the ratio
(target: 128 nodes <= 1.5x the cost of 8 nodes per request).

    .venv/bin/python benchmarks/bench_routing_scale.py [--requests 400000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this tree's simulator (also from a git worktree)

from simulator import run, scenario_from_dict  # noqa: E402


def cost_per_request(nodes: int, n_requests: int, router: str) -> float:
    lam = 0.7 * nodes / 0.1  # mean service 100 ms
    raw = {
        "name": "routing-bench",
        "simulation": {"duration_s": n_requests / lam, "warmup_s": 0, "seed": 1,
                       "records": "none", "timeseries_interval_s": 60},
        "workload": {"arrival": {"process": "poisson", "rate_qps": lam}},
        "service": {"time": {"distribution": "exponential", "mean_ms": 100}},
        "cluster": {"pools": [{"name": "gpu", "nodes": nodes}]},
        "policy": {"dispatch": "per_node", "routing": {"name": router}},
        "sla": {"slo_ms": 500},
    }
    t0 = time.perf_counter()
    s = run(scenario_from_dict(raw)).summary
    return (time.perf_counter() - t0) / s["requests"]["arrived"] * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=400_000)
    a = ap.parse_args()
    for router in ("power_of_two", "round_robin", "join_shortest_queue"):
        small = cost_per_request(8, a.requests, router)
        big = cost_per_request(128, a.requests, router)
        print(f"  {router:20s}: 8 nodes {small:6.2f} us/req, 128 nodes {big:6.2f} us/req, "
              f"ratio {big / small:.2f}x")
    print("  target: power_of_two ratio <= 1.5x")


if __name__ == "__main__":
    main()
