"""Benchmark: the planner's search against exhaustive enumeration, on a real capacity question.

"How many int8 nodes for the Black Friday midnight doorbuster?" on scenarios/black_friday.toml's
calendar window 11-26 23:30 to 11-27 01:00 (the warm-up taken before it), cost objective (SLA
penalties included, so cost is not monotone in the node count), violation rate <= 1%.
Both methods use the same seeds and the same sequential-replication rule; the target is the
same answer with at most half the simulations.

    .venv/bin/python benchmarks/bench_planner.py [--hi 12] [--workers 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this tree's simulator (also from a git worktree)

from simulator.planner import plan  # noqa: E402

WINDOW = ['simulation.start="11-26 23:30"', 'simulation.end="11-27 01:00"']


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lo", type=int, default=1)
    ap.add_argument("--hi", type=int, default=12)
    ap.add_argument("--variant", default="int8")
    ap.add_argument("--constraint", default="violation_rate<=0.01")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None, help="write both plans' results here")
    a = ap.parse_args()
    overrides = [*WINDOW, f"service.variant={a.variant}"]
    vary = [f"cluster.pools.cpu.nodes:{a.lo}..{a.hi}"]
    out: dict[str, dict[str, object]] = {}
    for method in ("search", "exhaustive"):
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = plan(ROOT / "scenarios/black_friday.toml", vary, [a.constraint],
                       objective="cost", method=method, seed=a.seed, overrides=overrides,
                       workers=a.workers,
                       out_dir=a.out / method if a.out is not None else None)
        wall = time.perf_counter() - t0
        pts = sorted(res.points, key=lambda p: p["cluster.pools.cpu.nodes"])
        out[method] = {"best": res.best, "simulations": res.simulations, "wall_s": wall,
                       "evaluated": [p["cluster.pools.cpu.nodes"] for p in res.points],
                       "skipped": len(res.skipped)}
        print(f"{method}: best {res.best}, {res.simulations} simulations, {wall:.0f} s wall")
        for p in pts:
            print(f"  nodes {p['cluster.pools.cpu.nodes']:>3}  runs {p['n']:>3}  "
                  f"violation {p['mean']['violation_rate']:.4%}  cost USD "
                  f"{p['mean']['cost']:.3f} [{p['ci95']['cost'][0]:.3f}, "
                  f"{p['ci95']['cost'][1]:.3f}]  {p['decision']}  ({p['phase']})")
        for s in res.skipped:
            print(f"  skipped nodes {s['cluster.pools.cpu.nodes']}: {s['reason']}")
        for w in caught:
            print(f"  warning: {w.message}")
    s, e = out["search"], out["exhaustive"]
    ratio = float(s["simulations"]) / float(e["simulations"])  # type: ignore[arg-type]
    same = s["best"] == e["best"]
    print(json.dumps({"same_answer": same, "simulation_ratio": round(ratio, 3),
                      "search": s, "exhaustive": e}, default=str))
    print(f"same answer: {same}; simulations {s['simulations']} vs {e['simulations']} "
          f"({ratio:.0%}; target <= 50%)")


if __name__ == "__main__":
    main()
