"""Property tests of the example router (run with ``pytest examples/``)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from least_loaded_router import LeastLoadedReadyRouter

from simulator import run
from simulator.rng import BufferedRandom, stream
from simulator.testing import check_deterministic, check_invariants, check_router
from simulator.testing import strategies as st_peaksim

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_router_passes_the_peaksim_checks() -> None:
    # ready nodes only, valid index, deterministic, no starvation in whole small runs
    check_router(LeastLoadedReadyRouter, max_examples=30)


@FAST
@given(st_peaksim.cluster_states())
def test_prefers_a_ready_node_with_room(state: st_peaksim.ClusterState) -> None:
    """A property of this router in particular: never a full node while another has room."""
    v = state.nodes
    j = LeastLoadedReadyRouter().choose(v, BufferedRandom(stream(0, "routing")), state.now_s)
    has_room = v.ready & (v.queue_len < v.capacity)
    if has_room.any():
        assert has_room[j], f"picked full node {j} while another ready node had room"


def _scenario(**pool: Any) -> dict[str, Any]:
    return {
        "name": "example",
        "simulation": {"duration_s": 120.0, "warmup_s": 10.0, "seed": 1, "records": "all"},
        "workload": {"arrival": {"process": "poisson", "rate_qps": 150.0}},
        "service": {"time": {"distribution": "lognormal", "mean_ms": 20.0, "cv": 1.0}},
        "cluster": {"pools": [{"name": "gpu", "nodes": 4, **pool}]},
        "policy": {"dispatch": "per_node", "routing": {"name": "least_loaded_ready"},
                   "admission": {"max_queue_length": 20}},
        "sla": {"slo_ms": 200.0},
    }


@pytest.mark.parametrize("pool", [{}, {"min_nodes": 2, "max_nodes": 6}])
def test_whole_run_invariants(pool: dict[str, Any]) -> None:
    sc = _scenario(**pool)
    if pool:
        sc["policy"]["autoscaling"] = {"name": "hpa", "target": 0.5, "sync_period_s": 10.0}
    res = check_deterministic(sc)  # two identical runs; returns the first
    check_invariants(res)  # conservation, causality, capacity, clock, fleet, billing


def test_beats_random_routing_on_p99() -> None:
    sc = _scenario()
    mine = run(sc).summary["latency_ms"]["p99"]
    sc["policy"]["routing"] = {"name": "random"}
    assert mine < run(sc).summary["latency_ms"]["p99"]


def test_the_example_scenario_runs_with_its_plugin(tmp_path) -> None:
    """examples/least_loaded.toml names the router's file in policy.plugins: the CLI runs it
    from any directory."""
    from pathlib import Path

    from click.testing import CliRunner

    from simulator.cli import main

    here = Path(__file__).parent
    r = CliRunner().invoke(main, ["run", str(here / "least_loaded.toml"), "--quiet",
                                  "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "summary.json").is_file()
