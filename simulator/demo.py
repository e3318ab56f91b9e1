"""``make demo``: Singles' Day on the shipped defaults under three scaling policies.

Simulates the promotion night of scenarios/singles_day.toml (20:00 to 02:00, the midnight flash
peak included) under static peak provisioning, Kubernetes-style HPA, and a promotion calendar
(pre-warm for 00:00) combined with HPA; runs them in parallel, prints cost and SLA side by side
and keeps each run under results/demo/<policy>/.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

SCENARIO = Path("scenarios/singles_day.toml")
NIGHT = ["simulation.duration_s=21600"]  # 20:00 -> 02:00 on 11-10/11-11
HPA = "{ name = 'hpa', metric = 'utilization', target = 0.5 }"
POLICIES: dict[str, list[str]] = {
    "static-peak": [],
    "hpa": ["cluster.pools.cpu.nodes=2", f"policy.autoscaling={HPA}"],
    "scheduled+hpa": [
        "cluster.pools.cpu.nodes=2",
        "policy.autoscaling={ name = 'max', policies = [ { name = 'scheduled', "
        "calendar = [ { start_s = 14400, end_s = 16200, nodes = 16 } ], lead_time_s = 600 }, "
        f"{HPA} ] }}",
    ],
}
OUT = Path("results/demo")


def run_policy(name: str) -> tuple[str, dict[str, Any]]:
    """Run one policy and write its results; returns (name, summary)."""
    from simulator.api import run
    from simulator.output import write_json, write_parquet
    from simulator.scenario import load_scenario

    overrides = NIGHT + POLICIES[name]
    sc = load_scenario(SCENARIO, overrides)
    out = OUT / name
    res = run(sc, records="none")
    write_parquet(out / "timeseries.parquet", res.timeseries)
    for key, frame in res.extras.items():
        write_parquet(out / f"{key}.parquet", frame)
    write_json(out / "scenario.json", {"source": str(SCENARIO), "overrides": overrides,
                                       "scenario": sc.model_dump(mode="json")})
    write_json(out / "summary.json", res.summary)
    return name, res.summary


def main() -> None:
    console = Console()
    console.print(f"[bold]PeakSim demo[/]: {SCENARIO}, promotion night 20:00-02:00 "
                  "(midnight peak 30x the day mean), three scaling policies")
    with ProcessPoolExecutor(max_workers=2) as ex:
        results = dict(ex.map(run_policy, POLICIES))
    t = Table(title="Singles' Day night: cost (USD) and SLA by scaling policy")
    t.add_column("policy", no_wrap=True, min_width=13)
    for col in ("total", "compute", "penalty", "viol %", "p99 ms", "node-h", "max n"):
        t.add_column(col, justify="right")
    for name, s in results.items():
        c = s["cost_usd"]
        t.add_row(name, f"{c['total']:,.2f}", f"{c['compute']:,.2f}",
                  f"{c['sla_penalty']:,.2f}", f"{100 * s['sla']['violation_rate']:.2f}",
                  f"{s['latency_ms']['p99']:,.1f}", f"{s['nodes']['node_seconds'] / 3600:,.1f}",
                  f"{s['nodes']['max']}")
    console.print(t)
    console.print(f"results: {OUT}/<policy>/")
    _report(console, results)


def _report(console: Console, results: dict[str, dict[str, Any]]) -> None:
    """A comparison table of the three runs and the HTML report built from it."""
    import pandas as pd

    from analysis.report import write_report
    from analysis.results import flatten
    from simulator.output import write_parquet

    rows = [{"variant": n, "replication": 0, "seed": s["seed"], **flatten(s)}
            for n, s in results.items()]
    write_parquet(OUT / "runs.parquet", pd.DataFrame(rows))
    path = write_report(OUT, OUT / "report")
    console.print(f"report: {path}")


if __name__ == "__main__":
    main()
