"""Bandwidths and ratios the hardware model assumes when a node type does not say otherwise.

Units: bandwidths in GB/s with 1 GB = 1e9 bytes (the project's unit); latencies in s; ratios
are shares in [0, 1].

Source: TorchRec's planner, ``torchrec/distributed/planner/constants.py`` (pytorch/torchrec,
read at commit a48cef79, 2025-10-04). TorchRec writes its bandwidths as ``N * 1024**3 / 1000``
bytes per ms, i.e. N GiB/s. We keep the number N and read it as N GB/s (1e9 bytes/s): 7.4 %
less than TorchRec's value, the conservative side for a capacity plan.
"""

from __future__ import annotations

#: GPU <-> GPU within one node (NVLink), GB/s; TorchRec ``INTRA_NODE_BANDWIDTH`` (600).
#: It is the A100 NVLink 3 figure; H100/H200 list 900 GB/s (NVLink 4), so 600 is conservative
#: for them.
NVLINK_GBPS: float = 600.0

#: GPU <-> GPU between nodes, per GPU, GB/s; TorchRec ``CROSS_NODE_BANDWIDTH`` (12.5 = one
#: 100 Gb/s NIC per GPU, the assumption TorchRec's ``BasicCommsBandwidths`` states).
INTER_NODE_GBPS: float = 12.5

#: host DDR <-> GPU HBM over PCIe, GB/s; TorchRec ``HBM_TO_DDR_MEM_BW`` (32, "can be smaller
#: than DDR_MEM_BW because the PCI channel may be shared"). Also the GPU <-> GPU link of a
#: multi-GPU node without NVLink.
PCIE_GBPS: float = 32.0

#: GPU memory bandwidth, GB/s; TorchRec ``HBM_MEM_BW`` (897, a V100-class figure).
HBM_GBPS: float = 897.0

#: host memory bandwidth, GB/s; TorchRec ``DDR_MEM_BW`` (51).
DDR_GBPS: float = 51.0

#: share of an embedding table cached in HBM when the table lives in host DDR (UVM caching);
#: TorchRec ``UVM_CACHING_RATIO`` (0.2).
UVM_CACHING_RATIO: float = 0.2

#: ids looked up per item per table (one-hot features); TorchRec ``POOLING_FACTOR`` (1.0).
POOLING_FACTOR: float = 1.0

#: share of device memory kept free as a margin; TorchRec's planner default
#: ``heuristical_storage_reservation_percentage = 0.15`` (``planners.py``,
#: ``HeuristicalStorageReservation``).
MEMORY_RESERVE_FRACTION: float = 0.15

#: fixed latency of one all-to-all (NCCL launch and synchronisation), s. ASSUMED: the reference
#: figures give 10-100 us as a range to calibrate (docs/hardware.md); we take 50 us, the middle
#: of that range on a log scale (~32 us) rounded up, because a serving batch pays it on its
#: critical path.
ALL_TO_ALL_LATENCY_S: float = 50e-6

#: bytes in one GB (the project's unit)
GB: float = 1e9
