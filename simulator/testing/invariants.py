"""check_invariants: verify a finished run against PeakSim's invariants.

Needs per-request records in memory (``run(..., records="all")``). Each check raises
:class:`InvariantError` naming the invariant and the first offending request (or instant).
The checks follow docs/architecture.md: conservation, causality, capacity, monotone clock,
readiness, fleet bounds, billing, and SLA accounting (:func:`check_sla`);
:func:`check_deterministic` runs a scenario twice.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

EPS = 1e-9


class InvariantError(AssertionError):
    """A run broke one of the documented invariants."""


class DeterminismError(InvariantError):
    """Two runs of the same scenario and seed differ."""


def check_invariants(result: Any, *, max_batch: int | None = None) -> None:
    """Every whole-run invariant of docs/architecture.md on a finished run.

    Conservation, causality, capacity (one batch per model instance, at most ``instances``
    per node, batch size), monotone clock,
    readiness (work only to ready nodes), fleet bounds (desired and billed nodes within
    [min_nodes, max_nodes]) and billing (node-seconds = integral of provisioned nodes, compute
    cost = node-seconds x price) and SLA accounting (:func:`check_sla`). Raises
    :class:`InvariantError` on the first broken one.
    """
    rec: pd.DataFrame | None = result.records
    s = result.summary
    if rec is None:
        raise InvariantError("check_invariants needs records='all'")
    check_conservation(s, rec)
    check_causality(rec)
    check_capacity(rec, max_batch or int(s["batches"]["limit"]),
                   {p.name: p.instances for p in result.scenario.cluster.pools})
    check_queue_limits(result)
    check_clock(result)
    check_readiness(result)
    check_fleet_bounds(result)
    check_billing(result)
    check_sla(result)
    check_in_service_at_end(result)


ENDINGS = ("completed", "dropped", "timed_out", "shed_by_cap", "in_flight")


def _ended_sum(r: dict[str, Any]) -> int:
    """completed + dropped + timed_out + shed_by_cap + in_flight of a requests block."""
    return sum(int(r.get(k, 0)) for k in ENDINGS)


def check_conservation(s: dict[str, Any], rec: pd.DataFrame) -> None:
    """arrived = completed + dropped + timed_out + shed_by_cap + in_flight, per class and in
    total."""
    r = s["requests"]
    if r["arrived"] != _ended_sum(r):
        raise InvariantError(f"conservation broken in summary: {r}")
    if len(rec) != r["arrived_incl_warmup"]:
        raise InvariantError(f"{len(rec)} records but {r['arrived_incl_warmup']} arrivals")
    if rec["id"].duplicated().any():
        raise InvariantError("a request id appears twice: a request ended more than once")
    warm = rec[rec["arrival_s"] >= s["warmup_s"]]
    counts = warm["outcome"].value_counts()
    for k in ENDINGS:
        if int(counts.get(k, 0)) != r.get(k, 0):
            raise InvariantError(f"{k}: summary {r.get(k, 0)} but records "
                                 f"{int(counts.get(k, 0))}")
    unknown = set(counts.index) - set(ENDINGS)
    if unknown:
        raise InvariantError(f"records hold unknown outcomes {sorted(unknown)}")
    for name, cs in s.get("classes", {}).items():
        cr = cs["requests"]
        if cr["arrived"] != _ended_sum(cr):
            raise InvariantError(f"conservation broken for class {name}: {cr}")


def check_causality(rec: pd.DataFrame) -> None:
    """arrival <= start <= finish for served requests; ended requests end after arrival."""
    done = rec[rec["outcome"] == "completed"]
    bad = done[(done["start_s"] < done["arrival_s"] - EPS) |
               (done["finish_s"] < done["start_s"] - EPS)]
    if len(bad):
        raise InvariantError(f"causality broken: {bad.iloc[0].to_dict()}")
    ended = rec[rec["outcome"].isin(["dropped", "timed_out", "shed_by_cap"])]
    bad = ended[ended["finish_s"] < ended["arrival_s"] - EPS]
    if len(bad):
        raise InvariantError(f"a request left before it arrived: {bad.iloc[0].to_dict()}")
    started = rec[rec["start_s"].notna()]
    bad = started[started["start_s"] < started["arrival_s"] - EPS]
    if len(bad):
        raise InvariantError(f"a request started before it arrived: {bad.iloc[0].to_dict()}")


def check_capacity(rec: pd.DataFrame, max_batch: int,
                   instances: dict[str, int] | None = None) -> None:
    """A model instance serves one batch at a time (a node of a single-instance pool is one
    instance); a node never serves more batches at once than its pool's ``instances``; no batch
    exceeds max_batch requests. ``instances``: per pool name (default 1 each)."""
    served = rec[rec["start_s"].notna() & (rec["node"] >= 0)]
    if served.empty:
        return
    keys = ["node", "instance"] if "instance" in served.columns else ["node"]
    batches = served.groupby([*keys, "start_s"], sort=True).agg(
        size=("id", "size"), finish=("finish_s", "max"), pool=("pool", "first"))
    if (batches["size"] > max_batch).any():
        b = batches[batches["size"] > max_batch].iloc[0]
        raise InvariantError(f"batch of {int(b['size'])} > max_batch {max_batch}")
    for key, g in batches.groupby(level=keys):
        starts = g.index.get_level_values("start_s").to_numpy()
        fin = g["finish"].to_numpy()
        prev_fin = fin[:-1]
        if np.any(starts[1:] < np.nan_to_num(prev_fin, nan=np.inf) - EPS):
            what = "node" if len(keys) == 1 else "node, instance"
            raise InvariantError(f"{what} {key} started a batch before finishing the previous")
    if len(keys) == 1:
        return
    flat = batches.reset_index()
    for node, g in flat.groupby("node"):
        limit = (instances or {}).get(str(g["pool"].iloc[0]), 1)
        fin = np.nan_to_num(g["finish"].to_numpy(dtype=float), nan=np.inf)
        peak = _peak(g["start_s"].to_numpy(dtype=float), fin - EPS)
        if peak > limit:
            raise InvariantError(f"node {node} served {peak} batches at once; its pool has "
                                 f"{limit} instances per node")


def _peak(enter: np.ndarray, leave: np.ndarray) -> int:
    """Most intervals [enter, leave) open at once (a leave at t counts before an enter at t)."""
    if not len(enter):
        return 0
    t = np.concatenate([enter, leave])
    d = np.concatenate([np.ones(len(enter), dtype=np.int64), -np.ones(len(leave), dtype=np.int64)])
    order = np.lexsort((d, t))  # at one instant, leaves (-1) first
    return int(np.cumsum(d[order]).max())


def check_queue_limits(result: Any) -> None:
    """A queue never holds more than its limit: ``admission.max_queue_length`` in total (the
    shared queue, or each node's queue under per-node dispatch) and a class's
    ``max_queue_length`` of its own requests, whatever the priorities; requeued requests too.

    Checked on the summary's ``queues`` peaks, and (without preemptions or failures, when a
    request waits in one queue only) on the queue occupancy rebuilt from the records: a
    request waits from its arrival to its start, or to its timeout or shedding by the memory
    cap.
    """
    s = result.summary
    qs = s.get("queues")
    if qs is None:
        return
    where = "each node queue" if qs["per_node"] else "the queue"
    if qs["peak"] > qs["limit"]:
        raise InvariantError(f"queue limit: {where} held {qs['peak']} requests > "
                             f"max_queue_length {qs['limit']}")
    for name, c in qs["classes"].items():
        if c["limit"] is not None and c["peak"] is not None and c["peak"] > c["limit"]:
            raise InvariantError(f"queue limit: class {name} had {c['peak']} requests in "
                                 f"{where} > its max_queue_length {c['limit']}")
    rec = result.records
    ev = result.extras.get("events")
    if rec is None or not len(rec) or (ev is not None and len(ev) and _requeue_possible(ev)):
        return
    waited = rec[rec["start_s"].notna() | rec["outcome"].isin(["timed_out", "shed_by_cap"])]
    leave = waited["start_s"].fillna(waited["finish_s"]).to_numpy(dtype=float)
    enter = waited["arrival_s"].to_numpy(dtype=float)
    keys: list[str] = ["node"] if qs["per_node"] else []
    if qs["per_node"]:  # a request's node is known only once it started
        sel = waited["start_s"].notna().to_numpy()
        waited, enter, leave = waited[sel], enter[sel], leave[sel]
    groups = [(f"{where}", waited.groupby(keys).indices if keys else {"": np.arange(len(waited))},
               qs["limit"])]
    for name, c in qs["classes"].items():
        if c["limit"] is not None:
            m = (waited["class"] == name).to_numpy()
            idx = np.flatnonzero(m)
            sub = waited.iloc[idx]
            ind = sub.groupby(keys).indices if keys else {"": np.arange(len(sub))}
            groups.append((f"class {name} in {where}",
                           {k: idx[v] for k, v in ind.items()}, c["limit"]))
    for label, ind, limit in groups:
        for key, i in ind.items():
            n = _peak(enter[i], leave[i])
            if n > limit:
                at = f" (node {key})" if qs["per_node"] else ""
                raise InvariantError(f"queue limit: {label}{at} held {n} waiting requests "
                                     f"(rebuilt from records) > max_queue_length {limit}")


# ----------------------------------------------------------------------------- clock
def check_clock(result: Any) -> None:
    """The clock never goes back: logs in time order, every time inside [0, duration]."""
    dur = float(result.summary["sim_duration_s"])
    rec = result.records
    if rec is not None and len(rec):
        arr = rec.sort_values("id")["arrival_s"].to_numpy()
        if np.any(np.diff(arr) < -EPS):
            i = int(np.flatnonzero(np.diff(arr) < -EPS)[0])
            raise InvariantError(f"monotone clock: request ids out of arrival order at {i + 1}")
        if arr[0] < -EPS or arr[-1] > dur + EPS:
            raise InvariantError(f"monotone clock: an arrival outside [0, {dur}]")
        ended = rec[rec["outcome"] != "in_flight"]
        late = ended[ended["finish_s"] > dur + 1e-6]
        if len(late):
            raise InvariantError(f"monotone clock: a request ended after the run's end "
                                 f"({dur} s): {late.iloc[0].to_dict()}")
    ts = result.timeseries
    if ts is not None and len(ts) and np.any(np.diff(ts["t_s"].to_numpy()) <= 0):
        raise InvariantError("monotone clock: time series rows not strictly increasing in t_s")
    ps = result.extras.get("timeseries_pools")
    if ps is not None and len(ps):
        for pool, g in ps.groupby("pool", sort=False, observed=True):
            if np.any(np.diff(g["t_s"].to_numpy()) <= 0):
                raise InvariantError(f"monotone clock: pool {pool} time series goes back")
    ev = result.extras.get("events")
    if ev is not None and len(ev):
        t = ev["t_s"].to_numpy(dtype=float)
        if np.any(np.diff(t) < -EPS):
            i = int(np.flatnonzero(np.diff(t) < -EPS)[0])
            raise InvariantError(f"monotone clock: event {i + 1} at {t[i + 1]} s logged after "
                                 f"one at {t[i]} s: {ev.iloc[i + 1].to_dict()}")
        if t[0] < -EPS or t[-1] > dur + EPS:
            raise InvariantError(f"monotone clock: an event outside [0, {dur}] s")


# ----------------------------------------------------------------------------- node lifecycle
STATES = ("terminated", "provisioning", "loading", "ready", "draining", "failed")


def node_lives(events: pd.DataFrame) -> pd.DataFrame:
    """Per node slot, its state intervals from the event log: pool, node, state, t0_s, t1_s.

    A slot's last state runs to infinity. Only events whose detail is ``node <j>`` and whose
    kind is a lifecycle state are used.
    """
    ev = events[events["kind"].isin(STATES)
                & events["detail"].astype(str).str.match(r"node \d+$")]
    rows: list[tuple[str, int, str, float, float]] = []
    last: dict[tuple[str, int], tuple[str, float]] = {}
    for t, pool, kind, detail in ev[["t_s", "pool", "kind", "detail"]].itertuples(index=False):
        key = (str(pool), int(str(detail)[5:]))
        if key in last:
            st0, t0 = last[key]
            rows.append((key[0], key[1], st0, t0, float(t)))
        last[key] = (str(kind), float(t))
    for (pool, node), (st0, t0) in last.items():
        rows.append((pool, node, st0, t0, np.inf))
    return pd.DataFrame(rows, columns=["pool", "node", "state", "t0_s", "t1_s"])


def check_in_service_at_end(result: Any) -> None:
    """A request still in service when the run ends sits on a node slot that has been up
    (ready or draining) since its batch started: a batch whose node was preempted, failed or
    removed must have been requeued or lost, never left hanging as 'in flight' (which
    conservation alone cannot tell from a request still being served)."""
    rec = result.records
    events = result.extras.get("events")
    if rec is None or events is None or events.empty:
        return
    hanging = rec[(rec["outcome"] == "in_flight") & rec["start_s"].notna()]
    if hanging.empty:
        return
    lives = node_lives(events)
    by_slot = {k: g for k, g in lives.groupby(["pool", "node"], sort=False)}
    for (pool, node), g in hanging.groupby(["pool", "node"], sort=False):
        slot = by_slot.get((str(pool), int(node)))
        if slot is None:
            continue  # a slot the event log does not name (static fleet)
        t = float(g["start_s"].min())
        later = slot[slot["t1_s"] > t]
        bad = later[~later["state"].isin(("ready", "draining"))]
        if not bad.empty:
            r = bad.iloc[0]
            raise InvariantError(
                f"{len(g)} request(s) in service at the end on {pool} node {node} since "
                f"{t:.6g} s, but that slot went {r['state']} at {r['t0_s']:.6g} s: a batch "
                "on a node that went away was neither requeued nor lost")


def _requeue_possible(events: pd.DataFrame) -> bool:
    return bool(events["kind"].isin(["failed", "preemption", "preemption_notice"]).any())


def check_readiness(result: Any) -> None:
    """Only ready nodes receive work: a per-node request was routed (at its arrival) to a node
    that was ready then; with a central queue, a batch starts only on a ready node.

    Skipped when nodes failed or were preempted (their requests are re-routed later).
    """
    ev = result.extras.get("events")
    rec = result.records
    if ev is None or rec is None or not len(ev) or _requeue_possible(ev):
        return
    per_node = result.scenario.policy.dispatch == "per_node"
    lives = node_lives(ev)
    ready = lives[lives["state"] == "ready"]
    served = rec[rec["node"] >= 0]
    if per_node:
        served = served[served["arrival_s"] >= 0]
    for node, g in served.groupby("node", sort=True):
        iv = ready[ready["node"] == node]
        t = (g["arrival_s"] if per_node else g["start_s"]).to_numpy(dtype=float)
        ok = np.zeros(len(t), dtype=bool)
        for t0, t1 in iv[["t0_s", "t1_s"]].itertuples(index=False):
            ok |= (t >= t0 - 1e-9) & (t <= t1 + 1e-9)
        if not ok.all():
            bad = g.iloc[int(np.flatnonzero(~ok)[0])].to_dict()
            what = "routed to" if per_node else "started on"
            raise InvariantError(f"readiness: request {what} node {node} while it was not "
                                 f"ready: {bad}")


def _pool_cfgs(result: Any) -> dict[str, Any]:
    return {p.name: p for p in result.scenario.cluster.pools}


def check_fleet_bounds(result: Any) -> None:
    """min_nodes <= desired <= max_nodes at every sample and decision, and billed nodes
    (every state but terminated) <= max_nodes at every instant."""
    cfgs = _pool_cfgs(result)
    ps = result.extras.get("timeseries_pools")
    if ps is not None and len(ps):
        for pool, g in ps.groupby("pool", sort=False, observed=True):
            lo, hi = cfgs[str(pool)].lo, cfgs[str(pool)].hi
            d = g["desired"].to_numpy(dtype=float)
            bad = (d < lo - EPS) | (d > hi + EPS)
            if bad.any():
                row = g.iloc[int(np.flatnonzero(bad)[0])].to_dict()
                raise InvariantError(f"fleet bounds: pool {pool} desired outside [{lo}, {hi}]: "
                                     f"{row}")
    ev = result.extras.get("events")
    if ev is None or not len(ev):
        return
    dec = ev[ev["kind"] == "desired"]
    for t, pool, detail in dec[["t_s", "pool", "detail"]].itertuples(index=False):
        new = int(str(detail).split("->")[-1])
        lo, hi = cfgs[str(pool)].lo, cfgs[str(pool)].hi
        if not lo <= new <= hi:
            raise InvariantError(f"fleet bounds: pool {pool} set desired {detail} at {t} s, "
                                 f"outside [{lo}, {hi}]")
    lives = node_lives(ev)
    billed = lives[lives["state"] != "terminated"]
    for pool, g in billed.groupby("pool", sort=False):
        hi = cfgs[str(pool)].hi
        times = np.unique(g["t0_s"].to_numpy())
        t0 = g["t0_s"].to_numpy()[:, None]
        t1 = g["t1_s"].to_numpy()[:, None]
        count = ((t0 <= times[None, :]) & (t1 > times[None, :])).sum(axis=0)
        if (count > hi).any():
            i = int(np.flatnonzero(count > hi)[0])
            raise InvariantError(f"fleet bounds: pool {pool} billed {int(count[i])} nodes at "
                                 f"{times[i]} s > max_nodes {hi}")


def check_billing(result: Any) -> None:
    """Billing: per pool, provisioned node-seconds = integral over [warmup, end] of the nodes
    in any state but terminated (from the event log); billed node-seconds = that plus the
    top-ups of nodes that lived less than min_billing_s; compute cost = billed node-hours x
    price per pool (a borrowed pool: plus checkpoint GPU-hours x the training value per
    borrow), and the run's compute cost is the sum over pools."""
    s = result.summary
    cfgs = _pool_cfgs(result)
    t_lo, t_hi = float(s["warmup_s"]), float(s["sim_duration_s"])
    ev = result.extras.get("events")
    lives = node_lives(ev) if ev is not None and len(ev) else None
    total = 0.0
    for name, ps in s["pools"].items():
        cfg = cfgs[name]
        ns = float(ps["nodes"]["node_seconds"])
        machines = ps.get("hardware", {}).get("machines_per_node", 1)
        cost = ns / 3600.0 * cfg.price_per_hour_usd * machines
        if cfg.borrow is not None:  # a borrowed pool: plus each borrow's lost checkpoint
            b = cfg.borrow
            gpus = ps["hardware"]["gpus_per_node"]
            cost += (b.checkpoint_overhead_s * gpus * ps["borrow"]["borrows"] / 3600.0
                     * b.training_value_usd_per_gpu_hour)
        if not np.isclose(ps["cost_usd"]["compute"], cost, rtol=1e-9, atol=1e-9):
            raise InvariantError(f"billing: pool {name} compute cost {ps['cost_usd']['compute']}"
                                 f" != node-seconds {ns} / 3600 x price "
                                 f"{cfg.price_per_hour_usd} = {cost}")
        total += cost
        if lives is None:
            continue
        g = lives[(lives["pool"] == name) & (lives["state"] != "terminated")]
        a = np.clip(g["t0_s"].to_numpy(), t_lo, t_hi)
        b = np.clip(g["t1_s"].to_numpy(), t_lo, t_hi)
        integral = float(np.sum(b - a))
        prov = float(ps["provisioned_node_seconds"])
        tol = 1e-6 * max(1.0, integral)
        if abs(prov - integral) > tol:
            raise InvariantError(f"billing: pool {name} provisioned node-seconds {prov} != "
                                 f"integral of provisioned nodes over [{t_lo}, {t_hi}] "
                                 f"{integral} (from the event log)")
        lo_up, hi_up = _min_billing_topups(lives[lives["pool"] == name], cfg.min_billing_s,
                                           t_lo, t_hi)
        if not (lo_up - tol <= ns - prov <= hi_up + tol):
            raise InvariantError(f"billing: pool {name} billed {ns} node-seconds but "
                                 f"provisioned {prov} + minimum-billing top-ups "
                                 f"[{lo_up}, {hi_up}]")
    if not np.isclose(s["cost_usd"]["compute"], total, rtol=1e-9, atol=1e-9):
        raise InvariantError(f"billing: compute cost {s['cost_usd']['compute']} != sum over "
                             f"pools of node-seconds x price = {total}")


