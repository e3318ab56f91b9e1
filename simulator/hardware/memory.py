"""How much memory one model replica needs: dense weights, embedding tables, activations.

All sizes are bytes. A replica is split into

- dense weights (MLPs, interaction): replicated on every device that serves the replica;
- embedding tables: one :class:`TableSpec` each, ``rows x bytes_per_row`` bytes, which a
  sharding layout may spread over devices (:mod:`simulator.hardware.sharding`);
- activations: ``activation_bytes_per_item`` per item of a batch in flight.

:func:`variant_memory` derives a :class:`ModelMemory` from a calibration profile: from the
architecture the profile records (DLRM-style ``table_rows``, ``emb_dim``, ``bottom_mlp``,
``top_mlp``, ``num_dense``) with each variant's storage types, checked against the measured
``model_bytes``. The formulas are in docs/hardware.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from simulator.hardware import constants as C
from simulator.profiles import Profile, get_variant

#: largest |architecture total - model_bytes| / model_bytes for the architecture to be trusted
MATCH_TOLERANCE = 0.05
#: bytes of an id (int64 index) fed to an embedding lookup
ID_BYTES = 8


@dataclass(frozen=True)
class TableSpec:
    """One embedding table: ``rows`` x ``dim``, stored at ``bytes_per_row`` bytes a row (the
    row's elements plus, for row-wise int8, its fp32 scale and bias: dim + 8); ``pooling``
    ids are looked up per item (TorchRec ``POOLING_FACTOR`` 1.0: one-hot features)."""

    rows: int
    dim: int
    bytes_per_row: float
    pooling: float = C.POOLING_FACTOR

    def __post_init__(self) -> None:
        if self.rows < 1 or self.dim < 1 or not self.bytes_per_row > 0 or not self.pooling > 0:
            raise ValueError(f"table needs rows >= 1, dim >= 1, bytes_per_row > 0 and pooling "
                             f"> 0 (got {self.rows}, {self.dim}, {self.bytes_per_row}, "
                             f"{self.pooling})")

    @property
    def bytes(self) -> int:
        """Table size, bytes."""
        return math.ceil(self.rows * self.bytes_per_row)


@dataclass(frozen=True)
class ModelMemory:
    """Memory of one model replica.

    ``dense_bytes``: weights every device of a replica holds, bytes; ``tables``: the embedding
    tables; ``activation_bytes_per_item``: activations per item of a batch in flight, bytes
    (0 = unknown); ``output_dtype_bytes``: bytes per element of a pooled embedding (what an
    all-to-all moves: 4 for fp32 outputs, 2 for bf16); ``note``: how the numbers were derived.
    """

    dense_bytes: int
    tables: tuple[TableSpec, ...] = ()
    activation_bytes_per_item: float = 0.0
    output_dtype_bytes: int = 4
    note: str = ""

    def __post_init__(self) -> None:
        if self.dense_bytes < 0 or self.activation_bytes_per_item < 0:
            raise ValueError("dense_bytes and activation_bytes_per_item must be >= 0")
        if self.output_dtype_bytes < 1:
            raise ValueError("output_dtype_bytes must be >= 1")

    def embedding_bytes(self) -> int:
        """All embedding tables, bytes."""
        return sum(t.bytes for t in self.tables)

    def activation_bytes(self, batch_items: int) -> int:
        """Activations of a batch of ``batch_items`` items, bytes."""
        return math.ceil(self.activation_bytes_per_item * batch_items)

    def replica_bytes(self, batch_items: int) -> int:
        """A whole replica on one device serving a batch of ``batch_items``: dense + tables +
        activations, bytes."""
        return self.dense_bytes + self.embedding_bytes() + self.activation_bytes(batch_items)


@dataclass(frozen=True)
class _Dtypes:
    """Storage of a variant: bytes per embedding element and per row (scale/bias), per dense
    weight and bias, per activation element and per pooled-output element."""

    emb: float
    emb_row: float
    weight: float
    bias: float
    act: int
    out: int


#: storage types of the calibration variants (simulator/calibration/variants.py):
#: fp32 everything 4 bytes; bf16 everything 2; int8 = dynamic int8 nn.Linear (int8 weights,
#: fp32 bias), fp32 tables; int8_emb = int8 Linear + row-wise int8 tables
#: (``embedding_bag_byte_prepack``: 1 byte an element + fp32 scale and bias = 8 bytes a row);
#: pruned and distilled are fp32 models with their own (smaller) architecture.
VARIANT_DTYPES: dict[str, _Dtypes] = {
    "fp32": _Dtypes(4, 0, 4, 4, 4, 4),
    "bf16": _Dtypes(2, 0, 2, 2, 2, 2),
    "int8": _Dtypes(4, 0, 1, 4, 4, 4),
    "int8_emb": _Dtypes(1, 8, 1, 4, 4, 4),
    "pruned": _Dtypes(4, 0, 4, 4, 4, 4),
    "distilled": _Dtypes(4, 0, 4, 4, 4, 4),
}


def _arch(profile: Profile, variant: str) -> dict[str, Any] | None:
    """The DLRM-style architecture the profile records for ``variant`` (else the model's
    config), or None when it records none."""
    model = profile.model
    by_variant = model.get("variants")
    cand = by_variant.get(variant) if isinstance(by_variant, dict) else None
    if cand is None:
        cand = model.get("config", model)
    need = ("table_rows", "emb_dim", "bottom_mlp", "top_mlp", "num_dense")
    if not isinstance(cand, dict) or not all(k in cand for k in need):
        return None
    return cand


def _dense_counts(arch: dict[str, Any]) -> tuple[int, int, list[int]]:
    """(weights, biases, layer widths) of the bottom and top MLPs of a DLRM
    (simulator/calibration/model.py: top MLP input = emb_dim + F(F-1)/2, F = tables + 1)."""
    d = int(arch["emb_dim"])
    f = len(arch["table_rows"]) + 1
    bottom = [int(arch["num_dense"]), *(int(w) for w in arch["bottom_mlp"])]
    top = [d + f * (f - 1) // 2, *(int(w) for w in arch["top_mlp"]), 1]
    weights = sum(a * b for chain in (bottom, top) for a, b in pairwise(chain))
    biases = sum(b for chain in (bottom, top) for _, b in pairwise(chain))
    return weights, biases, bottom + top


def activation_elements_per_item(arch: dict[str, Any]) -> float:
    """Activation elements live per item at the peak of a DLRM forward (an estimate):
    the stacked features F x D, the interaction's F x F product, the concatenated top-MLP
    input D + F(F-1)/2, and the input and output of the widest MLP layer (2 x widest). Ids
    (int64) are counted separately by :func:`variant_memory`."""
    d = int(arch["emb_dim"])
    f = len(arch["table_rows"]) + 1
    _, _, widths = _dense_counts(arch)
    return f * d + f * f + (d + f * (f - 1) // 2) + 2 * max(widths)


def variant_memory(profile: Profile, variant: str, *,
                   embedding_scale: float = 1.0) -> ModelMemory:
    """Memory of one replica of ``variant`` of ``profile`` (bytes; see docs/hardware.md).

    With a DLRM-style architecture in the profile: tables of ``table_rows x emb_dim`` at the
    variant's element size (:data:`VARIANT_DTYPES`; an unknown variant gets the storage whose
    total is closest to its ``model_bytes``), dense = MLP weights and biases. When that total
    is within :data:`MATCH_TOLERANCE` of the measured ``model_bytes``, the remainder
    (serialisation overhead) is added to the dense part; otherwise the architecture is not
    trusted and the whole ``model_bytes`` is dense. ``embedding_scale`` multiplies every
    table's rows (a production-size model when the profile measured a small one); it needs the
    table architecture.
    """
    if not (math.isfinite(embedding_scale) and embedding_scale > 0):
        raise ValueError(f"embedding_scale must be a positive finite number, not "
                         f"{embedding_scale!r}")
    vp = get_variant(profile, variant)
    measured = vp.model_bytes
    arch = _arch(profile, variant)
    if arch is None:
        if embedding_scale != 1.0:
            raise ValueError(f"profile '{profile.name}' records no embedding-table architecture "
                             f"(model.variants.{variant}.table_rows/emb_dim): embedding_scale "
                             f"= {embedding_scale:g} cannot be applied")
        return ModelMemory(dense_bytes=measured,
                           note="no table architecture in the profile: all of model_bytes is "
                                "dense (replicated)")
    rows = [int(r) for r in arch["table_rows"]]
    dim = int(arch["emb_dim"])
    weights, biases, _ = _dense_counts(arch)

    def total(dt: _Dtypes) -> float:
        return sum(r * (dim * dt.emb + dt.emb_row) for r in rows) + weights * dt.weight \
            + biases * dt.bias

    dt = VARIANT_DTYPES.get(variant)
    how = f"storage of variant '{variant}'"
    if dt is None or abs(total(dt) - measured) > MATCH_TOLERANCE * measured:
        name, dt = min(VARIANT_DTYPES.items(), key=lambda kv: abs(total(kv[1]) - measured))
        how = f"storage closest to model_bytes (as '{name}')"
    arch_total = total(dt)
    if abs(arch_total - measured) > MATCH_TOLERANCE * measured:
        if embedding_scale != 1.0:
            raise ValueError(f"profile '{profile.name}', variant '{variant}': the architecture "
                             f"gives {arch_total / C.GB:.4g} GB, model_bytes is "
                             f"{measured / C.GB:.4g} GB (more than {MATCH_TOLERANCE:.0%} apart): "
                             f"embedding_scale = {embedding_scale:g} cannot be applied")
        return ModelMemory(dense_bytes=measured,
                           note=f"architecture total {arch_total:.0f} B is more than "
                                f"{MATCH_TOLERANCE:.0%} from model_bytes {measured} B: all of "
                                "model_bytes is dense (replicated)")
    pooling = float(arch.get("pooling", C.POOLING_FACTOR) or C.POOLING_FACTOR)
    bpr = dim * dt.emb + dt.emb_row
    tables = tuple(TableSpec(rows=max(1, math.ceil(r * embedding_scale)), dim=dim,
                             bytes_per_row=bpr, pooling=pooling) for r in rows)
    dense = math.ceil(weights * dt.weight + biases * dt.bias)
    dense += max(0, math.ceil(measured - arch_total))
    act = (activation_elements_per_item(arch) * dt.act + ID_BYTES * len(rows) * pooling)
    return ModelMemory(
        dense_bytes=dense, tables=tables, activation_bytes_per_item=act,
        output_dtype_bytes=dt.out,
        note=f"{len(rows)} tables x {dim} from the profile's architecture, {how}; "
             f"architecture total within {abs(arch_total - measured) / measured:.2%} of "
             f"model_bytes; embedding_scale {embedding_scale:g}")
