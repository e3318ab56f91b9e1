"""Node types as they are bought: GPUs, memory, links, prices and power of one machine.

A :class:`NodeTypeCfg` is one machine type (a cloud instance type or a server model). Units are
in the field names: ``_gb`` gigabytes (1e9 bytes; a size sold in GiB is written as sold, so the
capacity model is ~7 % conservative for it), ``_gbps`` GB/s (1e9 bytes/s), ``_usd`` US dollars
per hour per node, ``_w`` watts per node.

:data:`CATALOG` holds built-in types with their sources; figures marked ASSUMED are estimates
to replace with measurements. Scenario files may define their own types
(``cluster.node_types``); :func:`lookup` lets those win over the catalog.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import Field, model_validator

from simulator.config_base import MAX_AMOUNT, NonNegFloat, PosFloat, _Model
from simulator.hardware import constants as C

#: largest bandwidth accepted, GB/s (far above any link; keeps values finite and sane)
MAX_GBPS = 1e6
#: largest memory accepted per GPU or per host, GB
MAX_MEMORY_GB = 1e6


class NodeTypeCfg(_Model):
    """One machine type as sold (all amounts per node unless the name says per GPU)."""

    name: str = Field(min_length=1, description="type name, e.g. 'g5.xlarge'")
    gpus: int = Field(0, ge=0, le=64, description="GPUs per node; 0 = a CPU node")
    gpu: str | None = Field(None, description="GPU model, e.g. 'NVIDIA A10G' (gpus > 0)")
    gpu_memory_gb: PosFloat | None = Field(
        None, le=MAX_MEMORY_GB, description="memory per GPU (HBM/GDDR), GB; required when "
        "gpus > 0")
    vcpus: int = Field(ge=1, le=100_000, description="virtual CPUs per node")
    host_memory_gb: PosFloat = Field(le=MAX_MEMORY_GB, description="host DDR per node, GB")
    price_per_hour_usd: NonNegFloat = Field(le=MAX_AMOUNT,
                                            description="on-demand price per node, USD/h")
    spot_price_per_hour_usd: NonNegFloat | None = Field(
        None, le=MAX_AMOUNT, description="spot price per node, USD/h (at most on-demand)")
    reserved_price_per_hour_usd: NonNegFloat | None = Field(
        None, le=MAX_AMOUNT, description="reserved / committed price per node, USD/h")
    power_idle_w: NonNegFloat = Field(le=MAX_AMOUNT, description="node power when idle, W")
    power_busy_w: NonNegFloat = Field(le=MAX_AMOUNT, description="node power when serving, W")
    intra_node_gbps: PosFloat | None = Field(
        None, le=MAX_GBPS, description="GPU <-> GPU within the node, GB/s (NVLink 600 per "
        "TorchRec; PCIe 32 without NVLink); only for gpus >= 2 (default there: pcie_gbps)")
    inter_node_gbps: PosFloat = Field(
        C.INTER_NODE_GBPS, le=MAX_GBPS, description="GPU <-> GPU between nodes, per GPU, GB/s "
        "(TorchRec CROSS_NODE_BANDWIDTH 12.5)")
    hbm_gbps: PosFloat = Field(C.HBM_GBPS, le=MAX_GBPS,
                               description="GPU memory bandwidth, GB/s (TorchRec HBM_MEM_BW 897)")
    ddr_gbps: PosFloat = Field(C.DDR_GBPS, le=MAX_GBPS,
                               description="host memory bandwidth, GB/s (TorchRec DDR_MEM_BW 51)")
    pcie_gbps: PosFloat = Field(C.PCIE_GBPS, le=MAX_GBPS, description="host DDR <-> GPU, GB/s "
                                "(TorchRec HBM_TO_DDR_MEM_BW 32)")
    source: str = Field("", description="where the figures come from (citation)")

    @model_validator(mode="after")
    def _check(self) -> NodeTypeCfg:
        n = self.name
        if self.gpus > 0 and self.gpu_memory_gb is None:
            raise ValueError(f"node type '{n}': gpus = {self.gpus} needs gpu_memory_gb (memory "
                             "per GPU, GB)")
        if self.gpus == 0 and (self.gpu_memory_gb is not None or self.gpu is not None):
            raise ValueError(f"node type '{n}': gpu and gpu_memory_gb describe GPUs, and gpus = "
                             "0 (a CPU node): set gpus or remove them")
        if self.intra_node_gbps is not None and self.gpus < 2:
            raise ValueError(f"node type '{n}': intra_node_gbps is the GPU <-> GPU link within "
                             f"a node, and the node has {self.gpus} GPU(s): remove it")
        if self.power_busy_w < self.power_idle_w:
            raise ValueError(f"node type '{n}': power_busy_w ({self.power_busy_w:g} W) is below "
                             f"power_idle_w ({self.power_idle_w:g} W)")
        spot = self.spot_price_per_hour_usd
        if spot is not None and spot > self.price_per_hour_usd:
            raise ValueError(f"node type '{n}': spot_price_per_hour_usd ({spot:g}) exceeds "
                             f"price_per_hour_usd ({self.price_per_hour_usd:g}), the on-demand "
                             "price (spot is capped at on-demand)")
        return self

    @property
    def gpu_link_gbps(self) -> float | None:
        """GPU <-> GPU bandwidth within the node, GB/s: ``intra_node_gbps``, else PCIe for a
        multi-GPU node, None for a node with 0 or 1 GPU."""
        if self.gpus < 2:
            return None
        return self.intra_node_gbps if self.intra_node_gbps is not None else self.pcie_gbps

    def price_for(self, purchase: str) -> float | None:
        """Price per node, USD/h, for 'on_demand', 'spot' or 'reserved' (None: not given)."""
        return {"on_demand": self.price_per_hour_usd,
                "spot": self.spot_price_per_hour_usd,
                "reserved": self.reserved_price_per_hour_usd}[purchase]


# ----------------------------------------------------------------------------- catalog
#: spot price as a share of on-demand. ASSUMED: the reference gives spot 50-90 % below
#: on-demand (AWS "up to 90 %", GCP 60-91 %); we take a 60 % discount, the cautious end.
SPOT_PRICE_SHARE = 0.40
#: reserved (1-year commitment) price as a share of on-demand. ASSUMED (AWS advertises up to
#: 72 % off for 3-year Savings Plans; ~35 % off is typical for 1 year, no upfront).
RESERVED_PRICE_SHARE = 0.65
#: host power per vCPU, W, busy / idle. ASSUMED: a 350 W, 96-thread Xeon socket is ~3.6 W per
#: thread at full load; plus memory and platform, ~5 W busy and ~2 W idle per vCPU.
HOST_W_PER_VCPU_BUSY = 5.0
HOST_W_PER_VCPU_IDLE = 2.0


def _power(vcpus: int, gpus: int, gpu_tdp_w: float, gpu_idle_w: float) -> dict[str, float]:
    """Node power: GPUs at TDP (busy) or idle, plus the assumed host share per vCPU."""
    return {"power_busy_w": gpus * gpu_tdp_w + vcpus * HOST_W_PER_VCPU_BUSY,
            "power_idle_w": gpus * gpu_idle_w + vcpus * HOST_W_PER_VCPU_IDLE}


def _prices(on_demand: float, reserved: float | None = None) -> dict[str, float]:
    return {"price_per_hour_usd": on_demand,
            "spot_price_per_hour_usd": round(on_demand * SPOT_PRICE_SHARE, 4),
            "reserved_price_per_hour_usd": (reserved if reserved is not None
                                            else round(on_demand * RESERVED_PRICE_SHARE, 4))}


_COMMON = ("Prices: AWS us-east-1; spot = 40 % of on-demand and reserved = 65 % of on-demand "
           "unless stated (ASSUMED, see SPOT_PRICE_SHARE / RESERVED_PRICE_SHARE). Power: GPU "
           "TDP per docs/hardware.md, GPU idle power and host power per vCPU ASSUMED. "
           "Bandwidths not stated are TorchRec planner constants.")

_BUILTIN: tuple[NodeTypeCfg, ...] = (
    NodeTypeCfg(
        name="c7i.2xlarge", gpus=0, vcpus=8, host_memory_gb=16.0, **_prices(0.357),
        **_power(8, 0, 0.0, 0.0),
        source="AWS EC2 c7i.2xlarge: 8 vCPU (Intel Sapphire Rapids), 16 GiB, USD 0.357/h "
        "on-demand (AWS price list). " + _COMMON),
    NodeTypeCfg(
        name="g5.xlarge", gpus=1, gpu="NVIDIA A10G", gpu_memory_gb=24.0, vcpus=4,
        host_memory_gb=16.0, hbm_gbps=600.0, **_prices(1.006), **_power(4, 1, 150.0, 25.0),
        source="AWS EC2 g5.xlarge: 1x A10G 24 GB, 4 vCPU, 16 GiB, USD 1.006/h on-demand "
        "(reference figures, secondary); A10G TDP ~150 W; GDDR6 600 GB/s (NVIDIA A10 "
        "datasheet, recalled). " + _COMMON),
    NodeTypeCfg(
        name="g6.xlarge", gpus=1, gpu="NVIDIA L4", gpu_memory_gb=24.0, vcpus=4,
        host_memory_gb=16.0, hbm_gbps=300.0, **_prices(0.8048), **_power(4, 1, 72.0, 16.0),
        source="AWS EC2 g6.xlarge: 1x L4 24 GB, 4 vCPU, 16 GiB; USD 0.8048/h on-demand "
        "(AWS price list, recalled, unverified; inside the reference's L4 range USD "
        "0.70-1.10/h); L4 TDP 72 W; GDDR6 300 GB/s (NVIDIA L4 datasheet, recalled). " + _COMMON),
    NodeTypeCfg(
        name="p4d.24xlarge", gpus=8, gpu="NVIDIA A100 SXM4 40GB", gpu_memory_gb=40.0,
        vcpus=96, host_memory_gb=1152.0, intra_node_gbps=C.NVLINK_GBPS,
        inter_node_gbps=6.25, hbm_gbps=1555.0,
        **_prices(32.7726, reserved=14.75), **_power(96, 8, 400.0, 50.0),
        source="AWS EC2 p4d.24xlarge: 8x A100 40 GB with NVLink (600 GB/s, = TorchRec "
        "INTRA_NODE_BANDWIDTH), 96 vCPU, 1152 GiB, 400 Gb/s EFA = 6.25 GB/s per GPU (AWS "
        "instance page, recalled); on-demand USD 32.7726/h (AWS price list, recalled, "
        "unverified); reserved = EC2 Capacity Blocks USD 14.75/h (reference figures, AWS "
        "pricing before Jan 2025); A100 SXM TDP 400 W; HBM2 1555 GB/s (NVIDIA datasheet). "
        + _COMMON),
    NodeTypeCfg(
        name="p5.48xlarge", gpus=8, gpu="NVIDIA H100 SXM5 80GB", gpu_memory_gb=80.0,
        vcpus=192, host_memory_gb=2048.0, intra_node_gbps=C.NVLINK_GBPS,
        inter_node_gbps=50.0, hbm_gbps=3350.0,
        **_prices(39.33, reserved=39.33), **_power(192, 8, 700.0, 70.0),
        source="AWS EC2 p5.48xlarge: 8x H100 80 GB with NVLink (TorchRec's 600 GB/s kept; "
        "NVLink 4 lists 900), 192 vCPU, 2048 GiB, 3200 Gb/s EFA = 50 GB/s per GPU (AWS "
        "instance page, recalled). Price: EC2 Capacity Blocks USD 39.33/h (reference "
        "figures, [V]) used as the on-demand and reserved price (AWS's on-demand list was "
        "higher; not verified here); H100 SXM TDP 700 W; HBM3 3350 GB/s (NVIDIA datasheet). "
        + _COMMON),
    NodeTypeCfg(
        name="p5e.48xlarge", gpus=8, gpu="NVIDIA H200 141GB", gpu_memory_gb=141.0,
        vcpus=192, host_memory_gb=2048.0, intra_node_gbps=C.NVLINK_GBPS,
        inter_node_gbps=50.0, hbm_gbps=4800.0,
        **_prices(43.28, reserved=43.28), **_power(192, 8, 700.0, 70.0),
        source="AWS EC2 p5e.48xlarge: 8x H200 141 GB with NVLink (TorchRec's 600 GB/s kept), "
        "192 vCPU, 2048 GiB, 3200 Gb/s EFA = 50 GB/s per GPU (AWS instance page, recalled). "
        "Price: EC2 Capacity Blocks USD 5.41 per GPU-hour x 8 = USD 43.28/h (reference "
        "figures, derived), used as on-demand and reserved; H200 SXM TDP 700 W; HBM3e "
        "4800 GB/s (NVIDIA datasheet, recalled). " + _COMMON),
)

#: built-in node types by name
CATALOG: dict[str, NodeTypeCfg] = {t.name: t for t in _BUILTIN}


def lookup(name: str, custom: Iterable[NodeTypeCfg] = ()) -> NodeTypeCfg | None:
    """The node type called ``name``: from ``custom`` (a scenario's own types, which win over
    the catalog), else from :data:`CATALOG`; None when neither has it."""
    for t in custom:
        if t.name == name:
            return t
    return CATALOG.get(name)
