"""The cascade's stage models (simulator/calibration/stage_models.py): each factory passes the
own-model checks, is deterministic, the retrieval search is an exact top-k with either backend
(faiss, or torch when faiss cannot be imported), the re-ranker's list/batch shape rules, and the
pre-ranker is several times cheaper per item than the DLRM ranker."""

from __future__ import annotations

import io
import math
import sys
import time

import pytest

torch = pytest.importorskip("torch")

from simulator.calibration import stage_models as sm  # noqa: E402
from simulator.calibration.model import PRESETS, build_model, make_inputs  # noqa: E402
from simulator.calibration.own_model import load_model, sample_inputs  # noqa: E402

pytestmark = pytest.mark.calibration
SMALL = 5_000  # items in a small retrieval index


@pytest.fixture
def no_faiss(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import faiss`` fail (a None entry in sys.modules raises ImportError)."""
    monkeypatch.setitem(sys.modules, "faiss", None)


def _brute_topk(model: sm.TwoTowerRetrieval, inputs: tuple, k: int):
    with torch.inference_mode():
        q = model.tower(*inputs)
        return torch.topk(q @ model.search.items.T, k, dim=1)


@pytest.mark.parametrize("stage", ["retrieval", "preranker", "reranker"])
def test_factory_passes_own_model_checks(stage: str) -> None:
    spec, ident = load_model(f"simulator.calibration.stage_models:build_{stage}")
    assert ident["factory"].endswith(f"build_{stage}")
    for b in (1, 7, 64):
        out = spec.module(*sample_inputs(spec, b, 3))
        scores = out[0] if isinstance(out, tuple) else out
        assert scores.shape[0] == b
        assert torch.isfinite(scores).all()
        if spec.labels is not None:
            lab = spec.labels(b, 3)
            assert lab.shape == (b,) and set(lab.unique().tolist()) <= {0.0, 1.0}
    if stage == "retrieval":
        assert spec.labels is None
        assert spec.name.startswith("retrieval-two-tower-")
        tag = {"faiss": "faiss-flatip", "torch": "torch-topk"}[spec.module.backend]
        assert tag in spec.name
        assert out[0].shape == (64, sm.TOPK) and out[1].shape == (64, sm.TOPK)


@pytest.mark.parametrize("factory", [
    lambda: sm.build_retrieval(items=SMALL, k=50),
    sm.build_preranker,
    sm.build_reranker,
])
def test_same_seed_same_outputs(factory) -> None:
    a, b = factory(), factory()
    with torch.inference_mode():
        for seed in (0, 11):
            xa, xb = sample_inputs(a, 33, seed), sample_inputs(b, 33, seed)
            assert all(torch.equal(u, v) for u, v in zip(xa, xb, strict=True))
            oa, ob = a.module(*xa), b.module(*xb)
            oa, ob = (oa, ob) if isinstance(oa, tuple) else ((oa,), (ob,))
            assert all(torch.equal(u, v) for u, v in zip(oa, ob, strict=True))
        if a.labels is not None:
            assert torch.equal(a.labels(33, 5), b.labels(33, 5))
        other = sample_inputs(a, 33, 12)
        assert not all(torch.equal(u, v) for u, v in zip(xa, other, strict=True))


def _check_exact(model: sm.TwoTowerRetrieval, k: int) -> tuple:
    x = sm.retrieval_inputs(17, 4, items=SMALL)
    with torch.inference_mode():
        scores, ids = model(*x)
    ref_v, ref_i = _brute_topk(model, x, k)
    assert scores.shape == ids.shape == (17, k)
    torch.testing.assert_close(scores, ref_v, rtol=0, atol=1e-5)
    assert torch.equal(ids, ref_i)  # random floats: no ties
    assert (scores[:, :-1] >= scores[:, 1:]).all()  # best first
    return scores, ids


def test_retrieval_torch_fallback_is_exact_topk(no_faiss: None) -> None:
    spec = sm.build_retrieval(items=SMALL, k=50)
    assert spec.module.backend == "torch" and "torch-topk" in spec.name
    spec.module.search.chunk = 1_200  # several chunks and a ragged last one: the merge path
    _check_exact(spec.module, 50)
    with pytest.raises(ValueError, match="exceeds the index size"):
        sm.build_retrieval(items=100, k=500)


def test_retrieval_faiss_is_exact_and_agrees_with_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("faiss")
    spec = sm.build_retrieval(items=SMALL, k=50)
    assert spec.module.backend == "faiss" and "faiss-flatip" in spec.name
    s_f, i_f = _check_exact(spec.module, 50)
    monkeypatch.setitem(sys.modules, "faiss", None)
    fallback = sm.build_retrieval(items=SMALL, k=50)
    assert fallback.module.backend == "torch"
    torch.testing.assert_close(fallback.module.search.items, spec.module.search.items)
    s_t, i_t = _check_exact(fallback.module, 50)
    torch.testing.assert_close(s_f, s_t, rtol=0, atol=1e-5)
    assert torch.equal(i_f, i_t)


def test_retrieval_survives_pickling_and_trains() -> None:
    """torch.save/load (calibration's size and load time) rebuilds the faiss index; the
    scores carry gradients to the user tower (the pruned variant's fine-tune)."""
    spec = sm.build_retrieval(items=SMALL, k=20)
    x = sample_inputs(spec, 3, 1)
    buf = io.BytesIO()
    torch.save(spec.module, buf)
    buf.seek(0)
    again = torch.load(buf, weights_only=False)
    with torch.inference_mode():
        assert torch.equal(spec.module(*x)[1], again(*x)[1])
    scores, _ = spec.module(*x)
    scores.sum().backward()
    grads = [p.grad for p in spec.module.tower.mlp.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    spec.module.zero_grad(set_to_none=True)


@pytest.mark.parametrize("b", [1, 49, 50, 51, 120])
def test_reranker_lists_and_cut(b: int) -> None:
    spec = sm.build_reranker()
    dense, ids, user, n = spec.sample(b, 2)
    lists = math.ceil(b / sm.LIST_LEN)
    assert dense.shape == (lists, sm.LIST_LEN, sm.RE_DENSE)
    assert ids.shape == (lists, sm.LIST_LEN, 2) and user.shape == (lists,)
    assert n.dim() == 0 and int(n) == b
    with torch.inference_mode():
        out = spec.module(dense, ids, user, n)
        full = spec.module(dense, ids, user, torch.tensor(lists * sm.LIST_LEN))
    assert out.shape == (b,)
    assert full.shape == (lists * sm.LIST_LEN,)
    torch.testing.assert_close(out, full[:b])
    assert spec.labels(b, 2).shape == (b,)


def test_reranker_is_listwise() -> None:
    """An item's score depends on the other items of its list (self-attention), not on the
    other lists."""
    spec = sm.build_reranker()
    dense, ids, user, n = spec.sample(100, 0)
    changed = dense.clone()
    changed[0, 1:] += 1.0  # every item of list 0 but the first
    with torch.inference_mode():
        a = spec.module(dense, ids, user, n)
        b = spec.module(changed, ids, user, n)
    assert not torch.allclose(a[0], b[0])
    torch.testing.assert_close(a[50:], b[50:])


def _best_ms(fn, reps: int = 7) -> float:
    fn()
    best = math.inf
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def test_preranker_several_times_cheaper_per_item_than_dlrm() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = PRESETS["production"]
        dlrm = build_model(cfg, calib_samples=256)
        pre = sm.build_preranker()
        b = 512
        xd = make_inputs(cfg, b, 1)
        xp = sample_inputs(pre, b, 1)
        with torch.inference_mode():
            t_dlrm = _best_ms(lambda: dlrm(*xd))
            t_pre = _best_ms(lambda: pre.module(*xp))
    finally:
        torch.set_num_threads(threads)
    assert t_dlrm / t_pre >= 2.0, f"DLRM {t_dlrm:.2f} ms vs pre-ranker {t_pre:.2f} ms at {b}"
