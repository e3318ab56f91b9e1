"""Time every variant at every batch size; measure size, load time, first call and quality.

Method (see docs/calibration.md and the calibration notes): one thread (``torch.set_num_threads``)
so a neighbour process cannot wreck the timings; ``torch.inference_mode``; warm-up calls per
batch size; the reps of a cell are spread over several *rounds* that cycle through all variants
and batch sizes, so a slow stretch of the machine (its speed drifts in correlated stretches)
lands on all cells alike; the whole sample is kept. ``run_pooled`` repeats the measurement in
several fresh processes one after another and pools the samples.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata

from simulator.calibration.model import DLRM, ModelConfig, build_model, make_inputs
from simulator.calibration.variants import build_variant, deserialize, serialize

Progress = Callable[[str, int, int], None]  # (description, done, total)


@dataclass
class Spec:
    """What to measure. Times in ms, sizes in items."""

    model: ModelConfig | None  # the built-in DLRM's config; None for an own model
    variants: list[str] | None  # None (own model): every variant that applies
    batch_sizes: list[int]
    reps: int = 100
    warmup: int = 5
    rounds: int = 4
    threads: int = 1
    device: str = "cpu"
    train_steps: int = 300
    eval_samples: int = 20_000
    quality: bool = True
    model_ref: str | None = None  # own model: factory reference or .pt2 file (own_model.py)
    variant_refs: dict[str, str] = field(default_factory=dict)  # user-given variants


@dataclass
class Measured:
    """Raw results of one or more processes (samples pooled across them)."""

    samples_ms: dict[str, list[np.ndarray]]  # variant -> per batch size
    model_bytes: dict[str, int] = field(default_factory=dict)
    load_time_s: dict[str, list[float]] = field(default_factory=dict)
    first_call_ms: dict[str, list[float]] = field(default_factory=dict)
    quality: dict[str, dict[str, float]] = field(default_factory=dict)
    config: dict[str, dict[str, Any]] = field(default_factory=dict)  # variant -> arch config
    own: dict[str, Any] = field(default_factory=dict)  # own model: identity, derived, skipped


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed_call(model: Callable[..., Any], args: tuple[torch.Tensor, ...], device: str) -> float:
    """One forward pass's time (ms). CPU: wall clock around the call. CUDA: after a synchronize
    (the stream is empty), events are recorded on the current stream before and after the call
    and the end event is waited for; ``elapsed_time`` is the time between them on the device
    (ms), launch gaps included."""
    if device == "cuda":
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        model(*args)
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))
    t0 = time.perf_counter_ns()
    model(*args)
    return (time.perf_counter_ns() - t0) / 1e6


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties averaged)."""
    pos = labels > 0.5
    n1, n0 = int(pos.sum()), int((~pos).sum())
    ranks = rankdata(scores)
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def load_stats(model: torch.nn.Module, cfg: ModelConfig | None, device: str = "cpu",
               example: tuple[torch.Tensor, ...] | None = None) -> tuple[int, float, float]:
    """(serialized bytes, load time s = deserialize + warm-up, first call ms at batch 1).
    ``example``: the batch-1 inputs (default: the DLRM's for ``cfg``)."""
    data = serialize(model.cpu() if device == "cpu" else model)
    if example is None:
        assert cfg is not None
        example = tuple(t.to(device) for t in make_inputs(cfg, 1, seed=5))
    t0 = time.perf_counter()
    m = deserialize(data).to(device)
    with torch.inference_mode():
        t1 = time.perf_counter()
        m(*example)
        _sync(device)
        t2 = time.perf_counter()
        for _ in range(3):
            m(*example)
        _sync(device)
    t3 = time.perf_counter()
    return len(data), t3 - t0, (t2 - t1) * 1e3


