"""Bounded memory under any overload (issue 15, item 6): the memory cap
``simulation.max_in_system`` sheds a waiting request once that many later requests have arrived,
so the request table (every request from the oldest one still waiting to the newest arrival,
rejected ones included) stops growing; the run counts the shed requests, conserves them and says
so in the overload verdict and on the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomli_w
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from simulator import run, scenario_from_dict
from simulator.engine import Simulation
from simulator.scenario import ScenarioError
from simulator.testing import check_invariants
from simulator.testing import strategies as st_peaksim
from tests.conftest import ROOT, deep_merge, mmc_dict

CAP = 500


def _overload(cap: int = CAP, **extra: Any) -> dict[str, Any]:
    """2 nodes of 10/s each offered 1,000/s (50x), no queue limit, no timeout."""
    d = mmc_dict(c=2, lam=1000.0, mean_ms=100.0, duration_s=60, warmup_s=5,
                 simulation={"records": "all", "max_in_system": cap,
                             "timeseries_interval_s": 1},
                 policy={"admission": {"max_queue_length": 10**9}})
    return deep_merge(d, extra)


TWO_CLASSES = {"classes": [{"name": "hi", "share": 0.3, "priority": 2},
                           {"name": "lo", "share": 0.7, "priority": 0}]}
VARIANTS = {
    "central FIFO": {},
    "central FIFO, batches": {"policy": {"batching": {"name": "dynamic", "max_batch": 8,
                                                      "max_wait_ms": 5}}},
    "central priority levels": {"workload": TWO_CLASSES},
    "per node": {"policy": {"dispatch": "per_node", "routing": {"name": "round_robin"}}},
    "per node, priority levels": {"policy": {"dispatch": "per_node",
                                             "routing": {"name": "join_shortest_queue"}},
                                  "workload": TWO_CLASSES},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_cap_bounds_the_requests_in_the_system_and_is_named(variant: str) -> None:
    res = run(scenario_from_dict(_overload(**VARIANTS[variant])), seed=5)
    check_invariants(res)  # conservation counts shed_by_cap; causality; SLA accounting
    s, rec, ts = res.summary, res.records, res.timeseries
    nodes, batch = s["nodes"]["max"], s["batches"]["limit"]
    # never more than the cap wait; the system holds at most the cap and the batches in service
    assert ts["queue_len"].max() <= CAP
    assert ts["in_system"].max() <= CAP + nodes * batch
    assert s["queues"]["peak"] <= CAP
    # the shed requests are exactly those still waiting when CAP later requests had arrived,
    # each leaving at that arrival
    arrival = rec.sort_values("id")["arrival_s"].to_numpy()
    ids = rec["id"].to_numpy()
    shed = (rec["outcome"] == "shed_by_cap").to_numpy()
    assert shed.sum() > 0.5 * len(rec)
    np.testing.assert_array_equal(rec["finish_s"].to_numpy()[shed], arrival[ids[shed] + CAP])
    never_started = rec["start_s"].isna().to_numpy()
    unserved_old = never_started & (ids + CAP < len(rec)) & (rec["outcome"] != "dropped")
    np.testing.assert_array_equal(shed, unserved_old.to_numpy())
    # counted: whole run in the overload section, measurement window in requests
    r = s["requests"]
    assert s["overload"]["shed_by_cap"] == int(shed.sum())
    assert r["shed_by_cap"] == int((shed & (rec["arrival_s"] >= 5).to_numpy()).sum())
    assert r["arrived"] == (r["completed"] + r["dropped"] + r["timed_out"] + r["shed_by_cap"]
                            + r["in_flight"])
    # the verdict names the cap as the cause, and warns
    assert s["overloaded"]
    assert "memory cap simulation.max_in_system = 500" in s["overload_reason"]
    assert "shed by full queues" not in s["overload_reason"]
    assert s["overload"]["max_in_system"] == CAP
    assert "shed" in s["overload"]["cap_warning"]


def test_a_timeout_that_comes_first_wins_over_the_cap() -> None:
    # class a times out after 100 ms (~100 later arrivals), before the cap of 500 arrivals;
    # class b has no timeout: only the cap sheds it
    d = _overload(workload={"classes": [{"name": "a", "share": 0.5, "timeout_ms": 100},
                                        {"name": "b", "share": 0.5}]})
    res = run(scenario_from_dict(d), seed=6)
    check_invariants(res)
    c = res.summary["classes"]
    assert c["a"]["requests"]["timed_out"] > 0 and c["a"]["requests"]["shed_by_cap"] == 0
    assert c["b"]["requests"]["shed_by_cap"] > 0 and c["b"]["requests"]["timed_out"] == 0


def test_the_cap_bounds_a_queue_limits_rejected_requests_too() -> None:
    # a FIFO queue limit alone keeps every rejected arrival since the oldest waiting request in
    # memory; the cap sheds that oldest request once CAP later requests arrived
    d = _overload(policy={"admission": {"max_queue_length": 300}})
    res = run(scenario_from_dict(d), seed=7)
    check_invariants(res)
    s = res.summary
    assert s["overload"]["shed_by_queue_limits"] > 0 and s["overload"]["shed_by_cap"] > 0
    assert s["queues"]["peak"] <= 300


@given(st_peaksim.scenarios(max_duration_s=20.0), st.integers(1, 150), st.booleans(),
       st.booleans())
def test_the_cap_holds_on_random_scenarios(raw: dict, cap: int, spot: bool,
                                           levels: bool) -> None:
    """Any dispatch, batcher, router, queue limit and timeout, priority levels with class
    limits or not, with spot nodes whose requests are requeued or lost: the invariants hold,
    never more than the cap wait, and no request starts service once cap later requests have
    arrived."""
    raw["simulation"]["max_in_system"] = cap
    if levels:
        for i, c in enumerate(raw["workload"]["classes"]):
            c["priority"] = i % 2
            if i == 0:
                c["max_queue_length"] = 1 + raw["simulation"]["seed"] % 50
    if spot:
        raw["cluster"]["pools"][0].update({"purchase": "spot", "spot": {
            "preemptions_per_hour": 900.0, "notice_s": 0.0,
            "on_preempt": "requeue" if raw["simulation"]["seed"] % 2 else "lose"}})
    res = run(scenario_from_dict(raw))
    if res.records is None:  # no arrival at all: no records to check
        return
    check_invariants(res)
    s, rec = res.summary, res.records
    assert res.timeseries["queue_len"].max() <= cap
    arrival = rec.sort_values("id")["arrival_s"].to_numpy()
    started = rec[rec["start_s"].notna() & (rec["id"] + cap < len(rec))]
    late = started["start_s"].to_numpy() > arrival[started["id"].to_numpy() + cap]
    assert not late.any(), started[late].head()
    assert s["overload"]["shed_by_cap"] == int((rec["outcome"] == "shed_by_cap").sum())


def test_the_cap_is_a_bounded_setting() -> None:
    assert scenario_from_dict(mmc_dict()).simulation.max_in_system == 2_000_000
    assert scenario_from_dict(mmc_dict(simulation={"max_in_system": 7})).simulation \
        .max_in_system == 7
    for bad, why in ((0, "greater than or equal to 1"),
                     (10**10, "less than or equal to 1000000000")):
        with pytest.raises(ScenarioError, match=f"max_in_system.*{why}"):
            scenario_from_dict(mmc_dict(simulation={"max_in_system": bad}))


def test_the_command_line_warns_when_the_cap_sheds(tmp_path: Path) -> None:
    from simulator.cli import main

    src = tmp_path / "s.toml"
    src.write_text(tomli_w.dumps(_overload(simulation={"records": "none"})))
    res = CliRunner().invoke(main, ["run", str(src), "--out", str(tmp_path / "out"),
                                    "--quiet"])
    assert res.exit_code == 0, res.output
    assert "warning: the memory cap simulation.max_in_system = 500 shed" in res.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["overload"]["cap_warning"]


# ----------------------------------------------------------------------------- memory
def _held_rows(duration_s: float, cap: int) -> tuple[int, int]:
    """(the most requests the table held at once, arrivals) of a 100x overload: 1 node of
    10/s offered 1,000/s, no queue limit, no timeout."""
    d = mmc_dict(c=1, lam=1000.0, mean_ms=100.0, duration_s=duration_s, warmup_s=60,
                 simulation={"records": "none", "timeseries_interval_s": 60,
                             "max_in_system": cap},
                 policy={"admission": {"max_queue_length": 10**9}})
    sim = Simulation(scenario_from_dict(d), seed=1)
    tab = sim.table
    most = [0]
    load = tab.load_next

    def counting_load() -> bool:
        loaded = load()
        most[0] = max(most[0], tab.end_id - tab.base)
        return loaded

    tab.load_next = counting_load  # type: ignore[method-assign]
    sim.run()
    return most[0], tab.end_id


def test_the_request_table_stops_growing_at_the_cap() -> None:
    capped_10, n_10 = _held_rows(600, cap=5_000)
    capped_40, n_40 = _held_rows(2400, cap=5_000)
    assert n_40 > 3.5 * n_10  # four times the arrivals...
    # ...and no more held than the cap plus the two chunks loaded around it (~65,536 each)
    assert capped_40 <= 5_000 + 2 * 70_000
    assert capped_40 <= 1.05 * capped_10
    # without the cap the table holds every arrival since the first waiting request
    uncapped_40, _ = _held_rows(2400, cap=10**9)
    assert uncapped_40 > 0.9 * n_40


# the child's own peak resident memory: VmHWM of /proc/self/status (getrusage's ru_maxrss would
# count the parent's memory at the fork too)
_PEAK_RSS = """
import json, re, sys
from simulator import run
from tests.conftest import mmc_dict
d = mmc_dict(c=1, lam=1000.0, mean_ms=100.0, duration_s=float(sys.argv[1]), warmup_s=60,
             simulation={"records": "none", "timeseries_interval_s": 60,
                         "max_in_system": int(sys.argv[2])},
             policy={"admission": {"max_queue_length": 10**9}})
