"""The overload verdict names the true cause (issue 15, item 6, part): a timeout-shed overload
is overloaded, requests lost to spot preemption are losses, not overload."""

from __future__ import annotations

from simulator import run, scenario_from_dict
from tests.conftest import mmc_dict


def test_an_overload_shed_by_timeouts_is_overloaded() -> None:
    # offered load 100 nodes' worth on 1 node; every request waits at most 100 ms
    d = mmc_dict(c=1, lam=1000.0, mean_ms=100.0, duration_s=60, warmup_s=5,
                 policy={"admission": {"timeout_ms": 100}})
    s = run(scenario_from_dict(d), seed=1).summary
    assert s["requests"]["timed_out"] > 0.9 * s["requests"]["arrived"]
    assert s["overloaded"]
    assert "timed out waiting" in s["overload_reason"]
    assert "full queue" not in s["overload_reason"]
    assert s["overload"]["timed_out_share"] > 0.9


def test_requests_lost_to_preemption_are_losses_not_overload() -> None:
    d = mmc_dict(c=8, lam=2.0, duration_s=2000, warmup_s=100)
    d["cluster"]["pools"][0].update({"purchase": "spot", "spot": {
        "preemptions_per_hour": 20.0, "notice_s": 0.0, "on_preempt": "lose"}})
    s = run(scenario_from_dict(d), seed=2).summary
    lost = s["overload"]["lost_with_nodes"]
    assert lost > 0 and s["utilization"] < 0.5
    assert not s["overloaded"] and s["overload_reason"] == ""
    assert "lost with preempted or failed nodes" in s["overload"]["losses_note"]


def test_queue_limits_name_the_setting() -> None:
    d = mmc_dict(c=2, lam=40.0, mean_ms=100.0, duration_s=120, warmup_s=10,
                 policy={"admission": {"max_queue_length": 5}})
    s = run(scenario_from_dict(d), seed=3).summary
    assert s["overloaded"] and "shed by full queues" in s["overload_reason"]
    assert s["overload"]["shed_by_queue_limits"] > 0


def test_a_light_load_is_not_overloaded() -> None:
    s = run(scenario_from_dict(mmc_dict(duration_s=2000, warmup_s=100)), seed=4).summary
    assert not s["overloaded"] and s["overload_reason"] == ""


def test_a_backlog_built_by_a_peak_at_the_end_is_overloaded() -> None:
    """Half load for most of the run, then a 4x peak that the node cannot serve: the whole
    run's utilisation stays low, but the last interval's is ~1 with thousands queued, so the
    run says it is overloaded (it once reported a 7.9 s p99 as not overloaded)."""
    d = mmc_dict(c=1, lam=50.0, mean_ms=10.0, duration_s=200, warmup_s=10)
    d["simulation"]["timeseries_interval_s"] = 10
    d["workload"]["peaks"] = [{"name": "late", "start_s": 160, "ramp_s": 1, "hold_s": 100,
                               "multiplier": 4.0, "relative_to": "curve"}]
    s = run(scenario_from_dict(d), seed=5).summary
    assert s["utilization"] < 0.8 and s["overload"]["backlog_at_end"] > 1000
    assert s["overload"]["utilization_at_end"] > 0.97
    assert s["overloaded"] and "over the last interval" in s["overload_reason"]
