"""Build ``summary.json`` from a finished run's :class:`RunRecord`, and print it as a table."""

from __future__ import annotations

import math
from typing import Any

from simulator import cost
from simulator.borrowing import borrow_cost_usd
from simulator.engine.record import RunRecord
from simulator.engine.recorder import latency_summary

SECONDS_PER_MONTH = 730.0 * 3600.0


def _hardware(p: Any, node_seconds: float, window_s: float) -> dict[str, Any] | None:
    """A pool's figures in instances and GPUs (None for a single-instance pool of unknown
    hardware: nothing to add to its node counts)."""
    if p.instances == 1 and p.node_type is None and not p.gpus_per_node:
        return None
    g = p.gpus_per_node * p.machines_per_node
    return {"node_type": p.node_type, "instances_per_node": p.instances,
            "machines_per_node": p.machines_per_node, "gpus_per_node": g,
            "placement": p.placement, "instance_slowdown": p.slowdown_source,
            "instances": {"mean": node_seconds / window_s * p.instances,
                          "max": p.max_billed * p.instances},
            "gpus": {"mean": node_seconds / window_s * g, "max": p.max_billed * g},
            "gpu_hours": node_seconds * g / 3600.0}


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
        hw = _hardware(p, ns, window)
        if hw is not None:
            pools[p.name]["hardware"] = hw
        cfg = next(q for q in sc.cluster.pools if q.name == p.name)
        if cfg.borrow is not None:
            # the hourly price of a borrowed node is its lost training GPU-hours; each borrow
            # also costs training its checkpoint
            parts = borrow_cost_usd(ns, p.borrows,
                                    max(p.gpus_per_node * p.machines_per_node, 1), cfg.borrow)
            pools[p.name]["borrow"] = {**parts, "borrows": p.borrows, "reclaims": p.reclaims}
            chk = parts["checkpoint_usd"]
            pools[p.name]["cost_usd"]["compute"] += chk
            pools[p.name]["cost_usd"]["total"] += chk
            compute += chk
    storage += cost.storage_usd(0.0, 0.0, sc.cost.data_gb, sc.cost.storage_usd_per_gb_month,
                                window / SECONDS_PER_MONTH)
    human = cost.human_usd(sc.cost.engineers, sc.cost.engineer_monthly_usd,
                           sc.cost.effort_hours, sc.cost.hours_per_month)
    penalty = (tot.violations * sc.sla.penalty_usd_per_violation
               + tot.degraded * sc.sla.penalty_usd_per_degraded)
    q_loss = run.quality_loss_per_degraded
    breakdown = cost.CostBreakdown(compute, energy, storage, human, penalty)
    utilization = busy_total / prov_total if prov_total else math.nan
    n_nodes = sum(p.max_billed for p in run.pools)
    verdict = overload_verdict(run, utilization, n_nodes)
    return {
        "scenario": sc.name,
        "seed": run.seed,
        "sim_duration_s": run.duration_s,
        "warmup_s": run.warmup_s,
        "measurement_window_s": window,
        "wall_s": run.wall_s,
        "requests": {
            "arrived": tot.arrived, "completed": tot.completed, "dropped": tot.dropped,
            "timed_out": tot.timed_out, "shed_by_cap": tot.shed_by_cap,
            "in_flight": tot.in_flight, "arrived_incl_warmup": run.arrivals_incl_warmup,
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
        "overloaded": verdict["overloaded"],
        "overload_reason": verdict["reason"],
        "overload": verdict["causes"],
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
        # guard rails: batches past a profile's measured range, test profiles (empty when no
        # pool runs a profile)
        "profile_guards": _profile_guards(run),
    }


def _profile_guards(run: RunRecord) -> dict[str, Any]:
    from simulator.profile_guards import formed_note, summary_section

    sec = summary_section(run.scenario, int(run.max_items_seen) or None)
    note = formed_note(sec) if sec else None
    if note:
        sec["formed_note"] = note
    return sec


def _end_utilization(run: RunRecord) -> float:
    """Utilisation over the run's last full time-series interval (busy nodes, time-averaged,
    over the nodes billed at its end); 0.0 without one. A backlog that builds late in a run
    (a peak at its end) shows here while the whole run's utilisation stays low."""
    ts = run.timeseries
    if ts is None or not len(ts) or "busy_nodes" not in ts:
        return 0.0
    filled = ts[ts["provisioned_nodes"] > 0]
    if not len(filled):
        return 0.0
    last = filled.iloc[-1]
    return float(last["busy_nodes"] / last["provisioned_nodes"])


def overload_verdict(run: RunRecord, utilization: float, n_nodes: int) -> dict[str, Any]:
    """Whether the offered load exceeded what the cluster could serve, and why.

    Overloaded when (a) more than ``sla.overload_share`` of the requests were shed by full
    queues (``admission.max_queue_length``, shared or per node) or class limits
    (``workload.classes[].max_queue_length``), (b) more than that share timed out waiting
    (``admission.timeout_ms`` or a class ``timeout_ms``), (c) more than that share was shed
    by the memory cap (``simulation.max_in_system``: still waiting when that many later
    requests had arrived), or (d) utilisation exceeded 0.97 (over the run, or over its last
    time-series interval: a peak at the run's end) and more than 10 requests per node
    (``n_nodes``: the most billed) were still queued or in flight at the end (a growing
    backlog). Requests lost with a preempted or failed node (``on_preempt`` / ``on_failure`` =
    "lose") are losses, reported in ``causes`` but never a reason for overload. Shares of (a),
    (c) and losses are over the whole run (every arrival counts), (b) over the measurement
    window. Whenever the memory cap shed a request, ``causes["cap_warning"]`` says so (the run
    then models a queue that drops its oldest requests, not the one configured).
    """
    tot = run.total
    share = run.scenario.sla.overload_share
    arrivals_all = max(run.arrivals_incl_warmup, 1)
    rejected = run.queue.rejected
    lost = sum(p.lost_requests for p in run.pools)
    backlog = max(run.final_queue_length, tot.in_flight)
    capped, cap = run.queue.shed_by_cap, run.queue.max_in_system
    causes = {
        "shed_by_queue_limits": rejected, "shed_share": rejected / arrivals_all,
        "timed_out": tot.timed_out,
        "timed_out_share": tot.timed_out / tot.arrived if tot.arrived else 0.0,
        "shed_by_cap": capped, "shed_by_cap_share": capped / arrivals_all,
        "max_in_system": cap,
        "lost_with_nodes": lost, "lost_share": lost / arrivals_all,
        "backlog_at_end": backlog, "utilization": utilization, "share_threshold": share,
    }
    reasons = []
    if causes["shed_share"] > share:
        reasons.append(f"{rejected:,} requests ({causes['shed_share']:.1%}) shed by full queues "
                       "(admission.max_queue_length or a class max_queue_length)")
    if causes["timed_out_share"] > share:
        reasons.append(f"{tot.timed_out:,} requests ({causes['timed_out_share']:.1%}) timed out "
                       "waiting (admission.timeout_ms or a class timeout_ms)")
    if causes["shed_by_cap_share"] > share:
        reasons.append(f"{capped:,} requests ({causes['shed_by_cap_share']:.1%}) shed by the "
                       f"memory cap simulation.max_in_system = {cap:,} (each still waited when "
                       "that many later requests had arrived)")
    if capped:
        causes["cap_warning"] = (
            f"the memory cap simulation.max_in_system = {cap:,} shed {capped:,} requests, each "
            f"still waiting when {cap:,} later requests had arrived: past it the run models a "
            "queue that drops its oldest requests, not the one configured; raise the cap (about "
            "160 bytes a request) or bound the queue (admission.max_queue_length or timeout_ms)")
    end_util = _end_utilization(run)
    causes["utilization_at_end"] = end_util
    if (utilization > 0.97 or end_util > 0.97) and backlog > 10 * n_nodes:
        at_end = (f" ({end_util:.3f} over the last interval)" if end_util > 0.97
                  and not utilization > 0.97 else "")
        reasons.append(f"utilisation {utilization:.3f}{at_end} with {backlog:,.0f} requests "
                       "still queued or in flight at the end (a growing backlog)")
    reason = "; ".join(reasons)
    if lost:
        note = (f"{lost:,} requests ({causes['lost_share']:.2%}) lost with preempted or failed "
                "nodes (not overload)")
        reason = f"{reason}; {note}" if reason else ""
        causes["losses_note"] = note
    return {"overloaded": bool(reasons), "reason": reason, "causes": causes}


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
    if r.get("shed_by_cap"):
        t.add_row("shed by the memory cap", f"{r['shed_by_cap']:,}")
    t.add_row("latency mean / p50 / p95 / p99 (ms)",
              " / ".join(_ms(lat[k]) for k in ("mean", "p50", "p95", "p99")))
    t.add_row("queue wait mean / p99 (ms)",
              f"{_ms(s['queue_wait_ms']['mean'])} / {_ms(s['queue_wait_ms']['p99'])}")
    sla = s["sla"]
    classes = s.get("classes", {})
    slos = {float(c["slo_ms"]) for c in classes.values()} or {float(sla["slo_ms"])}
    late = sla.get("in_flight_violations", 0)
    what = (f"> {_num(slos.pop())} ms" if len(slos) == 1 else "per-class SLOs")
    what += (", drops, timeouts" + (", shed by the cap" if r.get("shed_by_cap") else "")
             + (", in flight past SLO" if late else ""))
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
    for name, ps in (s.get("pools") or {}).items():
        hw = ps.get("hardware")
        if hw is None:
            continue
        gpus = (f"; GPUs {hw['gpus']['mean']:.1f} / {hw['gpus']['max']}, "
                f"{hw['gpu_hours']:,.1f} GPU-h" if hw["gpus_per_node"] else "")
        t.add_row(f"  pool {name}: {hw['node_type'] or 'nodes'} x {hw['instances_per_node']} "
                  "instances", f"instances {hw['instances']['mean']:.1f} / "
                  f"{hw['instances']['max']}{gpus}")
        if hw.get("placement"):
            t.add_row(f"  pool {name}: placement", str(hw["placement"]))
        if "borrow" in ps:
            b = ps["borrow"]
            t.add_row(f"  pool {name}: borrowed", f"{b['borrows']} borrows, {b['reclaims']} "
                      f"reclaimed, {b['lost_training_gpu_hours']:,.1f} training GPU-h lost "
                      f"(USD {b['total_usd']:,.2f})")
    c = s["cost_usd"]
    t.add_row("cost total (USD)", f"{c['total']:,.2f}")
    t.add_row("  compute / energy / storage", f"{c['compute']:,.2f} / {c['energy']:,.2f} / "
              f"{c['storage']:,.2f}")
    t.add_row("  human / SLA penalty", f"{c['human']:,.2f} / {c['sla_penalty']:,.2f}")
    if s["overloaded"]:
        from rich.text import Text

        t.add_row(Text("OVERLOADED", style="bold red"), Text(s["overload_reason"]))
    elif (s.get("overload") or {}).get("losses_note"):
        from rich.text import Text

        t.add_row("losses", Text(s["overload"]["losses_note"]))
    if (s.get("overload") or {}).get("cap_warning"):
        from rich.text import Text

        t.add_row(Text("MEMORY CAP", style="bold yellow"), Text(s["overload"]["cap_warning"]))
    guards = s.get("profile_guards") or {}
    if guards.get("largest_formed_batch_items"):
        top = min((m for e in guards["pools"].values()
                   for m in e["measured_max_items"].values()), default=None)
        t.add_row("largest batch formed / measured (items)",
                  f"{guards['largest_formed_batch_items']:,} / {top:,}" if top else "n/a")
    for w in [*guards.get("warnings", []), *filter(None, [guards.get("formed_note")])]:
        from rich.text import Text

        t.add_row(Text("PROFILE", style="bold yellow"), Text(w, justify="left"))
    if s.get("stages"):  # a cascade: the stages' breakdown under the end-to-end figures
        from rich.console import Group

        from simulator.cascade.summary import format_stages

        return Group(t, format_stages(s))
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
