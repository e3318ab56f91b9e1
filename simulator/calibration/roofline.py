"""Roofline projection of a measured CPU profile onto a GPU (no GPU needed).

Per batch of B items, analytic counts for a DLRM-style config (checked in the tests against
``torch.utils.flop_counter`` and by hand):

- FLOPs: every Linear 2*B*in*out; the interaction bmm 2*B*F*F*D (F = tables + 1); pooling sums
  B*T*pooling*D.
- Bytes moved: MLP weights once per batch; embedding rows gathered B*T*pooling*row_bytes
  (row_bytes = D * element bytes, + 8 for int8 row-wise scale and bias); ids (8 B each) and
  offsets; every activation written once and read once.

Projected batch time (ms) = launch overhead (kernels x per-kernel launch cost) + host<->device
transfer of inputs/outputs + max(FLOPs / (peak x compute efficiency), bytes / (bandwidth x
memory efficiency)). Efficiencies are stated assumptions (published peaks are never reached by
small GEMMs and random row gathers). Such profiles carry ``"source": "projected"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from simulator.calibration.model import ModelConfig

# bytes per element: (MLP weights, MLP compute dtype name, embedding element, activations)
VARIANT_DTYPES: dict[str, tuple[float, str, float, float]] = {
    "fp32": (4, "fp32", 4, 4),
    "bf16": (2, "bf16", 2, 2),
    "int8": (1, "int8", 4, 4),
    "int8_emb": (1, "int8", 1, 4),
    "pruned": (4, "fp32", 4, 4),
    "distilled": (4, "fp32", 4, 4),
}


@dataclass(frozen=True)
class GPU:
    """Published peak figures (dense, no sparsity) and stated efficiency assumptions."""

    name: str
    peak_tflops: dict[str, float]  # by compute dtype
    bandwidth_gbs: float  # device memory, GB/s
    host_link_gbs: float  # host<->device effective, GB/s
    memory_gb: float
    source: str
    launch_us_per_kernel: float = 5.0
    transfer_latency_us: float = 10.0
    compute_eff: float = 0.5
    memory_eff: float = 0.6


GPUS: dict[str, GPU] = {
    "a10g": GPU(
        name="NVIDIA A10G (AWS g5)", peak_tflops={"fp32": 31.2, "bf16": 125.0, "int8": 250.0},
        bandwidth_gbs=600.0, host_link_gbs=25.0, memory_gb=24.0,
        source="NVIDIA A10 datasheet (A10G is AWS's variant of the GA102 A10): FP32 31.2 TF, "
               "BF16 tensor 125 TF, INT8 250 TOPS dense, GDDR6 600 GB/s; PCIe Gen4 x16",
    ),
    "h100": GPU(
        name="NVIDIA H100 SXM5", peak_tflops={"fp32": 67.0, "bf16": 989.0, "int8": 1979.0},
        bandwidth_gbs=3350.0, host_link_gbs=50.0, memory_gb=80.0,
        source="NVIDIA H100 datasheet (SXM5): FP32 67 TF, BF16 tensor 989 TF, INT8 1979 TOPS "
               "dense, HBM3 3.35 TB/s; PCIe Gen5 x16 host link",
    ),
}


def _layers(cfg: ModelConfig) -> list[tuple[int, int]]:
    b = [cfg.num_dense, *cfg.bottom_mlp]
    t = [cfg.emb_dim + cfg.num_interactions, *cfg.top_mlp, 1]
    return [(x, y) for d in (b, t) for x, y in pairwise(d)]


def flops(cfg: ModelConfig, batch: int) -> dict[str, int]:
    """Floating-point (or int8) operations per batch, by part."""
    mlp = sum(2 * batch * i * o for i, o in _layers(cfg))
    f, d = cfg.num_features, cfg.emb_dim
    inter = 2 * batch * f * f * d
    pool = batch * cfg.num_tables * cfg.pooling * d
    return {"mlp": mlp, "interaction": inter, "pooling": pool, "total": mlp + inter + pool}


def bytes_moved(cfg: ModelConfig, batch: int, variant: str = "fp32") -> dict[str, float]:
    """Bytes read or written per batch, by part, for a variant's element sizes."""
    wb, _, eb, ab = VARIANT_DTYPES[variant]
    lay = _layers(cfg)
    weights = sum((i * o) * wb + o * 4 for i, o in lay)  # biases stay fp32
    row = cfg.emb_dim * eb + (8 if eb == 1 else 0)
    lookups = batch * cfg.num_tables * cfg.pooling
    emb = lookups * row
    ids = lookups * 8 + batch * 8
    f, d = cfg.num_features, cfg.emb_dim
    act_elems = batch * (cfg.num_dense + sum(o for _, o in lay) + f * d + f * f
                         + cfg.emb_dim + cfg.num_interactions)
    act = 2 * act_elems * ab
    return {"weights": weights, "embeddings": emb, "ids": ids, "activations": act,
            "total": weights + emb + ids + act}


