"""Compressed variants of the teacher model, each a real transformed ``nn.Module``.

- ``fp32``: the teacher itself.
- ``bf16``: all weights and activations in bfloat16 (AMX/AVX-512-BF16 kernels where present).
- ``int8``: dynamic quantization of every ``nn.Linear`` (int8 weights, activations quantized per
  batch). We use ``torch.ao.quantization.quantize_dynamic`` although it is deprecated: torchao's
  ``quantize_(m, Int8DynamicActivationInt8WeightConfig())`` runs on CPU but, uncompiled, is 2-4x
  *slower* than fp32 at batch <= 32, and compiled it costs 2-4 s per new batch shape (see
  docs/calibration.md). The deprecation noise is silenced exactly, around conversion and loading.
- ``int8_emb``: row-wise int8 embedding tables (per-row fp32 scale and bias) run by the direct ops
  ``quantized.embedding_bag_byte_rowwise_offsets`` (the ``torch.ao.nn.quantized.EmbeddingBag``
  module is ~5x slower per call), plus int8 Linear layers.
- ``pruned``: structured pruning: half the hidden units of every MLP layer (smallest L2 norm) are
  removed, so the matrices really shrink; then a brief fine-tune on the teacher's logits.
- ``distilled``: a student with half the embedding width (tables projected by a seeded orthogonal
  map) and narrower MLPs, trained briefly on the teacher's logits.
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from collections.abc import Callable, Iterator

import torch
from torch import nn

from simulator.calibration.model import DLRM, Interaction, ModelConfig, make_inputs, mlp

VARIANTS = ("fp32", "bf16", "int8", "int8_emb", "pruned", "distilled")


@contextlib.contextmanager
def quiet_quantization() -> Iterator[None]:
    """Silence exactly the warnings torch 2.13 emits when converting or unpickling
    ``torch.ao`` quantized modules (they never fire at inference)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated",
                                category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, torch\.quantize",
                                category=UserWarning)
        warnings.filterwarnings("ignore", message=r"TypedStorage is deprecated",
                                category=UserWarning)
        yield


def quantize_linear(module: nn.Module) -> nn.Module:
    """int8 dynamic quantization of every nn.Linear in ``module`` (returns a new module)."""
    with quiet_quantization():
        return torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(module), {nn.Linear}, dtype=torch.qint8
        )


