"""What a pool's nodes are as hardware: the node type as sold, the model instances per node and
their slowdown, and where a replica's memory sits (one device, or sharded).

Resolved once per pool when a run is assembled (so ``validate`` refuses what cannot be served,
naming the fields); pure, no SimPy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from simulator.borrowing import borrow_windows_for_peaks, capacity_schedule
from simulator.config_base import DelayCfg
from simulator.hardware.instances import InstancesError, slowdown_table
from simulator.hardware.memory import ModelMemory, variant_memory
from simulator.hardware.node_types import NodeTypeCfg, lookup
from simulator.hardware.sharding import PlacementError, ShardingPlan, plan_placement
from simulator.policies import create
from simulator.profiles import ProfileError, load_profile
from simulator.scenario import PoolCfg, Scenario, ScenarioError
from simulator.sections import PlacementCfg


@dataclass(frozen=True)
class Loan:
    """A borrowed pool's loan, resolved for one run (times in s since the run's beginning).

    ``changes``: (t, lendable nodes) steps, the first at 0; ``windows``: [from, to) spans when
    the nodes are wanted (ahead of and after each scheduled peak); ``delay``: the borrow delay
    (instead of provisioning); ``notice_s``: the reclaim notice; ``gpus_per_node``: GPUs each
    borrowed node takes from training.
    """

    changes: tuple[tuple[float, int], ...]
    windows: tuple[tuple[float, float], ...]
    delay: DelayCfg
    notice_s: float
    gpus_per_node: int


@dataclass(frozen=True)
class PoolHardware:
    """A pool's resolved hardware.

    ``instances``: model instances per node; ``slowdown``: service-time multiplier at 1..n
    concurrent instances on one device (index n - 1); ``slowdown_source``: where the factors
    came from; ``device_groups``: groups of GPUs instances are spread over.
    """

    instances: int
    slowdown: tuple[float, ...]
    slowdown_source: str
    node_type: NodeTypeCfg | None = None
    loan: Loan | None = None
    plan: ShardingPlan | None = None
    device_groups: int = 1  # instance i serves on GPU group i mod device_groups

    @property
    def machines_per_node(self) -> int:
        """Machines one simulated node is: 1, or the nodes a sharded replica spans (billed and
        powered together)."""
        return self.plan.nodes_per_replica if self.plan is not None else 1

    def batch_comm(self) -> Callable[[int], float] | None:
        """The per-batch latency the layout adds (items -> s), or None when it adds none."""
        p = self.plan
        if p is None or not p.out_dims or p.comm_s(max(1, p.max_batch_items)) == 0.0:
            return None
        return p.comm_s

    @property
    def gpus_per_node(self) -> int:
        """GPUs per node (0: a CPU node or an unknown type; a borrowed pool: its loan's)."""
        if self.loan is not None:
            return self.loan.gpus_per_node
        return self.node_type.gpus if self.node_type is not None else 0


def _field(pc: PoolCfg, name: str) -> str:
    return f"cluster.pools.{pc.name}.{name}"


def instance_slowdown(sc: Scenario, pc: PoolCfg,
                      sharing: int | None = None) -> tuple[tuple[float, ...], str]:
    """The slowdown factors of pool ``pc``'s instances (see :mod:`simulator.hardware.instances`)
    and their source, for up to ``sharing`` instances on one device (default: all of a node's);
    raises ScenarioError naming the fields when none can be had."""
    k = pc.instances if sharing is None else sharing
    if pc.instance_slowdown is not None:
        try:
            return slowdown_table(pc.instance_slowdown, k), "scenario"
        except InstancesError as exc:
            raise ScenarioError(f"{sc.source}: field '{_field(pc, 'instance_slowdown')}': "
                                f"{exc} (cluster.pools.{pc.name}.instances = {k})") from None
    if k == 1:
        return (1.0,), "single instance"
    svc = sc.pool_service(pc)
    where = f"{_field(pc, 'instances')} = {k}"
    if svc.profile is None or svc.variant is None:
        raise ScenarioError(
            f"{sc.source}: field '{_field(pc, 'instance_slowdown')}': {where} needs the "
            "slowdown of concurrent instances; an analytic service has no profile to take it "
            f"from: set cluster.pools.{pc.name}.instance_slowdown = {{1 = 1.0, {k} = ...}}")
    try:
        prof = load_profile(sc.resolve_path(svc.profile))
    except ProfileError as exc:
        raise ScenarioError(f"{sc.source}: field 'service.profile': {exc}") from None
    scaling = prof.instances
    by_n = None if scaling is None else scaling.slowdown.get(svc.variant)
    if by_n is None:
        raise ScenarioError(
            f"{sc.source}: field '{_field(pc, 'instances')}': {where} needs the slowdown of "
            f"concurrent instances, and profile {svc.profile} has none for variant "
            f"'{svc.variant}': measure it (peaksim calibrate-instances --profile "
            f"{svc.profile} --instances 1,2,{k}), project it (peaksim profile project), or set "
            f"cluster.pools.{pc.name}.instance_slowdown")
    try:
        table = slowdown_table(by_n, k)
    except InstancesError as exc:
        raise ScenarioError(f"{sc.source}: field '{_field(pc, 'instances')}': {where}: profile "
                            f"{svc.profile} ({scaling.source}, variant '{svc.variant}'): "
                            f"{exc}") from None
    return table, f"profile ({scaling.source})"


def pool_hardware(sc: Scenario, pc: PoolCfg) -> PoolHardware:
    """Resolve pool ``pc``'s hardware (raises ScenarioError naming the fields)."""
    if pc.instances > 1 and sc.policy.dispatch != "central":
        raise ScenarioError(
            f"{sc.source}: field '{_field(pc, 'instances')}': {pc.instances} instances per "
            "node share the node's queue, which needs policy.dispatch = 'central' (per-node "
            f"dispatch gives each node one queue and one batch at a time); it is "
            f"'{sc.policy.dispatch}'")
    nt = lookup(pc.node_type, sc.cluster.node_types)
    if nt is not None:
        check_profile_node_type(sc, pc)
    plan = placement(sc, pc, nt)
    groups = device_groups(plan, nt, pc.instances)
    sharing = -(-pc.instances // groups)  # instances on one device (group of GPUs)
    if sharing == 1 and pc.instance_slowdown is None:
        slow, source = (1.0,), "one instance per device"
    else:
        slow, source = instance_slowdown(sc, pc, sharing)
    return PoolHardware(instances=pc.instances, slowdown=slow, slowdown_source=source,
                        node_type=nt, loan=loan_of(sc, pc, nt), plan=plan,
                        device_groups=groups)


def check_profile_node_type(sc: Scenario, pc: PoolCfg) -> None:
    """A profile measured or projected for one node type serves pools of that type only (a
    pool of a known type; profiles that name no type, older ones, serve any)."""
    svc = sc.pool_service(pc)
    if svc.profile is None:
        return
    try:
        prof = load_profile(sc.resolve_path(svc.profile))
    except ProfileError as exc:
        raise ScenarioError(f"{sc.source}: field 'service.profile': {exc}") from None
    if prof.node_type is not None and prof.node_type != pc.node_type:
        raise ScenarioError(
            f"{sc.source}: field 'cluster.pools.{pc.name}.node_type': '{pc.node_type}', and "
            f"profile {svc.profile} was {prof.source} for node type '{prof.node_type}': its "
            f"latencies are that machine's. Use a profile for '{pc.node_type}' (peaksim "
            f"calibrate --node-type, or peaksim profile project --node-type) or a pool of "
            f"type '{prof.node_type}'")


def device_groups(plan: ShardingPlan | None, nt: NodeTypeCfg | None, instances: int) -> int:
    """Groups of GPUs of a node that each hold whole replicas (instance i on group i mod n):
    instances on different groups do not slow each other. 1 on a CPU node, an unknown node
    type, or a replica spanning nodes (every instance shares the whole node)."""
    if plan is None or nt is None or nt.gpus == 0 or not 1 <= plan.world_size <= nt.gpus:
        return 1
    return max(1, min(instances, nt.gpus // plan.world_size))


def max_batch_items(sc: Scenario) -> int:
    """The most items one batch can hold: the batcher's item limit, else its request limit x
    the largest request (classes' size.max)."""
    b = sc.policy.batching
    batcher = create("batcher", b.name, b.params)
    per_request = max(int(c.size.max) for c in sc.workload.classes)
    items = getattr(batcher, "max_batch_items", None)
    by_count = int(batcher.max_batch) * per_request
    return int(min(items, by_count)) if items else by_count


def _memory(sc: Scenario, pc: PoolCfg, scale: float) -> ModelMemory | None:
    """One replica's memory: from the profile's architecture, else model_memory_gb (dense),
    else unknown (None)."""
    svc = sc.pool_service(pc)
    f = f"cluster.pools.{pc.name}.placement.embedding_scale"
    if svc.profile is not None and svc.variant is not None:
        try:
            prof = load_profile(sc.resolve_path(svc.profile))
            mem = variant_memory(prof, svc.variant, embedding_scale=scale)
        except (ProfileError, ValueError) as exc:
            raise ScenarioError(f"{sc.source}: field '{f}': {exc}") from None
        if pc.model_memory_gb is not None:  # configured size wins for the dense part
            return ModelMemory(dense_bytes=int(pc.model_memory_gb * 1e9),
                               tables=mem.tables if scale != 1.0 else (),
                               activation_bytes_per_item=mem.activation_bytes_per_item,
                               note="model_memory_gb")
        return mem
    if scale != 1.0:
        raise ScenarioError(f"{sc.source}: field '{f}': scales the profile's embedding tables, "
                            f"and pool '{pc.name}' has an analytic service (no profile)")
    if pc.model_memory_gb is not None:
        return ModelMemory(dense_bytes=int(pc.model_memory_gb * 1e9), note="model_memory_gb")
    return None


def placement(sc: Scenario, pc: PoolCfg, nt: NodeTypeCfg | None) -> ShardingPlan | None:
    """Where pool ``pc``'s replicas sit on its node type (None: unknown type or model size);
    raises ScenarioError naming the fields when no layout fits."""
    cfg = pc.placement
    if nt is None:
        if cfg is not None:
            raise ScenarioError(
                f"{sc.source}: field 'cluster.pools.{pc.name}.placement': placement needs the "
                f"node's memory, and node_type '{pc.node_type}' is not a known type (give it "
                "in cluster.node_types, or use a catalog name: docs/hardware.md)")
        return None
    cfg = cfg or PlacementCfg()
    mem = _memory(sc, pc, cfg.embedding_scale)
    if mem is None:
        return None
    try:
        return plan_placement(mem, nt, max_batch_items=max_batch_items(sc),
                              instances=pc.instances, sharding=cfg.sharding,
                              host_cache=cfg.host_cache, caching_ratio=cfg.caching_ratio,
                              max_nodes_per_replica=cfg.max_nodes_per_replica)
    except PlacementError as exc:
        svc = sc.pool_service(pc)
        what = f"variant '{svc.variant}'" if svc.variant else "the model"
        raise ScenarioError(
            f"{sc.source}: field 'cluster.pools.{pc.name}.placement': {what} x "
            f"{pc.instances} instance(s) does not fit node type '{nt.name}': {exc} (fields: "
            f"service.variant, cluster.pools.{pc.name}.instances, .node_type, "
            ".placement)") from None


def loan_of(sc: Scenario, pc: PoolCfg, nt: NodeTypeCfg | None) -> Loan | None:
    """A borrowed pool's loan (None for any other pool); raises ScenarioError naming the
    fields when its capacity source cannot be read or does not hold the pool's first nodes."""
    b = pc.borrow
    if b is None:
        return None
    where = f"cluster.pools.{pc.name}.borrow"
    try:
        sched = capacity_schedule(
            b.model_copy(update={"trace": str(sc.resolve_path(b.trace))}) if b.trace else b,
            sim_start=sc.simulation.start, warmup_s=sc.simulation.warmup_s)
    except FileNotFoundError:
        raise sc.missing_file(f"{where}.trace", str(b.trace)) from None
    except (ValueError, OSError) as exc:
        raise ScenarioError(f"{sc.source}: field '{where}.{'trace' if b.trace else 'calendar'}"
                            f"': {exc}") from None
    at0 = sched.at(0.0)
    if pc.nodes > at0:
        raise ScenarioError(f"{sc.source}: field 'cluster.pools.{pc.name}.nodes': {pc.nodes} "
                            f"nodes at the run's beginning, and the training cluster lends "
                            f"{at0} then ({where}): start with at most {at0}")
    gpus = b.gpus_per_node
    if nt is not None:
        if nt.gpus == 0:
            raise ScenarioError(f"{sc.source}: field 'cluster.pools.{pc.name}.node_type': a "
                                f"borrowed pool takes training GPUs, and node type "
                                f"'{nt.name}' has none")
        if "gpus_per_node" in b.model_fields_set and b.gpus_per_node != nt.gpus:
            raise ScenarioError(f"{sc.source}: field '{where}.gpus_per_node': "
                                f"{b.gpus_per_node}, and node type '{nt.name}' has {nt.gpus} "
                                "GPUs: remove one")
        gpus = nt.gpus
    windows: list[tuple[float, float]] = []
    if sc.workload.peaks:
        windows = borrow_windows_for_peaks(sc.workload.peaks, b.lead_s, b.return_after_s,
                                           starts_s=sc.peak_starts_s())
    return Loan(changes=tuple(sched.changes()), windows=tuple(windows), delay=b.borrow_delay,
                notice_s=b.reclaim_notice_s, gpus_per_node=gpus)
