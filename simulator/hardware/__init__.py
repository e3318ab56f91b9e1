"""Hardware as it is bought: node types (GPUs, memory, links, prices, power), the memory of a
model replica, and where that memory sits on a node (sharding). Pure: no SimPy.

See docs/hardware.md for units, formulas and sources.
"""

from __future__ import annotations

from simulator.hardware.memory import ModelMemory, TableSpec, variant_memory
from simulator.hardware.node_types import CATALOG, NodeTypeCfg, lookup
from simulator.hardware.sharding import (
    PlacementError,
    ShardingPlan,
    all_to_all_s,
    exhaustive_plan,
    plan_placement,
)

__all__ = [
    "CATALOG",
    "ModelMemory",
    "NodeTypeCfg",
    "PlacementError",
    "ShardingPlan",
    "TableSpec",
    "all_to_all_s",
    "exhaustive_plan",
    "lookup",
    "plan_placement",
    "variant_memory",
]
