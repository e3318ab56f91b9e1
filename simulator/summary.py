"""Build ``summary.json`` from a finished run's :class:`RunRecord`, and print it as a table."""

from __future__ import annotations

import math
from typing import Any

from simulator import cost
from simulator.engine.record import RunRecord
from simulator.engine.recorder import latency_summary

SECONDS_PER_MONTH = 730.0 * 3600.0


def build_summary(run: RunRecord) -> dict[str, Any]:
    """Every figure of a run, counting requests that arrive in [warmup_s, duration_s)."""
    sc = run.scenario
    tot = run.total
    window = run.duration_s - run.warmup_s
    pools: dict[str, Any] = {}
    compute = energy = storage = 0.0
    node_seconds_total = busy_total = prov_total = 0.0
    for p in run.pools:
        b, ns, prov = p.busy_s, p.billed_s, p.provisioned_s
        c = cost.compute_usd(ns, p.price_per_hour_usd)
        kwh = cost.energy_kwh(prov, b, p.power_idle_w, p.power_busy_w)
        e = cost.energy_usd(kwh, sc.cost.electricity_usd_per_kwh, sc.cost.pue)
        s = cost.storage_usd(p.model_gb, ns / window, 0.0, sc.cost.storage_usd_per_gb_month,
                             window / SECONDS_PER_MONTH)
        compute += c
        energy += e
        storage += s
        node_seconds_total += ns
        prov_total += prov
        busy_total += b
        pools[p.name] = {
            "purchase": p.purchase,
            "nodes": {"mean": ns / window, "max": p.max_billed, "node_seconds": ns,
                      "final_desired": p.final_desired},
            "utilization": b / prov if prov else math.nan,
            "provisioned_node_seconds": prov,
            "batches": p.batches, "served": p.served,
            "energy_kwh": kwh,
            "scale_ups": p.scale_ups, "scale_downs": p.scale_downs,
            "preemptions": p.preemptions, "failures": p.failures,
            "requests_lost": p.lost_requests, "requests_requeued": p.requeued_requests,
            "cost_usd": {"compute": c, "energy": e, "storage": s, "total": c + e + s},
        }
    storage += cost.storage_usd(0.0, 0.0, sc.cost.data_gb, sc.cost.storage_usd_per_gb_month,
                                window / SECONDS_PER_MONTH)
    human = cost.human_usd(sc.cost.engineers, sc.cost.engineer_monthly_usd,
                           sc.cost.effort_hours, sc.cost.hours_per_month)
    penalty = (tot.violations * sc.sla.penalty_usd_per_violation
               + tot.degraded * sc.sla.penalty_usd_per_degraded)
    q_loss = run.quality_loss_per_degraded
    breakdown = cost.CostBreakdown(compute, energy, storage, human, penalty)
    utilization = busy_total / prov_total if prov_total else math.nan
    rejected = tot.dropped
    final_q = max(run.final_queue_length, tot.in_flight)
    n_nodes = sum(p.max_billed for p in run.pools)
    overloaded = bool(rejected > 0 or (utilization > 0.97 and final_q > 10 * n_nodes))
    reason = ""
    if rejected > 0:
        reason = f"{rejected} requests rejected by a full queue (admission.max_queue_length)"
    elif overloaded:
        reason = f"utilisation {utilization:.3f} and {final_q:.0f} requests queued at the end"
    return {
        "scenario": sc.name,
        "seed": run.seed,
        "sim_duration_s": run.duration_s,
        "warmup_s": run.warmup_s,
        "measurement_window_s": window,
        "wall_s": run.wall_s,
        "requests": {
            "arrived": tot.arrived, "completed": tot.completed, "dropped": tot.dropped,
            "timed_out": tot.timed_out, "in_flight": tot.in_flight,
            "arrived_incl_warmup": run.arrivals_incl_warmup,
        },
        "latency_ms": latency_summary(tot.latency),
        "queue_wait_ms": {k: v for k, v in latency_summary(tot.wait).items() if k != "max"},
        # slo_ms: the default SLO (sla.slo_ms); each class's own is classes.<name>.slo_ms
        "sla": {"slo_ms": sc.sla.slo_ms, **tot.sla_summary()},
        "utilization": utilization,
        "nodes": {"mean": node_seconds_total / window, "max": n_nodes,
                  "node_seconds": node_seconds_total},
        "cost_usd": breakdown.as_dict(),
        "degradation": {
            "enabled": sc.policy.degradation.enabled, "mode": sc.policy.degradation.mode,
            "degraded": tot.degraded,
            "degraded_rate": tot.degraded / tot.arrived if tot.arrived else math.nan,
            "auc_loss_per_degraded": q_loss,
            "mean_auc_loss": (tot.degraded * q_loss / tot.arrived) if tot.arrived else math.nan,
        },
        "overloaded": overloaded,
        "overload_reason": reason,
        "batches": {"count": sum(p.batches for p in run.pools),
                    "mean_size": (sum(p.served for p in run.pools)
                                  / max(sum(p.batches for p in run.pools), 1)),
                    "max_size": run.max_batch_seen, "limit": run.batch_limit},
        "pools": pools,
        "queues": {
            "per_node": run.queue.per_node, "limit": run.queue.limit, "peak": run.queue.peak,
            "rejected": run.queue.rejected,
            "classes": {name: {"limit": lim,
                               "peak": None if run.queue.class_peak is None
                               else run.queue.class_peak[i]}
                        for i, (name, lim) in enumerate(zip(run.class_names,
                                                            run.queue.class_limit,
                                                            strict=True))},
        },
        "classes": {name: st.summary(slo)
                    for name, st, slo in zip(run.class_names, run.classes, run.slo_ms,
                                             strict=True)},
        "records": run.records_mode,
    }


