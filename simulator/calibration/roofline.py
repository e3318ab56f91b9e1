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

#: instance counts a projection writes factors for (``project_instances``)
INSTANCE_COUNTS = (1, 2, 4, 8)


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


def project_profile(cpu: dict, gpu_key: str,
                    instance_counts: tuple[int, ...] | list[int] = INSTANCE_COUNTS) -> dict:
    """A projected GPU profile (dict, schema v1) from a measured CPU profile dict: latency by
    roofline; model size, quality and host-side serving overheads carried over; load time =
    CPU deserialize time + weights over the host link; first call = 10 x a steady batch-1 call
    (the notes measured 4-18x on CPU). Residuals [1.0]: GPU inference time of a fixed batch is
    close to deterministic (Clockwork, OSDI 2020). ``instances``: the projected slowdown of
    concurrent instances (``project_instances``) at ``instance_counts`` (empty: none)."""
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
        **({"instances": project_instances(
            {n: ModelConfig.from_dict(arch[n]) for n in variants},
            {n: v["batch_sizes"] for n, v in variants.items()}, gpu, instance_counts)}
           if instance_counts else {}),
        "model": cpu["model"],
        "variants": variants,
    }


# ------------------------------------------------------------------ concurrent instances


INSTANCE_METHOD = (
    "projected: n instances on one GPU (Triton instance_group count n: one stream each) as a "
    "closed queueing network solved exactly by mean value analysis (Reiser & Lavenberg, JACM "
    "27(2), 1980; BCMP, JACM 22(2), 1975: exact for a processor-sharing station with any "
    "service-time distribution): each instance, always busy, spends Z = kernel launches + "
    "2 x transfer latency per batch on its own (CPU-side launch, link latency: overlapped "
    "across instances) and D = inputs/outputs over the host link + max(compute, memory) in "
    "the device shared by all (SMs and bandwidth, processor sharing). Per-batch time at n "
    "= Z + R(n), R(k) = D (1 + Q(k-1)), Q(k) = k R(k) / (Z + R(k)); factor(n) = (Z + R(n)) / "
    "(Z + D), between max(Z + D, nD) / (Z + D) and the synchronised bound (Z + nD) / (Z + D); "
    "geometric mean over the middle and the largest batch size")


def variant_arch(cfg: ModelConfig, name: str) -> ModelConfig:
    """The architecture a built-in DLRM variant runs, without building it (mirrors
    ``variants.prune`` and ``variants.distill_student``; checked against them in the tests)."""
    if name == "pruned":
        bottom = (*(max(1, int(w * 0.5)) for w in cfg.bottom_mlp[:-1]), cfg.emb_dim)
        top = tuple(max(1, int(w * 0.5)) for w in cfg.top_mlp)
        return cfg.with_mlps(bottom, top, cfg.name + "-pruned")
    if name == "distilled":
        d = max(2, cfg.emb_dim // 2)
        bottom = (*(max(2, w // 4) for w in cfg.bottom_mlp[:-1]), d)
        top = tuple(max(2, w // 4) for w in cfg.top_mlp)
        return ModelConfig(name=cfg.name + "-distilled", num_dense=cfg.num_dense,
                           table_rows=cfg.table_rows, emb_dim=d, bottom_mlp=bottom,
                           top_mlp=top, pooling=cfg.pooling, seed=cfg.seed + 1)
    return cfg


def instance_terms(cfg: ModelConfig, batch: int, variant: str, gpu: GPU) -> tuple[float, float]:
    """(Z, D) of one batch in ms: the part each instance spends alone (launches, transfer
    latency) and the part in the shared device (host-link bytes, max(compute, memory));
    Z + D = ``project_ms``."""
    _, cdt, _, _ = VARIANT_DTYPES[variant]
    t_compute = flops(cfg, batch)["total"] / (gpu.peak_tflops[cdt] * 1e12 * gpu.compute_eff)
    t_memory = bytes_moved(cfg, batch, variant)["total"] / (gpu.bandwidth_gbs * 1e9
                                                           * gpu.memory_eff)
    io = batch * (cfg.num_dense * 4 + cfg.num_tables * cfg.pooling * 8 + 8) + batch * 4
    fixed = kernels(cfg) * gpu.launch_us_per_kernel * 1e-6 + 2 * gpu.transfer_latency_us * 1e-6
    work = io / (gpu.host_link_gbs * 1e9) + max(t_compute, t_memory)
    return fixed * 1e3, work * 1e3


def mva_factor(fixed: float, work: float, n: int) -> float:
    """Per-batch time with n always-busy instances over the time with one: exact MVA of a
    delay station (``fixed``) and a processor-sharing station (``work``)."""
    q, r = 0.0, work
    for k in range(1, n + 1):
        r = work * (1 + q)
        q = k * r / (fixed + r)
    return (fixed + r) / (fixed + work)


def project_instances(arch: dict[str, ModelConfig], sizes: dict[str, list[int]], gpu: GPU,
                      counts: tuple[int, ...] | list[int] = INSTANCE_COUNTS) -> dict:
    """The projected ``instances`` block: per variant, the MVA factor per count (geometric mean
    over the middle and the largest of the variant's batch sizes)."""
    from simulator.calibration.instances import representative_sizes

    slowdown: dict[str, dict[str, float]] = {}
    detail = []
    for name, cfg in arch.items():
        reps = representative_sizes(sizes[name])
        terms = {b: instance_terms(cfg, b, name, gpu) for b in reps}
        by_n: dict[str, float] = {}
        for n in sorted(counts):
            fs = [mva_factor(z, d, n) for z, d in terms.values()]
            gm = 1.0
            for f in fs:
                gm *= f ** (1 / len(fs))
            by_n[str(n)] = round(gm, 4)
        slowdown[name] = by_n
        detail.append(f"{name}: " + "; ".join(f"b{b} Z {z:.4f} ms D {d:.4f} ms"
                                              for b, (z, d) in terms.items()))
    return {"source": "projected",
            "method": f"{INSTANCE_METHOD} on {gpu.name} (launch {gpu.launch_us_per_kernel:g} "
                      f"us/kernel, transfer latency {gpu.transfer_latency_us:g} us, efficiencies "
                      f"compute {gpu.compute_eff:g} memory {gpu.memory_eff:g}). Terms: "
                      + " | ".join(detail),
            "slowdown": slowdown}
