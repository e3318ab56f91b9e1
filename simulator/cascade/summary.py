"""``summary.json`` of a cascade run: the end-to-end figures where a single-stage run has its
own (so compare, sweep and plan read the same fields), every stage's breakdown under
``stages``, and each unit's full single-stage summary under ``units``.

End-to-end SLA rule (per request, its class's SLO ``workload.classes[].slo_ms``, else
``sla.slo_ms``): a violation when it completed (the caller has the last stage's answer, network
hops included) later than the SLO, was lost at a stage (dropped, timed out, shed, lost with a
node, or no channel of a fork answered in time), or is still in flight at the end and older
than the SLO then. The rate divides by the requests that ended plus those in flight past their
SLO. Statistics count requests arriving at or after ``simulation.warmup_s``. Costs are the sum
of the units' (each pool is in one unit), the SLA penalty charged on end-to-end violations.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from simulator import cost
from simulator.cascade.simulation import CascadeRecord
from simulator.engine.recorder import latency_summary
from simulator.metrics import LatencySketch, worst_window
from simulator.summary import build_summary


def _sla(violations: int, completed: int, lost: int, in_flight_viol: int,
         slo_ms: float, worst: dict[str, Any] | None = None) -> dict[str, Any]:
    n = completed + lost + in_flight_viol
    out = {"slo_ms": slo_ms, "violations": violations,
           "violation_rate": violations / n if n else math.nan,
           "in_flight_violations": in_flight_viol}
    if worst is not None:
        out["worst_window"] = worst
    return out


def _worst(rec: CascadeRecord, i: int | None) -> dict[str, Any] | None:
    """The worst sliding window (``sla.worst_window_s``) of class ``i`` (None: all), by
    arrival interval from the first interval after the warm-up, as a single-stage run's."""
    e = rec.e2e
    if e.series is None:
        return None
    iv = e.series.interval_s
    first = max(0, math.ceil(rec.warmup_s / iv - 1e-9))
    width = max(1, round(rec.scenario.sla.worst_window_s / iv))
    if i is None:
        return worst_window(e.viol_by_interval.sum(axis=0),
                            e.counted_by_interval.sum(axis=0), first, width, iv)
    return worst_window(e.viol_by_interval[i], e.counted_by_interval[i], first, width, iv)