def format_summary(s: dict[str, Any]) -> Any:
    """A rich renderable table of the headline figures."""
    from rich.table import Table

    t = Table(title=f"PeakSim: {s['scenario']} (seed {s['seed']})", show_header=True)
    t.add_column("metric")
    t.add_column("value", justify="right")
    r = s["requests"]
    lat = s["latency_ms"]
    t.add_row("simulated / wall time", f"{s['sim_duration_s']:,.0f} s / {s['wall_s']:.1f} s")
    t.add_row("requests arrived (after warm-up)", f"{r['arrived']:,}")
    t.add_row("completed / dropped / timed out / in flight",
              f"{r['completed']:,} / {r['dropped']:,} / {r['timed_out']:,} / {r['in_flight']:,}")
    t.add_row("latency mean / p50 / p95 / p99 (ms)",
              " / ".join(_ms(lat[k]) for k in ("mean", "p50", "p95", "p99")))
    t.add_row("queue wait mean / p99 (ms)",
              f"{_ms(s['queue_wait_ms']['mean'])} / {_ms(s['queue_wait_ms']['p99'])}")
    sla = s["sla"]
    classes = s.get("classes", {})
    slos = {float(c["slo_ms"]) for c in classes.values()} or {float(sla["slo_ms"])}
    late = sla.get("in_flight_violations", 0)
    what = (f"> {_num(slos.pop())} ms" if len(slos) == 1 else "per-class SLOs")
    what += ", drops, timeouts" + (", in flight past SLO" if late else "")
    t.add_row(f"SLA violations ({what})", f"{sla['violations']:,} ({_pct(sla['violation_rate'])})")
    ww = sla.get("worst_window")
    if ww is not None:
        t.add_row(f"  worst {_num(ww['window_s'])} s window", _window(ww))
    if len(classes) > 1:
        for name, c in classes.items():
            cs = c["sla"]
            value = f"{cs['violations']:,} ({_pct(cs['violation_rate'])})"
            if cs.get("worst_window") is not None:
                value += f"; worst window {_pct(cs['worst_window']['violation_rate'])}"
            t.add_row(f"  class {name} (SLO {_num(c['slo_ms'])} ms)", value)
    t.add_row("utilisation", f"{100 * s['utilization']:.1f}%")
    t.add_row("nodes mean / max", f"{s['nodes']['mean']:.1f} / {s['nodes']['max']}")
    c = s["cost_usd"]
    t.add_row("cost total (USD)", f"{c['total']:,.2f}")
    t.add_row("  compute / energy / storage", f"{c['compute']:,.2f} / {c['energy']:,.2f} / "
              f"{c['storage']:,.2f}")
    t.add_row("  human / SLA penalty", f"{c['human']:,.2f} / {c['sla_penalty']:,.2f}")
    if s["overloaded"]:
        t.add_row("[bold red]OVERLOADED[/]", s["overload_reason"])
    return t


def _ms(v: float) -> str:
    return "n/a" if v != v else f"{v:,.2f}"


def _num(v: float) -> str:
    """A plain number without a unit (the label carries the unit, once)."""
    v = float(v)
    return f"{v:,.0f}" if v.is_integer() else f"{v:,.6g}"


def _pct(rate: float) -> str:
    return "n/a" if rate != rate else f"{100 * rate:.3f}%"


def _window(ww: dict[str, Any]) -> str:
    if ww["violation_rate"] != ww["violation_rate"]:
        return "n/a"
    return (f"{_pct(ww['violation_rate'])} ({ww['violations']:,} of {ww['requests']:,}, "
            f"from {_num(ww['start_s'])} s)")
