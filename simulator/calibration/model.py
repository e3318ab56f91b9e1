"""A DLRM-style click-through-rate model, built in code from a seeded config.

dense features -> bottom MLP -> one vector of ``emb_dim``; each sparse feature -> an
``nn.EmbeddingBag`` table -> one vector of ``emb_dim``; pairwise dot products between all these
vectors (the DLRM interaction); [bottom output, interactions] -> top MLP -> click probability.

Presets: ``tiny`` (tests, < 1 MB) and ``production`` (Criteo-shaped: 13 dense features, 26 tables
of 1e4..1e5 rows x 64; embeddings hold > 95% of the parameters, as in production recommenders).
Weights are drawn from a seeded generator, then the last layer is rescaled so the logits have a
realistic spread (mean -1, std 1.5): the fp32 model is the *teacher* whose scores define labels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from itertools import pairwise
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a DLRM-style model. Sizes are counts (features, rows, units)."""

    name: str
    num_dense: int
    table_rows: tuple[int, ...]
    emb_dim: int
    bottom_mlp: tuple[int, ...]  # hidden widths; the last must equal emb_dim
    top_mlp: tuple[int, ...]  # hidden widths; a final 1-unit layer is appended
    pooling: int = 1  # ids per bag (1 = one-hot, as in Criteo)
    seed: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def num_tables(self) -> int:
        return len(self.table_rows)

    @property
    def num_features(self) -> int:
        """Vectors entering the interaction: the tables plus the bottom MLP output."""
        return self.num_tables + 1

    @property
    def num_interactions(self) -> int:
        f = self.num_features
        return f * (f - 1) // 2

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["table_rows"] = list(self.table_rows)
        d["bottom_mlp"] = list(self.bottom_mlp)
        d["top_mlp"] = list(self.top_mlp)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> ModelConfig:
        kw = dict(d)
        for k in ("table_rows", "bottom_mlp", "top_mlp"):
            kw[k] = tuple(int(x) for x in kw[k])  # type: ignore[union-attr]
        return cls(**kw)  # type: ignore[arg-type]

    def with_mlps(self, bottom: tuple[int, ...], top: tuple[int, ...], name: str) -> ModelConfig:
        return replace(self, bottom_mlp=bottom, top_mlp=top, name=name)


def _criteo_rows(n: int, lo: int, hi: int) -> tuple[int, ...]:
    """Table sizes spread log-uniformly between lo and hi rows (deterministic)."""
    return tuple(round(x) for x in np.geomspace(lo, hi, n))


PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(
        name="tiny", num_dense=4, table_rows=(100, 200, 300, 400), emb_dim=8,
        bottom_mlp=(16, 8), top_mlp=(16,), seed=0,
    ),
    "production": ModelConfig(
        name="production", num_dense=13, table_rows=_criteo_rows(26, 10_000, 100_000),
        emb_dim=64, bottom_mlp=(512, 256, 64), top_mlp=(512, 256), seed=0,
    ),
}


