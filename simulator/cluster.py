"""Cluster state: pools of nodes, kept in arrays indexed by node number.

The engine mutates these arrays; routers see them read-only through a :class:`NodesView`.
Busy time is accumulated per pool so that ``busy_seconds(now)`` is exact at any event time
without scanning nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simulator.policies.views import NodesView, readonly
from simulator.scenario import PoolCfg
from simulator.service import AnalyticService, ProfileService


@dataclass
class Pool:
    """A group of identical nodes with one service model, price and power draw."""

    index: int
    cfg: PoolCfg
    service: AnalyticService | ProfileService
    nodes: list[int] = field(default_factory=list)
    # busy-time accounting (s): completed batches + open batches integrated lazily
    busy_done_s: float = 0.0
    n_busy: int = 0
    busy_start_sum_s: float = 0.0
    batches: int = 0
    served: int = 0

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def model_gb(self) -> float:
        """Model size per replica, GB (configured, else from the profile)."""
        if self.cfg.model_memory_gb is not None:
            return self.cfg.model_memory_gb
        return self.service.model_bytes / 1e9

    def busy_seconds(self, now_s: float) -> float:
        """Node-seconds spent serving batches from time 0 to ``now_s``."""
        return self.busy_done_s + self.n_busy * now_s - self.busy_start_sum_s

    def provisioned(self, now_s: float) -> int:
        """Nodes provisioned (billed) at ``now_s``; static pools for now."""
        return len(self.nodes)


class NodeTable:
    """Per-node state arrays shared by the engine and (read-only) the routers."""

    def __init__(self, pools: list[Pool], max_queue: int) -> None:
        n = sum(len(p.nodes) for p in pools)
        self.pool_of = np.empty(n, dtype=np.int32)
        for p in pools:
            self.pool_of[p.nodes] = p.index
        self.queue_len = np.zeros(n, dtype=np.int64)
        self.busy = np.zeros(n, dtype=np.int8)
        self.ready = np.ones(n, dtype=bool)
        self.busy_until_s = np.zeros(n)
        self.queued_work_s = np.zeros(n)
        self.batch_start_s = np.zeros(n)
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
