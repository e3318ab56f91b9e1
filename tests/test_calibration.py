"""Calibration pipeline: model variants, fit, roofline, profile files, CLI (needs torch)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from simulator.calibration.cli import calibrate, profile  # noqa: E402
from simulator.calibration.fit import fit_latency, isotonic  # noqa: E402
from simulator.calibration.measure import Spec, measure  # noqa: E402
from simulator.calibration.model import ModelConfig, build_model, get_preset  # noqa: E402
from simulator.calibration.roofline import GPUS, bytes_moved, flops, project_ms  # noqa: E402
from simulator.calibration.variants import build_variant, serialize  # noqa: E402
from simulator.profiles import ProfileError, fitted_ms, load_profile  # noqa: E402

pytestmark = pytest.mark.calibration
ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "scenarios" / "profiles").glob("*.json"))


@pytest.fixture(scope="module")
def quick_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`calibrate --quick` end to end on the tiny preset."""
    out = tmp_path_factory.mktemp("prof") / "quick.json"
    res = CliRunner().invoke(calibrate, ["--quick", "--preset", "tiny", "--variants",
                                         "fp32,int8,int8_emb,pruned", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def test_quick_calibrate_writes_valid_profile(quick_profile: Path) -> None:
    prof = load_profile(quick_profile)
    assert prof.source == "measured"
    assert prof.purpose == "test"  # --quick: every run using it warns
    assert set(prof.variants) == {"fp32", "int8", "int8_emb", "pruned"}
    assert prof.provenance["torch_version"] == torch.__version__
    assert prof.provenance["threads"] == 1 and prof.provenance["cpu_model"]
    for v in prof.variants.values():
        assert v.batch_sizes == [1, 8, 32]
        assert 1 <= len(v.residuals) <= 1000
        assert v.model_bytes > 0 and v.load_time_s > 0 and v.first_call_ms > 0
        assert v.quality.auc is not None and 0.5 < v.quality.auc < 1.0
    assert prof.variants["fp32"].quality.auc_delta == 0.0
    assert not list(quick_profile.parent.glob("*.tmp"))  # atomic write left no temp file


def test_profile_show_prints_table_and_plot(quick_profile: Path, tmp_path: Path) -> None:
    png = tmp_path / "p.png"
    res = CliRunner().invoke(profile, ["show", str(quick_profile), "--plot", str(png)])
    assert res.exit_code == 0, res.output
    assert "fit error" in res.output and "int8_emb" in res.output
    assert png.stat().st_size > 1000


@pytest.mark.parametrize("path", [*SHIPPED, "quick"], ids=lambda p: Path(str(p)).name)
def test_profiles_monotone_in_batch_size(path: Path | str, quick_profile: Path) -> None:
    """More items in a batch never take less time on average (fitted curve and medians'
    trend), for every variant of every shipped profile."""
    prof = load_profile(quick_profile if path == "quick" else path)
    for name, v in prof.variants.items():
        xs = np.arange(1, max(v.batch_sizes) + 1, dtype=float)
        ys = fitted_ms(v, xs)
        assert np.all(np.diff(ys) >= -1e-12), name
        # raw medians: the quick profile has 10 reps on a tiny model, so allow more noise
        slack = 0.5 if path == "quick" else 0.9
        assert v.latency_ms.median[-1] >= slack * v.latency_ms.median[0], name


def test_int8_embeddings_shrink_model_more_than_3x() -> None:
    cfg = ModelConfig(name="emb-heavy", num_dense=4, table_rows=(5000,) * 4, emb_dim=64,
                      bottom_mlp=(32, 64), top_mlp=(32,))
    teacher = build_model(cfg)
    fp32 = len(serialize(build_variant("fp32", teacher)))
    q = len(serialize(build_variant("int8_emb", teacher)))
    assert fp32 / q > 3.0, (fp32, q)


def test_fit_reproduces_held_out_points_within_stated_error() -> None:
    """The fit through some batch sizes predicts the others within its stated error plus the
    run-to-run noise of this shared machine.

    The model does enough work per item (MLPs of 256 units, 4 ids per bag) for its latency to
    grow well above timer noise (the "tiny" preset is nearly flat at ~0.2 ms, so noise alone
    decided this test). Each size is timed in 5 interleaved rounds; interference only ever
    adds time, so a size's latency is its least-disturbed round median.
    """
    torch.set_num_threads(1)
    cfg = ModelConfig(name="mid", num_dense=13, table_rows=(1000,) * 8, emb_dim=32,
                      bottom_mlp=(256, 64, 32), top_mlp=(256, 64), pooling=4)
    sizes, held = [1, 4, 16, 64, 256], [2, 8, 32, 128]
    rounds = 5
    spec = Spec(model=cfg, variants=["fp32"], batch_sizes=sorted(sizes + held),
                reps=60, rounds=rounds, quality=False, train_steps=0)
    m = measure(spec)
    best = {b: min(float(np.median(r)) for r in np.split(c, rounds))
            for b, c in zip(spec.batch_sizes, m.samples_ms["fp32"], strict=True)}
    fit = fit_latency(sizes, [best[b] for b in sizes])
    # run-to-run noise of one cell on this shared 2-core machine: ~5% typical, 23% worst
    # (../shared/docs/calibration-notes.md); a fresh clone once saw 30% at batch 2 (~0.2 ms,
    # near the timer floor). Each point may be off by the worst cell; their median by the
    # typical one (a wrong fit misses most held-out points, noise only some)
    errs = [abs(float(fit(b)) - best[b]) / best[b] for b in held]
    for b, err in zip(held, errs, strict=True):
        assert err <= fit.max_rel_error + 0.35, (b, err, fit.max_rel_error)
    assert float(np.median(errs)) <= fit.max_rel_error + 0.10, (errs, fit.max_rel_error)


def test_fit_choice_and_isotonic() -> None:
    x = [1, 2, 4, 8, 16, 32, 64]
    lin = [0.5 + 0.01 * b for b in x]
    assert fit_latency(x, lin).kind == "affine"
    convex = [0.4 + 0.01 * b**1.5 for b in x]  # cache effects: one line misses badly
    f = fit_latency(x, convex)
    assert f.kind == "piecewise_linear" and 0 < f.max_rel_error < 0.2
    assert np.allclose(isotonic(np.array([1.0, 3.0, 2.0, 4.0])), [1.0, 2.5, 2.5, 4.0])


def test_roofline_counts_match_hand_computation() -> None:
    cfg = get_preset("tiny")  # dense 4, 4 tables x 8, bottom 16-8, top 16-1, F=5, 10 pairs
    # per item: MLP 2*(4*16 + 16*8 + 18*16 + 16*1) = 992; interaction 2*5*5*8 = 400;
    # pooling 4 tables * 1 id * 8 = 32
    f = flops(cfg, 2)
    assert (f["mlp"], f["interaction"], f["pooling"], f["total"]) == (1984, 800, 64, 2848)
    # weights 496 elements * 4 B + 41 fp32 biases * 4 B = 2148; rows 2*4*8*4 B = 256;
    # ids 8*8 + offsets 2*8 = 80; activations 2 items * 128 elements * 2 (write+read) * 4 B
    b = bytes_moved(cfg, 2, "fp32")
    assert (b["weights"], b["embeddings"], b["ids"], b["activations"]) == (2148, 256, 80, 2048)
    bq = bytes_moved(cfg, 2, "int8_emb")  # 1-byte weights, rows of 8 B + 8 B scale/bias
    assert (bq["weights"], bq["embeddings"]) == (496 + 164, 2 * 4 * 16)
    assert project_ms(cfg, 1024, "fp32", GPUS["h100"]) < project_ms(cfg, 1024, "fp32",
                                                                    GPUS["a10g"])


def test_roofline_flops_agree_with_torch_flop_counter() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from simulator.calibration.model import make_inputs

    cfg = get_preset("tiny")
    model = build_model(cfg)
    inputs = make_inputs(cfg, 16, seed=3)
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        model(*inputs)
    f = flops(cfg, 16)
    assert fc.get_total_flops() == f["mlp"] + f["interaction"]


@pytest.mark.parametrize("text,match", [
    ("{not json", "not a readable JSON"),
    ('{"schema_version": 99, "name": "x"}', "schema_version is 99"),
    ('{"schema_version": 1, "name": "x", "source": "measured", "device": {"kind": "cpu", '
     '"name": "c"}, "variants": {"fp32": {"batch_sizes": [1]}}}', "variants.fp32"),
])
def test_bad_profile_fails_with_clear_error(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "bad.json"
    p.write_text(text)
    with pytest.raises(ProfileError, match=match) as exc:
        load_profile(p)
    assert str(p.name) in str(exc.value)


def test_projected_profiles_are_marked_and_consistent() -> None:
    for name in ("gpu-a10g.json", "gpu-h100.json"):
        path = ROOT / "scenarios" / "profiles" / name
        if not path.exists():
            pytest.skip(f"{name} not shipped yet")
        prof = load_profile(path)
        assert prof.source == "projected" and prof.device.kind == "gpu"
    a10 = json.loads((ROOT / "scenarios/profiles/gpu-a10g.json").read_text())
    h100 = json.loads((ROOT / "scenarios/profiles/gpu-h100.json").read_text())
    assert a10["variants"]["fp32"]["fit"]["y_ms"][-1] > h100["variants"]["fp32"]["fit"]["y_ms"][-1]
