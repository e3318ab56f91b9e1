"""Cluster state: pools of nodes, kept in arrays indexed by node slot.

The fleet (:mod:`simulator.engine.fleet`) changes node states through :meth:`NodeTable.set_state`;
the push dispatcher keeps the per-node queue and busy columns; routers see them read-only
through a :class:`NodesView`.
Each pool owns a fixed range of slots (``max_nodes`` x ``instances``); a slot is one model
instance, and a node is ``instances`` consecutive slots that live and die together (its first
slot, the leader, names it). Dispatchers, the server and routers see slots; the fleet, billing
and the node counts see nodes. A slot is reused after its node is terminated. Time integrals
(busy, ready and billed node-seconds) are kept per pool so that any
of them is exact at any event time without scanning nodes.

Node lifecycle: requested -> PROVISIONING -> LOADING -> READY -> DRAINING -> TERMINATED,
with FAILED (repairing, then LOADING again) for failures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulator.policies.views import NodesView, readonly
from simulator.scenario import PoolCfg
from simulator.service import AnalyticService, ProfileService

TERMINATED, PROVISIONING, LOADING, READY, DRAINING, FAILED = range(6)
STATE_NAMES = ("terminated", "provisioning", "loading", "ready", "draining", "failed")


@dataclass
class Pool:
    """A group of identical nodes with one service model, price and power draw."""

    index: int
    cfg: PoolCfg
    service: AnalyticService | ProfileService
    slots: range
    instances: int = 1  # model instances (slots) per node
    # service-time multiplier when n instances of a node serve at once (index n - 1)
    slowdown: tuple[float, ...] = (1.0,)
    # instance i of a node serves on device group i mod device_groups: only instances of one
    # group share a device (and slow each other down)
    device_groups: int = 1
    # latency a sharded layout adds to a batch (items -> s), None when it adds none
    comm_s: Any = None
    # a borrowed pool's loan (simulator.hardware.pool_hardware.Loan), its lendable nodes now
    # and whether its nodes are wanted (ahead of and during a scheduled peak)
    loan: Any = None
    lendable: int = 0
    wanted: bool = False
    borrows: int = 0  # nodes borrowed (each launch of a borrowed node)
    reclaims: int = 0  # borrowed nodes taken back by the training cluster
    reclaiming: set[int] = field(default_factory=set)
    free: list[int] = field(default_factory=list)
    counts: list[int] = field(default_factory=lambda: [0] * 6)  # nodes per lifecycle state
    # busy-time accounting (s): completed batches + open batches integrated lazily
    busy_done_s: float = 0.0
    n_busy: int = 0
    busy_start_sum_s: float = 0.0
    batches: int = 0
    served: int = 0
    # billed (provisioned) and ready node-seconds, integrated at each state change
    billed_area_s: float = 0.0
    ready_area_s: float = 0.0
    min_billing_extra_s: float = 0.0
    last_change_s: float = 0.0
    desired: int = 0
    max_billed: int = 0
    preemptions: int = 0
    failures: int = 0
    scale_ups: int = 0
    scale_downs: int = 0
    lost_requests: int = 0
    requeued_requests: int = 0
    birth_s: dict[int, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def model_gb(self) -> float:
        """Model size per replica, GB (configured, else from the profile)."""
        if self.cfg.model_memory_gb is not None:
            return self.cfg.model_memory_gb
        return self.service.model_bytes / 1e9

    @property
    def load_time_s(self) -> float:
        """Start-up after provisioning: container start + model size / bandwidth + warm-up, s."""
        warmup = getattr(self.service, "load_time_s", 0.0)
        return self.cfg.container_start_s + self.model_gb / self.cfg.load_bandwidth_gbps + warmup

    @property
    def node_slots(self) -> range:
        """The leader slot of every node slot group (one per possible node)."""
        return range(self.slots.start, self.slots.stop, self.instances)

    def group(self, j: int) -> range:
        """The slots of the node whose leader is ``j``."""
        return range(j, j + self.instances)

    def device_mates(self, j: int) -> range:
        """The slots of slot ``j``'s node that share its device group (itself included)."""
        lead = self.leader(j)
        g = self.device_groups
        return range(lead + (j - lead) % g, lead + self.instances, g)

    def leader(self, j: int) -> int:
        """The leader slot of the node that slot ``j`` belongs to."""
        return j - (j - self.slots.start) % self.instances

    def bounds(self) -> tuple[int, int]:
        """The node count's floor and ceiling now: the autoscaling bounds, and for a borrowed
        pool at most what is lendable, all of it while the nodes are wanted."""
        lo, hi = self.cfg.lo, self.cfg.hi
        if self.loan is None:
            return lo, hi
        hi = min(hi, self.lendable)
        if self.wanted:
            lo = hi
        return min(lo, hi), hi

    @property
    def billed(self) -> int:
        """Nodes billed now: every state but terminated."""
        return sum(self.counts[1:])

    @property
    def starting(self) -> int:
        """Nodes requested but not ready yet (provisioning or loading)."""
        return self.counts[PROVISIONING] + self.counts[LOADING]

    def busy_seconds(self, now_s: float) -> float:
        """Node-seconds spent serving batches from time 0 to ``now_s``: instance-seconds of
        serving / instances per node (a node with half its instances busy is half busy)."""
        inst_s = self.busy_done_s + self.n_busy * now_s - self.busy_start_sum_s
        return inst_s if self.instances == 1 else inst_s / self.instances

    def advance(self, now_s: float) -> None:
        """Integrate billed and ready node counts up to ``now_s``."""
        dt = now_s - self.last_change_s
        if dt > 0:
            self.billed_area_s += self.billed * dt
            self.ready_area_s += self.counts[READY] * dt
            self.last_change_s = now_s

    def provisioned_seconds(self, now_s: float) -> float:
        """Node-seconds provisioned (requested, not yet terminated) from 0 to ``now_s``."""
        return self.billed_area_s + self.billed * (now_s - self.last_change_s)

    def billed_seconds(self, now_s: float) -> float:
        """Billed node-seconds from 0 to ``now_s``: provisioned time plus the top-up of nodes
        that lived less than the minimum billing period."""
        return self.provisioned_seconds(now_s) + self.min_billing_extra_s

    def ready_seconds(self, now_s: float) -> float:
        """Ready node-seconds from 0 to ``now_s``."""
        return self.ready_area_s + self.counts[READY] * (now_s - self.last_change_s)


