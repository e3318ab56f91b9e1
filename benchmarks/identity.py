"""Result identity across engine changes: fingerprints of a fixed set of runs.

Refactors and speed work must keep results identical for a fixed seed. This runs a suite of
cases (the shipped scenarios, shortened, and small scenarios that reach every dispatch mode,
router, batcher, admission rule, degradation mode, autoscaler, spot and failure setting) and
writes one fingerprint per case: the summary (without ``wall_s``) and SHA-256 digests of the
time series, the per-pool series, the event log and the per-request records.

    python benchmarks/identity.py --save /tmp/before      # on the old tree
    python benchmarks/identity.py --check /tmp/before     # on the new tree: lists differences

``--only SUBSTRING`` runs the matching cases. A difference names the case and the first
differing summary fields.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator import run  # noqa: E402
from simulator.scenario import load_scenario, scenario_from_dict  # noqa: E402

HPA = "{ name = 'hpa', metric = 'utilization', target = 0.5 }"


def _small(**over: Any) -> dict[str, Any]:
    """A 3-class, 2-pool scenario of a few minutes (sizes, SLOs, timeouts)."""
    raw: dict[str, Any] = {
        "name": "identity",
        "simulation": {"duration_s": 240.0, "warmup_s": 20.0, "seed": 5, "records": "all",
                       "timeseries_interval_s": 5.0},
        "workload": {
            "arrival": {"process": "poisson", "rate_qps": 900.0},
            "peaks": [{"start_s": 100.0, "ramp_s": 10.0, "hold_s": 20.0, "decay_s": 30.0,
                       "multiplier": 2.5}],
            "classes": [
                {"name": "feed", "share": 0.6, "slo_ms": 60, "timeout_ms": 200,
                 "size": {"distribution": "lognormal", "mean": 40, "sigma": 0.8, "max": 256}},
                {"name": "search", "share": 0.3, "slo_ms": 40, "priority": 1,
                 "size": {"distribution": "lognormal", "mean": 20, "sigma": 0.5, "max": 128}},
                {"name": "ads", "share": 0.1, "slo_ms": 30, "timeout_ms": 100,
                 "size": {"distribution": "constant", "mean": 8}},
            ],
        },
        "service": {"time": {"distribution": "lognormal", "mean_ms": 4.0, "cv": 0.5,
                             "per_item_ms": 0.05}},
        "cluster": {"pools": [
            {"name": "a", "nodes": 3, "price_per_hour_usd": 1.0},
            {"name": "b", "nodes": 2, "price_per_hour_usd": 0.7,
             "service": {"time": {"distribution": "gamma", "mean_ms": 5.0, "cv": 0.8,
                                  "per_item_ms": 0.06}}},
        ]},
        "policy": {"dispatch": "central",
                   "batching": {"name": "dynamic", "max_batch": 8, "max_batch_items": 256,
                                "max_wait_ms": 2.0}},
        "sla": {"slo_ms": 80.0, "penalty_usd_per_violation": 0.001},
    }
    for key, value in over.items():
        node = raw
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return raw


def _elastic(**over: Any) -> dict[str, Any]:
    raw = _small(**over)
    raw["simulation"]["duration_s"] = 900.0
    raw["workload"]["arrival"]["rate_qps"] = 600.0
    raw["workload"]["peaks"] = [{"start_s": 300.0, "ramp_s": 30.0, "hold_s": 120.0,
                                 "decay_s": 120.0, "multiplier": 3.0}]
    pools = raw["cluster"]["pools"]
    pools[0].update(min_nodes=1, max_nodes=8, provisioning={"mean_s": 20.0, "cv": 0.3})
    pools[1].update(purchase="spot", nodes=2, min_nodes=1, max_nodes=6,
                    spot={"preemptions_per_hour": 20.0, "notice_s": 10.0},
                    failures={"mtbf_h": 0.05})
    raw["policy"]["autoscaling"] = {"name": "hpa", "target": 0.5}
    return raw


SCEN = ROOT / "scenarios"
# shipped scenarios in the calendar form: 1.5-h nights with the midnight peak 30 min after the
# run begins (23:30), and 1-h runs (warm-up included) from the run's beginning
CASES: dict[str, Any] = {
    "singles_day-night": (SCEN / "singles_day.toml", ['simulation.start="11-10 23:35"',
                                                      'simulation.end="11-11 01:00"',
                                                      "simulation.warmup_s=300"]),
    "singles_day-hpa": (SCEN / "singles_day.toml", ['simulation.start="11-10 23:40"',
                                                    'simulation.end="11-11 01:00"',
                                                    "cluster.pools.cpu.nodes=2",
                                                    f"policy.autoscaling={HPA}"]),
    "black_friday": (SCEN / "black_friday.toml", ['simulation.end="11-27 00:50"']),
    "steady_day": (SCEN / "steady_day.toml", ['simulation.end="11-03 20:50"']),
    "mmc_check": (SCEN / "mmc_check.toml", ["simulation.duration_s=20000"]),
    # the whole funnel over the midnight ramp (six units, a fork and its join)
    "singles_day_cascade": (SCEN / "singles_day_cascade.toml",
                            ['simulation.start="11-10 23:58"', 'simulation.end="11-11 00:03"',
                             "simulation.warmup_s=60"]),
    "central-dynamic": _small(),
    "central-none": _small(**{"policy.batching": {"name": "none"}}),
    "central-preferred": _small(**{"policy.batching": {
        "name": "dynamic", "max_batch": 8, "max_wait_ms": 3.0, "preferred_sizes": [2, 4]}}),
    "central-fastest-weighted": _small(**{"policy.pool_preference": "weighted"}),
    "central-limits": _small(**{"policy.admission": {"max_queue_length": 40,
                                                     "timeout_ms": 150}}),
    "degrade-cache": _small(**{"policy.degradation": {"enabled": True, "queue_delay_ms": 5}}),
    "per_node-rr": _small(**{"policy.dispatch": "per_node"}),
    "per_node-random": _small(**{"policy.dispatch": "per_node",
                                 "policy.routing": {"name": "random"}}),
    "per_node-jsq": _small(**{"policy.dispatch": "per_node",
                              "policy.routing": {"name": "join_shortest_queue"}}),
    "per_node-p2c": _small(**{"policy.dispatch": "per_node",
                              "policy.routing": {"name": "power_of_two", "d": 3}}),
    "per_node-low": _small(**{"policy.dispatch": "per_node",
                              "policy.routing": {"name": "least_outstanding_work"},
                              "policy.admission": {"max_queue_length": 30}}),
    "per_node-none": _small(**{"policy.dispatch": "per_node",
                               "policy.batching": {"name": "none"}}),
    "elastic-central": _elastic(),
    "elastic-per_node": _elastic(**{"policy.dispatch": "per_node"}),
    "elastic-lose": _elastic(),
    "elastic-kpa": _elastic(**{"policy.autoscaling": {"name": "kpa"}}),
    "elastic-tt": _elastic(**{"policy.autoscaling": {"name": "target_tracking"}}),
    "elastic-predictive": _elastic(**{"policy.autoscaling": {"name": "max", "policies": [
        {"name": "predictive"},
        {"name": "scheduled", "calendar": [{"start_s": 280, "end_s": 600, "nodes": 6}]}]}}),
}
PROFILE = {"profile": str(SCEN / "profiles" / "cpu-x86.json"), "variant": "fp32"}
CASES.update({
    "degrade-variant": _small(**{
        "service": PROFILE, "workload.arrival.rate_qps": 1500.0,
        "policy.degradation": {"enabled": True, "mode": "variant", "queue_delay_ms": 2,
                               "fallback_variant": "distilled"}}),
    "central-class-limits": _small(**{"policy.admission": {"max_queue_length": 60}}),
    "per_node-priorities": _small(**{"policy.dispatch": "per_node",
                                     "policy.admission": {"max_queue_length": 20}}),
})
for case in ("degrade-variant",):
    for pool in CASES[case]["cluster"]["pools"]:
        pool.pop("service", None)
CASES["central-class-limits"]["workload"]["classes"][0]["max_queue_length"] = 5
CASES["central-class-limits"]["workload"]["classes"][2].update(priority=1, max_queue_length=3)
CASES["per_node-priorities"]["workload"]["classes"][2]["max_queue_length"] = 2
CASES["elastic-lose"]["cluster"]["pools"][1]["spot"]["on_preempt"] = "lose"
CASES["elastic-lose"]["cluster"]["pools"][1]["failures"]["on_failure"] = "lose"


def _digest(df: pd.DataFrame | None) -> str:
    if df is None:
        return "none"
    h = pd.util.hash_pandas_object(df.reset_index(drop=True), index=True)
    return hashlib.sha256(h.to_numpy().tobytes() + ",".join(df.columns).encode()).hexdigest()


def _clean(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items() if k != "wall_s"}
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    return x


def fingerprint(name: str) -> dict[str, Any]:
    case = CASES[name]
    shipped = isinstance(case, tuple)
    sc = load_scenario(case[0], case[1]) if shipped else scenario_from_dict(case)
    res = run(sc, records="none" if shipped else "all")
    return {
        "summary": _clean(res.summary),
        "timeseries": _digest(res.timeseries),
        "records": _digest(res.records),
        **{k: _digest(v) for k, v in sorted(res.extras.items())},
    }


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    """Differences of ``b`` from reference ``a``; keys new in ``b`` are listed as added."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            p = f"{path}.{k}" if path else k
            if k not in a:
                out.append(f"{p}: added")
            else:
                out += _diff(a.get(k), b.get(k), p)
        return out
    return [] if a == b else [f"{path}: {a!r} -> {b!r}"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--save", type=Path)
    ap.add_argument("--check", type=Path)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    names = [n for n in CASES if args.only in n]
    bad = 0
    for name in names:
        t0 = time.perf_counter()
        fp = fingerprint(name)
        dt = time.perf_counter() - t0
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            (args.save / f"{name}.json").write_text(json.dumps(fp, indent=1, sort_keys=True))
            print(f"{name}: saved ({dt:.1f} s)")
        if args.check:
            ref = json.loads((args.check / f"{name}.json").read_text())
            d = _diff(ref, json.loads(json.dumps(fp, sort_keys=True)))
            changed = [x for x in d if not x.endswith(": added")]
            bad += bool(changed)
            verdict = "DIFFERENT" if changed else ("identical (fields added)" if d
                                                   else "identical")
            print(f"{name}: {verdict} ({dt:.1f} s)")
            for line in changed[:12]:
                print("    " + line)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
