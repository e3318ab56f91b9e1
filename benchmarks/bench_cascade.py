"""Benchmark: the shipped cascade (scenarios/singles_day_cascade.toml) against the single-stage
Singles' Day (scenarios/singles_day.toml), back to back, same window and traffic.

Both run ``--hours`` from the day's beginning (11-10 19:50, midnight peak included when
``--hours`` > 4.2) at ``--rate`` QPS day mean (the single-stage benchmark's 1,000 by default),
every pool scaled by ``rate / 50`` (the scenarios are sized for 50 QPS) and autoscaled by HPA
(utilisation target 0.5, between 1 node and twice that), records off, each in a fresh process
(peak memory is its own). Prints wall time per request for each, their ratio
(target: the cascade at most 2.5x), batches per request and wall time per batch for each
(each batch is one service event; the cascade's units are single-stage simulations, so the
ratio follows the ratio of batches per request) and each run's peak resident memory (the
cascade's must follow the requests in flight, not the day: compare ``--hours 2`` with
``--hours 6``).

    .venv/bin/python benchmarks/bench_cascade.py [--rate 1000] [--hours 5] [--reps 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
from simulator import load_scenario, run
from simulator.calendar_time import shift
path, rate, hours = {path!r}, {rate!r}, {hours!r}
sc0 = load_scenario(path)
scale = rate / sc0.workload.arrival.rate_qps
end = shift(sc0.simulation.start, hours * 3600 - sc0.simulation.warmup_s)
sets = [f"workload.arrival.rate_qps={{rate}}", f'simulation.end="{{end}}"',
        "policy.autoscaling={{ name = 'hpa', metric = 'utilization', target = 0.5 }}"]
for p in sc0.cluster.pools:  # peak-sized pools x scale, scaled by HPA between 1 and 2x
    n = max(1, round(p.nodes * scale))
    sets += [f"cluster.pools.{{p.name}}.nodes={{n}}",
             f"cluster.pools.{{p.name}}.min_nodes=1",
             f"cluster.pools.{{p.name}}.max_nodes={{2 * n}}"]
sc = load_scenario(path, sets)
t0 = time.perf_counter()
res = run(sc, records="none")
wall = time.perf_counter() - t0
s = res.summary
print(json.dumps({{"wall_s": wall, "requests": s["requests"]["arrived_incl_warmup"],
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "p99_ms": s["latency_ms"]["p99"], "violation_rate": s["sla"]["violation_rate"],
                  "cost_usd": s["cost_usd"]["total"], "arrived": s["requests"]["arrived"],
                  "batches": s["batches"]["count"],
                  "units": {{k: u["batches"]["count"] for k, u in s.get("units", {{}}).items()}}}}))
"""


def measure(name: str, rate: float, hours: float) -> dict[str, float]:
    code = CHILD.format(root=str(ROOT), path=str(ROOT / "scenarios" / f"{name}.toml"),
                        rate=rate, hours=hours)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--hours", type=float, default=5.0)
    ap.add_argument("--reps", type=int, default=1)
    a = ap.parse_args()
    ratios = []
    for r in range(a.reps):
        single = measure("singles_day", a.rate, a.hours)
        casc = measure("singles_day_cascade", a.rate, a.hours)
        us_single = single["wall_s"] / single["requests"] * 1e6
        us_casc = casc["wall_s"] / casc["requests"] * 1e6
        ratios.append(us_casc / us_single)
        for label, m, us in (("single-stage", single, us_single), ("cascade", casc, us_casc)):
            print(f"rep {r + 1} {label:12s} {m['requests']:>12,} requests  {m['wall_s']:8.1f} s "
                  f"wall  {us:6.2f} us/request  peak RSS {m['rss_mb']:7.0f} MB  p99 "
                  f"{m['p99_ms']:.1f} ms  violations {m['violation_rate']:.5f}")
        print(f"rep {r + 1} cascade / single-stage cost per request: {ratios[-1]:.2f}x "
              "(target <= 2.5x)")
        # where the ratio comes from: batches (one service event each) per request, and the
        # wall time per batch; the cascade's units run the single-stage engine
        bpr = {k: m["batches"] / max(m["arrived"], 1) for k, m in (("single", single),
                                                                     ("cascade", casc))}
        us_b = {k: m["wall_s"] / max(m["batches"], 1) * 1e6 for k, m in (("single", single),
                                                                         ("cascade", casc))}
        print(f"rep {r + 1} batches per request: single-stage {bpr['single']:.3f}, cascade "
              f"{bpr['cascade']:.3f} ({bpr['cascade'] / bpr['single']:.1f}x); wall per batch: "
              f"single-stage {us_b['single']:.1f} us, cascade {us_b['cascade']:.1f} us")
        print("   per unit, batches per request: " + ", ".join(
            f"{k.split('/', 1)[-1]} {v / max(casc['arrived'], 1):.3f}"
            for k, v in casc["units"].items()))
    if a.reps > 1:
        print(f"ratios: {', '.join(f'{x:.2f}' for x in ratios)}")


if __name__ == "__main__":
    main()