class NodeTable:
    """Per-slot state arrays shared by the engine and (read-only) the routers."""

    def __init__(self, n_slots: int, pool_of: np.ndarray, max_queue: int) -> None:
        self.pool_of = pool_of
        self.state = np.zeros(n_slots, dtype=np.int8)
        self.queue_len = np.zeros(n_slots, dtype=np.int64)
        self.busy = np.zeros(n_slots, dtype=np.int8)
        self.ready = np.zeros(n_slots, dtype=bool)
        self.busy_until_s = np.zeros(n_slots)
        self.queued_work_s = np.zeros(n_slots)
        # ready as a Python list: the serving loop reads it per batch (a list read is cheaper
        # than a numpy scalar read); kept equal to ``ready`` by set_state
        self.ready_py = [False] * n_slots
        self.view = NodesView(
            queue_len=readonly(self.queue_len),
            busy=readonly(self.busy),
            ready=readonly(self.ready),
            busy_until_s=readonly(self.busy_until_s),
            queued_work_s=readonly(self.queued_work_s),
            capacity=max_queue,
        )

    @property
    def n(self) -> int:
        return len(self.pool_of)

    def set_state(self, j: int, state: int) -> int:
        """Move slot ``j`` to lifecycle ``state``; returns the state it left."""
        old = int(self.state[j])
        self.state[j] = state
        self.ready[j] = self.ready_py[j] = state == READY
        return old


def ready_share(pools: list[Pool], p: Pool) -> float:
    """Pool p's share of shared traffic: its share of the ready nodes (1 for a lone pool;
    equal shares when no node is ready)."""
    if len(pools) == 1:
        return 1.0
    total = sum(q.counts[READY] for q in pools)
    return p.counts[READY] / total if total else 1.0 / len(pools)
