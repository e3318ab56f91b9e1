"""Calibratable models for every stage of a recommendation cascade: recall (retrieval) ->
pre-ranking -> ranking (the built-in DLRM, :mod:`simulator.calibration.model`) -> re-ranking.

Each factory follows the own-model protocol of :mod:`simulator.calibration.own_model` (no
arguments; returns a ``ModelSpec(module, sample, labels, name)``), so ``peaksim calibrate --model
simulator.calibration.stage_models:build_<stage>`` measures it and derives its fp32 / bf16 /
int8 / int8_emb / pruned variants. Everything is built in code from seeded weights; nothing is
downloaded. Units: latencies in ms; a batch is counted in *items* (what one item is differs per
stage, see below); dimensions in units/floats.

Why the stages differ (the cascade's funnel): each stage sees fewer items and may spend more per
item. RecPipe (Gupta et al., MICRO 2021) models a multi-stage pipeline whose embedding dimension
grows across stages (4 -> 16 -> 32) while the candidate count shrinks; Alibaba's COLD (Wang et
al., 2020) is a pre-ranker that scores the few thousand to tens of thousands of recalled
candidates and keeps a few hundred within a 10-20 ms budget. The models here follow that shape:

- ``build_retrieval`` (recall; one item = one *query*): a two-tower model. The user tower (four
  ``nn.EmbeddingBag`` features: user id, a mean-pooled click history of 20 item ids, two profile
  fields; 8 dense features; MLP 104-256-128-64) gives an L2-normalised query embedding (dim 64).
  The item index (200,000 items x 64) is produced once at build time by an item tower MLP and
  L2-normalised (cosine similarity = inner product). The forward runs a real exact top-k search
  (k = 500) over the index and returns ``(scores (b, k), item ids (b, k))``: with ``faiss``
  importable an ``IndexFlatIP`` (exact; IVF would need k-means training at build time and give
  recall < 1 for no gain at 200k x 64 = 51 MB), otherwise ``torch.topk`` over a matmul chunked
  by 50,000 items to bound memory (b x 50,000 floats). The backend is in the spec's name
  (``retrieval-two-tower-faiss-flatip`` or ``retrieval-two-tower-torch-topk``) and in
  ``module.backend``. The search is inside the forward so calibration times it; int8 quantizes
  the user tower only (the index stays fp32); bf16 runs the tower in bf16 (the faiss index stays
  fp32; the torch search runs in bf16). No labels: the output is k scores per query, not one, so
  own_model records no AUC; quality records the drift of the top-k scores against fp32.
- ``build_preranker`` (pre-ranking; one item = one (user, candidate) pair): COLD-like: six
  feature groups (user id, user segment, item id, category, shop, context) of dim 8, a
  squeeze-and-excitation gate over the groups (COLD's feature-importance block), 4 dense
  features, MLP 52-128-64-1. Several times cheaper per item than the DLRM ranker (26 tables x
  64, MLPs 512-256-64 / 512-256-1).
- ``build_reranker`` (re-ranking; one item = one item in a list): list-wise: each item of a list
  of N = 50 (item id dim 32, category dim 16, user dim 16 broadcast over the list, 8 dense
  features such as the ranker's score, a position embedding) is projected to 64 units; one
  block of 4-head self-attention (``nn.MultiheadAttention``) and a feed-forward layer 64-128-64,
  then a head 64-32-1 gives one score per item. ``sample(b, seed)`` returns ``ceil(b / N)`` full
  lists plus ``n_items`` (a 0-d long tensor holding b); the forward scores all ``ceil(b / N) * N``
  items (the cost of whole lists) and returns the flattened scores cut to the first b.

Labels (pre-ranker and re-ranker), as for the DLRM: the fp32 model is a teacher whose last layer
is rescaled at build time so its logits have mean -1 and std 1.5; labels ~ Bernoulli(teacher
probability), seeded, so the profile records AUC and each variant's AUC delta.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from simulator.calibration.model import mlp

TOPK = 500
INDEX_ITEMS = 200_000
QUERY_DIM = 64
LIST_LEN = 50
SEARCH_CHUNK = 50_000


def _faiss() -> Any:
    """The faiss module, or None when it cannot be imported."""
    try:
        import faiss  # type: ignore[import-untyped]
    except Exception:  # ImportError, or a broken native library
        return None
    return faiss


def _init_linear(model: nn.Module, gen: torch.Generator) -> None:
    """He-uniform weights and zero biases for every nn.Linear (seeded)."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            bound = (6.0 / m.in_features) ** 0.5
            m.weight.uniform_(-bound, bound, generator=gen)
            if m.bias is not None:
                m.bias.zero_()


