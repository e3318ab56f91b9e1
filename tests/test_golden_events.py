"""Golden event logs: tiny deterministic scenarios whose exact event sequence is written here by
hand, in SimPy's style (its tests spell out the trace a process must produce).

Each scenario replays a trace of arrival times (s) against deterministic service times, so
every instant can be worked out on paper. The log is built from what a run publishes (the
per-request records and the fleet's event log), so it pins the engine's observable behaviour
whatever its internals:

* ``(t, "arrive", id)``; ``(t, "drop", id)`` (rejected, or lost with its node);
  ``(t, "timeout", id)`` (left the queue at its deadline);
* ``(t, "start", node, ids)`` and ``(t, "finish", node, ids)`` per batch (a batch whose
  requests were requeued after a preemption or failure shows only where they were served in the
  end; one whose requests were lost shows its start and their drop);
* ``(t, "node", pool, kind, detail)`` for node states (provisioning, loading, ready, draining,
  failed, terminated) and fleet actions (desired, scale_up, scale_down, preemption_notice,
  preemption, failure).

Events at one instant are listed in a fixed order: node events, arrivals, timeouts, drops,
finishes, starts (then by their fields), so the log does not depend on how the engine
interleaves work inside one instant. Times are rounded to the microsecond.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from simulator import run

_RANK = {"node": 0, "arrive": 1, "timeout": 2, "drop": 3, "finish": 4, "start": 5}


def _t(x: float) -> float:
    return round(float(x), 6)


def event_log(res: Any) -> list[tuple[Any, ...]]:
    """The run's events in the canonical order described in the module docstring."""
    rec = res.records
    out: list[tuple[Any, ...]] = []
    for row in rec.itertuples():
        out.append((_t(row.arrival_s), "arrive", int(row.id)))
        if row.outcome == "timed_out":
            out.append((_t(row.finish_s), "timeout", int(row.id)))
        elif row.outcome == "dropped":
            out.append((_t(row.finish_s), "drop", int(row.id)))
    served = rec[rec["start_s"].notna() & (rec["node"] >= 0)]
    for (node, start), g in served.groupby(["node", "start_s"]):
        ids = tuple(sorted(int(i) for i in g["id"]))
        out.append((_t(start), "start", int(node), ids))
        done = g[g["outcome"] == "completed"]
        if len(done):
            out.append((_t(done["finish_s"].max()), "finish", int(node), ids))
    for e in res.extras["events"].itertuples():
        out.append((_t(e.t_s), "node", e.pool, e.kind, e.detail))
    out.sort(key=lambda e: (e[0], _RANK[e[1]], e[2:]))
    return out


