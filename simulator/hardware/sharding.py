"""Where one replica's memory sits on a node type, and what the layout adds to each batch.

A replica's dense layers are replicated on every GPU it uses; its embedding tables are laid
out over ``world_size`` GPUs (one node: the NVLink/PCIe link between its GPUs; several
nodes: the per-GPU network link):

- ``none``: the whole replica on one GPU (or, on a CPU node, in host memory);
- ``table_wise``: each table whole on one GPU, tables balanced over the GPUs;
- ``row_wise``: each table's rows split evenly over the GPUs;
- any of them with ``host_cache``: the tables live in host DDR and a share ``caching_ratio``
  of each is cached in HBM (TorchRec's UVM caching kernels).

Units: bytes, seconds, GB/s = 1e9 bytes/s. The cost model follows TorchRec's planner
(``torchrec/distributed/planner/shard_estimators.py``, ``EmbeddingPerfEstimator`` in
inference mode: forward comms only); docs/hardware.md gives every formula and what differs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from simulator.hardware import constants as C
from simulator.hardware.memory import ModelMemory
from simulator.hardware.node_types import NodeTypeCfg

Sharding = Literal["auto", "none", "table_wise", "row_wise"]
LAYOUTS: tuple[str, ...] = ("none", "table_wise", "row_wise")
#: search nodes the table-wise branch and bound may visit per world size before it settles
#: for the best assignment found so far
SEARCH_BUDGET = 5_000
#: largest number of assignments :func:`exhaustive_plan` enumerates per world size
EXHAUSTIVE_LIMIT = 2_000_000


class PlacementError(ValueError):
    """No layout of the replica fits the node type (the message names the numbers)."""


def all_to_all_s(batch_items: float, world_size: int, emb_dim: float, dtype_bytes: float,
                 bandwidth_gbps: float, latency_s: float) -> float:
    """Time of one embedding output all-to-all, s: ``latency_s + bytes / bandwidth``.

    ``bytes = batch_items x world_size x emb_dim x dtype_bytes``: TorchRec's table-wise
    output-size rule (``_get_tw_sharding_perf``: ``fwd_output_write_size = batch_outputs *
    world_size * emb_dim * fwd_a2a_comm_data_type_size``; ``_calculate_tw_shard_io_sizes``),
    where ``batch_items`` is the per-rank batch (items each GPU's dense part serves),
    ``emb_dim`` the pooled output elements per item that the sending GPU owns (a table's dim;
    the sum over its tables for several) and ``dtype_bytes`` the output element size.
    Row-wise uses the same byte count per shard (``_get_rw_sharding_perf``, a reduce-scatter of
    partial sums), but every GPU holds a shard of every table, so its ``emb_dim`` is the sum
    over all tables. ``bandwidth_gbps`` in GB/s (1e9 bytes/s); on one device (``world_size``
    <= 1) there is no all-to-all: 0.
    """
    if world_size <= 1:
        return 0.0
    nbytes = batch_items * world_size * emb_dim * dtype_bytes
    return latency_s + nbytes / (bandwidth_gbps * C.GB)


@dataclass(frozen=True)
class ShardingPlan:
    """Where one replica's memory sits, and its added per-batch latency.

    ``world_size``: GPUs per replica (0 on a CPU node); ``nodes_per_replica``: nodes one
    replica spans; ``replicas_per_node``: model instances per node, each a full replica (a
    replica spanning n nodes has a shard on each); ``copies_per_gpu``: replicas sharing each
    GPU. ``gpu_bytes``: HBM bytes of each GPU of one replica's GPU group (all copies);
    ``host_bytes``: host memory bytes used per node (the model on a CPU node, the tables
    cached from DDR with ``host_cache``); ``table_gpus``: table-wise, the GPU of each table.
    The remaining fields feed :meth:`comm_s`.
    """

    layout: str
    host_cache: bool
    world_size: int
    nodes_per_replica: int
    replicas_per_node: int
    copies_per_gpu: int
    gpu_bytes: tuple[int, ...]
    gpu_capacity_bytes: float
    host_bytes: int
    host_capacity_bytes: float
    max_batch_items: int
    table_gpus: tuple[int, ...] | None = None
    out_dims: tuple[float, ...] = ()
    miss_bytes_per_item: tuple[float, ...] = ()
    link_gbps: float = C.NVLINK_GBPS
    pcie_gbps: float = C.PCIE_GBPS
    latency_s: float = C.ALL_TO_ALL_LATENCY_S
    output_dtype_bytes: int = 4

    @property
    def fits(self) -> bool:
        """Whether every GPU and the host stay within their usable memory."""
        return (all(b <= self.gpu_capacity_bytes for b in self.gpu_bytes)
                and self.host_bytes <= self.host_capacity_bytes)

    def comm_s(self, batch_items: int) -> float:
        """Latency the layout adds to a batch of ``batch_items`` items, s: the output
        all-to-all (per-rank batch ceil(batch / world_size); the slowest GPU) plus, with
        ``host_cache``, fetching the cache misses over PCIe; 0 for ``none`` without cache."""
        if batch_items <= 0 or not self.out_dims:
            return 0.0
        w = max(1, self.world_size)
        per_rank = math.ceil(batch_items / w)
        slowest = max(
            all_to_all_s(per_rank, w, dims, self.output_dtype_bytes, self.link_gbps, 0.0)
            + batch_items * miss / (self.pcie_gbps * C.GB)
            for dims, miss in zip(self.out_dims, self.miss_bytes_per_item, strict=True))
        return (self.latency_s if w > 1 else 0.0) + slowest

    def describe(self) -> str:
        """One line: layout, GPUs, memory used of usable, added latency at the largest batch."""
        cache = " with tables in host DDR (HBM cache)" if self.host_cache else ""
        extra = f"; adds {self.comm_s(self.max_batch_items) * 1e3:.3g} ms at " \
                f"{self.max_batch_items} items" if self.out_dims else ""
        if self.world_size == 0:
            return (f"{self.layout}: {self.replicas_per_node} replica(s) in host memory, "
                    f"{self.host_bytes / C.GB:.3g} GB of {self.host_capacity_bytes / C.GB:.3g} "
                    f"GB usable")
        host = (f"; host {self.host_bytes / C.GB:.3g} GB of "
                f"{self.host_capacity_bytes / C.GB:.3g} GB" if self.host_bytes else "")
        return (f"{self.layout}{cache} over {self.world_size} GPU(s) on "
                f"{self.nodes_per_replica} node(s), {self.replicas_per_node} instance(s) per "
                f"node ({self.copies_per_gpu} per GPU): HBM per GPU up to "
                f"{max(self.gpu_bytes) / C.GB:.3g} GB of {self.gpu_capacity_bytes / C.GB:.3g} "
                f"GB usable{host}{extra}")


# ----------------------------------------------------------------------------- accounting
@dataclass(frozen=True)
class _Setting:
    mem: ModelMemory
    node: NodeTypeCfg
    max_batch_items: int
    instances: int
    caching_ratio: float
    latency_s: float
    gpu_cap: float
    host_cap: float


def _worlds(node: NodeTypeCfg, max_nodes: int) -> list[int]:
    """World sizes to try, ascending: 1..G GPUs within a node, then whole nodes 2..max."""
    g = node.gpus
    return [*range(1, g + 1), *(g * n for n in range(2, max_nodes + 1))]


def _copies(node: NodeTypeCfg, world: int, instances: int) -> int:
    """Replicas sharing each GPU: instances spread over the node's groups of ``world`` GPUs."""
    if world > node.gpus:
        return instances
    return math.ceil(instances / (node.gpus // world))


def _link(node: NodeTypeCfg, world: int) -> float:
    """GB/s of the all-to-all among ``world`` GPUs (TorchRec ``BasicCommsBandwidths``:
    intra-host within a node, inter-host when the world spans nodes)."""
    if world > node.gpus:
        return node.inter_node_gbps
    return node.gpu_link_gbps or node.pcie_gbps


def _table_mem(t_bytes: int, cached: bool, ratio: float) -> int:
    """HBM bytes of a table (or shard): whole, or the cached share (TorchRec
    ``calculate_shard_storages``: hbm = round(ddr * caching_ratio))."""
    return round(t_bytes * ratio) if cached else t_bytes


def _build(s: _Setting, layout: str, cached: bool, world: int,
           assignment: Sequence[int] | None = None) -> ShardingPlan:
    """The plan of ``layout`` over ``world`` GPUs (``assignment``: table -> GPU, table-wise)."""
    mem, node, k, r = s.mem, s.node, s.instances, s.caching_ratio
    b = s.max_batch_items
    if node.gpus == 0:
        return ShardingPlan(layout="none", host_cache=False, world_size=0,
                            nodes_per_replica=1, replicas_per_node=k, copies_per_gpu=0,
                            gpu_bytes=(), gpu_capacity_bytes=0.0,
                            host_bytes=k * mem.replica_bytes(b), host_capacity_bytes=s.host_cap,
                            max_batch_items=b)
    copies = _copies(node, world, k)
    per_rank = math.ceil(b / world)
    base = mem.dense_bytes + mem.activation_bytes(per_rank)
    tables = mem.tables
    miss_share = 1.0 - r if cached else 0.0
    shard_ddr = [0] * world  # table bytes (full) owned by each GPU
    hbm = [0] * world
    dims = [0.0] * world
    miss = [0.0] * world
    if layout == "none":
        for t in tables:
            shard_ddr[0] += t.bytes
            hbm[0] += _table_mem(t.bytes, cached, r)
            miss[0] += t.pooling * miss_share * t.bytes_per_row
    elif layout == "table_wise":
        assert assignment is not None and len(assignment) == len(tables)
        for t, g in zip(tables, assignment, strict=True):
            shard_ddr[g] += t.bytes
            hbm[g] += _table_mem(t.bytes, cached, r)
            dims[g] += t.dim
            miss[g] += t.pooling * miss_share * t.bytes_per_row
    elif layout == "row_wise":
        for t in tables:
            shard = math.ceil(math.ceil(t.rows / world) * t.bytes_per_row)
            for g in range(world):
                shard_ddr[g] += shard
                hbm[g] += _table_mem(shard, cached, r)
                dims[g] += t.dim
                miss[g] += t.pooling * miss_share * t.bytes_per_row / world
    else:
        raise ValueError(f"unknown layout {layout!r}; allowed: {', '.join(LAYOUTS)}")
    nodes = max(1, world // node.gpus) if world > node.gpus else 1
    gpus_per_node = min(world, node.gpus)
    host = 0
    if cached:
        host = k * max(sum(shard_ddr[n * gpus_per_node:(n + 1) * gpus_per_node])
                       for n in range(nodes))
    comm = world > 1 or cached
    return ShardingPlan(
        layout=layout, host_cache=cached, world_size=world, nodes_per_replica=nodes,
        replicas_per_node=k, copies_per_gpu=copies,
        gpu_bytes=tuple(copies * (base + h) for h in hbm), gpu_capacity_bytes=s.gpu_cap,
        host_bytes=host, host_capacity_bytes=s.host_cap, max_batch_items=b,
        table_gpus=tuple(assignment) if layout == "table_wise" and assignment else None,
        out_dims=tuple(dims) if comm else (), miss_bytes_per_item=tuple(miss) if comm else (),
        link_gbps=_link(node, world), pcie_gbps=node.pcie_gbps, latency_s=s.latency_s,
        output_dtype_bytes=mem.output_dtype_bytes)


def _candidates(s: _Setting, sharding: str, host_cache: bool,
                max_nodes: int) -> list[tuple[int, str, bool]]:
    """(world, layout, cached) to try, in order of preference at equal cost."""
    if sharding not in ("auto", *LAYOUTS):
        raise ValueError(f"sharding must be one of auto, {', '.join(LAYOUTS)}; not {sharding!r}")
    if s.node.gpus == 0:
        return [(0, "none", False)] if sharding in ("auto", "none") else []
    caches = (False, True) if host_cache and s.mem.tables else (False,)
    out = []
    for w in _worlds(s.node, max_nodes):
        layouts = ["none"] if w == 1 else (["table_wise", "row_wise"] if s.mem.tables else [])
        for lay in layouts:
            if sharding in ("auto", lay):
                out.extend((w, lay, c) for c in caches)
    return out


def _setting(mem: ModelMemory, node: NodeTypeCfg, max_batch_items: int, instances: int,
             caching_ratio: float, latency_s: float, reserve_fraction: float) -> _Setting:
    if max_batch_items < 1 or instances < 1:
        raise ValueError(f"max_batch_items and instances must be >= 1 (got {max_batch_items}, "
                         f"{instances})")
    if not 0 < caching_ratio <= 1:
        raise ValueError(f"caching_ratio must be in (0, 1], not {caching_ratio}")
    if not 0 <= reserve_fraction < 1:
        raise ValueError(f"reserve_fraction must be in [0, 1), not {reserve_fraction}")
    if not latency_s >= 0:
        raise ValueError(f"latency_s must be >= 0, not {latency_s}")
    free = 1.0 - reserve_fraction
    gpu_cap = (node.gpu_memory_gb or 0.0) * C.GB * free
    return _Setting(mem, node, max_batch_items, instances, caching_ratio, latency_s, gpu_cap,
                    node.host_memory_gb * C.GB * free)


def _rank(p: ShardingPlan, order: int) -> tuple[int, int, float, int]:
    return (p.nodes_per_replica, p.world_size, p.comm_s(p.max_batch_items), order)


# ----------------------------------------------------------------------------- table-wise search
def _table_wise(s: _Setting, world: int, cached: bool) -> tuple[list[int] | None, bool]:
    """A table -> GPU assignment over ``world`` GPUs that fits and minimises the slowest GPU's
    per-batch time (all-to-all bytes + cache misses): branch and bound, tables largest first,
    at most :data:`SEARCH_BUDGET` nodes. Returns (assignment or None, proven optimal)."""
    mem, node, r = s.mem, s.node, s.caching_ratio
    copies = _copies(node, world, s.instances)
    base = mem.dense_bytes + mem.activation_bytes(math.ceil(s.max_batch_items / world))
    cap = math.floor(s.gpu_cap / copies) - base  # table bytes one GPU may hold (one copy)
    if cap < 0:
        return None, True
    gpn = min(world, node.gpus)
    nodes = max(1, world // node.gpus) if world > node.gpus else 1
    host_cap = s.host_cap / s.instances if cached else math.inf  # DDR bytes per node
    per_rank = math.ceil(s.max_batch_items / world)
    link = _link(node, world) * C.GB
    miss_share = 1.0 - r if cached else 0.0
    order = sorted(range(len(mem.tables)), key=lambda i: -mem.tables[i].bytes)
    tmem = [_table_mem(mem.tables[i].bytes, cached, r) for i in order]
    tddr = [mem.tables[i].bytes for i in order]
    tcost = [per_rank * world * mem.tables[i].dim * mem.output_dtype_bytes / link
             + s.max_batch_items * mem.tables[i].pooling * miss_share
             * mem.tables[i].bytes_per_row / (node.pcie_gbps * C.GB) for i in order]
    n = len(order)
    if sum(tmem) > cap * world or any(m > cap for m in tmem):
        return None, True
    lower = max(max(tcost, default=0.0), sum(tcost) / world)
    suffix_mem = [0] * (n + 1)
    for i in range(n - 1, -1, -1):
        suffix_mem[i] = suffix_mem[i + 1] + tmem[i]
    load_m = [0] * world
    load_c = [0.0] * world
    load_h = [0] * nodes
    free = [cap * world]  # table bytes still free over all GPUs
    cur = [0] * n
    best: list[int] | None = None
    best_val = math.inf
    visits = 0
    eps = 1e-12

    def dfs(i: int, top: float) -> None:
        nonlocal best, best_val, visits
        if best is not None and best_val <= lower * (1 + eps):
            return
        visits += 1
        if visits > SEARCH_BUDGET:
            return
        if i == n:
            if top < best_val:
                best_val, best = top, cur.copy()
            return
        if top >= best_val * (1 - eps) or suffix_mem[i] > free[0]:
            return
        seen: set[tuple[int, int, float]] = set()
        for g in sorted(range(world), key=lambda g: (load_c[g], load_m[g])):
            state = (g // gpn, load_m[g], load_c[g])
            if state in seen:  # an identical GPU on the same node: same subtree
                continue
            seen.add(state)
            nd = g // gpn
            if load_m[g] + tmem[i] > cap or load_h[nd] + tddr[i] > host_cap:
                continue
            load_m[g] += tmem[i]
            load_c[g] += tcost[i]
            load_h[nd] += tddr[i]
            free[0] -= tmem[i]
            cur[i] = g
            dfs(i + 1, max(top, load_c[g]))
            load_m[g] -= tmem[i]
            load_c[g] -= tcost[i]
            load_h[nd] -= tddr[i]
            free[0] += tmem[i]

    dfs(0, 0.0)
    if best is None:
        return None, visits <= SEARCH_BUDGET
    assignment = [0] * n
    for pos, i in enumerate(order):
        assignment[i] = best[pos]
    return assignment, visits <= SEARCH_BUDGET or best_val <= lower * (1 + eps)


def _lpt(s: _Setting, world: int, cached: bool) -> list[int]:
    """Largest table first onto the GPU holding the fewest bytes (for refusal messages)."""
    load = [0] * world
    out = [0] * len(s.mem.tables)
    for i in sorted(range(len(s.mem.tables)), key=lambda i: -s.mem.tables[i].bytes):
        g = min(range(world), key=lambda g: load[g])
        load[g] += _table_mem(s.mem.tables[i].bytes, cached, s.caching_ratio)
        out[i] = g
    return out


# ----------------------------------------------------------------------------- planners
def _refuse(s: _Setting, tried: dict[str, tuple[int, float, float]], sharding: str,
            host_cache: bool, max_nodes: int) -> PlacementError:
    mem, node, b, k = s.mem, s.node, s.max_batch_items, s.instances
    gb = C.GB
    rep = (f"one replica needs {mem.replica_bytes(b) / gb:.4g} GB at {b} items (dense "
           f"{mem.dense_bytes / gb:.4g} GB, tables {mem.embedding_bytes() / gb:.4g} GB, "
           f"activations {mem.activation_bytes(b) / gb:.4g} GB), x {k} instance(s) per node")
    if node.gpus == 0:
        dev = (f"node type '{node.name}' is a CPU node: host memory {node.host_memory_gb:g} GB, "
               f"{s.host_cap / gb:.4g} GB usable")
    else:
        dev = (f"node type '{node.name}': {node.gpus} GPU(s) x {node.gpu_memory_gb:g} GB, "
               f"{s.gpu_cap / gb:.4g} GB usable each; host {node.host_memory_gb:g} GB, "
               f"{s.host_cap / gb:.4g} GB usable")
    if tried:
        parts = [(f"{name} on {w} GPU(s) needs {need / gb:.4g} GB per GPU" if w else
                  f"{name} in host memory needs {need / gb:.4g} GB")
                 + (f" and {host / gb:.4g} GB host" if host else "")
                 for name, (w, need, host) in tried.items()]
        what = "tried (smallest need of each): " + "; ".join(parts)
    else:
        what = f"no layout to try with sharding = '{sharding}'"
        if sharding in ("table_wise", "row_wise"):
            what += (f" (it needs at least 2 GPUs per replica: the node has {node.gpus}, "
                     f"max_nodes_per_replica = {max_nodes})")
    hint = "" if host_cache or not mem.tables else "; host_cache = true may help"
    return PlacementError(f"the model does not fit: {rep}; {dev}; {what}{hint}")


def _plan(mem: ModelMemory, node: NodeTypeCfg, max_batch_items: int, instances: int,
          sharding: str, host_cache: bool, caching_ratio: float, max_nodes_per_replica: int,
          latency_s: float, reserve_fraction: float, exhaustive: bool) -> ShardingPlan:
    if max_nodes_per_replica < 1:
        raise ValueError(f"max_nodes_per_replica must be >= 1, not {max_nodes_per_replica}")
    s = _setting(mem, node, max_batch_items, instances, caching_ratio, latency_s,
                 reserve_fraction)
    tried: dict[str, tuple[int, float, float]] = {}
    best: tuple[tuple[int, int, float, int], ShardingPlan] | None = None
    for order, (world, layout, cached) in enumerate(
            _candidates(s, sharding, host_cache, max_nodes_per_replica)):
        if best is not None and world > best[1].world_size:
            break  # fewer GPUs per replica always wins
        name = layout + (" with host cache" if cached else "")
        plans: list[ShardingPlan] = []
        if layout != "table_wise":
            plans = [_build(s, layout, cached, world)]
        elif exhaustive:
            n = len(mem.tables)
            if world ** n > EXHAUSTIVE_LIMIT:
                raise ValueError(f"exhaustive_plan: {world}^{n} assignments is too many")
            plans = [_build(s, layout, cached, world, a)
                     for a in itertools.product(range(world), repeat=n)]
        else:
            found, _ = _table_wise(s, world, cached)
            plans = [_build(s, layout, cached, world, found or _lpt(s, world, cached))]
        for p in plans:
            if p.fits:
                key = _rank(p, order)
                if best is None or key < best[0]:
                    best = (key, p)
            else:
                need = max(p.gpu_bytes, default=0)
                if name not in tried or (need, p.host_bytes) < tried[name][1:]:
                    tried[name] = (world, need or p.host_bytes,
                                   p.host_bytes if node.gpus else 0)
    if best is None:
        raise _refuse(s, tried, sharding, host_cache, max_nodes_per_replica)
    return best[1]


def plan_placement(mem: ModelMemory, node: NodeTypeCfg, *, max_batch_items: int,
                   instances: int = 1, sharding: Sharding = "auto", host_cache: bool = False,
                   caching_ratio: float = C.UVM_CACHING_RATIO, max_nodes_per_replica: int = 1,
                   latency_s: float = C.ALL_TO_ALL_LATENCY_S,
                   reserve_fraction: float = C.MEMORY_RESERVE_FRACTION) -> ShardingPlan:
    """The cheapest layout of ``mem`` on ``node`` that fits, serving batches of up to
    ``max_batch_items`` items with ``instances`` model instances per node (each a full
    replica).

    Cheapest = fewest nodes, then fewest GPUs per replica; ties go to the lowest
    :meth:`ShardingPlan.comm_s` at ``max_batch_items`` (then none, table-wise, row-wise, and
    without host cache before with). ``sharding`` restricts the layout; ``host_cache`` also
    allows tables in host DDR with ``caching_ratio`` of each cached in HBM; a replica may span
    up to ``max_nodes_per_replica`` whole nodes. Usable memory is ``(1 - reserve_fraction)``
    of each GPU's and of the host's (TorchRec reserves 15 %). A CPU node (``gpus = 0``) holds
    every instance's replica in host memory. Raises :class:`PlacementError` naming the sizes
    and what was tried when nothing fits.
    """
    return _plan(mem, node, max_batch_items, instances, sharding, host_cache, caching_ratio,
                 max_nodes_per_replica, latency_s, reserve_fraction, exhaustive=False)


def exhaustive_plan(mem: ModelMemory, node: NodeTypeCfg, *, max_batch_items: int,
                    instances: int = 1, sharding: Sharding = "auto", host_cache: bool = False,
                    caching_ratio: float = C.UVM_CACHING_RATIO, max_nodes_per_replica: int = 1,
                    latency_s: float = C.ALL_TO_ALL_LATENCY_S,
                    reserve_fraction: float = C.MEMORY_RESERVE_FRACTION) -> ShardingPlan:
    """As :func:`plan_placement`, but trying every table -> GPU assignment for the table-wise
    layout (``world ** tables`` of them: small cases only). A reference for tests."""
    return _plan(mem, node, max_batch_items, instances, sharding, host_cache, caching_ratio,
                 max_nodes_per_replica, latency_s, reserve_fraction, exhaustive=True)