def _init_tables(model: nn.Module, gen: torch.Generator) -> None:
    for m in model.modules():
        if isinstance(m, (nn.EmbeddingBag, nn.Embedding)):
            m.weight.normal_(0.0, m.embedding_dim ** -0.5, generator=gen)


def _calibrate_logits(last: nn.Module, z: torch.Tensor) -> None:
    """Rescale the last Linear so logits ``z`` get mean -1 and std 1.5 (as the DLRM)."""
    assert isinstance(last, nn.Linear)
    scale = 1.5 / float(z.std().clamp_min(1e-6))
    last.weight.mul_(scale)
    last.bias.mul_(scale).add_(-1.0 - float(z.mean()) * scale)


def _bernoulli(p: torch.Tensor, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed + 4242)
    return (torch.rand(p.shape[0], generator=gen) < p.float()).float()


# ---------------------------------------------------------------------------------- retrieval


class UserTower(nn.Module):
    """Query embedding from user features: (dense (b, 8), ids (3, b), history (b, 20)) ->
    L2-normalised (b, 64)."""

    def __init__(self, users: int, items: int, num_dense: int = 8) -> None:
        super().__init__()
        self.user = nn.EmbeddingBag(users, 32, mode="sum")
        self.history = nn.EmbeddingBag(items, 32, mode="mean")
        self.age = nn.EmbeddingBag(100, 16, mode="sum")
        self.city = nn.EmbeddingBag(2_000, 16, mode="sum")
        self.mlp = mlp([num_dense + 32 + 32 + 16 + 16, 256, 128, QUERY_DIM])

    def forward(self, dense: torch.Tensor, ids: torch.Tensor,
                history: torch.Tensor) -> torch.Tensor:
        feats = [dense, self.user(ids[0:1].T), self.history(history),
                 self.age(ids[1:2].T), self.city(ids[2:3].T)]
        q = self.mlp(torch.cat(feats, dim=1))
        return nn.functional.normalize(q, dim=1)


