"""Assemble measured results into a schema-v1 profile dict, with provenance; write atomically."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from simulator.calibration.fit import fit_latency, residuals, summarize
from simulator.calibration.measure import Measured, Spec
from simulator.profiles import SCHEMA_VERSION, Profile

ISA_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
             "amx_bf16", "amx_int8", "amx_tile", "neon", "sve")


def cpu_info() -> tuple[str, list[str]]:
    """CPU model name and the ISA flags relevant to inference kernels (from /proc/cpuinfo)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            if key.strip() == "model name" and name in ("", platform.machine(), "x86_64"):
                name = val.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = set(val.split())
    except OSError:
        pass
    return name, [f for f in ISA_FLAGS if f in flags]


def provenance(spec: Spec, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Where and how the profile was measured."""
    import torch

    name, flags = cpu_info()
    return {
        "cpu_model": name,
        "isa_flags": flags,
        "logical_cpus": os.cpu_count(),
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "threads": spec.threads,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "reps_per_cell": spec.reps,
        "warmup_per_size": spec.warmup,
        **({"gpu_model": torch.cuda.get_device_name(0), "cuda_version": torch.version.cuda,
            "timing": "CUDA events around each call, after torch.cuda.synchronize()"}
           if spec.device == "cuda" else {}),
        **(extra or {}),
    }


def make_profile(name: str, spec: Spec, m: Measured,
                 overheads: dict[str, tuple[float, float]] | None = None,
                 prov: dict[str, Any] | None = None,
                 serving_residuals: dict[str, list[float]] | None = None,
                 purpose: str = "production") -> dict[str, Any]:
    """Profile dict (validated against simulator.profiles.Profile before it is returned).
    ``model``: the built-in DLRM's preset, config, per-variant architecture and identity; for
    an own model (``m.own``) its identity (factory or .pt2 file with SHA-256, parameters,
    bytes), the variants derived (how) and skipped (why). ``purpose``: "test" for a
    ``--quick`` profile (every run using it warns), else "production"."""
    variants: dict[str, Any] = {}
    for v, cells in m.samples_ms.items():
        stats = [summarize(c) for c in cells]
        med = [s["median"] for s in stats]
        fit = fit_latency(spec.batch_sizes, med)
        oh_b, oh_i = (overheads or {}).get(v, (0.0, 0.0))
        variants[v] = {
            "batch_sizes": list(spec.batch_sizes),
            "latency_ms": {k: [round(s[k], 5) for s in stats] for k in ("median", "p99", "mean")},
            "fit": {"kind": fit.kind, "x": fit.x, "y_ms": [round(y, 5) for y in fit.y_ms],
                    "max_rel_error": round(fit.max_rel_error, 5)},
            "residuals": residuals(fit, spec.batch_sizes, cells),
            **({"serving_residuals": serving_residuals[v]}
               if serving_residuals and serving_residuals.get(v) else {}),
            "overhead_ms_per_batch": round(max(0.0, oh_b), 5),
            "overhead_ms_per_item": round(max(0.0, oh_i), 6),
            "model_bytes": int(m.model_bytes[v]),
            "load_time_s": round(float(np.median(m.load_time_s[v])), 5),
            "first_call_ms": round(float(np.median(m.first_call_ms[v])), 4),
            "quality": m.quality.get(v, {}),
        }
    device = {"kind": "gpu" if spec.device == "cuda" else "cpu", "threads": spec.threads}
    p = prov or {}
    if spec.device == "cuda":
        import torch

        device["name"] = torch.cuda.get_device_name(0)
    else:
        device["name"] = str(p.get("cpu_model", platform.processor() or "cpu"))
        device["isa_flags"] = list(p.get("isa_flags", []))  # type: ignore[arg-type]
    prof = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "source": "measured",
        "purpose": purpose,
        "device": device,
        "provenance": p,
        "model": _model_info(spec, m),
        "variants": variants,
    }
    Profile.model_validate(prof)
    return prof


def _model_info(spec: Spec, m: Measured) -> dict[str, Any]:
    """The profile's ``model``: the model's identity (factory or .pt2 file with SHA-256,
    parameters, bytes; the built-in DLRM's preset and config), the variants derived (how) and
    skipped (why), and each variant's architecture when the model gives it."""
    own = m.own
    if not own and spec.model is not None:  # measured without own_model (e.g. in a test)
        from simulator.calibration.model import dlrm_info

        own = dlrm_info(spec.model)
    return {**own, **({"variants": m.config} if m.config else {})}


def write_profile(prof: dict[str, Any], path: str | Path) -> Path:
    """Write JSON atomically (temp file in the same folder, then os.replace)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(prof, fh, indent=1)
            fh.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