def build_cascade_summary(rec: CascadeRecord) -> dict[str, Any]:
    """Every figure of a cascade run (see the module docstring)."""
    sc = rec.scenario
    e = rec.e2e
    window = rec.duration_s - rec.warmup_s
    units = {u.name: build_summary(r) for u, r in rec.units}
    pools: dict[str, Any] = {}
    for s in units.values():
        pools.update(s["pools"])
    busy = sum(p.busy_s for _, r in rec.units for p in r.pools)
    prov = sum(p.provisioned_s for _, r in rec.units for p in r.pools)
    node_s = sum(s["nodes"]["node_seconds"] for s in units.values())
    parts = {k: sum(s["cost_usd"][k] for s in units.values())
             for k in ("compute", "energy", "storage", "human")}
    lost_by_class = sum(e.lost.values(), np.zeros(len(e.completed), dtype=np.int64))
    penalty = (int(e.violations.sum()) * sc.sla.penalty_usd_per_violation
               + int(e.degraded.sum()) * sc.sla.penalty_usd_per_degraded)
    breakdown = cost.CostBreakdown(parts["compute"], parts["energy"], parts["storage"],
                                   parts["human"], penalty)
    lat = LatencySketch()
    for sk in e.latency:
        lat.merge(sk)
    names = [c.name for c in sc.workload.classes]
    classes = {}
    for i, (name, slo) in enumerate(zip(names, e.slo_s * 1e3, strict=True)):
        classes[name] = {
            "slo_ms": float(slo),
            "requests": {"arrived": int(e.arrived[i]), "completed": int(e.completed[i]),
                         "lost": int(lost_by_class[i]), "in_flight": int(e.in_flight[i])},
            "latency_ms": latency_summary(e.latency[i]),
            "sla": _sla(int(e.violations[i]), int(e.completed[i]), int(lost_by_class[i]),
                        int(e.in_flight_violations[i]), float(slo), _worst(rec, i)),
            "degraded": int(e.degraded[i]),
        }
    e2e_mean = lat.mean if lat.n else math.nan
    stages = {}
    for k, (st_cfg, st) in enumerate(zip(sc.stages, rec.stages, strict=True)):
        mine = [(u, units[u.name]) for u, _ in rec.units if u.stage == k]
        s_cost = sum(s["cost_usd"]["total"] for _, s in mine)
        s_busy = sum(p.busy_s for u, r in rec.units if u.stage == k for p in r.pools)
        s_prov = sum(p.provisioned_s for u, r in rec.units if u.stage == k for p in r.pools)
        mean_ms = st.latency.mean if st.latency.n else math.nan
        stages[st_cfg.name] = {
            "units": [u.name for u, _ in mine],
            "pools": [q.name for u, _ in mine for q in u.scenario.cluster.pools],
            "requests": {"entered": st.entered, "passed": st.passed, "skipped": st.skipped,
                         "shrunk": st.shrunk, "lost": dict(st.lost)},
            "candidates": {"in_mean": st.candidates_in / st.entered if st.entered else math.nan,
                           "out_mean": (st.candidates_out / st.passed if st.passed
                                        else math.nan)},
            "latency_ms": latency_summary(st.latency),
            "share_of_e2e_latency": (mean_ms / e2e_mean if lat.n and st.latency.n
                                     else math.nan),
            "network_ms": st_cfg.network_ms,
            "budget_ms": st_cfg.budget_ms,
            "over_budget": st.over_budget if st_cfg.budget_ms is not None else None,
            "over_budget_rate": (st.over_budget / st.passed if st_cfg.budget_ms is not None
                                 and st.passed else None),
            "utilization": s_busy / s_prov if s_prov else math.nan,
            "nodes": {"mean": sum(s["nodes"]["mean"] for _, s in mine),
                      "max": sum(s["nodes"]["max"] for _, s in mine)},
            "cost_usd": s_cost,
            "overloaded": any(s["overloaded"] for _, s in mine),
            "overload_reason": "; ".join(f"{u.name}: {s['overload_reason']}" for u, s in mine
                                         if s["overloaded"]),
        }
    reasons = [f"stage {n}: {s['overload_reason']}" for n, s in stages.items()
               if s["overloaded"]]
    bottleneck = _bottleneck(stages)
    completed, lost_tot = int(e.completed.sum()), int(lost_by_class.sum())
    timed_out = sum(int(v.sum()) for k, v in e.lost.items() if k.endswith(": timed_out"))
    shed = sum(int(v.sum()) for k, v in e.lost.items() if k.endswith(": shed_by_cap"))
    # a fork's channels wait side by side: per stage, its longest-waiting unit
    mean_wait = sum(max((units[u.name]["queue_wait_ms"]["mean"] for u, _ in rec.units
                         if u.stage == k and units[u.name]["queue_wait_ms"]["mean"]
                         == units[u.name]["queue_wait_ms"]["mean"]), default=0.0)
                    for k in range(len(sc.stages)))
    total_q = float(e.qloss.sum())
    arrived = int(e.arrived.sum())
    return {
        "scenario": sc.name,
        "seed": rec.seed,
        "sim_duration_s": rec.duration_s,
        "warmup_s": rec.warmup_s,
        "measurement_window_s": window,
        "wall_s": rec.wall_s,
        "cascade": True,
        "requests": {
            # as a single-stage run: timed out and shed by the cap apart from other drops
            "arrived": arrived, "completed": completed,
            "dropped": lost_tot - timed_out - shed, "timed_out": timed_out,
            "shed_by_cap": shed, "in_flight": int(e.in_flight.sum()),
            "arrived_incl_warmup": e.arrived_all,
            "lost": {k: int(v.sum()) for k, v in e.lost.items()},
        },
        "latency_ms": latency_summary(lat),
        # end to end there is no one queue: the stages' mean waits added up
        "queue_wait_ms": {"mean": mean_wait, "p50": math.nan, "p95": math.nan,
                          "p99": math.nan},
        "sla": _sla(int(e.violations.sum()), completed, lost_tot,
                    int(e.in_flight_violations.sum()), sc.sla.slo_ms, _worst(rec, None)),
        "utilization": busy / prov if prov else math.nan,
        "nodes": {"mean": node_s / window, "max": sum(s["nodes"]["max"] for s in units.values()),
                  "node_seconds": node_s},
        "cost_usd": breakdown.as_dict(),
        "degradation": {
            "degraded": int(e.degraded.sum()),
            "degraded_rate": int(e.degraded.sum()) / completed if completed else math.nan,
            "quality_loss_total": total_q,
            "mean_quality_loss": total_q / completed if completed else math.nan,
            "skipped": {n: s["requests"]["skipped"] for n, s in stages.items()},
            "shrunk": {n: s["requests"]["shrunk"] for n, s in stages.items()},
        },
        "overloaded": bool(reasons),
        "overload_reason": "; ".join(reasons),
        "overload": {"stages": {n: s["overloaded"] for n, s in stages.items()}},
        "batches": {"count": sum(s["batches"]["count"] for s in units.values()),
                    "mean_size": (sum(s["batches"]["mean_size"] * s["batches"]["count"]
                                      for s in units.values())
                                  / max(sum(s["batches"]["count"] for s in units.values()), 1)),
                    "max_size": max(s["batches"]["max_size"] for s in units.values()),
                    "limit": max(s["batches"]["limit"] for s in units.values())},
        "pools": pools,
        "classes": classes,
        "stages": stages,
        "bottleneck": bottleneck,
        "units": units,
        "records": rec.records_mode,
        "profile_guards": {"warnings": [w for s in units.values()
                                        for w in (s.get("profile_guards") or {})
                                        .get("warnings", [])]},
    }


