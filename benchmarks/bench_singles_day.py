"""Benchmark: scenarios/singles_day.toml at 1,000 QPS day mean for 24 simulated hours.

HPA autoscaling and dynamic batching, records off. Prints wall time, simulated requests per
wall second and peak resident memory (target: <= 10 minutes on one core, <= 2 GB). The run
lasts ``--hours`` (warm-up included) from its beginning, 11-10 19:50 (the scenario's 20:00
window less its warm-up): ``simulation.end`` is set to that beginning plus the hours.

    .venv/bin/python benchmarks/bench_singles_day.py [--rate 1000] [--hours 24]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this tree's simulator (also from a git worktree)

from simulator import load_scenario, run  # noqa: E402
from simulator.calendar_time import shift  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--hours", type=float, default=24.0)
    a = ap.parse_args()
    path = ROOT / "scenarios/singles_day.toml"
    sim = load_scenario(path).simulation
    assert sim.start is not None  # the calendar form: the window ends hours after the run begins
    end = shift(sim.start, a.hours * 3600 - sim.warmup_s)
    sc = load_scenario(path, [
        f"workload.arrival.rate_qps={a.rate}",
        f'simulation.end="{end}"',
        "cluster.pools.cpu.nodes=20", "cluster.pools.cpu.min_nodes=4",
        "cluster.pools.cpu.max_nodes=400",
        "policy.autoscaling={ name = 'hpa', metric = 'utilization', target = 0.5 }",
    ])
    t0 = time.perf_counter()
    res = run(sc, records="none")
    wall = time.perf_counter() - t0
    s = res.summary
    n = s["requests"]["arrived_incl_warmup"]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"singles_day {a.hours:g} h at {a.rate:g} QPS mean: {n:,} requests")
    print(f"  wall {wall:,.1f} s ({n / wall:,.0f} req/s), peak RSS {rss_mb:,.0f} MB")
    print(f"  p99 {s['latency_ms']['p99']:.1f} ms, violations {s['sla']['violation_rate']:.4f}, "
          f"max nodes {s['nodes']['max']}, cost USD {s['cost_usd']['total']:,.2f}")
    print("  targets: <= 600 s, <= 2048 MB")


if __name__ == "__main__":
    main()
