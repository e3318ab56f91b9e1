"""A/B speed of two source trees on the same PeakSim workloads, run back to back.

This machine's speed drifts 10-20% within minutes, so a speed change is measured as a ratio
of runs alternated between the old tree (e.g. a ``git worktree`` of the previous commit) and
this one, each run in a fresh process, timing ``run()`` only (imports and scenario loading
excluded). Prints per workload the median wall time of each tree and the ratio new / old
(< 1: the new tree is faster), with the spread of the per-pair ratios.

    git worktree add /tmp/old HEAD~1
    .venv/bin/python benchmarks/ab.py --old /tmp/old [--reps 5] [--only mmc,batched]

Workloads: ``mmc`` (bench_mmc's M/M/8, 1M requests, no batching), ``batched``
(bench_batched's dynamic batching at 20,000 QPS), ``per_node`` (power-of-two routing with
dynamic batching), ``day`` (bench_singles_day's scenario for ``--hours``, default 2).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_PRELUDE = """
import sys, time
sys.path.insert(0, {root!r})
from simulator import load_scenario, run, scenario_from_dict
"""

WORKLOADS = {
    "mmc": """
raw = {{"name": "mmc", "simulation": {{"duration_s": 1_000_000 / 7.2, "seed": 1,
       "records": "none", "timeseries_interval_s": 600}},
       "workload": {{"arrival": {{"process": "poisson", "rate_qps": 7.2}}}},
       "service": {{"time": {{"distribution": "exponential", "mean_ms": 1000}}}},
       "cluster": {{"pools": [{{"name": "gpu", "nodes": 8}}]}},
       "policy": {{"dispatch": "central", "batching": {{"name": "none"}}}},
       "sla": {{"slo_ms": 3000}}}}
sc = scenario_from_dict(raw)
""",
    "batched": """
raw = {{"name": "batched", "simulation": {{"duration_s": 100.0, "seed": 1, "records": "none",
       "timeseries_interval_s": 10}},
       "workload": {{"arrival": {{"process": "poisson", "rate_qps": 20000.0}}}},
       "service": {{"time": {{"distribution": "deterministic", "mean_ms": 2.0,
                            "per_request_ms": 0.05}}}},
       "cluster": {{"pools": [{{"name": "gpu", "nodes": 8}}]}},
       "policy": {{"dispatch": "central", "batching": {{"name": "dynamic", "max_batch": 64,
                  "max_wait_ms": 5.0}}}}, "sla": {{"slo_ms": 50}}}}
sc = scenario_from_dict(raw)
""",
    "per_node": """
raw = {{"name": "per_node", "simulation": {{"duration_s": 60.0, "seed": 1, "records": "none",
       "timeseries_interval_s": 10}},
       "workload": {{"arrival": {{"process": "poisson", "rate_qps": 4000.0}}}},
       "service": {{"time": {{"distribution": "lognormal", "mean_ms": 2.0, "cv": 0.5,
                            "per_request_ms": 0.1}}}},
       "cluster": {{"pools": [{{"name": "gpu", "nodes": 16}}]}},
       "policy": {{"dispatch": "per_node", "routing": {{"name": "power_of_two"}},
                  "batching": {{"name": "dynamic", "max_batch": 8, "max_wait_ms": 2.0}}}},
       "sla": {{"slo_ms": 50}}}}
sc = scenario_from_dict(raw)
""",
    "day": """
import tomllib
_sim = tomllib.loads(open({root!r} + "/scenarios/singles_day.toml").read())["simulation"]
if "start" in _sim:  # the calendar form: the run lasts {seconds} s from start - warmup_s
    from simulator.calendar_time import shift
    _end = shift(_sim["start"], {seconds} - _sim.get("warmup_s", 0))
    _len = [f'simulation.end="{{_end}}"']
else:  # a tree from before the calendar form
    _len = ["simulation.duration_s={seconds}"]
sc = load_scenario({root!r} + "/scenarios/singles_day.toml", [
    "workload.arrival.rate_qps=1000", *_len,
    "cluster.pools.cpu.nodes=20", "cluster.pools.cpu.min_nodes=4",
    "cluster.pools.cpu.max_nodes=400",
    "policy.autoscaling={{ name = 'hpa', metric = 'utilization', target = 0.5 }}"])
""",
}

_TIMED = """
t0 = time.perf_counter()
res = run(sc, records="none")
print(time.perf_counter() - t0, res.summary["requests"]["arrived_incl_warmup"])
"""


def time_once(tree: Path, workload: str, hours: float) -> tuple[float, int]:
    code = (_PRELUDE.format(root=str(tree))
            + WORKLOADS[workload].format(root=str(tree), seconds=hours * 3600) + _TIMED)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=tree).stdout.split()
    return float(out[0]), int(out[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", type=Path, required=True, help="the previous tree")
    ap.add_argument("--new", type=Path, default=ROOT, help="this tree (default)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--only", default="mmc,batched,per_node,day")
    ap.add_argument("--hours", type=float, default=2.0, help="simulated hours of 'day'")
    a = ap.parse_args()
    for w in a.only.split(","):
        old, new, ratios = [], [], []
        for r in range(a.reps):
            order = [("old", a.old), ("new", a.new)]
            if r % 2:
                order.reverse()
            got = {name: time_once(tree, w, a.hours) for name, tree in order}
            old.append(got["old"][0])
            new.append(got["new"][0])
            ratios.append(got["new"][0] / got["old"][0])
            n = got["new"][1]
        print(f"{w:9s} {n:>11,} req  old {statistics.median(old):7.2f} s  "
              f"new {statistics.median(new):7.2f} s  new/old {statistics.median(ratios):.3f} "
              f"(pairs {min(ratios):.3f}-{max(ratios):.3f}, {a.reps} reps)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