def _min_billing_topups(lives: pd.DataFrame, min_s: float, t_lo: float,
                        t_hi: float) -> tuple[float, float]:
    """Bounds on the minimum-billing top-ups that fall in (t_lo, t_hi]: a node that ends
    (or is alive at the end) after living less than ``min_s`` is billed ``min_s``."""
    lo = hi = 0.0
    if min_s <= 0 or not len(lives):
        return lo, hi
    ends: list[tuple[float, float]] = []  # (birth, end) of each life
    for _, g in lives.sort_values("t0_s", kind="stable").groupby("node", sort=False):
        born: float | None = None
        for state, t0 in g[["state", "t0_s"]].itertuples(index=False):
            if state != "terminated" and born is None:
                born = float(t0)
            elif state == "terminated" and born is not None:
                ends.append((born, float(t0)))
                born = None
        if born is not None:
            ends.append((born, t_hi))
    for born_s, end in ends:
        top = max(0.0, min_s - (end - born_s))
        if top > 0:
            if end > t_lo + 1e-9:
                lo += top
            if end >= t_lo - 1e-9:
                hi += top
    return lo, hi


# ----------------------------------------------------------------------------- SLA accounting
def check_sla(result: Any) -> None:
    """SLA accounting agrees in the summary, the time series and the records.

    * per class, violations and in-flight violations sum to the totals, and every violation
      rate is violations / (completed + dropped + timed_out + shed_by_cap +
      in_flight_violations);
    * the time series' ``violations.<class>`` columns sum to ``violations``, its
      ``arrivals.<class>`` to ``arrivals``; with a warm-up of whole intervals, ``violations``
      summed over the measurement window equals ``sla.violations``;
    * with every record in memory, the violations rebuilt from the records with each class's
      SLO (completed with latency > SLO, dropped, timed out, shed by the memory cap, or in
      flight at the end and older than the SLO then) equal the summary's (measurement window,
      per class and in total) and the time series' (by arrival interval, whole run).
    """
    s = result.summary
    sla = s["sla"]
    classes = s.get("classes", {})
    if classes:
        for key in ("violations", "in_flight_violations"):
            if key not in sla:
                continue
            parts = sum(int(c["sla"][key]) for c in classes.values())
            if parts != int(sla[key]):
                raise InvariantError(f"SLA accounting: per-class {key} sum to {parts}, total "
                                     f"sla.{key} is {sla[key]}")
    r = s["requests"]
    for label, block, req in [("total", sla, r), *((f"class {n}", c["sla"], c["requests"])
                                                    for n, c in classes.items())]:
        if "in_flight_violations" not in block:
            continue
        n = _ended_sum(req) - int(req["in_flight"]) + block["in_flight_violations"]
        rate = block["violations"] / n if n else float("nan")
        if not np.isclose(block["violation_rate"], rate, rtol=1e-12, atol=0, equal_nan=True):
            raise InvariantError(f"SLA accounting: {label} violation rate "
                                 f"{block['violation_rate']} != {block['violations']} / {n}")
    ts = result.timeseries
    if ts is None or not len(ts) or "violations" not in ts.columns:
        return
    names = list(classes)
    per_class = [f"violations.{n}" for n in names]
    if names and all(c in ts.columns for c in per_class):
        tot = ts[per_class].to_numpy(dtype=np.int64).sum(axis=1)
        bad = np.flatnonzero(tot != ts["violations"].to_numpy(dtype=np.int64))
        if len(bad):
            raise InvariantError(f"SLA accounting: time-series violations.<class> sum to "
                                 f"{int(tot[bad[0]])} != violations at t_s = "
                                 f"{ts['t_s'].iloc[bad[0]]}")
        arr = ts[[f"arrivals.{n}" for n in names]].to_numpy(dtype=np.int64).sum(axis=1)
        bad = np.flatnonzero(arr != ts["arrivals"].to_numpy(dtype=np.int64))
        if len(bad):
            raise InvariantError(f"SLA accounting: time-series arrivals.<class> sum to "
                                 f"{int(arr[bad[0]])} != arrivals at t_s = "
                                 f"{ts['t_s'].iloc[bad[0]]}")
    iv = float(result.scenario.simulation.timeseries_interval_s)
    warm, dur = float(s["warmup_s"]), float(s["sim_duration_s"])
    if abs(round(warm / iv) * iv - warm) < 1e-9:
        in_window = ts["violations"][ts["t_s"] >= warm - 1e-9].sum()
        if int(in_window) != int(sla["violations"]):
            raise InvariantError(f"SLA accounting: time-series violations over the "
                                 f"measurement window sum to {int(in_window)} != "
                                 f"sla.violations {sla['violations']}")
    rec = result.records
    if rec is None or len(rec) != r["arrived_incl_warmup"] or not names:
        return
    slo = rec["class"].map({n: float(c["slo_ms"]) for n, c in classes.items()})
    slo = slo.to_numpy(dtype=float)
    arrival = rec["arrival_s"].to_numpy(dtype=float)
    outcome = rec["outcome"].to_numpy()
    lat = (rec["finish_s"].to_numpy(dtype=float) - arrival) * 1000.0
    with np.errstate(invalid="ignore"):
        viol = (((outcome == "completed") & (lat > slo)) | (outcome == "dropped")
                | (outcome == "timed_out") | (outcome == "shed_by_cap")
                | ((outcome == "in_flight") & ((dur - arrival) * 1000.0 > slo)))
    cls = rec["class"].astype(str).to_numpy()
    warm_m = arrival >= warm
    for label, block, m in [("total", sla, np.ones(len(rec), dtype=bool)),
                            *((f"class {n}", c["sla"], cls == n) for n, c in classes.items())]:
        got = int((viol & m & warm_m).sum())
        if got != int(block["violations"]):
            raise InvariantError(f"SLA accounting: {label} has {got} violations in the records "
                                 f"but {block['violations']} in the summary")
    b = np.clip((arrival / iv).astype(np.int64), 0, len(ts) - 1)
    cols = [("violations", np.ones(len(rec), dtype=bool)),
            *((f"violations.{n}", cls == n) for n in names)]
    for col, m in cols:
        if col not in ts.columns:
            continue
        want = np.bincount(b[viol & m], minlength=len(ts))
        bad = np.flatnonzero(want != ts[col].to_numpy(dtype=np.int64))
        if len(bad):
            raise InvariantError(f"SLA accounting: time-series {col} at t_s = "
                                 f"{ts['t_s'].iloc[bad[0]]} is {int(ts[col].iloc[bad[0]])} "
                                 f"but the records give {int(want[bad[0]])}")


