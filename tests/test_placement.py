"""Memory decides placement: a replica must fit its node type's devices, quantization changes
how many GPUs it needs, sharded replicas pay the all-to-all per batch, and summaries speak in
instances and GPUs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from simulator import run, scenario_from_dict
from simulator.engine.simulation import Simulation
from simulator.hardware.memory import variant_memory
from simulator.hardware.node_types import CATALOG
from simulator.hardware.sharding import plan_placement
from simulator.profiles import load_profile
from simulator.scenario import ScenarioError
from tests.conftest import ROOT, mmc_dict

A10G = str(ROOT / "scenarios/profiles/gpu-a10g.json")  # projected for g5.xlarge
H100 = str(ROOT / "scenarios/profiles/gpu-h100.json")  # projected for p5.48xlarge
CPU = str(ROOT / "scenarios/profiles/cpu-x86.json")


def _sc(variant: str, scale: float, node: str = "g5.xlarge", profile: str = A10G,
        lam: float = 50.0, pool: dict[str, Any] | None = None, **placement: Any
        ) -> dict[str, Any]:
    d = mmc_dict(c=1, lam=lam, duration_s=200, warmup_s=0, seed=4,
                 cluster={"pools": [{"name": "g", "nodes": 2, "node_type": node,
                                     "placement": {"embedding_scale": scale, **placement},
                                     **(pool or {})}]},
                 policy={"batching": {"name": "dynamic", "max_batch": 8, "max_wait_ms": 1}})
    d["service"] = {"profile": profile, "variant": variant}
    return d


def test_quantization_decides_whether_a_replica_fits_one_gpu() -> None:
    """A 100x production DLRM: fp32 tables (26 GB) exceed an A10G's 24 GB; the row-wise int8
    tables (3.6x smaller, 7.6 GB) fit one GPU."""
    with pytest.raises(ScenarioError, match=r"cluster\.pools\.g\.placement.*variant 'fp32'.*"
                       r"does not fit node type 'g5\.xlarge'.*26\.\d+ GB.*service\.variant"):
        Simulation(scenario_from_dict(_sc("fp32", 100)))
    s = run(scenario_from_dict(_sc("int8_emb", 100))).summary
    hw = s["pools"]["g"]["hardware"]
    assert hw["gpus_per_node"] == 1 and hw["gpus"]["max"] == 2
    assert "none over 1 GPU" in hw["placement"]


def test_int8_needs_fewer_gpus_per_replica_on_p5() -> None:
    prof = load_profile(H100)
    node = CATALOG["p5.48xlarge"]
    fp32 = plan_placement(variant_memory(prof, "fp32", embedding_scale=300), node,
                          max_batch_items=8)
    int8 = plan_placement(variant_memory(prof, "int8_emb", embedding_scale=300), node,
                          max_batch_items=8)
    assert fp32.world_size >= 2 > int8.world_size == 1  # 80 GB of tables vs 22 GB


def test_sharded_replica_pays_the_all_to_all_per_batch() -> None:
    """Same variant, same random streams: a replica sharded over 2 H100s (300x tables) is
    slower than one that fits a GPU (30x) by exactly the layout's added time per batch."""
    def sc(scale: float) -> Any:
        d = _sc("fp32", scale, node="p5.48xlarge", profile=H100, lam=2.0)
        d["policy"]["batching"] = {"name": "none"}  # one item per batch
        return scenario_from_dict(d)

    one, sharded = run(sc(30)), run(sc(300))
    assert "table_wise" in sharded.summary["pools"]["g"]["hardware"]["placement"]
    prof = load_profile(H100)
    plan = plan_placement(variant_memory(prof, "fp32", embedding_scale=300),
                          CATALOG["p5.48xlarge"], max_batch_items=1)
    added_ms = plan.comm_s(1) * 1e3  # one item per batch
    assert added_ms > 0.01
    diff = sharded.summary["latency_ms"]["p50"] - one.summary["latency_ms"]["p50"]
    assert diff == pytest.approx(added_ms, rel=0.01)


def test_instances_on_separate_gpus_need_no_slowdown_factors() -> None:
    """4 instances of a 2-GPU replica on an 8-GPU node sit on different GPUs: no contention,
    no factors used; 8 would put two copies on each GPU, more than its memory."""
    d = _sc("fp32", 300, node="p5.48xlarge", profile=H100,
            pool={"instances": 4, "instance_slowdown": {2: 3.0}})
    sim = Simulation(scenario_from_dict(d))
    assert sim.pools[0].device_groups == 4 and sim.hardware[0].slowdown == (1.0,)
    s = run(scenario_from_dict(d)).summary["pools"]["g"]["hardware"]
    assert s["instances_per_node"] == 4 and s["instances"]["max"] == 8
    assert s["gpus_per_node"] == 8
    d = _sc("fp32", 300, node="p5.48xlarge", profile=H100, pool={"instances": 8})
    with pytest.raises(ScenarioError, match=r"x 8 instance\(s\) does not fit"):
        Simulation(scenario_from_dict(d))


