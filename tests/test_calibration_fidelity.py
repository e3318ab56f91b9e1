"""Short fidelity check: real in-process serving vs PeakSim must agree, and a 2x-off profile
must be caught (needs torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from simulator.calibration.build import make_profile, write_profile  # noqa: E402
from simulator.calibration.fidelity import (  # noqa: E402
    capacity_qps,
    compare,
    simulate,
    with_overheads,
)
from simulator.calibration.fit import fit_latency  # noqa: E402
from simulator.calibration.measure import (  # noqa: E402
    Measured,
    Spec,
    build_all,
    time_cells,
)
from simulator.calibration.model import ModelConfig  # noqa: E402
from simulator.calibration.serving import calibrate_overheads, serve  # noqa: E402
from simulator.profiles import get_variant, load_profile  # noqa: E402

pytestmark = pytest.mark.calibration

# Small tables, wide MLPs: the forward pass (not Python) dominates a batch, ~0.3-1 ms.
CFG = ModelConfig(name="fidelity-test", num_dense=13, table_rows=(1000,) * 8, emb_dim=32,
                  bottom_mlp=(128, 32), top_mlp=(512, 256))
B, W = 8, 0.3


def test_short_fidelity_and_2x_off_profile_is_caught(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    spec = Spec(model=CFG, variants=["fp32"], batch_sizes=[1, 2, 4, 8, 16], reps=30,
                rounds=2, quality=False, train_steps=0)
    _, models = build_all(spec)
    model = models["fp32"]
    m = Measured(samples_ms=time_cells(models, spec), model_bytes={"fp32": 1},
                 load_time_s={"fp32": [0.0]}, first_call_ms={"fp32": [0.0]},
                 config={"fp32": CFG.to_dict()})
    fit = fit_latency(spec.batch_sizes, [float(np.median(c)) for c in m.samples_ms["fp32"]])
    cal = calibrate_overheads(model, CFG, fit, B, W, seconds=2.5)
    oh_b, oh_i, slack = cal.overhead_ms_per_batch, cal.overhead_ms_per_item, cal.timer_slack_ms
    good = write_profile(make_profile("t", spec, m, {"fp32": (oh_b, oh_i)}, None,
                                      {"fp32": cal.residuals}), tmp_path / "g.json")
    # a quarter of full-batch capacity: small batches make the real utilisation ~0.4-0.5
    rate = 0.25 * capacity_qps(get_variant(load_profile(good), "fp32"), B)
    real = serve(model, CFG, rate, 5.0, B, W, warmup_s=1.0, seed=5)
    ok = compare(real, simulate(good, "fp32", rate, B, W, slack, 30.0), 0.5)
    bad_path = with_overheads(good, "fp32", (oh_b, oh_i), scale=2.0)
    try:
        bad = compare(real, simulate(bad_path, "fp32", rate, B, W, slack, 30.0), 0.5)
    finally:
        bad_path.unlink()
    msg = f"real {ok.real} good {ok.sim} 2x {bad.sim} util {real.utilization:.2f}"
    # loose: p50 only (tails of real serving on a shared 2-core machine vary many-fold)
    assert abs(ok.error("p50")) < 0.3, msg
    assert bad.error("p50") > 0.4, msg
    assert bad.error("p50") - ok.error("p50") > 0.3, msg