def get_preset(name: str) -> ModelConfig:
    """Return a preset config; raise ValueError listing the presets."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}") from None


def mlp(widths: list[int], final_sigmoid: bool = False) -> nn.Sequential:
    """Linear/ReLU stack through ``widths`` (ReLU after every layer but the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(pairwise(widths)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    if final_sigmoid:
        layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


class Interaction(nn.Module):
    """Pairwise dot products of F vectors of size D: (B, F, D) -> (B, F*(F-1)/2)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        li, lj = torch.tril_indices(num_features, num_features, offset=-1)
        self.register_buffer("li", li, persistent=False)
        self.register_buffer("lj", lj, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.bmm(x, x.transpose(1, 2))
        return z[:, self.li, self.lj]


class DLRM(nn.Module):
    """DLRM-style model. forward(dense (B, num_dense), indices (T, B*pooling), offsets (B,))
    returns click probabilities (B,)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.bottom_mlp[-1] != cfg.emb_dim:
            raise ValueError("the bottom MLP must end at emb_dim")
        self.cfg = cfg
        self.bottom = mlp([cfg.num_dense, *cfg.bottom_mlp])
        self.tables = nn.ModuleList(
            nn.EmbeddingBag(r, cfg.emb_dim, mode="sum") for r in cfg.table_rows
        )
        self.interact = Interaction(cfg.num_features)
        self.top = mlp([cfg.emb_dim + cfg.num_interactions, *cfg.top_mlp, 1])

    def embed(self, indices: torch.Tensor, offsets: torch.Tensor) -> list[torch.Tensor]:
        """Pooled embedding of every table: a list of T tensors (B, D)."""
        return [t(indices[i], offsets) for i, t in enumerate(self.tables)]

    def head(self, x: torch.Tensor, embs: list[torch.Tensor]) -> torch.Tensor:
        """Interaction and top MLP from the bottom output x (B, D) and pooled embeddings."""
        feats = torch.stack([x, *embs], dim=1)
        z = torch.cat([x, self.interact(feats)], dim=1)
        return self.top(z).squeeze(1)  # logits

    def logits(self, dense: torch.Tensor, indices: torch.Tensor,
               offsets: torch.Tensor) -> torch.Tensor:
        return self.head(self.bottom(dense), self.embed(indices, offsets))

    def forward(self, dense: torch.Tensor, indices: torch.Tensor,
                offsets: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(dense, indices, offsets))


def build_model(cfg: ModelConfig, calib_samples: int = 4096) -> DLRM:
    """Build the seeded teacher model (fp32, eval mode) with calibrated logit spread."""
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = DLRM(cfg)
    with torch.no_grad():
        for t in model.tables:
            t.weight.normal_(0.0, cfg.emb_dim ** -0.5, generator=gen)
        for m in model.modules():
            if isinstance(m, nn.Linear):
                bound = (6.0 / m.in_features) ** 0.5  # He-uniform keeps ReLU activations alive
                m.weight.uniform_(-bound, bound, generator=gen)
                m.bias.zero_()
        dense, idx, off = make_inputs(cfg, calib_samples, seed=cfg.seed + 12345)
        z = model.logits(dense, idx, off)
        last = model.top[-1]
        assert isinstance(last, nn.Linear)
        scale = 1.5 / float(z.std().clamp_min(1e-6))
        last.weight.mul_(scale)
        last.bias.mul_(scale).add_(-1.0 - float(z.mean()) * scale)
    return model.eval()


def make_inputs(cfg: ModelConfig, batch: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Seeded synthetic inputs: dense ~ N(0,1), ids uniform per table (the notes found Zipf
    ids change medians by -24%..+15%, no consistent direction). Returns (dense, ids, offsets)."""
    gen = torch.Generator().manual_seed(seed)
    dense = torch.randn(batch, cfg.num_dense, generator=gen)
    n = batch * cfg.pooling
    idx = torch.stack([torch.randint(0, r, (n,), generator=gen) for r in cfg.table_rows])
    offsets = torch.arange(0, n, cfg.pooling, dtype=torch.long)
    return dense, idx, offsets


def param_count(cfg: ModelConfig) -> dict[str, int]:
    """Analytic parameter counts: embeddings and MLP (weights + biases)."""
    emb = sum(cfg.table_rows) * cfg.emb_dim
    dims_b = [cfg.num_dense, *cfg.bottom_mlp]
    dims_t = [cfg.emb_dim + cfg.num_interactions, *cfg.top_mlp, 1]
    lin = sum(a * b + b for d in (dims_b, dims_t) for a, b in pairwise(d))
    return {"embedding": emb, "mlp": lin, "total": emb + lin}


#: how each of the DLRM's own variants is built (the profile's ``model.derived``)
DLRM_VARIANTS = {
    "fp32": "the seeded DLRM as built",
    "bf16": "weights and activations in bfloat16",
    "int8": "dynamic int8 quantization of the MLPs' nn.Linear layers",
    "int8_emb": "row-wise int8 embedding tables (quantized.embedding_bag_byte_rowwise_offsets) "
                "plus dynamic int8 nn.Linear",
    "pruned": "every hidden MLP width halved (structured, by L2 norm), MLPs fit to the "
              "teacher's logits for {steps} steps",
    "distilled": "student: embedding width halved by a seeded orthogonal projection, MLP widths "
                 "quartered, MLPs fit to the teacher's logits for {steps} steps",
}


def dlrm_info(cfg: ModelConfig) -> dict[str, Any]:
    """The built-in DLRM's fields in a profile's ``model`` section."""
    return {"kind": "builtin-dlrm", "preset": cfg.name, "config": cfg.to_dict(),
            "factory": f"simulator.calibration.model:build_dlrm_{cfg.name}",
            "parameters": param_count(cfg)["total"]}


def dlrm_spec(cfg: ModelConfig) -> Any:
    """The built-in DLRM as an own-model factory result (``own_model.ModelSpec``): the seeded
    teacher, its input sampler, labels ~ Bernoulli(teacher probability), seeded, its own
    variants (``simulator.calibration.variants``: pruning, int8 tables and the distilled
    student are the DLRM's), each variant's architecture (for ``profile project``) and the
    requests of PeakSim's serving harness (a dense row and one id per table)."""
    from simulator.calibration.own_model import ModelSpec
    from simulator.calibration.variants import build_variant, variant_config

    model = build_model(cfg)

    def sample(batch_items: int, seed: int) -> tuple[torch.Tensor, ...]:
        return make_inputs(cfg, batch_items, seed)

    def labels(batch_items: int, seed: int) -> torch.Tensor:
        with torch.inference_mode():
            p = model(*make_inputs(cfg, batch_items, seed))
        gen = torch.Generator().manual_seed(seed + 4242)
        return (torch.rand(batch_items, generator=gen) < p).float()

    def builder(name: str) -> Any:
        def build(base: nn.Module, steps: int) -> tuple[nn.Module, str]:
            assert isinstance(base, DLRM)
            return build_variant(name, base, steps), DLRM_VARIANTS[name].format(steps=steps)
        return build

    def serving_inputs() -> Any:
        from simulator.calibration.serving import DLRMInputs

        return DLRMInputs(cfg)

    return ModelSpec(
        model, sample, labels, f"dlrm-{cfg.name}",
        builders={name: builder(name) for name in DLRM_VARIANTS},
        architecture=lambda name, m: variant_config(name, m, cfg).to_dict(),
        info=dlrm_info(cfg),
        serving_inputs=serving_inputs if cfg.pooling == 1 else None)


def build_dlrm_production() -> Any:
    """Factory of the built-in production DLRM (``--model
    simulator.calibration.model:build_dlrm_production``)."""
    return dlrm_spec(PRESETS["production"])


def build_dlrm_tiny() -> Any:
    """Factory of the built-in tiny DLRM (tests)."""
    return dlrm_spec(PRESETS["tiny"])


build_dlrm = build_dlrm_production
