"""Calibrated latency profiles: the JSON contract between calibration and simulation.

A profile file holds, for each model *variant* (fp32, int8, ...), the measured latency of one
batch as a function of the number of items in the batch (ms), a fitted curve through those points,
the empirical distribution of measured/fitted ratios (residuals), the per-batch costs that serving
adds to the forward pass, and what the variant costs outside the forward pass (model size, load
time, first-call time, quality loss).

The simulator draws a batch's service time as::

    t_ms = (fit(items) + overhead_ms_per_batch + overhead_ms_per_item * items) * residual

where ``fit`` interpolates the fitted points piecewise-linearly (and extrapolates the last
segment's slope beyond the largest measured batch) and ``residual`` is drawn from the stored
empirical residuals: ``serving_residuals`` (per-batch ratios seen in a serving run) when the
profile has them, else the isolated-forward ``residuals``. Calibration
(``simulator.calibration``) writes these files; this module only reads and validates them, so
running a scenario never imports torch.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEMA_VERSION = 1


class ProfileError(ValueError):
    """A profile file is missing, corrupt or does not follow the schema."""


class _Strict(BaseModel):
    # NaN and infinities are refused everywhere in a profile: a NaN fit or overhead used to
    # validate and then serve 0 requests
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class LatencyFit(_Strict):
    """Fitted batch latency: piecewise-linear through (x = items per batch, y_ms)."""

    kind: Literal["piecewise_linear", "affine"] = "piecewise_linear"
    x: list[float] = Field(min_length=1, description="batch size in items, strictly increasing")
    y_ms: list[float] = Field(min_length=1, description="fitted latency at x, ms")
    max_rel_error: float = Field(ge=0, description="largest |fit - median| / median over points")

    @model_validator(mode="after")
    def _check(self) -> LatencyFit:
        if len(self.x) != len(self.y_ms):
            raise ValueError("fit.x and fit.y_ms must have the same length")
        if any(b <= a for a, b in zip(self.x, self.x[1:], strict=False)):
            raise ValueError("fit.x must be strictly increasing")
        if any(v <= 0 for v in self.x) or any(v <= 0 for v in self.y_ms):
            raise ValueError("fit.x and fit.y_ms must be positive")
        drop = next((i for i in range(len(self.y_ms) - 1) if self.y_ms[i + 1] < self.y_ms[i]),
                    None)
        if drop is not None:
            raise ValueError(
                f"fit.y_ms must not decrease as the batch grows (a bigger batch is not faster; "
                f"extrapolated, a falling fit turns negative): {self.y_ms[drop]:g} ms at "
                f"x = {self.x[drop]:g} items, {self.y_ms[drop + 1]:g} ms at x = "
                f"{self.x[drop + 1]:g}")
        return self


class LatencyStats(_Strict):
    """Measured per-batch latency at each batch size (ms)."""

    median: list[float]
    p99: list[float]
    mean: list[float] | None = None


class Quality(_Strict):
    """Quality of a variant against the fp32 reference (scores are click probabilities)."""

    auc: float | None = None
    auc_delta: float | None = Field(default=None, description="auc - auc(fp32)")
    max_abs_diff: float | None = None
    mean_abs_diff: float | None = None


class VariantProfile(_Strict):
    """Everything the simulator needs to know about one model variant on one device."""

    batch_sizes: list[int] = Field(min_length=1, description="measured batch sizes, items")
    latency_ms: LatencyStats
    fit: LatencyFit
    residuals: list[float] = Field(
        min_length=1, description="measured / fitted latency ratios (empirical distribution)"
    )
    serving_residuals: list[float] | None = Field(
        default=None, description="serving batch time / (fit + overheads) ratios seen in a "
        "serving run; drawn instead of residuals when present")
    overhead_ms_per_batch: float = Field(default=0.0, ge=0)
    overhead_ms_per_item: float = Field(default=0.0, ge=0)
    model_bytes: int = Field(gt=0, description="serialized model size, bytes")
    load_time_s: float = Field(ge=0, description="deserialize + warm-up time, s")
    first_call_ms: float = Field(default=0.0, ge=0, description="first forward after load, ms")
    quality: Quality = Quality()

    @model_validator(mode="after")
    def _check(self) -> VariantProfile:
        n = len(self.batch_sizes)
        if len(self.latency_ms.median) != n or len(self.latency_ms.p99) != n:
            raise ValueError("latency_ms.median and latency_ms.p99 need one value per batch size")
        for r in (*self.residuals, *(self.serving_residuals or ())):
            if r <= 0 or not np.isfinite(r):
                raise ValueError("residuals must be positive finite ratios")
        return self


class InstanceScaling(_Strict):
    """How a batch slows down when several model instances share one node's devices (Triton's
    ``instance_group`` count; worker processes on a CPU node): per variant, the service-time
    multiplier when ``n`` instances serve batches at once (1.0 at n = 1). Written by
    ``peaksim calibrate --instances 1,2,4`` (measured) or ``peaksim profile project`` (projected);
    the simulator interpolates between measured counts and refuses counts beyond the largest."""

    source: Literal["measured", "projected"]
    method: str = Field("", description="how the factors were obtained")
    slowdown: dict[str, dict[int, float]] = Field(
        description="variant -> {concurrent instances: service-time multiplier}")

    @model_validator(mode="after")
    def _check(self) -> InstanceScaling:
        for v, by_n in self.slowdown.items():
            if 1 not in by_n:
                raise ValueError(f"instances.slowdown.{v} needs the factor at 1 instance")
            for n, f in by_n.items():
                if n < 1 or not np.isfinite(f) or f <= 0:
                    raise ValueError(f"instances.slowdown.{v}.{n}: counts >= 1 and positive "
                                     f"finite factors (got {n}: {f})")
        return self


class DeviceInfo(_Strict):
    kind: Literal["cpu", "gpu"]
    name: str
    threads: int | None = None
    isa_flags: list[str] = []
    peak_tflops: float | None = None
    memory_bandwidth_gbs: float | None = None


class Profile(_Strict):
    """A calibration profile file (schema version 1)."""

    schema_version: Literal[1]
    name: str
    source: Literal["measured", "projected", "placeholder"]
    purpose: Literal["production", "test"] | None = Field(
        default=None, description="what the profile is for: 'test' (peaksim calibrate --quick: "
        "few sizes and repetitions; every run using it warns) or 'production'; absent in "
        "older files (read as not a test profile)")
    device: DeviceInfo
    node_type: str | None = Field(
        default=None, description="the node type (cluster.node_types or the built-in catalog) "
        "the profile was measured or projected for; absent in older files")
    instances: InstanceScaling | None = Field(
        default=None, description="slowdown of concurrent model instances on one node")
    provenance: dict[str, object] = {}
    model: dict[str, object] = {}
    variants: dict[str, VariantProfile] = Field(min_length=1)


def load_profile(path: str | Path) -> Profile:
    """Read and validate a profile JSON file; raise ProfileError naming the file and field."""
    p = Path(path)
    return _load_cached(str(p.resolve()) if p.exists() else str(p))


@lru_cache(maxsize=32)
def _load_cached(path: str) -> Profile:
    p = Path(path)
    if not p.is_file():
        raise ProfileError(f"{path}: profile file not found")
    try:
        raw = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProfileError(f"{path}: not a readable JSON profile ({exc})") from None
    if not isinstance(raw, dict):
        raise ProfileError(f"{path}: a profile must be a JSON object")
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ProfileError(
            f"{path}: schema_version is {version!r}; this PeakSim reads schema_version "
            f"{SCHEMA_VERSION}"
        )
    try:
        return Profile.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        raise ProfileError(f"{path}: field '{loc}': {err['msg']}") from None


def get_variant(profile: Profile, variant: str, path: str | Path = "") -> VariantProfile:
    """Return a variant or raise ProfileError listing the variants the file has."""
    try:
        return profile.variants[variant]
    except KeyError:
        allowed = ", ".join(sorted(profile.variants))
        raise ProfileError(
            f"{path or profile.name}: variant '{variant}' not in profile; allowed: {allowed}"
        ) from None


def fitted_ms(v: VariantProfile, items: np.ndarray | float) -> np.ndarray:
    """Fitted batch latency (ms, before overheads and residual) at ``items`` per batch.

    Piecewise-linear between fitted points; linear extrapolation of the last (first) segment
    beyond the largest (below the smallest) point, never below 5% of the first point.
    """
    x = np.asarray(v.fit.x, dtype=float)
    y = np.asarray(v.fit.y_ms, dtype=float)
    q = np.asarray(items, dtype=float)
    out = np.interp(q, x, y)
    if len(x) >= 2:
        hi = q > x[-1]
        if np.any(hi):
            slope = (y[-1] - y[-2]) / (x[-1] - x[-2])
            out = np.where(hi, y[-1] + slope * (q - x[-1]), out)
        lo = q < x[0]
        if np.any(lo):
            slope = (y[1] - y[0]) / (x[1] - x[0])
            out = np.where(lo, np.maximum(y[0] + slope * (q - x[0]), 0.05 * y[0]), out)
    return out


def service_ms(v: VariantProfile, items: np.ndarray | float) -> np.ndarray:
    """Mean-residual-free batch service time (ms): fit plus serving overheads."""
    q = np.asarray(items, dtype=float)
    return fitted_ms(v, q) + v.overhead_ms_per_batch + v.overhead_ms_per_item * q


def instance_factor(profile: Profile, variant: str, n: int) -> float:
    """Service-time multiplier of a batch of ``variant`` when ``n`` instances serve batches at
    once on one node (the profile's ``instances`` block): linear between the stored counts;
    ValueError for n < 1, n beyond the largest stored count, or a variant without factors."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"instance count must be an integer >= 1 (got {n!r})")
    block = profile.instances
    if block is None or variant not in block.slowdown:
        have = ", ".join(sorted(block.slowdown)) if block is not None else "none"
        raise ValueError(f"profile '{profile.name}' has no instance factors for variant "
                         f"'{variant}' (variants with factors: {have}); add them with peaksim "
                         "calibrate-instances (CPU) or peaksim profile project --instances-only "
                         "(GPU)")
    by_n = block.slowdown[variant]
    counts = sorted(by_n)
    if n > counts[-1]:
        raise ValueError(f"profile '{profile.name}': {n} instances of '{variant}' is beyond the "
                         f"largest count with a factor ({counts[-1]}); measure or project "
                         "that many")
    return float(np.interp(n, counts, [by_n[c] for c in counts]))