class Golden:
    """Builds tiny scenarios: trace arrivals, deterministic service, one pool."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.n = 0

    def trace(self, times: list[float]) -> str:
        self.n += 1
        p = self.tmp / f"trace{self.n}.csv"
        p.write_text("time_s\n" + "".join(f"{t}\n" for t in times))
        return str(p)

    def scenario(self, times: list[float], *, duration_s: float = 5.0, service_ms: float = 1000.0,
                 nodes: int = 1, dispatch: str = "central", batching: dict[str, Any] | None = None,
                 items: int | None = None, pool: dict[str, Any] | None = None,
                 policy: dict[str, Any] | None = None, seed: int = 1) -> dict[str, Any]:
        raw: dict[str, Any] = {
            "name": "golden",
            "simulation": {"duration_s": duration_s, "seed": seed, "records": "all",
                           "timeseries_interval_s": 1.0},
            "workload": {"arrival": {"process": "trace", "trace": {"path": self.trace(times)}}},
            "service": {"time": {"distribution": "deterministic", "mean_ms": service_ms}},
            "cluster": {"pools": [{"name": "p", "nodes": nodes, "min_billing_s": 0,
                                   **(pool or {})}]},
            "policy": {"dispatch": dispatch, "batching": batching or {"name": "none"},
                       **(policy or {})},
            "sla": {"slo_ms": 1000.0},
        }
        if items is not None:
            raw["workload"]["classes"] = [{"name": "c", "share": 1.0, "size": {
                "distribution": "constant", "mean": items, "max": 1024}}]
        return raw


@pytest.fixture
def g(tmp_path: Path) -> Golden:
    return Golden(tmp_path)


def ready(pool: str, *nodes: int) -> list[tuple[Any, ...]]:
    return [(0.0, "node", pool, "ready", f"node {j}") for j in nodes]


DISPATCH = ["central", "per_node"]


# ----------------------------------------------------------------------------- dispatch
def test_central_queue_two_nodes(g: Golden) -> None:
    """Free nodes pull from one FIFO; the lowest-numbered free node resumes first."""
    res = run(g.scenario([0, 0, 0.5, 1.2], nodes=2))
    assert event_log(res) == [
        *ready("p", 0, 1),
        (0.0, "arrive", 0), (0.0, "arrive", 1),
        (0.0, "start", 0, (0,)), (0.0, "start", 1, (1,)),
        (0.5, "arrive", 2),                     # both busy: id 2 waits
        (1.0, "finish", 0, (0,)), (1.0, "finish", 1, (1,)),
        (1.0, "start", 0, (2,)),                # node 0 resumes first and takes it
        (1.2, "arrive", 3), (1.2, "start", 1, (3,)),  # node 1 is idle: at once
        (2.0, "finish", 0, (2,)), (2.2, "finish", 1, (3,)),
    ]


def test_per_node_round_robin(g: Golden) -> None:
    """Round robin pushes ids 0, 2 to node 0 and 1, 3 to node 1; each node serves its queue."""
    res = run(g.scenario([0, 0, 0.5, 1.2], nodes=2, dispatch="per_node"))
    assert event_log(res) == [
        *ready("p", 0, 1),
        (0.0, "arrive", 0), (0.0, "arrive", 1),
        (0.0, "start", 0, (0,)), (0.0, "start", 1, (1,)),
        (0.5, "arrive", 2),                     # queued at node 0
        (1.0, "finish", 0, (0,)), (1.0, "finish", 1, (1,)),
        (1.0, "start", 0, (2,)),
        (1.2, "arrive", 3), (1.2, "start", 1, (3,)),
        (2.0, "finish", 0, (2,)), (2.2, "finish", 1, (3,)),
    ]


@pytest.mark.parametrize("dispatch", DISPATCH)
def test_full_queue_drops_arrivals(g: Golden, dispatch: str) -> None:
    """admission.max_queue_length = 1: one request waits, the next arrivals are rejected."""
    res = run(g.scenario([0, 0.1, 0.2, 0.3], dispatch=dispatch,
                         policy={"admission": {"max_queue_length": 1}}))
    assert event_log(res) == [
        *ready("p", 0),
        (0.0, "arrive", 0), (0.0, "start", 0, (0,)),
        (0.1, "arrive", 1),
        (0.2, "arrive", 2), (0.2, "drop", 2),
        (0.3, "arrive", 3), (0.3, "drop", 3),
        (1.0, "finish", 0, (0,)), (1.0, "start", 0, (1,)),
        (2.0, "finish", 0, (1,)),
    ]


@pytest.mark.parametrize("dispatch", DISPATCH)
def test_queue_timeouts(g: Golden, dispatch: str) -> None:
    """timeout_ms = 500: ids 1 and 2 leave at arrival + 0.5 s while node 0 is still busy."""
    res = run(g.scenario([0, 0.1, 0.2], dispatch=dispatch,
                         policy={"admission": {"timeout_ms": 500}}))
    assert event_log(res) == [
        *ready("p", 0),
        (0.0, "arrive", 0), (0.0, "start", 0, (0,)),
        (0.1, "arrive", 1), (0.2, "arrive", 2),
        (0.6, "timeout", 1), (0.7, "timeout", 2),
        (1.0, "finish", 0, (0,)),
    ]


# ----------------------------------------------------------------------------- batching
DYNAMIC = {"name": "dynamic", "max_batch": 4, "max_wait_ms": 10}


@pytest.mark.parametrize("dispatch", DISPATCH)
def test_batch_leaves_at_its_deadline(g: Golden, dispatch: str) -> None:
    """max_wait 10 ms: ids 0 and 1 leave together at 0.010 (the oldest's arrival + 10 ms)."""
    res = run(g.scenario([0, 0.002, 0.5], service_ms=100, dispatch=dispatch, batching=DYNAMIC))
    assert event_log(res) == [
        *ready("p", 0),
        (0.0, "arrive", 0), (0.002, "arrive", 1),
        (0.01, "start", 0, (0, 1)), (0.11, "finish", 0, (0, 1)),
        (0.5, "arrive", 2), (0.51, "start", 0, (2,)), (0.61, "finish", 0, (2,)),
    ]


def test_full_batch_leaves_at_once_and_late_ones_do_not_wait(g: Golden) -> None:
    """max_batch 2: four simultaneous arrivals form two full batches at once; id 4, which has
    waited past max_wait (50 ms) when the node frees up at 0.2, goes at once alone."""
    res = run(g.scenario([0, 0, 0, 0, 0.001], service_ms=100,
                         batching={"name": "dynamic", "max_batch": 2, "max_wait_ms": 50}))
    assert event_log(res) == [
        *ready("p", 0),
        (0.0, "arrive", 0), (0.0, "arrive", 1), (0.0, "arrive", 2), (0.0, "arrive", 3),
        (0.0, "start", 0, (0, 1)),
        (0.001, "arrive", 4),
        (0.1, "finish", 0, (0, 1)), (0.1, "start", 0, (2, 3)),
        (0.2, "finish", 0, (2, 3)), (0.2, "start", 0, (4,)),
        (0.3, "finish", 0, (4,)),
    ]


@pytest.mark.parametrize("dispatch", DISPATCH)
def test_item_cap_sends_the_batch_at_the_overflowing_arrival(g: Golden, dispatch: str) -> None:
    """max_batch_items 10, 4 items each: ids 0 and 1 (8 items) cannot take id 2 (12 > 10), so
    they leave when id 2 arrives, long before their 50 ms deadline; id 2 follows."""
    res = run(g.scenario([0, 0.001, 0.002], service_ms=100, dispatch=dispatch, items=4,
                         batching={"name": "dynamic", "max_batch": 8, "max_batch_items": 10,
                                   "max_wait_ms": 50}))
    assert event_log(res) == [
        *ready("p", 0),
        (0.0, "arrive", 0), (0.001, "arrive", 1), (0.002, "arrive", 2),
        (0.002, "start", 0, (0, 1)),
        (0.102, "finish", 0, (0, 1)), (0.102, "start", 0, (2,)),
        (0.202, "finish", 0, (2,)),
    ]


@pytest.mark.parametrize("dispatch", DISPATCH)
def test_exact_item_fill(g: Golden, dispatch: str) -> None:
    """A lone request of exactly max_batch_items (1,024) items at an idle node is a full batch
    and leaves at once, as in Triton (it used to wait the full 50 ms)."""
    res = run(g.scenario([0, 1.0], service_ms=100, dispatch=dispatch, items=1024,
                         batching={"name": "dynamic", "max_batch": 8, "max_batch_items": 1024,
                                   "max_wait_ms": 50}))
    assert event_log(res) == [
        *ready("p", 0),
        (0.0, "arrive", 0), (0.0, "start", 0, (0,)), (0.1, "finish", 0, (0,)),
        (1.0, "arrive", 1), (1.0, "start", 0, (1,)), (1.1, "finish", 0, (1,)),
    ]


@pytest.mark.parametrize("dispatch", DISPATCH)
def test_items_filling_the_cap_exactly_leave_at_once(g: Golden, dispatch: str) -> None:
    """Two requests of 4 items fill max_batch_items = 8 exactly: the batch leaves when the
    second arrives, not at the first one's deadline."""
    res = run(g.scenario([0, 0.01], service_ms=100, dispatch=dispatch, items=4,
                         batching={"name": "dynamic", "max_batch": 8, "max_batch_items": 8,
                                   "max_wait_ms": 50}))
    assert event_log(res) == [
        *ready("p", 0),
        (0.0, "arrive", 0), (0.01, "arrive", 1),
        (0.01, "start", 0, (0, 1)), (0.11, "finish", 0, (0, 1)),
    ]


# ----------------------------------------------------------------------------- fleet
def _spot_pools(g: Golden, on_preempt: str) -> list[dict[str, Any]]:
    """A spot node 0 preempted at 0.4 s (notice 0.2 s) beside an on-demand node 1."""
    return [
        {"name": "s", "nodes": 1, "purchase": "spot", "min_billing_s": 0,
         "price_per_hour_usd": 0.3,
         "spot": {"trace": g.trace([0.4]), "notice_s": 0.2, "on_preempt": on_preempt}},
        {"name": "od", "nodes": 1, "min_billing_s": 0, "price_per_hour_usd": 1.0},
    ]


SPOT_NOTICE = [
    (0.4, "node", "s", "draining", "node 0"),
    (0.4, "node", "s", "preemption_notice", "node 0"),
    (0.6, "node", "s", "preemption", "node 0"),
    (0.6, "node", "s", "terminated", "node 0"),
]


@pytest.mark.parametrize("dispatch", DISPATCH)
def test_preemption_requeues_the_batch_in_service(g: Golden, dispatch: str) -> None:
    """The cheaper spot node takes id 0; preempted at 0.6, id 0 goes back to the queue and
    the on-demand node serves it after id 1 (the record keeps where it was served in the end)."""
    raw = g.scenario([0, 0.1], duration_s=4.0, dispatch=dispatch)
    raw["cluster"]["pools"] = _spot_pools(g, "requeue")
    assert event_log(run(raw)) == [
        (0.0, "node", "od", "ready", "node 1"), (0.0, "node", "s", "ready", "node 0"),
        (0.0, "arrive", 0),
        (0.1, "arrive", 1), (0.1, "start", 1, (1,)),
        *SPOT_NOTICE,
        (1.1, "finish", 1, (1,)), (1.1, "start", 1, (0,)),
        (2.1, "finish", 1, (0,)),
    ]


def test_preemption_loses_the_batch_in_service(g: Golden) -> None:
    raw = g.scenario([0, 0.1], duration_s=4.0)
    raw["cluster"]["pools"] = _spot_pools(g, "lose")
    assert event_log(run(raw)) == [
        (0.0, "node", "od", "ready", "node 1"), (0.0, "node", "s", "ready", "node 0"),
        (0.0, "arrive", 0), (0.0, "start", 0, (0,)),
        (0.1, "arrive", 1), (0.1, "start", 1, (1,)),
        *SPOT_NOTICE,
        (0.6, "drop", 0),
        (1.1, "finish", 1, (1,)),
    ]


def _scheduled(base: int, calendar: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "scheduled", "base": base, "lead_time_s": 0, "sync_period_s": 0.5,
            "calendar": calendar}


def test_scale_down_drains_a_busy_node(g: Golden) -> None:
    """Desired 2 -> 1 at the first sync (0.5 s): both nodes are busy and equally old, so node 0
    drains: it finishes id 0 and terminates; waiting id 2 goes to node 1."""
    raw = g.scenario([0, 0.1, 0.2, 1.5], duration_s=4.0, nodes=2,
                     pool={"min_nodes": 1, "max_nodes": 2})
    raw["policy"]["autoscaling"] = _scheduled(1, [])
    assert event_log(run(raw)) == [
        *ready("p", 0, 1),
        (0.0, "arrive", 0), (0.0, "start", 0, (0,)),
        (0.1, "arrive", 1), (0.1, "start", 1, (1,)),
        (0.2, "arrive", 2),
        (0.5, "node", "p", "desired", "2->1"), (0.5, "node", "p", "draining", "node 0"),
        (0.5, "node", "p", "scale_down", "-1"),
        (1.0, "node", "p", "terminated", "node 0"), (1.0, "finish", 0, (0,)),
        (1.1, "finish", 1, (1,)), (1.1, "start", 1, (2,)),
        (1.5, "arrive", 3),
        (2.1, "finish", 1, (2,)), (2.1, "start", 1, (3,)),
        (3.1, "finish", 1, (3,)),
    ]


def test_scale_up_provisions_then_an_idle_node_leaves_at_once(g: Golden) -> None:
    """Calendar 2 nodes over [0.5, 3): node 1 provisions for 0.7 s (no model to load) and takes
    waiting id 2 when ready; at 3.0 the idle node 1 drains and terminates in the same instant."""
    raw = g.scenario([0, 0.1, 0.2, 2.0], duration_s=6.0, pool={
        "min_nodes": 1, "max_nodes": 2,
        "provisioning": {"distribution": "deterministic", "mean_s": 0.7}})
    raw["policy"]["autoscaling"] = _scheduled(1, [{"start_s": 0.5, "end_s": 3.0, "nodes": 2}])
    assert event_log(run(raw)) == [
        *ready("p", 0),
        (0.0, "arrive", 0), (0.0, "start", 0, (0,)),
        (0.1, "arrive", 1), (0.2, "arrive", 2),
        (0.5, "node", "p", "desired", "1->2"), (0.5, "node", "p", "provisioning", "node 1"),
        (0.5, "node", "p", "scale_up", "+1"),
        (1.0, "finish", 0, (0,)), (1.0, "start", 0, (1,)),
        (1.2, "node", "p", "loading", "node 1"), (1.2, "node", "p", "ready", "node 1"),
        (1.2, "start", 1, (2,)),
        (2.0, "arrive", 3), (2.0, "finish", 0, (1,)), (2.0, "start", 0, (3,)),
        (2.2, "finish", 1, (2,)),
        (3.0, "node", "p", "desired", "2->1"), (3.0, "node", "p", "draining", "node 1"),
        (3.0, "node", "p", "scale_down", "-1"), (3.0, "node", "p", "terminated", "node 1"),
        (3.0, "finish", 0, (3,)),
    ]


def _first_failure(g: Golden, on_failure: str) -> tuple[float, list[tuple[Any, ...]]]:
    """A one-node run (10 s batch from t = 0, MTBF 36 s, repair 5 s) whose first failure hits
    the batch in service and whose next failure comes after the retried batch would finish.
    Failure times are random: the seed is the first that gives such a run."""
    for seed in range(1, 500):
        raw = g.scenario([0], duration_s=40.0, service_ms=10_000, seed=seed, pool={
            "failures": {"mtbf_h": 0.01, "on_failure": on_failure,
                         "repair": {"distribution": "deterministic", "mean_s": 5}}})
        res = run(raw)
        ev = res.extras["events"]
        f = ev[ev["kind"] == "failure"]["t_s"].tolist()
        if f and f[0] < 10 and (len(f) == 1 or f[1] > f[0] + 15):
            return _t(f[0]), event_log(res)
    raise AssertionError("no seed gives a failure during the first batch")


def test_failure_requeues_then_repair_and_reload(g: Golden) -> None:
    tf, log = _first_failure(g, "requeue")
    r = lambda x: _t(tf + x)  # noqa: E731
    assert [e for e in log if e[0] <= r(15)] == [
        *ready("p", 0),
        (0.0, "arrive", 0),
        (tf, "node", "p", "failed", "node 0"), (tf, "node", "p", "failure", "node 0"),
        (r(5), "node", "p", "loading", "node 0"), (r(5), "node", "p", "ready", "node 0"),
        (r(5), "start", 0, (0,)),                # served again from the start
        (r(15), "finish", 0, (0,)),
    ]


def test_failure_loses_the_batch(g: Golden) -> None:
    tf, log = _first_failure(g, "lose")
    r = lambda x: _t(tf + x)  # noqa: E731
    assert [e for e in log if e[0] <= r(5)] == [
        *ready("p", 0),
        (0.0, "arrive", 0), (0.0, "start", 0, (0,)),
        (tf, "node", "p", "failed", "node 0"), (tf, "node", "p", "failure", "node 0"),
        (tf, "drop", 0),
        (r(5), "node", "p", "loading", "node 0"), (r(5), "node", "p", "ready", "node 0"),
    ]
