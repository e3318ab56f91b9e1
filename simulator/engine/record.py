"""RunRecord: everything a finished run measured, as plain data.

The summary (``simulator.summary``), the API and the testing tools read a run through this
record only; none of them reaches into the engine's components.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from simulator.engine.recorder import ClassStats
from simulator.scenario import Scenario


@dataclass(frozen=True)
class PoolRecord:
    """One pool's figures; node-seconds count the measurement window [warmup_s, duration_s]."""

    name: str
    purchase: str
    price_per_hour_usd: float
    power_idle_w: float
    power_busy_w: float
    model_gb: float  # model size per replica, GB
    busy_s: float  # node-seconds serving batches
    billed_s: float  # node-seconds billed (minimum billing included)
    provisioned_s: float  # node-seconds provisioned (requested, not terminated)
    max_billed: int  # most nodes billed at once (whole run)
    final_desired: int
    batches: int
    served: int  # requests served (whole run)
    preemptions: int
    failures: int
    scale_ups: int
    scale_downs: int
    lost_requests: int
    requeued_requests: int
    instances: int = 1  # model instances per node
    gpus_per_node: int = 0  # 0: a CPU node or an unknown node type
    node_type: str | None = None  # the known node type (None: a label only)
    borrows: int = 0  # borrowed nodes launched (a borrowed pool)
    reclaims: int = 0  # borrowed nodes taken back by the training cluster
    machines_per_node: int = 1  # machines a simulated node is (a replica across nodes)
    placement: str | None = None  # the memory layout of a replica, in words
    slowdown_source: str = ""  # where the instances' slowdown factors came from


@dataclass(frozen=True)
class QueueRecord:
    """The most requests that waited at once, against the limits that bound them.

    ``per_node``: the limits apply to each node's queue (else to the one shared queue);
    ``peak``: the most requests one queue held at once; ``class_peak``: per class, the most of
    its own requests one queue held (None where the queue keeps no per-class count: no class
    has a limit); ``rejected``: arrivals and requeued requests turned away by a full queue;
    ``max_in_system``: the memory cap (``simulation.max_in_system``, requests; None: none) and
    ``shed_by_cap``: waiting requests it shed (whole run).
    """

    per_node: bool
    limit: int
    peak: int
    rejected: int
    class_limit: list[int | None]
    class_peak: list[int] | None
    max_in_system: int | None = None
    shed_by_cap: int = 0


@dataclass(frozen=True)
class RunRecord:
    """A finished run of one scenario with one seed (times in s)."""

    scenario: Scenario
    seed: int
    duration_s: float
    warmup_s: float
    wall_s: float
    pools: list[PoolRecord]
    total: ClassStats  # requests arriving in the measurement window, all classes
    classes: list[ClassStats]  # the same per class, in scenario order
    class_names: list[str]
    slo_ms: list[float]  # per class
    arrivals_incl_warmup: int
    final_queue_length: float  # requests waiting at the end
    max_batch_seen: int
    batch_limit: int  # the batcher's max_batch (requests)
    quality_loss_per_degraded: float  # AUC per degraded request
    records_mode: str
    queue: QueueRecord
    timeseries: pd.DataFrame
    pool_series: pd.DataFrame
    events: pd.DataFrame
    records: pd.DataFrame | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    max_items_seen: int = 0  # the most items in one batch (when the service counts items)
