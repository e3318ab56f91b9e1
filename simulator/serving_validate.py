"""Replay a real server's request log through PeakSim and compare latency, per load level.

``validate-calibration --request-log FILE``: the log's arrivals (``arrival_s``) are split into
load levels, by its ``load`` column when it has one, else into segments separated by gaps of
more than ``gap_s`` without arrivals. Each level is replayed as a trace arrival process
(``workload.arrival.process = "trace"``) through one PeakSim node with the model profile (plus
the serving-stack profile, when given) and the dynamic batcher the user names, several times
with different seeds (latencies pooled). Requests that arrive in the first ``warmup_s`` of a
level are left out of both sides. No torch needed.
"""

from __future__ import annotations

import csv
import itertools
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simulator.serving_logs import RequestLog, batches_from_requests

QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}


@dataclass
class LevelRow:
    """One load level: logged vs simulated latency percentiles (ms)."""

    level: str
    requests: int
    duration_s: float
    rate_qps: float
    real: dict[str, float]
    sim: dict[str, float]
    real_util: float  # busy fraction from the log's batches (derived when no start_s)
    sim_util: float

    def error(self, key: str) -> float:
        """(sim - real) / real."""
        return (self.sim[key] - self.real[key]) / self.real[key]


def levels(log: RequestLog, gap_s: float = 1.0) -> list[tuple[str, np.ndarray]]:
    """(label, request indices) per load level: by the ``load`` column, else by gaps."""
    if log.load is not None:
        order: dict[str, list[int]] = {}
        for i, lab in enumerate(log.load):
            order.setdefault(lab, []).append(i)
        return [(lab, np.asarray(ix)) for lab, ix in order.items()]
    cut = np.flatnonzero(np.diff(log.arrival_s) > gap_s) + 1
    bounds = [0, *cut.tolist(), len(log.arrival_s)]
    return [(f"segment {k + 1}", np.arange(a, b))
            for k, (a, b) in enumerate(itertools.pairwise(bounds))]


def _pct(x: np.ndarray) -> dict[str, float]:
    if not len(x):
        return {k: float("nan") for k in QUANTILES}
    q = np.quantile(x, list(QUANTILES.values()))
    return {k: float(v) for k, v in zip(QUANTILES, q, strict=True)}


def simulate_level(arrivals_s: np.ndarray, profile: str, variant: str, serving: str | None,
                   max_batch: int, max_wait_ms: float, timer_slack_ms: float,
                   warmup_s: float, reps: int, seed: int) -> tuple[np.ndarray, float]:
    """Latencies (ms, pooled over ``reps`` seeds, requests after ``warmup_s``) and mean
    utilisation of PeakSim replaying ``arrivals_s`` (s from the level's first arrival)."""
    from simulator import Scenario, run

    t = arrivals_s - arrivals_s.min()
    span = float(t[-1]) + (float(t[-1]) / max(len(t) - 1, 1))
    fd, tmp = tempfile.mkstemp(suffix=".csv", prefix="peaksim-replay-")
    try:
        with open(fd, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["t"])
            w.writerows([[f"{x:.7f}"] for x in t])
        svc: dict[str, Any] = {"profile": str(Path(profile).resolve()), "variant": variant}
        if serving:
            svc["serving"] = str(Path(serving).resolve())
        lat, util = [], []
        for r in range(reps):
            sc = Scenario.model_validate({
                "name": "replay",
                "simulation": {"duration_s": span, "warmup_s": min(warmup_s, span / 2),
                               "seed": seed + r, "records": "all",
                               "timeseries_interval_s": max(span / 10, 0.01)},
                "workload": {"arrival": {"process": "trace",
                                         "trace": {"path": tmp, "column": "t"}}},
                "service": svc,
                "cluster": {"pools": [{"name": "node", "nodes": 1}]},
                "policy": {"dispatch": "central",
                           "batching": {"name": "dynamic", "max_batch": max_batch,
                                        "max_wait_ms": max_wait_ms,
                                        "timer_slack_ms": timer_slack_ms}},
                "sla": {"slo_ms": 1000},
            })
            res = run(sc)
            rec = res.records
            assert rec is not None
            done = rec[(rec["outcome"] == "completed") & (rec["arrival_s"] >= warmup_s)]
            lat.append(done["latency_ms"].to_numpy(float))
            u = res.summary.get("utilization")
            if isinstance(u, dict):
                u = u.get("mean", next(iter(u.values()), float("nan")))
            util.append(float(u) if u is not None else float("nan"))
    finally:
        Path(tmp).unlink(missing_ok=True)
    return np.concatenate(lat), float(np.mean(util))


def replay(log: RequestLog, profile: str, variant: str, serving: str | None, max_batch: int,
           max_wait_ms: float, timer_slack_ms: float, warmup_s: float = 1.0,
           gap_s: float = 1.0, reps: int = 5, seed: int = 1) -> list[LevelRow]:
    """Compare the log with PeakSim at every load level (see the module docstring)."""
    rows = []
    for label, ix in levels(log, gap_s):
        arr = log.arrival_s[ix]
        t0 = float(arr.min())
        keep = arr >= t0 + warmup_s
        real = log.latency_ms[ix][keep]
        sub = RequestLog(log.path, arr, log.finish_s[ix], [log.batch_id[i] for i in ix],
                         log.items[ix], None if log.start_s is None else log.start_s[ix], None)
        b = batches_from_requests(sub, max_batch, max_wait_ms)
        span = float(arr.max() - t0)
        win = (b.start_s >= t0 + warmup_s)
        busy = float((b.end_s[win] - b.start_s[win]).sum())
        real_util = busy / max(span - warmup_s, 1e-9)
        sim_lat, sim_util = simulate_level(arr, profile, variant, serving, max_batch,
                                           max_wait_ms, timer_slack_ms, warmup_s, reps, seed)
        rows.append(LevelRow(label, len(arr), span, len(arr) / max(span, 1e-9),
                             _pct(real), _pct(sim_lat), real_util, sim_util))
    return rows


def plot(rows: list[LevelRow], path: str | Path, title: str) -> None:
    """Logged vs simulated p50/p95/p99 per load level (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    x = np.arange(len(rows))
    for j, (k, c) in enumerate(zip(QUANTILES, ("tab:blue", "tab:orange", "tab:red"),
                                   strict=True)):
        ax.bar(x + (j - 1) * 0.27 - 0.065, [r.real[k] for r in rows], 0.13, color=c,
               label=f"{k} logged")
        ax.bar(x + (j - 1) * 0.27 + 0.065, [r.sim[k] for r in rows], 0.13, color=c,
               alpha=0.45, hatch="//", label=f"{k} PeakSim")
    ax.set_xticks(x, [f"{r.level}\n{r.rate_qps:,.0f} qps, util {r.real_util:.2f}"
                      for r in rows], fontsize=8)
    ax.set(ylabel="latency (ms)", title=title)
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def rows_json(rows: list[LevelRow]) -> list[dict[str, Any]]:
    return [{**asdict(r), "errors": {k: r.error(k) for k in QUANTILES}} for r in rows]
