"""Serving-stack profiles: what a particular server adds to a model's forward pass.

A model profile (:mod:`simulator.profiles`) holds the forward latency of each variant (portable
across servers) and, besides, the overheads PeakSim's own harness added to it. A *serving-stack
profile* is the server's part on its own, measured from that server's batch or request logs
(``peaksim calibrate-serving``): a per-batch and a per-item overhead (ms) and the empirical
ratios of observed batch time to (forward fit + overheads). A scenario combines the two with
``service.serving = "stack.json"``; the simulator then draws a batch's time as::

    t_ms = (fit(items) + overhead_ms_per_batch + overhead_ms_per_item * items) * residual

with ``fit`` from the model profile's variant and the overheads and residuals from the stack
(its per-variant entry when it has one for the variant, else its defaults). This module only
reads and validates the files (pydantic, no NaN or infinities, errors naming file and field).
"""

from __future__ import annotations

import itertools
import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from simulator.profiles import VariantProfile

SCHEMA_VERSION = 1


class ServingProfileError(ValueError):
    """A serving-stack profile is missing, corrupt or does not follow the schema."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _positive_ratios(v: list[float]) -> list[float]:
    if any(r <= 0 for r in v):
        raise ValueError("residuals must be positive ratios")
    return v


class ServingProvenance(_Strict):
    """Where the overheads come from."""

    source: Literal["peaksim-harness", "batch-log", "request-log"]
    file: str | None = Field(None, description="the log the stack was fitted from")
    sha256: str | None = Field(None, description="SHA-256 of that log")
    date: str = Field(description="when the stack was calibrated (ISO 8601, UTC)")
    server: str = Field("", description="free text: which server, version, settings")
    model_profile: str | None = Field(None, description="model profile the forward fit came "
                                      "from (overheads are relative to it)")
    model_profile_sha256: str | None = None
    variant: str | None = Field(None, description="the model variant the log served")
    time_unit: str | None = None
    notes: str = ""


class SizeResiduals(_Strict):
    """Residuals of batches holding ``min_items`` to ``max_items`` items."""

    min_items: int = Field(ge=1, description="smallest batch, items")
    max_items: int = Field(ge=1, description="largest batch, items")
    residuals: list[float] = Field(min_length=1, description="observed / (fit + overheads)")

    @field_validator("residuals")
    @classmethod
    def _ratios(cls, v: list[float]) -> list[float]:
        return _positive_ratios(v)


def _check_ranges(v: list[SizeResiduals] | None) -> list[SizeResiduals] | None:
    if v:
        for a, b in itertools.pairwise(v):
            if b.min_items != a.max_items + 1:
                raise ValueError("residuals_by_items: ranges must be sorted and adjacent "
                                 f"(one ends at {a.max_items}, the next starts at {b.min_items})")
        if any(r.max_items < r.min_items for r in v):
            raise ValueError("residuals_by_items: max_items < min_items")
    return v


class StackOverheads(_Strict):
    """Per-variant overheads overriding the stack's defaults."""

    overhead_ms_per_batch: float = Field(ge=0, description="ms per batch")
    overhead_ms_per_item: float = Field(ge=0, description="ms per item")
    residuals: list[float] | None = Field(None, min_length=1, description="observed / "
                                          "(fit + overheads) ratios; defaults when absent")
    timer_overshoot_ms: float | None = Field(None, ge=0)
    residuals_by_items: list[SizeResiduals] | None = None

    @field_validator("residuals")
    @classmethod
    def _ratios(cls, v: list[float] | None) -> list[float] | None:
        return v if v is None else _positive_ratios(v)

    @field_validator("residuals_by_items")
    @classmethod
    def _ranges(cls, v: list[SizeResiduals] | None) -> list[SizeResiduals] | None:
        return _check_ranges(v)


class FitDiagnostics(_Strict):
    """How well the affine overhead fits the observed medians, per batch size."""

    batches: int = Field(ge=0, description="batches used by the fit")
    sizes: list[int] = Field(description="batch sizes (items) with enough batches to fit")
    counts: list[int]
    median_ms: list[float] = Field(description="observed median batch time, ms")
    forward_ms: list[float] = Field(description="model profile's fitted forward time, ms")
    predicted_ms: list[float] = Field(description="forward + fitted overheads, ms")
    max_rel_error: float = Field(ge=0, description="largest |predicted - median| / median")
    min_count: int = Field(ge=1, description="batches needed for a size to enter the fit")