class BF16(nn.Module):
    """Runs a model in bfloat16; inputs and outputs stay fp32."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).to(torch.bfloat16)

    def forward(self, dense: torch.Tensor, indices: torch.Tensor,
                offsets: torch.Tensor) -> torch.Tensor:
        return self.model(dense.to(torch.bfloat16), indices, offsets).float()


class Int8EmbDLRM(nn.Module):
    """DLRM with row-wise int8 embedding tables (direct quantized ops) and int8 Linear."""

    def __init__(self, teacher: DLRM) -> None:
        super().__init__()
        self.cfg = teacher.cfg
        self.bottom = quantize_linear(teacher.bottom)
        self.top = quantize_linear(teacher.top)
        self.interact = Interaction(teacher.cfg.num_features)
        for i, t in enumerate(teacher.tables):
            packed = torch.ops.quantized.embedding_bag_byte_prepack(t.weight.detach())
            self.register_buffer(f"packed{i}", packed)
        self.num_tables = len(teacher.tables)

    def forward(self, dense: torch.Tensor, indices: torch.Tensor,
                offsets: torch.Tensor) -> torch.Tensor:
        x = self.bottom(dense)
        op = torch.ops.quantized.embedding_bag_byte_rowwise_offsets
        embs = [op(getattr(self, f"packed{i}"), indices[i], offsets, mode=0)
                for i in range(self.num_tables)]
        feats = torch.stack([x, *embs], dim=1)
        z = torch.cat([x, self.interact(feats)], dim=1)
        return torch.sigmoid(self.top(z).squeeze(1))


def _prune_linear_chain(seq: nn.Sequential, keep: list[int]) -> nn.Sequential:
    """Cut the hidden widths of a Linear/ReLU chain to ``keep`` units (by L2 norm of the unit's
    incoming weights); the input and output widths stay. Returns a new Sequential."""
    lins = [m for m in seq if isinstance(m, nn.Linear)]
    widths = [lins[0].in_features, *keep, lins[-1].out_features]
    new = mlp(widths)
    new_lins = [m for m in new if isinstance(m, nn.Linear)]
    prev_idx = torch.arange(lins[0].in_features)
    with torch.no_grad():
        for j, (old, nl) in enumerate(zip(lins, new_lins, strict=True)):
            if j < len(lins) - 1:
                norms = old.weight[:, prev_idx].norm(dim=1)
                idx = torch.sort(torch.topk(norms, nl.out_features).indices).values
            else:
                idx = torch.arange(old.out_features)
            nl.weight.copy_(old.weight[idx][:, prev_idx])
            nl.bias.copy_(old.bias[idx])
            prev_idx = idx
    return new


def prune(teacher: DLRM, ratio: float = 0.5) -> DLRM:
    """Structurally pruned copy: every hidden MLP width x ``ratio`` (the bottom MLP's last
    layer stays at emb_dim). Embedding tables are shared by value (copied)."""
    cfg = teacher.cfg
    bottom = (*(max(1, int(w * ratio)) for w in cfg.bottom_mlp[:-1]), cfg.emb_dim)
    top = tuple(max(1, int(w * ratio)) for w in cfg.top_mlp)
    student = DLRM(cfg.with_mlps(bottom, top, cfg.name + "-pruned"))
    student.tables = copy.deepcopy(teacher.tables)
    student.bottom = _prune_linear_chain(teacher.bottom, list(bottom[:-1]))
    student.top = _prune_linear_chain(teacher.top, list(top))
    return student.eval()


def distill_student(teacher: DLRM, emb_dim: int | None = None) -> DLRM:
    """Smaller student: embedding width halved by a seeded orthogonal projection of the teacher's
    tables (scaled to keep dot products), MLP widths quartered. Untrained MLPs."""
    cfg = teacher.cfg
    d = emb_dim or max(2, cfg.emb_dim // 2)
    bottom = (*(max(2, w // 4) for w in cfg.bottom_mlp[:-1]), d)
    top = tuple(max(2, w // 4) for w in cfg.top_mlp)
    scfg = ModelConfig(name=cfg.name + "-distilled", num_dense=cfg.num_dense,
                       table_rows=cfg.table_rows, emb_dim=d, bottom_mlp=bottom, top_mlp=top,
                       pooling=cfg.pooling, seed=cfg.seed + 1)
    gen = torch.Generator().manual_seed(scfg.seed)
    torch.manual_seed(scfg.seed)
    student = DLRM(scfg)
    q, _ = torch.linalg.qr(torch.randn(cfg.emb_dim, d, generator=gen))
    proj = q * (cfg.emb_dim / d) ** 0.5
    with torch.no_grad():
        for st, tt in zip(student.tables, teacher.tables, strict=True):
            st.weight.copy_(tt.weight @ proj)
    return student.eval()


def fit_to_teacher(student: DLRM, teacher: DLRM, steps: int, batch: int = 512,
                   lr: float = 5e-3, seed: int = 7) -> float:
    """Train the student's MLPs (embeddings frozen) to match the teacher's logits (MSE) on a
    fresh seeded batch each step (no fixed training set, so nothing to overfit). Returns the
    last batch's MSE (logits^2)."""
    params = list(student.bottom.parameters()) + list(student.top.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    loss = torch.tensor(0.0)
    student.train()
    for step in range(steps):
        dense, idx, off = make_inputs(teacher.cfg, batch, seed=seed * 1_000_003 + step)
        with torch.no_grad():
            target = teacher.logits(dense, idx, off)
            embs = student.embed(idx, off)
        pred = student.head(student.bottom(dense), embs)
        loss = torch.nn.functional.mse_loss(pred, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    student.eval()
    return float(loss.detach())


def build_variant(name: str, teacher: DLRM, train_steps: int = 300) -> nn.Module:
    """Build variant ``name`` from the fp32 teacher; raise ValueError for unknown names."""
    builders: dict[str, Callable[[], nn.Module]] = {
        "fp32": lambda: teacher,
        "bf16": lambda: BF16(teacher),
        "int8": lambda: quantize_linear(teacher),
        "int8_emb": lambda: Int8EmbDLRM(teacher),
    }
    if name in builders:
        return builders[name]().eval()
    if name in ("pruned", "distilled"):
        student = prune(teacher) if name == "pruned" else distill_student(teacher)
        fit_to_teacher(student, teacher, train_steps)
        return student
    raise ValueError(f"unknown variant {name!r}; allowed: {', '.join(VARIANTS)}")


def variant_config(name: str, model: nn.Module, teacher_cfg: ModelConfig) -> ModelConfig:
    """The architecture config a variant actually runs (for the roofline projection)."""
    cfg = getattr(model, "cfg", None)
    return cfg if isinstance(cfg, ModelConfig) else teacher_cfg


def serialize(model: nn.Module) -> bytes:
    """Serialize the whole module (torch.save); its length is the model size in bytes."""
    buf = io.BytesIO()
    torch.save(model, buf)
    return buf.getvalue()


def deserialize(data: bytes) -> nn.Module:
    """Inverse of serialize (trusted bytes produced in this process)."""
    with quiet_quantization():
        return torch.load(io.BytesIO(data), weights_only=False).eval()
