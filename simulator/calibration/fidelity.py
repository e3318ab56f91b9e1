"""Does the simulator predict real serving? Replay the same configuration in both and compare.

Flow of ``validate``: build the profile's model and variant (seeded, as calibrated); optionally
re-measure the serving overheads with a short serving run *now* (the machine's speed drifts by up
to 1.5x between sessions, so overheads measured hours ago can be stale); then, at each load
(a fraction of the capacity the profile promises at ``max_batch``), serve the real model for a
fixed time and simulate the same configuration with PeakSim; compare p50, p95 and p99.
"""

from __future__ import annotations

import copy
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simulator.profiles import Profile, VariantProfile, get_variant, load_profile, service_ms


@dataclass
class Row:
    """One load level: real (served) vs simulated latency percentiles (ms).

    ``real`` pools the latencies of every real serving run at this load; ``real_runs`` keeps
    each run's own percentiles and utilisation, whose spread is real serving's noise.
    """

    load: float
    rate_qps: float
    real: dict[str, float]
    sim: dict[str, float]
    real_util: float
    sim_util: float
    real_runs: list[dict[str, float]] = field(default_factory=list)

    def error(self, key: str) -> float:
        """(sim - real) / real for p50, p95 or p99."""
        return (self.sim[key] - self.real[key]) / self.real[key]

    def run_spread(self, key: str) -> float:
        """(max - min) / pooled value of ``key`` over the real runs (0 with one run)."""
        vals = [r[key] for r in self.real_runs]
        return (max(vals) - min(vals)) / self.real[key] if len(vals) > 1 else 0.0


def capacity_qps(v: VariantProfile, max_batch: int) -> float:
    """Items per second one node serves in full batches of ``max_batch`` items (per profile)."""
    return max_batch / float(service_ms(v, max_batch)) * 1e3


def simulate(profile_path: str | Path, variant: str, rate_qps: float, max_batch: int,
             max_wait_ms: float, timer_slack_ms: float, duration_s: float,
             seed: int = 1) -> dict[str, float]:
    """Run PeakSim on one node with the dynamic batcher; returns p50/p95/p99 (ms) and util."""
    from simulator import Scenario, run

    sc = Scenario.model_validate({
        "name": "fidelity",
        "simulation": {"duration_s": duration_s, "warmup_s": min(5.0, duration_s / 10),
                       "seed": seed},
        "workload": {"arrival": {"process": "poisson", "rate_qps": rate_qps}},
        "service": {"profile": str(Path(profile_path).resolve()), "variant": variant},
        "cluster": {"pools": [{"name": "cpu", "nodes": 1}]},
        "policy": {"dispatch": "central",
                   "batching": {"name": "dynamic", "max_batch": max_batch,
                                "max_wait_ms": max_wait_ms, "timer_slack_ms": timer_slack_ms}},
        "sla": {"slo_ms": 1000},
    })
    s = run(sc).summary
    lat = s["latency_ms"]
    util = s.get("utilization")
    if isinstance(util, dict):
        util = util.get("mean", next(iter(util.values()), float("nan")))
    return {"p50": float(lat["p50"]), "p95": float(lat["p95"]), "p99": float(lat["p99"]),
            "util": float(util) if util is not None else float("nan")}


def rate_for_util(profile_path: str | Path, variant: str, util: float, max_batch: int,
                  max_wait_ms: float, timer_slack_ms: float, cap_qps: float,
                  iters: int = 9) -> float:
    """Arrival rate (qps) at which PeakSim predicts server utilisation ``util`` (bisection over
    short simulations). Under dynamic batching, small batches make utilisation at a given rate
    far higher than rate / full-batch capacity, so loads are set by predicted utilisation."""
    lo, hi = 0.0, cap_qps
    for _ in range(iters):
        mid = (lo + hi) / 2
        u = simulate(profile_path, variant, mid, max_batch, max_wait_ms, timer_slack_ms, 10.0)
        lo, hi = (mid, hi) if u["util"] < util else (lo, mid)
    return (lo + hi) / 2


def with_overheads(profile_path: str | Path, variant: str, overheads: tuple[float, float],
                   scale: float = 1.0, serving_residuals: list[float] | None = None) -> Path:
    """A temporary copy of a profile whose ``variant`` has new serving overheads (and serving
    residuals, when given; and, for tests, every latency figure multiplied by ``scale``).
    Returns its path."""
    raw = json.loads(Path(profile_path).read_text())
    v = raw["variants"][variant]
    v["overhead_ms_per_batch"], v["overhead_ms_per_item"] = overheads
    if serving_residuals:
        v["serving_residuals"] = serving_residuals
    if scale != 1.0:
        v = raw["variants"][variant] = copy.deepcopy(v)
        v["fit"]["y_ms"] = [y * scale for y in v["fit"]["y_ms"]]
        v["overhead_ms_per_batch"] *= scale
        v["overhead_ms_per_item"] *= scale
    fd, tmp = tempfile.mkstemp(suffix=".json", prefix="peaksim-fidelity-")
    with open(fd, "w") as fh:
        json.dump(raw, fh)
    Profile.model_validate(raw)
    return Path(tmp)