def build_all(spec: Spec) -> tuple[DLRM, dict[str, torch.nn.Module]]:
    """The seeded teacher and every requested variant (on spec.device)."""
    teacher = build_model(spec.model)
    models = {v: build_variant(v, teacher, spec.train_steps) for v in spec.variants}
    if spec.device != "cpu":
        models = {k: m.to(spec.device) for k, m in models.items()}
    return teacher, models


def time_cells(models: dict[str, torch.nn.Module], spec: Spec,
               progress: Progress | None = None,
               inputs: dict[int, tuple[torch.Tensor, ...]] | None = None,
               ) -> dict[str, list[np.ndarray]]:
    """Timed forward passes (ms) per variant and batch size, interleaved in rounds.
    ``inputs``: batch size -> forward inputs (default: the DLRM's for ``spec.model``)."""
    if inputs is None:
        assert spec.model is not None
        inputs = {b: tuple(t.to(spec.device) for t in make_inputs(spec.model, b, seed=1000 + b))
                  for b in spec.batch_sizes}
    samples: dict[str, list[list[float]]] = {v: [[] for _ in spec.batch_sizes] for v in models}
    per_round = [spec.reps // spec.rounds + (r < spec.reps % spec.rounds)
                 for r in range(spec.rounds)]
    total, done = len(models) * len(spec.batch_sizes) * spec.rounds, 0
    with torch.inference_mode():
        for r, n in enumerate(per_round):
            for v, m in models.items():
                for j, b in enumerate(spec.batch_sizes):
                    if progress:
                        progress(f"round {r + 1}/{spec.rounds} {v} batch {b}", done, total)
                    args = inputs[b]
                    for _ in range(spec.warmup if r == 0 else 1):
                        m(*args)
                    _sync(spec.device)
                    cell = samples[v][j]
                    for _ in range(n):
                        cell.append(timed_call(m, args, spec.device))
                    done += 1
    return {v: [np.asarray(c) for c in cells] for v, cells in samples.items()}


def measure(spec: Spec, progress: Progress | None = None) -> Measured:
    """Build the model and its variants in this process and measure everything. One path for
    every model: the built-in DLRM (``spec.model``) is measured as a factory like an own model
    (``spec.model_ref``), see ``own_model.measure_own``."""
    from simulator.calibration.own_model import measure_own

    return measure_own(spec, progress)  # type: ignore[no-any-return]


def _worker(spec: Spec, queue: Any) -> None:
    def progress(desc: str, done: int, total: int) -> None:
        queue.put(("progress", desc, done, total))

    try:
        queue.put(("result", measure(spec, progress)))
    except BaseException as exc:  # report, do not hang the parent
        queue.put(("error", repr(exc)))


def run_pooled(spec: Spec, processes: int, progress: Progress | None = None) -> Measured:
    """Measure in ``processes`` fresh processes, one after another, and pool the samples.
    Quality is computed in the first process only (it is deterministic)."""
    if processes <= 1:
        return measure(spec, progress)
    ctx = mp.get_context("spawn")
    results: list[Measured] = []
    for p in range(processes):
        q = ctx.Queue()
        sub = Spec(**{**spec.__dict__, "quality": spec.quality and p == 0})
        proc = ctx.Process(target=_worker, args=(sub, q), daemon=True)
        proc.start()
        while True:
            msg = q.get()
            if msg[0] == "progress":
                if progress:
                    progress(f"process {p + 1}/{processes}: {msg[1]}", msg[2], msg[3])
                continue
            proc.join()
            if msg[0] == "error":
                raise RuntimeError(f"measurement process {p + 1} failed: {msg[1]}")
            results.append(msg[1])
            break
    first = results[0]
    for other in results[1:]:
        for v in first.samples_ms:
            first.samples_ms[v] = [np.concatenate([a, b]) for a, b in
                                   zip(first.samples_ms[v], other.samples_ms[v], strict=True)]
            first.load_time_s[v] += other.load_time_s[v]
            first.first_call_ms[v] += other.first_call_ms[v]
    return first
