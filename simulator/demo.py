"""``make demo``: the Singles' Day midnight peak under three scaling policies, replicated.

Compares, on scenarios/singles_day.toml's calendar window 11-10 23:00 to 11-11 01:30 (the
10-minute warm-up taken before it, the 30x midnight flash peak inside it): static peak
provisioning, Kubernetes-style HPA, and a promotion calendar (pre-warm for 00:00) combined with
HPA. Three replications per policy with common random numbers, 95% confidence intervals and
paired differences; writes the comparison (runs, per-run time series, provenance) and its HTML
report, whose timeline shows load, nodes, p99 against each class SLO and violations per policy
over the night, on one clock.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

SCENARIO = Path("scenarios/singles_day.toml")
WINDOW = ['simulation.start="11-10 23:00"', 'simulation.end="11-11 01:30"']
HPA = "{ name = 'hpa', metric = 'utilization', target = 0.5 }"
# the run begins at 22:50 (start - warmup_s); 00:00 is 4,200 s later, 00:30 is 6,000 s later
POLICIES: dict[str, str] = {
    "static-peak": "",
    "hpa": f"cluster.pools.cpu.nodes=2,policy.autoscaling={HPA}",
    "scheduled+hpa": (
        "cluster.pools.cpu.nodes=2,policy.autoscaling={ name = 'max', policies = [ "
        "{ name = 'scheduled', calendar = [ { start_s = 4200, end_s = 6000, nodes = 16 } ], "
        f"lead_time_s = 600 }}, {HPA} ] }}"
    ),
}
REPLICATIONS = 3
OUT = Path("results/demo")


def run_demo(out: Path = OUT, replications: int = REPLICATIONS,
             workers: int | None = None) -> Any:
    """Run the comparison into ``out`` (replacing what was there only once it is complete)."""
    from simulator.experiment import compare

    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = compare(SCENARIO, [f"{k}:{v}" for k, v in POLICIES.items()],
                      replications=replications, overrides=WINDOW, workers=workers or 2,
                      progress=True, out_dir=tmp)
    from analysis.report import write_report

    old = out.with_name(f".{out.name}.{os.getpid()}.old")
    if out.exists():
        out.rename(old)
    tmp.rename(out)  # the previous demo's files never mix with this one's
    shutil.rmtree(old, ignore_errors=True)
    write_report(out, out / "report")
    return res, [str(w.message) for w in caught]


def main() -> None:
    import sys

    console = Console(width=None if sys.stdout.isatty() else 110)  # CI logs: no wrapping
    console.print(f"[bold]PeakSim demo[/]: {SCENARIO}, 11-10 23:00 to 11-11 01:30 (midnight "
                  f"peak 30x the day mean), three scaling policies x {REPLICATIONS} "
                  "replications")
    res, warns = run_demo()
    t = Table(title="Singles' Day 23:00-01:30: mean ± 95% CI half-width over "
                    f"{res.meta['replications']} replications (USD per 2.5 h window)")
    t.add_column("policy", no_wrap=True)
    for col in ("total USD", "violations", "ads (40 ms)", "p99 ms", "node-h", "max n"):
        t.add_column(col, justify="right")
    runs = res.runs
    from analysis import stats

    def ci(v: str, col: str, pct: bool = False, digits: int = 2) -> str:
        c = stats.t_ci(runs.loc[runs["variant"] == v, col])
        f = (lambda x: f"{100 * x:.2f}%") if pct else (lambda x: f"{x:,.{digits}f}")
        return f"{f(c.mean)} ± {f(c.half_width)}"

    for v in POLICIES:
        mine = runs[runs["variant"] == v]
        t.add_row(v, ci(v, "cost_usd.total"), ci(v, "sla.violation_rate", pct=True),
                  ci(v, "classes.ads.sla.violation_rate", pct=True),
                  ci(v, "latency_ms.p99", digits=1), ci(v, "node_hours", digits=1),
                  f"{int(mine['nodes.max'].max())}")
    console.print(t)
    d = res.diffs
    for _, r in d[d["metric"] == "cost"].iterrows():
        console.print(f"{r['variant']} vs {r['baseline']}: cost {r['mean']:+,.2f} USD "
                      f"[{r['lo']:+,.2f}, {r['hi']:+,.2f}] ({r['verdict']})", highlight=False)
    for w in warns:
        console.print(f"warning: {w}", markup=False, highlight=False)
    console.print(f"results: {OUT}/ (compare.json, runs.parquet, timeseries.parquet)",
                  markup=False, highlight=False)
    console.print(f"report: {OUT / 'report' / 'report.html'}", markup=False, highlight=False)


if __name__ == "__main__":
    main()