class TopKSearch(nn.Module):
    """Exact inner-product top-k over a fixed item index (buffer ``items`` (n, d), fp32).

    ``backend`` "faiss" (an ``IndexFlatIP``, rebuilt from the buffer after unpickling or
    copying) or "torch" (``torch.topk`` over a matmul chunked by ``chunk`` items). forward(q
    (b, d)) -> (scores (b, k), ids (b, k)), best first. When gradients are needed (the pruned
    variant's fine-tune) the scores are recomputed differentiably from the found ids."""

    def __init__(self, items: torch.Tensor, k: int = TOPK, backend: str = "auto",
                 chunk: int = SEARCH_CHUNK) -> None:
        super().__init__()
        if backend == "auto":
            backend = "faiss" if _faiss() is not None else "torch"
        if backend not in ("faiss", "torch"):
            raise ValueError(f"unknown search backend {backend!r}; allowed: auto, faiss, torch")
        if k > items.shape[0]:
            raise ValueError(f"k = {k} exceeds the index size {items.shape[0]}")
        self.register_buffer("items", items.detach().float().contiguous())
        self.k, self.backend, self.chunk = k, backend, chunk
        self._index: Any = None
        self._build_index()

    def _build_index(self) -> None:
        if self.backend != "faiss":
            self._index = None
            return
        faiss = _faiss()
        if faiss is None:
            raise RuntimeError("this search module was built with faiss, which cannot be "
                               "imported here")
        index = faiss.IndexFlatIP(int(self.items.shape[1]))
        index.add(self.items.float().cpu().numpy())
        self._index = index

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_index"] = None  # a SWIG object: rebuilt from the items buffer
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._build_index()

    def extra_repr(self) -> str:
        return f"items={tuple(self.items.shape)}, k={self.k}, backend={self.backend}"

    def _torch_search(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        items = self.items.to(q.dtype)
        vals, ids = [], []
        for s in range(0, items.shape[0], self.chunk):
            part = q @ items[s:s + self.chunk].T
            v, i = torch.topk(part, min(self.k, part.shape[1]), dim=1)
            vals.append(v)
            ids.append(i + s)
        if len(vals) == 1:
            return vals[0], ids[0]
        v, j = torch.topk(torch.cat(vals, dim=1), self.k, dim=1)
        return v, torch.cat(ids, dim=1).gather(1, j)

    def forward(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.backend == "torch":
            return self._torch_search(q)
        faiss = _faiss()
        threads = torch.get_num_threads()
        if faiss.omp_get_max_threads() != threads:  # calibration pins torch's threads
            faiss.omp_set_num_threads(threads)
        d, i = self._index.search(q.detach().float().cpu().contiguous().numpy(), self.k)
        ids = torch.from_numpy(i).to(q.device)
        if torch.is_grad_enabled() and q.requires_grad:
            scores = (self.items[ids].to(q.dtype) * q.unsqueeze(1)).sum(-1)
        else:
            scores = torch.from_numpy(d).to(device=q.device, dtype=q.dtype)
        return scores, ids


class TwoTowerRetrieval(nn.Module):
    """User tower -> query embedding -> top-k over the item index. forward(dense, ids,
    history) -> (scores (b, k), item ids (b, k))."""

    def __init__(self, tower: UserTower, search: TopKSearch) -> None:
        super().__init__()
        self.tower = tower
        self.search = search

    @property
    def backend(self) -> str:
        return self.search.backend

    def forward(self, dense: torch.Tensor, ids: torch.Tensor,
                history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.search(self.tower(dense, ids, history))


def retrieval_inputs(batch: int, seed: int, users: int = 100_000,
                     items: int = INDEX_ITEMS) -> tuple[torch.Tensor, ...]:
    """Seeded queries: dense (b, 8) ~ N(0,1); ids (3, b): user id, age bucket, city; a click
    history (b, 20) of item ids, uniform."""
    gen = torch.Generator().manual_seed(seed)
    dense = torch.randn(batch, 8, generator=gen)
    ids = torch.stack([torch.randint(0, n, (batch,), generator=gen)
                       for n in (users, 100, 2_000)])
    history = torch.randint(0, items, (batch, 20), generator=gen)
    return dense, ids, history


def build_retrieval_model(items: int = INDEX_ITEMS, k: int = TOPK, backend: str = "auto",
                          users: int = 100_000, seed: int = 0) -> TwoTowerRetrieval:
    """The seeded two-tower model with an index of ``items`` item embeddings (eval mode)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    tower = UserTower(users, items)
    item_id = nn.Embedding(items, 32)
    item_cat = nn.Embedding(5_000, 16)
    item_mlp = mlp([32 + 16 + 4, 128, QUERY_DIM])
    with torch.no_grad():
        for m in (tower, item_id, item_cat, item_mlp):
            _init_tables(m, gen)
            _init_linear(m, gen)
        cats = torch.randint(0, 5_000, (items,), generator=gen)
        dense = torch.randn(items, 4, generator=gen)
        emb = []
        for s in range(0, items, 65_536):  # the item tower, applied once
            sl = slice(s, s + 65_536)
            x = torch.cat([item_id.weight[sl], item_cat(cats[sl]), dense[sl]], dim=1)
            emb.append(item_mlp(x))
        index = nn.functional.normalize(torch.cat(emb), dim=1)
    return TwoTowerRetrieval(tower, TopKSearch(index, k, backend)).eval()


def build_retrieval(items: int = INDEX_ITEMS, k: int = TOPK, backend: str = "auto") -> Any:
    """Factory of the two-tower recall model (``--model
    simulator.calibration.stage_models:build_retrieval``); one item = one query. The name
    records the search backend (faiss IndexFlatIP or torch top-k)."""
    from simulator.calibration.own_model import ModelSpec

    model = build_retrieval_model(items, k, backend)
    users = model.tower.user.num_embeddings

    def sample(batch_items: int, seed: int) -> tuple[torch.Tensor, ...]:
        return retrieval_inputs(batch_items, seed, users, items)

    name = ("retrieval-two-tower-faiss-flatip" if model.backend == "faiss"
            else "retrieval-two-tower-torch-topk")
    return ModelSpec(model, sample, None, f"{name}-{items}x{QUERY_DIM}-top{k}")


# -------------------------------------------------------------------------------- pre-ranking

PRE_TABLES = (100_000, 64, INDEX_ITEMS, 5_000, 50_000, 32)  # user, segment, item, cat, shop, ctx
PRE_DIM = 8
PRE_DENSE = 4


class COLDPreranker(nn.Module):
    """COLD-like pre-ranker. forward(dense (b, 4), ids (6, b)) -> click probability (b,)."""

    def __init__(self, tables: tuple[int, ...] = PRE_TABLES, dim: int = PRE_DIM,
                 num_dense: int = PRE_DENSE) -> None:
        super().__init__()
        g = len(tables)
        self.tables = nn.ModuleList(nn.EmbeddingBag(r, dim, mode="sum") for r in tables)
        self.se = nn.Sequential(nn.Linear(g, g), nn.Sigmoid())  # group importance gate
        self.mlp = mlp([g * dim + num_dense, 128, 64, 1])

    def logits(self, dense: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        e = torch.stack([t(ids[i:i + 1].T) for i, t in enumerate(self.tables)], dim=1)
        w = self.se(e.mean(dim=2))  # (b, groups)
        x = torch.cat([(e * w.unsqueeze(2)).flatten(1), dense], dim=1)
        return self.mlp(x).squeeze(1)

    def forward(self, dense: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(dense, ids))


def preranker_inputs(batch: int, seed: int,
                     tables: tuple[int, ...] = PRE_TABLES) -> tuple[torch.Tensor, ...]:
    """Seeded (user, candidate) pairs: dense (b, 4) ~ N(0,1), ids (6, b) uniform per table."""
    gen = torch.Generator().manual_seed(seed)
    dense = torch.randn(batch, PRE_DENSE, generator=gen)
    ids = torch.stack([torch.randint(0, r, (batch,), generator=gen) for r in tables])
    return dense, ids


def build_preranker_model(seed: int = 0) -> COLDPreranker:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = COLDPreranker()
    with torch.no_grad():
        _init_tables(model, gen)
        _init_linear(model, gen)
        _calibrate_logits(model.mlp[-1], model.logits(*preranker_inputs(4096, seed + 12345)))
    return model.eval()


def build_preranker() -> Any:
    """Factory of the COLD-like pre-ranker; one item = one (user, candidate) pair."""
    from simulator.calibration.own_model import ModelSpec

    model = build_preranker_model()

    def labels(batch_items: int, seed: int) -> torch.Tensor:
        with torch.inference_mode():
            p = model(*preranker_inputs(batch_items, seed))
        return _bernoulli(p, seed)

    return ModelSpec(model, preranker_inputs, labels,
                     f"preranker-cold-{len(PRE_TABLES)}x{PRE_DIM}-mlp128-64")


# -------------------------------------------------------------------------------- re-ranking

RE_ITEMS, RE_CATS, RE_USERS = INDEX_ITEMS, 5_000, 100_000
RE_DENSE = 8
RE_MODEL = 64


class ListwiseReranker(nn.Module):
    """List-wise re-ranker over lists of ``list_len`` items. forward(dense (L, N, 8), ids
    (L, N, 2) item id and category, user (L,), n_items (0-d long, b)) -> scores (b,): the
    L x N item scores flattened and cut to the first b (the last list may be partly unused)."""

    def __init__(self, list_len: int = LIST_LEN, d: int = RE_MODEL, heads: int = 4) -> None:
        super().__init__()
        self.list_len = list_len
        self.item = nn.EmbeddingBag(RE_ITEMS, 32, mode="sum")
        self.cat = nn.EmbeddingBag(RE_CATS, 16, mode="sum")
        self.user = nn.EmbeddingBag(RE_USERS, 16, mode="sum")
        self.pos = nn.Embedding(list_len, d)
        self.proj = nn.Linear(32 + 16 + 16 + RE_DENSE, d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm1 = nn.LayerNorm(d)
        self.ffn = mlp([d, 2 * d, d])
        self.norm2 = nn.LayerNorm(d)
        self.head = mlp([d, 32, 1])

    def logits(self, dense: torch.Tensor, ids: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        lists, n = ids.shape[0], ids.shape[1]
        flat = ids.reshape(-1, 2)
        u = self.user(user.unsqueeze(1)).unsqueeze(1).expand(lists, n, -1)
        x = torch.cat([self.item(flat[:, 0:1]).view(lists, n, -1),
                       self.cat(flat[:, 1:2]).view(lists, n, -1), u,
                       dense.to(u.dtype)], dim=2)
        h = self.proj(x) + self.pos.weight[:n].unsqueeze(0)
        a, _ = self.attn(h, h, h, need_weights=False)
        h = self.norm1(h + a)
        h = self.norm2(h + self.ffn(h))
        return self.head(h).reshape(-1)  # (L * N,)

    def forward(self, dense: torch.Tensor, ids: torch.Tensor, user: torch.Tensor,
                n_items: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(dense, ids, user))[:int(n_items)]


def reranker_inputs(batch: int, seed: int,
                    list_len: int = LIST_LEN) -> tuple[torch.Tensor, ...]:
    """Seeded lists for ``batch`` items: ``ceil(batch / list_len)`` full lists: dense (L, N, 8)
    ~ N(0,1), ids (L, N, 2) item id and category, user (L,), n_items = tensor(batch)."""
    lists = max(1, math.ceil(batch / list_len))
    gen = torch.Generator().manual_seed(seed)
    dense = torch.randn(lists, list_len, RE_DENSE, generator=gen)
    ids = torch.stack([torch.randint(0, RE_ITEMS, (lists, list_len), generator=gen),
                       torch.randint(0, RE_CATS, (lists, list_len), generator=gen)], dim=2)
    user = torch.randint(0, RE_USERS, (lists,), generator=gen)
    return dense, ids, user, torch.tensor(batch, dtype=torch.long)


def build_reranker_model(list_len: int = LIST_LEN, seed: int = 0) -> ListwiseReranker:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = ListwiseReranker(list_len)
    with torch.no_grad():
        _init_tables(model, gen)
        _init_linear(model, gen)
        model.attn.in_proj_weight.uniform_(-(3.0 / RE_MODEL) ** 0.5, (3.0 / RE_MODEL) ** 0.5,
                                           generator=gen)
        model.attn.in_proj_bias.zero_()
        model.eval()
        dense, ids, user, _ = reranker_inputs(4096, seed + 12345, list_len)
        _calibrate_logits(model.head[-1], model.logits(dense, ids, user))
    return model


def build_reranker(list_len: int = LIST_LEN) -> Any:
    """Factory of the list-wise re-ranker; one item = one item of a list. ``sample(b, seed)``
    gives ceil(b / N) lists; the output is the flattened scores cut to b."""
    from simulator.calibration.own_model import ModelSpec

    model = build_reranker_model(list_len)

    def sample(batch_items: int, seed: int) -> tuple[torch.Tensor, ...]:
        return reranker_inputs(batch_items, seed, list_len)

    def labels(batch_items: int, seed: int) -> torch.Tensor:
        with torch.inference_mode():
            p = model(*sample(batch_items, seed))
        return _bernoulli(p, seed)

    return ModelSpec(model, sample, labels, f"reranker-listwise-mha-n{list_len}")


__all__ = [
    "COLDPreranker", "ListwiseReranker", "TopKSearch", "TwoTowerRetrieval", "UserTower",
    "build_preranker", "build_reranker", "build_retrieval", "preranker_inputs",
    "reranker_inputs", "retrieval_inputs",
]
