"""Bring your own model to ``peaksim calibrate``: a small wide & deep CTR model.

    peaksim calibrate --model examples/my_model.py:build --quick --out /tmp/my.json
    peaksim calibrate --model examples/my_model.py:build \\
        --variant-factory student=examples/my_model.py:build_student --out my-model.json

The factory (``build``) takes no arguments and returns ``(module, sample, labels)``:

- ``module(*sample(b, seed))`` returns one click probability per item, shape (b,);
- ``sample(batch_items, seed)`` returns the forward's inputs for that many items, seeded;
- ``labels(batch_items, seed)`` returns 0/1 labels of the same items (optional: without it the
  profile has score differences but no AUC).

PeakSim walks the module tree and derives the variants that apply: fp32, bf16, int8 (the
``nn.Linear`` layers), int8_emb (the ``nn.EmbeddingBag`` tables, row-wise int8) and pruned (the
deep tower's chain of Linear layers, hidden widths halved). ``build_student`` is a user-given
variant: a narrower deep tower taking the same inputs (untrained here, so its AUC is low; yours
would be your distilled student). Weights are seeded; nothing is downloaded.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

NUM_DENSE = 8
TABLE_ROWS = (1000, 500, 200)  # one categorical feature per table, one id per item
EMB_DIM = 16


class WideAndDeep(nn.Module):
    """wide: a linear model of the dense features; deep: embeddings of the categorical
    features and the dense features through an MLP. forward(dense (B, 8), ids (B, 3)) -> (B,)
    click probabilities."""

    def __init__(self, hidden: tuple[int, ...] = (128, 64), seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.wide = nn.Linear(NUM_DENSE, 1)
        self.tables = nn.ModuleList(nn.EmbeddingBag(r, EMB_DIM, mode="sum") for r in TABLE_ROWS)
        widths = [NUM_DENSE + EMB_DIM * len(TABLE_ROWS), *hidden, 1]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(pairwise(widths)):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        self.deep = nn.Sequential(*layers)

    def forward(self, dense: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        embs = [t(ids[:, i:i + 1]) for i, t in enumerate(self.tables)]  # (B, 1) bags of one id
        deep = self.deep(torch.cat([dense, *embs], dim=1))
        return torch.sigmoid(self.wide(dense) + deep).squeeze(1)


def sample(batch_items: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded inputs: dense ~ N(0, 1), ids uniform per table."""
    gen = torch.Generator().manual_seed(seed)
    dense = torch.randn(batch_items, NUM_DENSE, generator=gen)
    ids = torch.stack([torch.randint(0, r, (batch_items,), generator=gen) for r in TABLE_ROWS],
                      dim=1)
    return dense, ids


_TEACHER = WideAndDeep(seed=0).eval()


def labels(batch_items: int, seed: int) -> torch.Tensor:
    """0/1 labels of the items ``sample(batch_items, seed)`` returns: Bernoulli(the fp32
    model's probability), seeded (a stand-in for your logged clicks)."""
    with torch.inference_mode():
        p = _TEACHER(*sample(batch_items, seed))
    gen = torch.Generator().manual_seed(seed + 1)
    return (torch.rand(batch_items, generator=gen) < p).float()


def build() -> tuple[nn.Module, object, object]:
    """The factory: (module, sample, labels)."""
    return _TEACHER, sample, labels


def build_student() -> nn.Module:
    """A user-given variant: same inputs, a narrower deep tower (32-16)."""
    return WideAndDeep(hidden=(32, 16), seed=1).eval()
