"""simulator.hardware: node types, replica memory, sharding plans (hand-computed cases,
properties against an exhaustive search)."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from simulator.hardware import (
    CATALOG,
    ModelMemory,
    NodeTypeCfg,
    PlacementError,
    ShardingPlan,
    TableSpec,
    all_to_all_s,
    exhaustive_plan,
    lookup,
    plan_placement,
    variant_memory,
)
from simulator.hardware import constants as C
from simulator.profiles import load_profile

CPU_PROFILE = "scenarios/profiles/cpu-x86.json"
#: sum of the production DLRM's 26 table sizes (np.geomspace(1e4, 1e5, 26), rounded)
PROD_ROWS = 1_032_856


def _gpu_node(gpus: int = 1, mem_gb: float = 1.0, host_gb: float = 100.0, **kw: object
              ) -> NodeTypeCfg:
    base: dict[str, object] = dict(
        name=f"test-{gpus}", gpus=gpus, gpu="test", gpu_memory_gb=mem_gb, vcpus=4,
        host_memory_gb=host_gb, price_per_hour_usd=1.0, power_idle_w=10, power_busy_w=20)
    if gpus >= 2:
        base["intra_node_gbps"] = 600.0
    base.update(kw)
    return NodeTypeCfg(**base)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- bandwidth
def test_all_to_all_hand_computed() -> None:
    # 1024 items x 8 ranks x 128 dims x 4 bytes = 4,194,304 bytes over 600e9 B/s
    assert all_to_all_s(1024, 8, 128, 4, 600.0, 0.0) == pytest.approx(4_194_304 / 600e9)
    assert all_to_all_s(1024, 8, 128, 4, 600.0, 50e-6) == pytest.approx(50e-6 + 6.990507e-6)
    # between nodes at TorchRec's 12.5 GB/s: 335.5 us
    assert all_to_all_s(1024, 8, 128, 4, 12.5, 0.0) == pytest.approx(335.54432e-6)
    assert all_to_all_s(1024, 1, 128, 4, 600.0, 50e-6) == 0.0  # one device: no all-to-all


def test_comm_table_wise_vs_row_wise_hand_computed() -> None:
    # 4 equal tables (100 rows x 64, fp32: 25,600 bytes each), dense 1,000 bytes, batch 1024,
    # a 4-GPU node with 40,800 usable bytes per GPU (48,000 less the 15 % reserve)
    mem = ModelMemory(dense_bytes=1000, tables=tuple(TableSpec(100, 64, 256) for _ in range(4)))
    node = _gpu_node(4, mem_gb=48e-6)
    lat = C.ALL_TO_ALL_LATENCY_S
    # table-wise needs 4 GPUs (2 tables = 52,200 > 40,800): per-rank batch 256, each GPU
    # owns one table: 256 x 4 x 64 x 4 = 262,144 bytes at 600 GB/s
    tw = plan_placement(mem, node, max_batch_items=1024, sharding="table_wise")
    assert tw.world_size == 4 and sorted(tw.table_gpus or ()) == [0, 1, 2, 3]
    assert tw.comm_s(1024) == pytest.approx(lat + 262_144 / 600e9)
    # row-wise fits on 3 (4 x 34 rows x 256 + 1,000 = 35,816): per-rank batch 342, each GPU
    # sends a shard of all 4 tables: 342 x 3 x 256 x 4 = 1,050,624 bytes
    rw = plan_placement(mem, node, max_batch_items=1024, sharding="row_wise")
    assert rw.world_size == 3
    assert rw.comm_s(1024) == pytest.approx(lat + 1_050_624 / 600e9)
    # auto: fewest GPUs first, whatever the latency
    auto = plan_placement(mem, node, max_batch_items=1024)
    assert (auto.layout, auto.world_size) == ("row_wise", 3)
    # at equal GPU count (2: 52,200 bytes each way) the lower latency wins: table-wise sends
    # 512 x 2 x 128 x 4, row-wise 512 x 2 x 256 x 4 bytes
    roomy = _gpu_node(4, mem_gb=64e-6)
    two = plan_placement(mem, roomy, max_batch_items=1024)
    assert (two.layout, two.world_size) == ("table_wise", 2)
    assert two.comm_s(1024) == pytest.approx(lat + 524_288 / 600e9)
    rw2 = plan_placement(mem, roomy, max_batch_items=1024, sharding="row_wise")
    assert rw2.comm_s(1024) == pytest.approx(lat + 1_048_576 / 600e9)


def test_host_cache_miss_model_hand_computed() -> None:
    # one table of 1000 rows x 256 bytes in DDR, 20 % in HBM; 100 items, pooling 1:
    # misses 100 x 0.8 x 256 = 20,480 bytes over PCIe 32 GB/s
    mem = ModelMemory(dense_bytes=0, tables=(TableSpec(1000, 64, 256),))
    node = _gpu_node(1, mem_gb=100_000 / 1e9, host_gb=1.0)
    with pytest.raises(PlacementError):
        plan_placement(mem, node, max_batch_items=100, reserve_fraction=0.0)
    p = plan_placement(mem, node, max_batch_items=100, host_cache=True, reserve_fraction=0.0)
    assert (p.layout, p.host_cache, p.world_size) == ("none", True, 1)
    assert p.gpu_bytes == (round(256_000 * 0.2),)
    assert p.host_bytes == 256_000
    assert p.comm_s(100) == pytest.approx(20_480 / 32e9)
    # row-wise over 2 GPUs: each GPU looks up half the ids, so half the misses per GPU
    # (TorchRec: expected_cache_fetches / world_size), plus the all-to-all of 50 x 2 x 64 x 4
    rw = plan_placement(mem, _gpu_node(2, mem_gb=100_000 / 1e9, host_gb=1.0),
                        max_batch_items=100, sharding="row_wise", host_cache=True,
                        reserve_fraction=0.0)
    assert (rw.world_size, rw.host_cache, rw.gpu_bytes) == (2, True, (25_600, 25_600))
    assert rw.comm_s(100) == pytest.approx(C.ALL_TO_ALL_LATENCY_S + 25_600 / 600e9
                                           + 10_240 / 32e9)


# ----------------------------------------------------------------------------- memory
def test_variant_memory_reproduces_model_bytes_and_int8_ratio() -> None:
    prof = load_profile(CPU_PROFILE)
    fp32 = variant_memory(prof, "fp32")
    i8e = variant_memory(prof, "int8_emb")
    bf16 = variant_memory(prof, "bf16")
    assert len(fp32.tables) == 26
    assert fp32.embedding_bytes() == PROD_ROWS * 64 * 4
    assert i8e.embedding_bytes() == PROD_ROWS * (64 + 8)  # int8 rows + fp32 scale and bias
    assert bf16.embedding_bytes() == PROD_ROWS * 64 * 2
    assert fp32.embedding_bytes() / i8e.embedding_bytes() == pytest.approx(256 / 72)  # 3.56x
    # dense by hand: bottom 13-512-256-64, top 415-512-256-1 (415 = 64 + 27*26/2)
    params = (13 * 512 + 512) + (512 * 256 + 256) + (256 * 64 + 64) \
        + (415 * 512 + 512) + (512 * 256 + 256) + (256 + 1)
    assert params == 499_521
    for name, arch_total in (("fp32", params * 4 + PROD_ROWS * 256),
                             ("bf16", params * 2 + PROD_ROWS * 128),
                             ("int8_emb", 497_920 + 1_601 * 4 + PROD_ROWS * 72)):
        measured = prof.variants[name].model_bytes
        assert abs(arch_total - measured) < 0.01 * measured  # the storage rule reproduces it
        m = variant_memory(prof, name)
        assert m.dense_bytes + m.embedding_bytes() == measured  # overhead counted as dense
        assert m.dense_bytes - (measured - m.embedding_bytes()) == 0
    assert fp32.activation_bytes_per_item > 0


def test_variant_memory_scale_and_fallbacks(tmp_path: object) -> None:
    prof = load_profile(CPU_PROFILE)
    big = variant_memory(prof, "fp32", embedding_scale=100.0)
    assert big.embedding_bytes() == PROD_ROWS * 100 * 256
    assert big.dense_bytes == variant_memory(prof, "fp32").dense_bytes
    own = load_profile("scenarios/profiles/stage-preranker.json")  # no table architecture
    m = variant_memory(own, "fp32")
    assert m.tables == () and m.dense_bytes == own.variants["fp32"].model_bytes
    with pytest.raises(ValueError, match="embedding_scale"):
        variant_memory(own, "fp32", embedding_scale=2.0)
    # an architecture that disagrees with model_bytes is not trusted: all dense
    wrong = prof.model_copy(update={"variants": {"fp32": prof.variants["fp32"].model_copy(
        update={"model_bytes": 10_000_000})}})
    w = variant_memory(wrong, "fp32")
    assert w.tables == () and w.dense_bytes == 10_000_000


# ----------------------------------------------------------------------------- node types
def test_catalog_validates_and_has_cited_figures() -> None:
    for name, t in CATALOG.items():
        assert t.name == name and t.source
        assert NodeTypeCfg.model_validate(t.model_dump()) == t
        spot = t.spot_price_per_hour_usd
        assert spot is not None and 0.1 <= spot / t.price_per_hour_usd <= 0.5  # 50-90 % off
    c7i, g5, p5 = CATALOG["c7i.2xlarge"], CATALOG["g5.xlarge"], CATALOG["p5.48xlarge"]
    assert (c7i.gpus, c7i.vcpus, c7i.host_memory_gb, c7i.price_per_hour_usd) == (0, 8, 16, 0.357)
    assert (g5.gpus, g5.gpu_memory_gb, g5.price_per_hour_usd) == (1, 24, 1.006)
    assert (p5.gpus, p5.gpu_memory_gb, p5.intra_node_gbps, p5.reserved_price_per_hour_usd) \
        == (8, 80, 600, 39.33)
    assert CATALOG["p5e.48xlarge"].gpu_memory_gb == 141
    for name, tdp in (("p5.48xlarge", 700), ("p4d.24xlarge", 400), ("g5.xlarge", 150),
                      ("g6.xlarge", 72)):
        t = CATALOG[name]
        assert t.power_busy_w >= t.gpus * tdp > t.power_idle_w
    assert lookup("g5.xlarge") is g5 and lookup("nope") is None
    mine = g5.model_copy(update={"price_per_hour_usd": 0.5})
    assert lookup("g5.xlarge", [mine]) is mine  # a scenario's own type wins


@pytest.mark.parametrize(("change", "field"), [
    ({"gpus": 2, "gpu_memory_gb": None}, "gpu_memory_gb"),
    ({"gpus": 0, "intra_node_gbps": None}, "gpu_memory_gb"),
    ({"intra_node_gbps": 600.0}, "intra_node_gbps"),
    ({"power_busy_w": 1.0}, "power_busy_w"),
    ({"spot_price_per_hour_usd": 5.0}, "spot_price_per_hour_usd"),
    ({"price_per_hour_usd": float("nan")}, "price_per_hour_usd"),
    ({"vcpus": 0}, "vcpus"),
    ({"colour": "red"}, "colour"),
])
def test_node_type_refusals_name_the_field(change: dict[str, object], field: str) -> None:
    data = CATALOG["g5.xlarge"].model_dump() | change
    with pytest.raises(ValidationError, match=field):
        NodeTypeCfg.model_validate(data)


# ----------------------------------------------------------------------------- placement
def test_instances_and_cpu_nodes_hold_full_copies() -> None:
    mem = ModelMemory(dense_bytes=4_000, tables=(TableSpec(10, 8, 100),),
                      activation_bytes_per_item=2)
    one = plan_placement(mem, _gpu_node(1, mem_gb=6e-6), max_batch_items=10, reserve_fraction=0)
    assert one.gpu_bytes == (5_020,) and one.comm_s(10) == 0.0
    with pytest.raises(PlacementError, match="x 2 instance"):
        plan_placement(mem, _gpu_node(1, mem_gb=6e-6), max_batch_items=10, instances=2,
                       reserve_fraction=0)
    two = plan_placement(mem, _gpu_node(2, mem_gb=6e-6), max_batch_items=10, instances=2,
                         reserve_fraction=0)
    assert (two.layout, two.copies_per_gpu, two.gpu_bytes) == ("none", 1, (5_020,))
    cpu = NodeTypeCfg(name="cpu", vcpus=8, host_memory_gb=20_000 / 1e9, price_per_hour_usd=1,
                      power_idle_w=1, power_busy_w=2)
    p = plan_placement(mem, cpu, max_batch_items=10, instances=3, reserve_fraction=0)
    assert (p.world_size, p.host_bytes, p.gpu_bytes) == (0, 15_060, ())
    with pytest.raises(PlacementError, match="CPU node"):
        plan_placement(mem, cpu, max_batch_items=10, instances=4, reserve_fraction=0)


def test_refusal_names_the_numbers() -> None:
    prof = load_profile(CPU_PROFILE)
    mem = variant_memory(prof, "fp32", embedding_scale=1000)  # 264 GB of tables
    with pytest.raises(PlacementError) as exc:
        plan_placement(mem, CATALOG["g5.xlarge"], max_batch_items=1024)
    msg = str(exc.value)
    for part in ("264.4 GB", "g5.xlarge", "24 GB", "20.4 GB usable", "none on 1 GPU",
                 "host_cache"):
        assert part in msg
    with pytest.raises(PlacementError, match="at least 2 GPUs"):
        plan_placement(mem, CATALOG["g5.xlarge"], max_batch_items=1, sharding="row_wise")
    # the same model spans GPUs of one p5 node (264 GB / 8 < 68 GB usable)
    p = plan_placement(mem, CATALOG["p5.48xlarge"], max_batch_items=1024)
    assert p.world_size in (4, 5, 6, 7, 8) and p.nodes_per_replica == 1 and p.fits
    assert "GPU(s)" in p.describe()


def _recomputed_gpu_bytes(plan: ShardingPlan, mem: ModelMemory, node: NodeTypeCfg, k: int,
                          batch: int, ratio: float) -> list[int]:
    """Per-GPU bytes of a plan, recomputed from its layout (an independent oracle)."""
    w = plan.world_size
    copies = k if w > node.gpus else math.ceil(k / (node.gpus // w))
    base = mem.dense_bytes + math.ceil(mem.activation_bytes_per_item * math.ceil(batch / w))
    out = []
    for g in range(w):
        if plan.layout == "none":
            held = [t.bytes for t in mem.tables]
        elif plan.layout == "table_wise":
            assert plan.table_gpus is not None
            held = [t.bytes for t, tg in zip(mem.tables, plan.table_gpus, strict=True) if tg == g]
        else:
            held = [math.ceil(math.ceil(t.rows / w) * t.bytes_per_row) for t in mem.tables]
        if plan.host_cache:
            held = [round(h * ratio) for h in held]
        out.append(copies * (base + sum(held)))
    return out


tables_st = st.lists(st.builds(
    TableSpec, rows=st.integers(1, 400), dim=st.sampled_from([4, 16, 64]),
    bytes_per_row=st.sampled_from([16.0, 64.0, 72.0, 256.0])), min_size=1, max_size=4)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables=tables_st, dense=st.integers(0, 20_000), act=st.sampled_from([0.0, 3.5, 40.0]),
       gpus=st.integers(1, 3), mem_pct=st.integers(10, 150), host_pct=st.integers(10, 300),
       instances=st.integers(1, 3), batch=st.integers(1, 64), host_cache=st.booleans(),
       max_nodes=st.integers(1, 2), sharding=st.sampled_from(["auto", "table_wise"]),
       ratio=st.sampled_from([0.2, 0.5]))
def test_planner_fits_and_matches_exhaustive_minimum(
        tables: list[TableSpec], dense: int, act: float, gpus: int, mem_pct: int, host_pct: int,
        instances: int, batch: int, host_cache: bool, max_nodes: int, sharding: str,
        ratio: float) -> None:
    mem = ModelMemory(dense_bytes=dense, tables=tuple(tables), activation_bytes_per_item=act)
    # GPU memory from 10 % to 150 % of what the node's instances need on one GPU; host memory
    # from 10 % to 300 % of their tables
    need = instances * mem.replica_bytes(batch) / (1 - C.MEMORY_RESERVE_FRACTION)
    node = _gpu_node(gpus, mem_gb=need * mem_pct / 100 / 1e9,
                     host_gb=max(1, instances * mem.embedding_bytes()) * host_pct / 100 / 1e9)
    kw = dict(max_batch_items=batch, instances=instances, sharding=sharding,
              host_cache=host_cache, caching_ratio=ratio, max_nodes_per_replica=max_nodes)
    try:
        ref = exhaustive_plan(mem, node, **kw)  # type: ignore[arg-type]
    except PlacementError:
        ref = None
    if ref is None:
        with pytest.raises(PlacementError):
            plan_placement(mem, node, **kw)  # type: ignore[arg-type]
        return
    plan = plan_placement(mem, node, **kw)  # type: ignore[arg-type]
    # never beyond device memory, by the plan's own figures and recomputed
    cap = node.gpu_memory_gb * 1e9 * (1 - C.MEMORY_RESERVE_FRACTION)  # type: ignore[operator]
    assert plan.fits and max(plan.gpu_bytes) <= cap
    assert plan.host_bytes <= node.host_memory_gb * 1e9 * (1 - C.MEMORY_RESERVE_FRACTION)
    assert list(plan.gpu_bytes) == _recomputed_gpu_bytes(plan, mem, node, instances, batch,
                                                         ratio)
    # as few GPUs as the exhaustive search, and as little added latency
    assert (plan.nodes_per_replica, plan.world_size) == (ref.nodes_per_replica, ref.world_size)
    assert plan.comm_s(batch) == pytest.approx(ref.comm_s(batch), rel=1e-9, abs=1e-15)


def test_catalog_p5_plans_production_model_quickly() -> None:
    prof = load_profile(CPU_PROFILE)
    mem = variant_memory(prof, "int8_emb", embedding_scale=2000)  # ~149 GB of tables
    p = plan_placement(mem, CATALOG["p5.48xlarge"], max_batch_items=1024, instances=2)
    assert p.fits and p.world_size >= 2
    recomputed = _recomputed_gpu_bytes(p, mem, CATALOG["p5.48xlarge"], 2, 1024, 0.2)
    assert list(p.gpu_bytes) == recomputed