def test_an_instance_count_the_node_cannot_hold_is_refused() -> None:
    """Every worker process of a CPU node holds its own replica in host memory."""
    ok = _sc("fp32", 20, node="c7i.2xlarge", profile=CPU,
             pool={"instances": 2, "instance_slowdown": {2: 1.1}})
    Simulation(scenario_from_dict(ok))
    bad = _sc("fp32", 20, node="c7i.2xlarge", profile=CPU,
              pool={"instances": 4, "instance_slowdown": {4: 1.5}})
    with pytest.raises(ScenarioError, match=r"x 4 instance\(s\) does not fit node type "
                       r"'c7i\.2xlarge'.*cluster\.pools\.g\.instances"):
        Simulation(scenario_from_dict(bad))


def test_placement_needs_a_known_node_type() -> None:
    d = _sc("int8_emb", 1, node="my-box")
    with pytest.raises(ScenarioError, match=r"placement.*'my-box' is not a known type"):
        Simulation(scenario_from_dict(d))


def test_profile_serves_the_node_type_it_was_made_for() -> None:
    """The A10G projection is for g5.xlarge: a pool of p5.48xlarge refuses it; a label that
    names no known type (older scenarios) does not check."""
    with pytest.raises(ScenarioError, match=r"cluster\.pools\.g\.node_type.*'p5\.48xlarge'.*"
                       r"projected for node type 'g5\.xlarge'"):
        Simulation(scenario_from_dict(_sc("int8_emb", 1, node="p5.48xlarge")))
    d = _sc("int8_emb", 1, node="gpu-box")
    del d["cluster"]["pools"][0]["placement"]
    Simulation(scenario_from_dict(d))


def test_custom_node_type_and_catalog_defaults() -> None:
    d = _sc("fp32", 1, node="box", profile=CPU)
    d["cluster"]["node_types"] = [{"name": "box", "gpus": 2, "gpu": "X", "gpu_memory_gb": 16,
                                   "vcpus": 8, "host_memory_gb": 64,
                                   "price_per_hour_usd": 2.5, "spot_price_per_hour_usd": 1.0,
                                   "power_idle_w": 50, "power_busy_w": 400}]
    sc = scenario_from_dict(d)
    p = sc.cluster.pools[0]
    assert (p.price_per_hour_usd, p.power_idle_w, p.power_busy_w) == (2.5, 50, 400)
    d["cluster"]["pools"][0]["purchase"] = "spot"
    assert scenario_from_dict(d).cluster.pools[0].price_per_hour_usd == 1.0
    d["cluster"]["pools"][0]["price_per_hour_usd"] = 1.7  # a negotiated price wins
    assert scenario_from_dict(d).cluster.pools[0].price_per_hour_usd == 1.7
    s = run(scenario_from_dict(d)).summary["pools"]["g"]["hardware"]
    assert s["gpus_per_node"] == 2 and s["node_type"] == "box"


def test_shipped_profiles_resolve_memory(tmp_path: Path) -> None:
    """Every variant of the shipped GPU profiles has a memory model that matches its size."""
    for name in ("gpu-a10g.json", "gpu-h100.json", "cpu-x86.json"):
        prof = load_profile(ROOT / "scenarios/profiles" / name)
        for v, vp in prof.variants.items():
            m = variant_memory(prof, v)
            assert m.replica_bytes(0) == pytest.approx(vp.model_bytes, rel=0.01), (name, v)


def test_projection_records_its_node_type(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from simulator.cli import main

    out = tmp_path / "a10g.json"
    res = CliRunner().invoke(main, ["profile", "project", CPU, "--gpu", "a10g", "--out",
                                    str(out), "--instances", "1,2"])
    assert res.exit_code == 0, res.output
    assert load_profile(out).node_type == "g5.xlarge"
    out = tmp_path / "h100.json"
    res = CliRunner().invoke(main, ["profile", "project", CPU, "--gpu", "h100", "--out",
                                    str(out), "--instances", "1,2", "--node-type", "my-h100"])
    assert res.exit_code == 0, res.output
    assert load_profile(out).node_type == "my-h100"