#: the share of its requests a stage must lose to be named first (before budgets and load)
LOSS_SHARE = 0.01


def _bottleneck(stages: dict[str, Any]) -> dict[str, Any]:
    """The stage to scale first (or fix): an overloaded stage; else the one losing the largest
    share of the requests it received (at least :data:`LOSS_SHARE`: full queues, timeouts, a
    join no channel answered in time); else the one most often over its budget (stages with
    a budget); else the busiest (highest utilisation). Ties: the larger share of the
    end-to-end latency."""
    def lost_share(s: dict[str, Any]) -> float:
        n = s["requests"]["entered"]
        return sum(s["requests"]["lost"].values()) / n if n else 0.0

    def key(item: tuple[str, Any]) -> tuple[float, float, float, float, float]:
        s = item[1]
        share = s["share_of_e2e_latency"]
        over = s["over_budget_rate"]
        util = s["utilization"]
        loss = lost_share(s)
        return (float(s["overloaded"]), loss if loss >= LOSS_SHARE else -1.0,
                over if over is not None and over == over else -1.0,
                util if util == util else -1.0, share if share == share else -1.0)

    name, s = max(stages.items(), key=key)
    loss = lost_share(s)
    if s["overloaded"]:
        why = f"overloaded: {s['overload_reason']}"
    elif loss >= LOSS_SHARE:
        lost = s["requests"]["lost"]
        why = (f"loses {loss:.2%} of the requests it receives ("
               + ", ".join(f"{k}: {v:,}" for k, v in sorted(lost.items(), key=lambda x: -x[1]))
               + ")" + ("; no candidates: no channel answered within the join's timeouts"
                        if lost.get("no candidates") else ""))
    elif s["over_budget_rate"]:
        why = (f"{s['over_budget_rate']:.2%} of its requests over its {s['budget_ms']:g} ms "
               "budget, the most of any stage")
    else:
        why = f"the busiest stage (utilisation {s['utilization']:.2f})"
    return {"stage": name, "why": why, "utilization": s["utilization"],
            "share_of_e2e_latency": s["share_of_e2e_latency"],
            "over_budget_rate": s["over_budget_rate"]}


def cascade_frames(rec: CascadeRecord) -> dict[str, pd.DataFrame]:
    """The units' time series, pool series and fleet events, each row tagged with its
    ``stage`` and ``unit`` (``timeseries``, ``timeseries_pools``, ``events``), and the
    end-to-end series (``timeseries_e2e``: :class:`~simulator.cascade.series.EndToEndSeries`)."""
    out: dict[str, list[pd.DataFrame]] = {"timeseries": [], "timeseries_pools": [],
                                          "events": []}
    for u, r in rec.units:
        for key, frame in (("timeseries", r.timeseries), ("timeseries_pools", r.pool_series),
                           ("events", r.events)):
            if frame is not None:
                out[key].append(frame.assign(stage=u.cfg.name, unit=u.name))
    frames = {k: (pd.concat(v, ignore_index=True) if v else pd.DataFrame())
              for k, v in out.items()}
    if rec.e2e.series is not None:  # what the funnel's caller saw, per interval
        frames["timeseries_e2e"] = rec.e2e.series.frame()
    return frames


def format_stages(s: dict[str, Any]) -> Any:
    """A rich table of a cascade summary's stages, and the stage to scale first."""
    from rich.table import Table
    from rich.text import Text

    t = Table(title="stages (end to end above)", show_header=True)
    for col in ("stage", "p50 / p99 ms", "share of e2e", "budget ms (over)", "utilisation",
                "nodes mean", "cost USD", "candidates in -> out", "skipped / shrunk / lost"):
        t.add_column(col, justify="left" if col == "stage" else "right")
    for name, st in s["stages"].items():
        lat = st["latency_ms"]
        r = st["requests"]
        budget = ("-" if st["budget_ms"] is None else
                  f"{st['budget_ms']:g} ({_pct(st['over_budget_rate'])})")
        c = st["candidates"]
        t.add_row(Text(name), f"{_f(lat['p50'])} / {_f(lat['p99'])}",
                  _pct(st["share_of_e2e_latency"]), budget, f"{_f(st['utilization'])}",
                  f"{st['nodes']['mean']:.1f}", f"{st['cost_usd']:,.2f}",
                  f"{_f(c['in_mean'], 0)} -> {_f(c['out_mean'], 0)}",
                  f"{r['skipped']:,} / {r['shrunk']:,} / {sum(r['lost'].values()):,}")
    b = s.get("bottleneck")
    if b:
        t.caption = Text(f"scale first: stage {b['stage']} ({b['why']})")
    return t


def _f(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None or v != v else f"{v:,.{digits}f}"


def _pct(v: float | None) -> str:
    return "n/a" if v is None or v != v else f"{100 * v:.1f}%"