s = run(d, seed=1).summary
hwm = re.search(r"VmHWM:\\s*(\\d+) kB", open("/proc/self/status").read())
print(json.dumps({"peak_rss_kb": int(hwm.group(1)),
                  "arrivals": s["requests"]["arrived_incl_warmup"],
                  "shed": s["overload"]["shed_by_cap"]}))
"""


def _peak_rss(duration_s: float, cap: int) -> dict[str, int]:
    out = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(duration_s), str(cap)],
                         cwd=ROOT, capture_output=True, text=True, check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


needs_proc = pytest.mark.skipif(not Path("/proc/self/status").exists(),
                                reason="peak memory is read from /proc/self/status")


@needs_proc
def test_peak_memory_does_not_grow_with_the_run_once_the_cap_is_reached() -> None:
    # a 100x overload, 10 and 40 simulated minutes: 0.6 and 2.4 million arrivals; without the
    # cap the process grows ~150 bytes an arrival (~270 MB more at 40 minutes)
    short, long = _peak_rss(600, 20_000), _peak_rss(2400, 20_000)
    assert long["shed"] > 0.95 * long["arrivals"]
    grown = (long["peak_rss_kb"] - short["peak_rss_kb"]) * 1024
    assert grown < 20 * (long["arrivals"] - short["arrivals"]), (short, long)


@needs_proc
@pytest.mark.slow
def test_peak_memory_of_a_24_hour_100x_overload_stays_under_a_gigabyte() -> None:
    # 24 simulated hours at 1,000/s on a node serving 10/s, with the default cap (2,000,000):
    # 86.4 million arrivals (the uncapped table would hold them all, ~13 GB); ~40 s
    d = _peak_rss(24 * 3600, 2_000_000)
    assert d["shed"] > 0.8 * d["arrivals"]
    assert d["peak_rss_kb"] * 1024 < 1e9, d