def build_served_model(prof: Profile, variant: str, train_steps: int = 300) -> tuple[Any, Any]:
    """Rebuild the (seeded) model variant a profile was measured on: (module, config)."""
    import torch

    from simulator.calibration.model import ModelConfig, build_model
    from simulator.calibration.variants import build_variant

    torch.set_num_threads(int(prof.device.threads or 1))
    cfg = ModelConfig.from_dict(prof.model["config"])  # type: ignore[arg-type]
    teacher = build_model(cfg)
    return build_variant(variant, teacher, train_steps), cfg


def compare(real: Any, sim: dict[str, float], load: float) -> Row:
    """A table row from one ServingResult (or several, pooled) and a simulate() result."""
    runs = real if isinstance(real, list) else [real]
    lat = np.concatenate([r.latency_ms for r in runs])
    q = np.quantile(lat, [0.5, 0.95, 0.99]) if len(lat) else np.zeros(3)
    pooled = {"p50": float(q[0]), "p95": float(q[1]), "p99": float(q[2])}
    per_run = [{**r.percentiles(), "util": r.utilization} for r in runs]
    util = float(np.mean([r.utilization for r in runs]))
    return Row(load, runs[0].rate_qps, pooled, sim, util, sim["util"], per_run)


def validate(profile_path: str | Path, variant: str, loads: list[float], max_batch: int,
             max_wait_ms: float, duration_s: float, recalibrate_s: float = 0.0,
             sim_duration_s: float = 60.0, seed: int = 1, train_steps: int = 300,
             progress: Any = None, replicates: int = 3) -> tuple[list[Row], dict[str, float]]:
    """Serve and simulate at each load (predicted utilisation); returns the rows and what was
    used (capacity, timer slack, overheads).

    Real serving runs ``replicates`` times per load for ``duration_s`` each, in rounds over the
    loads (30%, 60%, 85%, 30%, ...), so that the machine's drift touches every load alike; the
    real percentiles pool all runs of a load and each row keeps every run's own figures.

    With ``recalibrate_s`` > 0 the serving overheads, timer slack and serving residuals are
    re-measured from calibration runs (a low and a middle load, their own seeds, never the
    validation runs): ``recalibrate_s`` of them first, to set the rates, then half as much in
    every round, so that the calibration spans the same stretch of time as the validation (this
    machine's speed drifts by up to 1.5x within minutes); the simulation uses all of them.
    """
    from simulator.calibration.fit import Fit
    from simulator.calibration.serving import calibration_runs, fit_serving, serve

    path = Path(profile_path)
    prof = load_profile(path)
    v = get_variant(prof, variant, path)
    model, cfg = build_served_model(prof, variant, train_steps)
    fit = Fit(v.fit.kind, v.fit.x, v.fit.y_ms, v.fit.max_rel_error, [])
    profile_oh = (v.overhead_ms_per_batch, v.overhead_ms_per_item)
    cal_runs: list[Any] = []

    def calibrated() -> tuple[tuple[float, float], float, list[float] | None]:
        if not cal_runs:
            return profile_oh, 0.12, None
        c = fit_serving(cal_runs, fit)
        return (c.overhead_ms_per_batch, c.overhead_ms_per_item), c.timer_slack_ms, c.residuals

    def recalibrate(seconds: float, k: int) -> None:
        if recalibrate_s > 0:
            if progress:
                progress("re-measuring serving overheads")
            cal_runs.extend(calibration_runs(model, cfg, fit, max_batch, max_wait_ms, seconds,
                                             start=profile_oh, seed=seed + 99 + 10 * k))

    recalibrate(recalibrate_s, 0)
    oh, slack, resid = calibrated()
    sim_path = with_overheads(path, variant, oh, serving_residuals=resid)
    try:
        cap = capacity_qps(get_variant(load_profile(sim_path), variant), max_batch)
        rates = [rate_for_util(sim_path, variant, load, max_batch, max_wait_ms, slack, cap)
                 for load in loads]
    finally:
        sim_path.unlink(missing_ok=True)
    served: list[list[Any]] = [[] for _ in loads]
    for rep in range(replicates):
        for i, (load, rate) in enumerate(zip(loads, rates, strict=True)):
            if progress:
                progress(f"serving at {rate:,.0f} qps (predicted utilisation {load:.0%}), "
                         f"run {rep + 1}/{replicates}")
            served[i].append(serve(model, cfg, rate, duration_s, max_batch, max_wait_ms,
                                   warmup_s=min(2.0, duration_s / 5), seed=seed + i + 100 * rep))
        recalibrate(recalibrate_s / 2, rep + 1)
    oh, slack, resid = calibrated()
    sim_path = with_overheads(path, variant, oh, serving_residuals=resid)
    try:
        rows = [compare(served[i], simulate(sim_path, variant, rate, max_batch, max_wait_ms,
                                            slack, sim_duration_s, seed=seed), load)
                for i, (load, rate) in enumerate(zip(loads, rates, strict=True))]
    finally:
        sim_path.unlink(missing_ok=True)
    return rows, {"capacity_qps": cap, "timer_slack_ms": slack, "overhead_ms_per_batch": oh[0],
                  "overhead_ms_per_item": oh[1]}