class ServingStackProfile(_Strict):
    """A serving-stack profile file (schema version 1)."""

    schema_version: Literal[1] = 1
    kind: Literal["serving_stack"]
    name: str = Field(min_length=1)
    provenance: ServingProvenance
    overhead_ms_per_batch: float = Field(ge=0, description="ms per batch")
    overhead_ms_per_item: float = Field(ge=0, description="ms per item")
    residuals: list[float] = Field(min_length=1, description="observed batch time / (forward "
                                   "fit + overheads), one per batch (empirical distribution)")
    timer_overshoot_ms: float | None = Field(None, ge=0, description="median lateness of the "
                                             "batcher's timer, ms (for timer_slack_ms)")
    residuals_by_items: list[SizeResiduals] | None = Field(
        None, description="residuals per range of batch sizes (sorted, adjacent ranges); when "
        "present a batch draws from its size's range (the first below it, the last above it): "
        "stalls of a server are not the same share of every batch size")
    variants: dict[str, StackOverheads] = Field(default_factory=dict)
    diagnostics: FitDiagnostics | None = None

    @field_validator("residuals")
    @classmethod
    def _ratios(cls, v: list[float]) -> list[float]:
        return _positive_ratios(v)

    @field_validator("residuals_by_items")
    @classmethod
    def _ranges(cls, v: list[SizeResiduals] | None) -> list[SizeResiduals] | None:
        return _check_ranges(v)

    def for_variant(self, variant: str) -> StackOverheads:
        """The overheads that apply to ``variant`` (its own entry, else the defaults)."""
        own = self.variants.get(variant)
        if own is not None:
            return StackOverheads(
                overhead_ms_per_batch=own.overhead_ms_per_batch,
                overhead_ms_per_item=own.overhead_ms_per_item,
                residuals=own.residuals or self.residuals,
                timer_overshoot_ms=(own.timer_overshoot_ms if own.timer_overshoot_ms is not None
                                    else self.timer_overshoot_ms),
                residuals_by_items=(own.residuals_by_items if own.residuals is not None
                                    else own.residuals_by_items or self.residuals_by_items))
        return StackOverheads(overhead_ms_per_batch=self.overhead_ms_per_batch,
                              overhead_ms_per_item=self.overhead_ms_per_item,
                              residuals=self.residuals,
                              timer_overshoot_ms=self.timer_overshoot_ms,
                              residuals_by_items=self.residuals_by_items)


def load_serving_profile(path: str | Path) -> ServingStackProfile:
    """Read and validate a serving-stack JSON file; raise ServingProfileError naming the file
    and the field."""
    p = Path(path)
    if not p.is_file():
        raise ServingProfileError(f"{path}: serving-stack profile not found")
    st = p.stat()
    return _load(str(p.resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=16)
def _load(path: str, _size: int, _mtime_ns: int) -> ServingStackProfile:
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ServingProfileError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(raw, dict):
        raise ServingProfileError(f"{path}: a serving-stack profile must be a JSON object")
    if raw.get("kind") != "serving_stack":
        raise ServingProfileError(
            f"{path}: field 'kind': expected \"serving_stack\", got {raw.get('kind')!r} (a "
            "model profile goes in service.profile, a serving stack in service.serving)")
    try:
        return ServingStackProfile.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        raise ServingProfileError(f"{path}: field '{loc}': {err['msg']}") from None


def combine(variant: VariantProfile, stack: ServingStackProfile, name: str) -> VariantProfile:
    """The model variant ``name`` served by ``stack``: its forward fit with the stack's
    overheads and residuals (replacing the variant's own overheads and serving residuals)."""
    o = stack.for_variant(name)
    return variant.model_copy(update={
        "overhead_ms_per_batch": o.overhead_ms_per_batch,
        "overhead_ms_per_item": o.overhead_ms_per_item,
        "serving_residuals": list(o.residuals or stack.residuals),
    })