# ----------------------------------------------------------------------------- determinism
def check_deterministic(scenario: Any, seed: int | None = None) -> Any:
    """Run ``scenario`` twice with the same seed; raise :class:`DeterminismError` unless the
    summaries (but wall time), records, time series and event logs are identical.

    Returns the first result (so callers can go on checking it).
    """
    from simulator import run

    a = run(scenario, seed=seed, records="all")
    b = run(scenario, seed=seed, records="all")
    sa = {k: v for k, v in a.summary.items() if k != "wall_s"}
    sb = {k: v for k, v in b.summary.items() if k != "wall_s"}
    if repr(sa) != repr(sb):
        diff = [k for k in sa if repr(sa[k]) != repr(sb.get(k))]
        raise DeterminismError(f"determinism: same seed, different summary fields {diff}")
    if a.records is None or b.records is None or not a.records.equals(b.records):
        raise DeterminismError("determinism: same seed, different per-request records")
    if not a.timeseries.equals(b.timeseries):
        raise DeterminismError("determinism: same seed, different time series")
    for k in sorted(set(a.extras) | set(b.extras)):
        xa, xb = a.extras.get(k), b.extras.get(k)
        same = (xa.equals(xb) if isinstance(xa, pd.DataFrame) and isinstance(xb, pd.DataFrame)
                else repr(xa) == repr(xb))
        if not same:
            raise DeterminismError(f"determinism: same seed, different extras[{k!r}]")
    return a