def kernels(cfg: ModelConfig) -> int:
    """Kernel launches per forward in eager mode: Linear + ReLU per layer, a bag per table,
    and stack, bmm, index, cat, squeeze/sigmoid for the interaction and output."""
    n_lin = len(_layers(cfg))
    return 2 * n_lin - 2 + cfg.num_tables + 5


def project_ms(cfg: ModelConfig, batch: int, variant: str, gpu: GPU) -> float:
    """Projected time of one batch on ``gpu`` (ms)."""
    _, cdt, _, _ = VARIANT_DTYPES[variant]
    t_compute = flops(cfg, batch)["total"] / (gpu.peak_tflops[cdt] * 1e12 * gpu.compute_eff)
    t_memory = bytes_moved(cfg, batch, variant)["total"] / (gpu.bandwidth_gbs * 1e9
                                                           * gpu.memory_eff)
    io = batch * (cfg.num_dense * 4 + cfg.num_tables * cfg.pooling * 8 + 8) + batch * 4
    t_io = io / (gpu.host_link_gbs * 1e9) + 2 * gpu.transfer_latency_us * 1e-6
    t_launch = kernels(cfg) * gpu.launch_us_per_kernel * 1e-6
    return (t_launch + t_io + max(t_compute, t_memory)) * 1e3


def project_profile(cpu: dict, gpu_key: str) -> dict:
    """A projected GPU profile (dict, schema v1) from a measured CPU profile dict: latency by
    roofline; model size, quality and host-side serving overheads carried over; load time =
    CPU deserialize time + weights over the host link; first call = 10 x a steady batch-1 call
    (the notes measured 4-18x on CPU). Residuals [1.0]: GPU inference time of a fixed batch is
    close to deterministic (Clockwork, OSDI 2020)."""
    gpu = GPUS[gpu_key]
    arch = cpu["model"]["variants"]
    variants = {}
    for name, v in cpu["variants"].items():
        cfg = ModelConfig.from_dict(arch[name])
        bs = v["batch_sizes"]
        ys = [round(project_ms(cfg, b, name, gpu), 5) for b in bs]
        variants[name] = {
            "batch_sizes": bs,
            "latency_ms": {"median": ys, "p99": ys, "mean": ys},
            "fit": {"kind": "piecewise_linear", "x": [float(b) for b in bs], "y_ms": ys,
                    "max_rel_error": 0.0},
            "residuals": [1.0],
            "overhead_ms_per_batch": v.get("overhead_ms_per_batch", 0.0),
            "overhead_ms_per_item": v.get("overhead_ms_per_item", 0.0),
            "model_bytes": v["model_bytes"],
            "load_time_s": round(v["load_time_s"] + v["model_bytes"] / (gpu.host_link_gbs * 1e9),
                                 4),
            "first_call_ms": round(10 * ys[0], 4),
            "quality": v.get("quality", {}),
        }
    return {
        "schema_version": 1,
        "name": f"{gpu_key}-projected",
        "source": "projected",
        # a projection of a test profile is a test profile too
        **({"purpose": cpu["purpose"]} if cpu.get("purpose") else {}),
        "device": {"kind": "gpu", "name": gpu.name,
                   "peak_tflops": gpu.peak_tflops["fp32"],
                   "memory_bandwidth_gbs": gpu.bandwidth_gbs},
        "provenance": {
            "projected_from": cpu.get("name"),
            "method": "roofline: launch + transfer + max(FLOPs/(peak*eff), bytes/(bw*eff))",
            "gpu": {**gpu.__dict__},
            "cpu_provenance": cpu.get("provenance", {}),
        },
        "model": cpu["model"],
        "variants": variants,
    }
