"""Calibrating the user's own model (issue 16, items 1 and 6): factories from a file or a
module, a torch.export .pt2 program, variants derived from the module tree, user-given variants,
quality against fp32, one-line errors for malformed factories, and the CUDA path (skipped
without a GPU)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402
from torch import nn  # noqa: E402

from simulator import run, scenario_from_dict  # noqa: E402
from simulator.calibration.own_model import (  # noqa: E402
    ModelSpec,
    RowwiseInt8EmbeddingBag,
    build_variants,
    load_model,
    quality,
)
from simulator.cli import main  # noqa: E402
from simulator.profiles import load_profile  # noqa: E402
from tests.conftest import mmc_dict  # noqa: E402

pytestmark = pytest.mark.calibration
ROOT = Path(__file__).resolve().parents[1]

FACTORIES = textwrap.dedent('''
    import torch
    from torch import nn


    class TwoTower(nn.Module):
        """user tower (dense -> MLP), item tower (EmbeddingBag), dot product -> probability."""

        def __init__(self, hidden=16):
            super().__init__()
            torch.manual_seed(0)
            self.user = nn.Sequential(nn.Linear(5, hidden), nn.ReLU(), nn.Linear(hidden, 8))
            self.item = nn.EmbeddingBag(300, 8, mode="mean")

        def forward(self, dense, ids):
            return torch.sigmoid((self.user(dense) * self.item(ids)).sum(1))


    def sample(b, seed):
        g = torch.Generator().manual_seed(seed)
        return torch.randn(b, 5, generator=g), torch.randint(0, 300, (b, 2), generator=g)


    MODEL = TwoTower().eval()


    def labels(b, seed):
        with torch.no_grad():
            p = MODEL(*sample(b, seed))
        return (torch.rand(b, generator=torch.Generator().manual_seed(seed + 1)) < p).float()


    def build():
        return MODEL, sample, labels


    def student():
        return TwoTower(hidden=4).eval()


    NOT_CALLABLE = 3


    def raises():
        raise RuntimeError("no weights here")


    def returns_module():
        return MODEL


    def not_a_module():
        return "model", sample


    def no_sampler():
        return MODEL, None


    def sampler_lists():
        return MODEL, lambda b, seed: ([1.0] * b, [2] * b)


    def forward_fails():
        return MODEL, lambda b, seed: (torch.randn(b, 7), torch.randint(0, 300, (b, 2)))


    def one_score():
        return nn.Linear(5, 1), lambda b, seed: (torch.randn(1, 5),)
''')


@pytest.fixture(scope="module")
def factory_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("own") / "towers.py"
    p.write_text(FACTORIES)
    return p


@pytest.fixture(scope="module")
def own_profile(factory_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`calibrate --model file.py:build --variant-factory student=...` end to end (quick)."""
    out = tmp_path_factory.mktemp("prof") / "own.json"
    res = CliRunner().invoke(main, ["calibrate", "--model", f"{factory_file}:build",
                                    "--variant-factory", f"student={factory_file}:student",
                                    "--quick", "--batch-sizes", "1,4,16", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def test_own_factory_profile_validates_and_runs_in_a_scenario(own_profile: Path,
                                                              factory_file: Path) -> None:
    prof = load_profile(own_profile)
    assert prof.source == "measured" and prof.device.kind == "cpu"
    assert list(prof.variants) == ["fp32", "bf16", "int8", "int8_emb", "pruned", "student"]
    m = prof.model
    assert m["kind"] == "own" and m["factory"] == f"{factory_file}:build"
    assert m["file"] == str(factory_file) and len(str(m["sha256"])) == 64
    assert m["parameters"] == 5 * 16 + 16 + 16 * 8 + 8 + 300 * 8
    assert m["parameter_bytes"] == 4 * m["parameters"]  # type: ignore[operator]
    assert m["skipped"] == {}
    assert "user-given" in m["derived"]["student"]  # type: ignore[index]
    assert "user: hidden [16] -> [8]" in m["derived"]["pruned"]  # type: ignore[index]
    for v in prof.variants.values():
        assert v.batch_sizes == [1, 4, 16] and v.model_bytes > 0
        assert v.quality.auc is not None and v.quality.max_abs_diff is not None
    assert prof.variants["fp32"].quality.auc_delta == 0.0
    assert prof.variants["int8_emb"].model_bytes < prof.variants["fp32"].model_bytes
    # the untrained student ranks worse than the fp32 model it stands in for
    assert prof.variants["student"].quality.mean_abs_diff > 0.01
    d = mmc_dict(c=1, lam=50.0, duration_s=20, warmup_s=2,
                 service={"profile": str(own_profile), "variant": "int8_emb"})
    d["service"].pop("time")
    res = run(scenario_from_dict(d), seed=1)
    assert res.summary["requests"]["completed"] > 500


class MLPOnly(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Dropout(0.0), nn.Linear(8, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x).squeeze(1)


class NoChain(nn.Module):
    """An EmbeddingBag and a single Linear: nothing to prune."""

    def __init__(self) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(50, 4, mode="sum")
        self.out = nn.Linear(4, 1)

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.out(self.bag(ids, offsets)).squeeze(1)


def _nochain_sample(b: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 50, (3 * b,), generator=g), torch.arange(0, 3 * b, 3)


def test_variants_follow_the_module_tree() -> None:
    torch.manual_seed(0)
    mlp = ModelSpec(MLPOnly().eval(), lambda b, seed: (torch.randn(b, 4),))
    vs = build_variants(mlp, None, train_steps=2)
    assert set(vs.models) == {"fp32", "bf16", "int8", "pruned"}
    assert "nn.EmbeddingBag" in vs.skipped["int8_emb"]
    assert "mlp: hidden [8] -> [4]" in vs.derived["pruned"]
    pruned = vs.models["pruned"]
    assert [m.out_features for m in pruned.modules() if isinstance(m, nn.Linear)] == [4, 1]

    nochain = ModelSpec(NoChain().eval(), _nochain_sample)
    vs = build_variants(nochain, None, train_steps=2)
    assert set(vs.models) == {"fp32", "bf16", "int8", "int8_emb"}
    assert "no chain of consecutive nn.Linear" in vs.skipped["pruned"]
    assert not any(isinstance(m, nn.EmbeddingBag) for m in vs.models["int8_emb"].modules())

    bag_only = ModelSpec(nn.EmbeddingBag(50, 1, mode="sum").eval(), _nochain_sample)
    vs = build_variants(bag_only, None)
    assert "no nn.Linear layer to quantize" in vs.skipped["int8"]
    assert "no nn.Linear layer to prune" in vs.skipped["pruned"]
    assert "int8_emb" in vs.models
    # a table the row-wise op cannot run stays fp32, and alone it is a skip with the reason
    vs = build_variants(ModelSpec(nn.EmbeddingBag(50, 1, mode="max").eval(), _nochain_sample),
                        ["fp32", "int8_emb"])
    assert "mode 'max'" in vs.skipped["int8_emb"]


def test_rowwise_int8_bag_matches_the_fp32_table() -> None:
    torch.manual_seed(0)
    for mode in ("sum", "mean"):
        bag = nn.EmbeddingBag(100, 8, mode=mode)
        q = RowwiseInt8EmbeddingBag(bag)
        ids2d = torch.randint(0, 100, (6, 3))
        ids, off = torch.randint(0, 100, (10,)), torch.tensor([0, 4, 4, 7])
        for args in ((ids2d,), (ids2d[:, 1:],), (ids, off)):
            with torch.no_grad():
                ref = bag(*args)
            assert torch.allclose(q(*args), ref, atol=0.05 * float(ref.abs().max()) + 1e-3)


def test_no_labels_means_score_differences_but_no_auc() -> None:
    torch.manual_seed(0)
    spec = ModelSpec(MLPOnly().eval(), lambda b, seed: (torch.randn(b, 4),))
    vs = build_variants(spec, ["fp32", "int8"])
    q = quality(vs.models, spec, 500)
    assert q["fp32"] == {"max_abs_diff": 0.0, "mean_abs_diff": 0.0}
    assert 0 < q["int8"]["max_abs_diff"] < 0.5 and "auc" not in q["int8"]


def test_builtin_dlrm_is_one_such_model() -> None:
    spec, ident = load_model("simulator.calibration.model:build_dlrm_tiny")
    assert ident["factory"] == "simulator.calibration.model:build_dlrm_tiny"
    vs = build_variants(spec, None, train_steps=2)
    # the DLRM brings its own variants (its pruning, int8 tables and distilled student)
    assert list(vs.models) == ["fp32", "bf16", "int8", "int8_emb", "pruned", "distilled"]
    assert not vs.skipped
    assert "row-wise int8 embedding tables" in vs.derived["int8_emb"]
    assert "orthogonal projection" in vs.derived["distilled"]
    assert spec.architecture is not None
    assert spec.architecture("distilled", vs.models["distilled"])["emb_dim"] == 4  # 8 halved
    # derived variants still apply to it where it has none of its own
    derived = build_variants(spec, ["fp32", "int8"], train_steps=2,
                             user={"student": vs.models["distilled"]})
    assert list(derived.models) == ["fp32", "int8"]
    q = quality(vs.models, spec, 2000)
    assert 0.6 < q["fp32"]["auc"] < 1.0 and abs(q["int8_emb"]["auc_delta"]) < 0.05


def _export(tmp_path: Path, dynamic: bool) -> Path:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1), nn.Sigmoid()).eval()
    dyn = ({0: torch.export.Dim("batch")},) if dynamic else None
    try:
        ep = torch.export.export(model, (torch.randn(8, 6),), dynamic_shapes=dyn)
    except Exception as exc:  # pragma: no cover - depends on the torch build
        pytest.skip(f"torch.export does not work here: {exc}")
    path = tmp_path / ("dyn.pt2" if dynamic else "static.pt2")
    torch.export.save(ep, path)
    return path


def test_exported_program_round_trip(tmp_path: Path) -> None:
    pt2 = _export(tmp_path, dynamic=True)
    out = tmp_path / "pt2.json"
    res = CliRunner().invoke(main, ["calibrate", "--model", str(pt2), "--quick",
                                    "--batch-sizes", "1,4,16", "--out", str(out)])
    assert res.exit_code == 0, res.output
    prof = load_profile(out)
    assert list(prof.variants) == ["fp32", "bf16"]
    m = prof.model
    assert m["exported_program"] == str(pt2.resolve()) and m["parameters"] == 6 * 16 + 16 + 17
    assert "give the factory instead" in m["skipped"]["int8"]  # type: ignore[index]
    assert prof.variants["fp32"].quality.auc is None  # no labels in a .pt2
    assert prof.variants["bf16"].quality.max_abs_diff < 0.05


def _one_line_error(args: list[str]) -> str:
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    return lines[0]


@pytest.mark.parametrize("func,needle", [
    ("no_such_function", "has no attribute 'no_such_function'"),
    ("NOT_CALLABLE", "'NOT_CALLABLE' is not callable"),
    ("raises", "the factory raised RuntimeError: no weights here"),
    ("returns_module", "returned a TwoTower; expected a ModelSpec or a tuple"),
    ("not_a_module", "the model is a str, not a torch.nn.Module"),
    ("no_sampler", "the input sampler is missing or not callable"),
    ("sampler_lists", "must return a tuple of tensors; got ['list', 'list']"),
    ("forward_fails", "the forward pass failed on sample(3, 0): RuntimeError"),
    ("one_score", "returned shape (1, 1) for 3 items"),
])
def test_malformed_factory_is_one_line_exit_2(factory_file: Path, tmp_path: Path, func: str,
                                              needle: str) -> None:
    line = _one_line_error(["calibrate", "--model", f"{factory_file}:{func}", "--quick",
                            "--out", str(tmp_path / "x.json")])
    assert needle in line and str(factory_file) in line
    assert not (tmp_path / "x.json").exists()


def test_unusable_references_are_one_line_exit_2(tmp_path: Path, factory_file: Path) -> None:
    out = str(tmp_path / "x.json")
    line = _one_line_error(["calibrate", "--model", "no_such_pkg_peaksim.models:build",
                            "--out", out])
    assert "cannot import module 'no_such_pkg_peaksim.models': ModuleNotFoundError" in line
    bad = tmp_path / "broken.py"
    bad.write_text("import torch\nraise ValueError('config missing')\n")
    line = _one_line_error(["calibrate", "--model", f"{bad}:build", "--out", out])
    assert "importing" in line and "ValueError: config missing" in line
    line = _one_line_error(["calibrate", "--model", "just_a_name", "--out", out])
    assert "expected module:function" in line
    line = _one_line_error(["calibrate", "--model", str(tmp_path / "gone.pt2"), "--out", out])
    assert "gone.pt2: file not found" in line
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"not a zip archive")
    line = _one_line_error(["calibrate", "--model", str(junk), "--out", out])
    assert "not a torch.export program" in line
    line = _one_line_error(["calibrate", "--model", str(_export(tmp_path, dynamic=False)),
                            "--out", out])
    assert "batch dimension (dim 0) of input" in line and "is static (8)" in line
    line = _one_line_error(["calibrate", "--model", f"{factory_file}:build", "--variant-factory",
                            f"student={factory_file}:NOT_CALLABLE", "--out", out])
    assert "--variant-factory student" in line and "not callable" in line
    line = _one_line_error(["calibrate", "--model", f"{factory_file}:build", "--variants",
                            "fp32,int9", "--out", out])
    assert "unknown variant(s) int9" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_device_cuda_refused_without_a_gpu(factory_file: Path, tmp_path: Path) -> None:
    line = _one_line_error(["calibrate", "--model", f"{factory_file}:build", "--device", "cuda",
                            "--out", str(tmp_path / "x.json")])
    assert "--device cuda: torch finds no CUDA device here" in line


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_measures_and_records_the_gpu(factory_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    res = CliRunner().invoke(main, ["calibrate", "--model", f"{factory_file}:build", "--device",
                                    "cuda", "--quick", "--out", str(out)])
    assert res.exit_code == 0, res.output
    prof = load_profile(out)
    assert prof.device.kind == "gpu" and prof.device.name == torch.cuda.get_device_name(0)
    assert prof.provenance["gpu_model"] == prof.device.name
    assert {"fp32", "bf16", "pruned"} <= set(prof.variants)
    assert "CPU only" in prof.model["skipped"]["int8"]  # type: ignore[index]
    assert all(v.latency_ms.median[0] > 0 for v in prof.variants.values())


def test_own_model_gets_serving_overheads_from_the_harness(own_profile: Path) -> None:
    """PeakSim's harness serves an own model too (its sampler's rows, stacked): the profile
    records the serving overheads it measured and how requests were collated."""
    import json

    raw = json.loads(own_profile.read_text())
    how = raw["provenance"]["serving_overheads"]
    assert isinstance(how, dict) and "rows" in how["collation"]
    prof = load_profile(own_profile)
    # a Python harness costs more than nothing per batch (thread hand-off, collation, stamps)
    assert any(v.overhead_ms_per_batch + v.overhead_ms_per_item > 0
               for v in prof.variants.values())
    assert all(v.serving_residuals for v in prof.variants.values())


def test_harness_batch_log_feeds_calibrate_serving(factory_file: Path, tmp_path: Path) -> None:
    """--batch-log-out writes the harness's serving runs in the batch-log format; fed back to
    calibrate-serving with the profile it made, it gives the overheads the profile holds (one
    fit, two routes)."""
    import json

    prof_path, logs = tmp_path / "p.json", tmp_path / "logs"
    res = CliRunner().invoke(main, ["calibrate", "--model", f"{factory_file}:build", "--variants",
                                    "fp32", "--quick", "--batch-sizes", "1,4,16", "--serving-s",
                                    "2", "--batch-log-out", str(logs), "--out", str(prof_path)])
    assert res.exit_code == 0, res.output
    log = logs / "fp32.csv"
    head = log.read_text().splitlines()[0]
    assert head.split(",")[:3] == ["items", "start_s", "end_s"] and head.endswith("load")
    stack = tmp_path / "stack.json"
    res = CliRunner().invoke(main, ["calibrate-serving", "--model-profile", str(prof_path),
                                    "--variant", "fp32", "--batch-log", str(log),
                                    "--out", str(stack)])
    assert res.exit_code == 0, res.output
    s = json.loads(stack.read_text())
    v = load_profile(prof_path).variants["fp32"]
    assert s["overhead_ms_per_batch"] == pytest.approx(v.overhead_ms_per_batch, abs=2e-3)
    assert s["overhead_ms_per_item"] == pytest.approx(v.overhead_ms_per_item, abs=2e-4)


def test_harness_inputs_rows_or_presampled() -> None:
    """Row inputs are served as rows stacked by the server; flat ids with offsets (not one row
    per item) are served with inputs sampled per batch size before the run."""
    from simulator.calibration.serving import RowInputs, SizedInputs, own_inputs

    def rows(b: int, seed: int) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(seed)
        return torch.randn(b, 5, generator=g), torch.randint(0, 9, (b, 2), generator=g)

    inp = own_inputs(rows, max_batch=8, size=64)
    assert isinstance(inp, RowInputs)
    got = inp.collate([inp.item(j) for j in (3, 7, 3)])
    pool = rows(64, 31)
    for g, p in zip(got, pool, strict=True):
        assert torch.equal(g, p[[3, 7, 3]])

    def flat(b: int, seed: int) -> tuple[torch.Tensor, ...]:
        return torch.arange(2 * b), torch.arange(0, 2 * b, 2)  # ids, offsets: 2b != b rows

    inp2 = own_inputs(flat, max_batch=4, size=64)
    assert isinstance(inp2, SizedInputs) and "none measured" in inp2.collation
    ids, offsets = inp2.collate([inp2.item(j) for j in range(3)])
    assert len(offsets) == 3 and len(ids) == 6


def test_calibrate_without_model_is_the_dlrm_factory_path(tmp_path: Path) -> None:
    """`peaksim calibrate` (no --model) measures the built-in DLRM through the factory path:
    its own variants with how each was built, each variant's architecture (so `profile
    project` works on the result), harness overheads with the DLRM's collation."""
    import json

    out = tmp_path / "dlrm.json"
    res = CliRunner().invoke(main, ["calibrate", "--quick", "--preset", "tiny", "--variants",
                                    "int8_emb,distilled", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "variant distilled: student" in res.output
    prof = load_profile(out)
    assert list(prof.variants) == ["fp32", "int8_emb", "distilled"]  # fp32: the reference
    m = prof.model
    assert m["kind"] == "builtin-dlrm" and m["preset"] == "tiny"
    assert m["factory"] == "simulator.calibration.model:build_dlrm_tiny"
    assert set(m["derived"]) == {"fp32", "int8_emb", "distilled"}  # type: ignore[arg-type]
    assert m["variants"]["distilled"]["emb_dim"] == 4  # type: ignore[index]
    raw = json.loads(out.read_text())
    assert "dense rows" in raw["provenance"]["serving_overheads"]["collation"]
    assert prof.variants["distilled"].quality.auc is not None
    gpu = tmp_path / "h100.json"
    res = CliRunner().invoke(main, ["profile", "project", str(out), "--gpu", "h100",
                                    "--out", str(gpu)])
    assert res.exit_code == 0, res.output
    assert list(load_profile(gpu).variants) == ["fp32", "int8_emb", "distilled"]
