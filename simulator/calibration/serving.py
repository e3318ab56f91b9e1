"""Real in-process serving: a dynamic batcher thread runs the model under open-loop Poisson load.

A load-generator thread enqueues requests (1 item each) at precomputed Poisson arrival times;
the server thread waits for the first request, then until ``max_batch`` requests are queued or
the oldest has waited ``max_wait_ms`` (``threading.Condition.wait`` with a timeout: its
overshoot is the timer slack the simulator needs), collates the requests' features into one
batch, runs the forward pass and stamps every request's finish time. Everything is real: the
GIL shared by the two threads, the collation, the timer. What is not serving is kept out:
per-request times go to preallocated arrays (a growing list of request objects made Python's
full GC passes, and their tens-of-ms pauses, the p99 at 60% load) and long-lived objects are
frozen out of the GC before the run.

``calibration_runs`` + ``fit_serving`` turn short serving runs at a low and a middle load into
what serving adds to the isolated forward pass, as the profile schema wants it: overheads
(``overhead_ms_per_batch + overhead_ms_per_item * items``: the median dispatch->finish time
per batch size minus the fitted isolated forward time, fitted affine in the batch size over
the pooled runs, weighted by how many batches of each size were seen), the batcher timer's
overshoot, and the per-batch residuals around that fit (``serving_residuals``).
"""

from __future__ import annotations

import gc
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from simulator.calibration.model import ModelConfig, make_inputs


@dataclass
class ServingResult:
    """One serving run. Times are seconds since the run's start unless named *_ms."""

    rate_qps: float
    duration_s: float
    warmup_s: float
    latency_ms: np.ndarray  # per request that arrived inside the measured window
    batch_items: np.ndarray  # per batch
    batch_start: np.ndarray  # dispatch instant (s)
    batch_ms: np.ndarray  # dispatch -> last result stamped (ms)
    timer_overshoot_ms: np.ndarray  # for batches dispatched by the timer: actual - deadline
    utilization: float  # busy fraction of the server over the measured window
    achieved_qps: float

    def percentiles(self) -> dict[str, float]:
        q = np.quantile(self.latency_ms, [0.5, 0.95, 0.99]) if len(self.latency_ms) else [0] * 3
        return {"p50": float(q[0]), "p95": float(q[1]), "p99": float(q[2])}


class _Req:
    __slots__ = ("i", "t_arrive", "x")

    def __init__(self, i: int, x: Any, t_arrive: float) -> None:
        self.i, self.x, self.t_arrive = i, x, t_arrive


class ServeInputs(Protocol):
    """What the harness sends: a pool of ``size`` one-item requests (``item(j)``, made before
    the run) and the server's collation of a batch of them into the forward's inputs."""

    size: int
    collation: str  # what ``collate`` does, for the profile's provenance

    def item(self, j: int) -> Any: ...

    def collate(self, items: list[Any]) -> tuple[torch.Tensor, ...]: ...


class DLRMInputs:
    """The built-in DLRM's requests: a dense row and one id per table (pooling 1); collation
    stacks the dense rows and the id columns (``offsets`` = arange)."""

    collation = "torch.stack of the requests' dense rows and id columns"

    def __init__(self, cfg: ModelConfig, size: int = 2048, seed: int = 31) -> None:
        if cfg.pooling != 1:
            raise ValueError("the serving harness sends one id per table (pooling = 1)")
        dense, idx, _ = make_inputs(cfg, size, seed=seed)
        self.size = size
        self._dense, self._ids = dense, idx.t().contiguous()  # (size, T): one request's ids

    def item(self, j: int) -> Any:
        return self._dense[j], self._ids[j]

    def collate(self, items: list[Any]) -> tuple[torch.Tensor, ...]:
        return (torch.stack([d for d, _ in items]), torch.stack([i for _, i in items], dim=1),
                torch.arange(len(items)))


class RowInputs:
    """An own model whose every input has one row per item (first dim = items): a request is
    one row of each input of a sampled pool; collation stacks the requests' rows."""

    collation = "torch.stack of the requests' rows, per input"

    def __init__(self, pool: tuple[torch.Tensor, ...]) -> None:
        self.size = int(pool[0].shape[0])
        self._rows = [tuple(t[j] for t in pool) for j in range(self.size)]

    def item(self, j: int) -> Any:
        return self._rows[j]

    def collate(self, items: list[Any]) -> tuple[torch.Tensor, ...]:
        return tuple(torch.stack(col) for col in zip(*items, strict=True))


class SizedInputs:
    """An own model whose inputs are not one row per item (e.g. flat ids with offsets): a
    batch of k requests is served with inputs sampled for k items before the run, so the
    server's collation is not measured (the provenance says so)."""

    collation = ("none measured: inputs are not one row per item, so each batch size's inputs "
                 "were sampled before the run")

    def __init__(self, sample: Callable[[int, int], tuple[torch.Tensor, ...]], max_batch: int,
                 size: int = 2048, seed: int = 31) -> None:
        self.size = size
        self._by_k = {k: sample(k, seed + k) for k in range(1, max_batch + 1)}

    def item(self, j: int) -> Any:
        return j

    def collate(self, items: list[Any]) -> tuple[torch.Tensor, ...]:
        return self._by_k[len(items)]


def own_inputs(sample: Callable[[int, int], tuple[torch.Tensor, ...]], max_batch: int,
               size: int = 2048, seed: int = 31) -> ServeInputs:
    """The harness's requests for an own model's sampler: :class:`RowInputs` when every input
    the sampler returns has one row per item (checked at two sizes), else
    :class:`SizedInputs`."""
    def rows(n: int) -> bool:
        ts = sample(n, seed)
        return all(t.dim() >= 1 and t.shape[0] == n for t in ts)

    if rows(size) and rows(size - 1):
        return RowInputs(sample(size, seed))
    return SizedInputs(sample, max_batch, size, seed)


def serve(model: Callable[..., torch.Tensor], cfg: ModelConfig | ServeInputs, rate_qps: float,
          duration_s: float, max_batch: int, max_wait_ms: float, warmup_s: float = 1.0,
          seed: int = 0, pool: int = 2048) -> ServingResult:
    """Serve ``model`` at ``rate_qps`` Poisson arrivals for ``duration_s`` (the first
    ``warmup_s`` are not measured); returns every measured request's latency (ms). ``cfg``:
    the built-in DLRM's config (its requests, :class:`DLRMInputs`) or any :class:`ServeInputs`
    (an own model's: :func:`own_inputs`)."""
    inputs = DLRMInputs(cfg, pool, seed=seed + 31) if isinstance(cfg, ModelConfig) else cfg
    rng = np.random.default_rng(seed)
    n = int(rate_qps * duration_s * 1.2) + 10
    arrivals = np.cumsum(rng.exponential(1.0 / rate_qps, n))
    arrivals = arrivals[arrivals < duration_s]
    picks = rng.integers(0, inputs.size, len(arrivals))
    queue: deque[_Req] = deque()
    cond = threading.Condition()
    # per-request times live in arrays, not in objects kept alive: a list of every served
    # request (tensors included) makes Python's full GC passes grow with the run, and those
    # pauses (tens of ms) were the real p99 at 60% load: a harness artefact, not serving
    t_arrive = np.full(len(arrivals), np.nan)
    t_done = np.full(len(arrivals), np.nan)
    batches: list[tuple[int, float, float, float]] = []  # items, start, finish, overshoot
    stop = threading.Event()
    wait_s = max_wait_ms / 1e3
    with torch.inference_mode():  # warm the model at every size the batcher can form
        for k in sorted({1, 2, max(1, max_batch // 2), max_batch}):
            for _ in range(3):
                model(*inputs.collate([inputs.item(j % inputs.size) for j in range(k)]))
    gc.collect()
    gc.freeze()  # the model and inputs are long-lived: keep them out of GC passes (as servers do)
    t0 = time.perf_counter()

    def generate() -> None:
        for i, (t_due, j) in enumerate(zip(arrivals.tolist(), picks.tolist(), strict=True)):
            delay = t0 + t_due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            req = _Req(i, inputs.item(j), time.perf_counter())
            with cond:
                queue.append(req)
                if len(queue) == 1 or len(queue) >= max_batch:
                    cond.notify()

    def server() -> None:
        torch.set_num_threads(torch.get_num_threads())
        with torch.inference_mode():
            while True:
                with cond:
                    while not queue:
                        if stop.is_set():
                            return
                        cond.wait(0.05)
                    deadline = queue[0].t_arrive + wait_s
                    while len(queue) < max_batch:
                        remaining = deadline - time.perf_counter()
                        if remaining <= 0:
                            break
                        cond.wait(remaining)
                    start = time.perf_counter()
                    k = min(max_batch, len(queue))
                    reqs = [queue.popleft() for _ in range(k)]
                model(*inputs.collate([r.x for r in reqs]))
                finish = time.perf_counter()
                for r in reqs:
                    t_arrive[r.i] = r.t_arrive
                    t_done[r.i] = finish
                over = (start - deadline) * 1e3 if k < max_batch else float("nan")
                batches.append((k, start - t0, finish - t0, over))

    threads = [threading.Thread(target=generate, daemon=True),
               threading.Thread(target=server, daemon=True)]
    for th in threads:
        th.start()
    threads[0].join()
    stop.set()
    threads[1].join(timeout=60)
    gc.unfreeze()
    rel = t_arrive - t0
    sel = np.isfinite(t_done) & (rel >= warmup_s) & (rel < duration_s)
    lat = (t_done[sel] - t_arrive[sel]) * 1e3
    b = np.array(batches) if batches else np.zeros((0, 4))
    window = duration_s - warmup_s
    start, finish = b[:, 1], b[:, 2]
    busy = np.clip(np.minimum(finish, duration_s) - np.maximum(start, warmup_s), 0, None).sum()
    over = b[:, 3]
    return ServingResult(
        rate_qps=rate_qps, duration_s=duration_s, warmup_s=warmup_s, latency_ms=lat,
        batch_items=b[:, 0].astype(int), batch_start=start, batch_ms=(finish - start) * 1e3,
        timer_overshoot_ms=over[np.isfinite(over)], utilization=float(busy / window),
        achieved_qps=len(lat) / window,
    )


def serving_overheads(runs: list[ServingResult], fitted_ms: Callable[[np.ndarray], np.ndarray],
                      min_count: int = 3) -> tuple[float, float]:
    """(overhead_ms_per_batch, overhead_ms_per_item) >= 0: affine fit, weighted by counts, of
    median(serving batch time | k) - fitted isolated forward time(k), over the batches of all
    ``runs`` pooled (runs at different loads give the fit small and large batches)."""
    sel = [r.batch_start >= r.warmup_s for r in runs]
    ks = np.concatenate([r.batch_items[m] for r, m in zip(runs, sel, strict=True)])
    times = np.concatenate([r.batch_ms[m] for r, m in zip(runs, sel, strict=True)])
    from simulator.serving_logs import overhead_fit  # the same fit, torch-free, for logs

    return overhead_fit(ks, times, fitted_ms, min_count)


MAX_GENERATOR_QPS = 20_000.0  # a Python load-generator thread cannot offer much more
CALIBRATION_LOADS = (0.03, 0.45)  # x full-batch capacity: batches of ~1-3, then ~15-25 requests


@dataclass
class ServingCalibration:
    """What short serving runs add to an isolated-forward profile (see calibrate_overheads)."""

    overhead_ms_per_batch: float
    overhead_ms_per_item: float
    timer_slack_ms: float  # median overshoot of the batcher's timer
    residuals: list[float]  # serving batch time / (fit + overheads), per batch, sorted


def serving_residuals(runs: list[ServingResult], fitted_ms: Callable[[np.ndarray], np.ndarray],
                      overheads: tuple[float, float], limit: int = 1000,
                      seed: int = 0) -> list[float]:
    """Per-batch ratios serving time / (fitted forward + overheads), pooled over ``runs``,
    subsampled (seeded) to ``limit`` values, rounded, sorted: the spread serving really shows."""
    sel = [r.batch_start >= r.warmup_s for r in runs]
    ks = np.concatenate([r.batch_items[m] for r, m in zip(runs, sel, strict=True)]).astype(float)
    ms = np.concatenate([r.batch_ms[m] for r, m in zip(runs, sel, strict=True)])
    if not len(ms):
        return []
    ratio = ms / (np.asarray(fitted_ms(ks), dtype=float) + overheads[0] + overheads[1] * ks)
    if len(ratio) > limit:
        ratio = np.random.default_rng(seed).choice(ratio, limit, replace=False)
    return [round(float(r), 4) for r in np.sort(ratio)]


def calibration_runs(model: Callable[..., torch.Tensor], cfg: ModelConfig | ServeInputs,
                     fitted_ms: Callable[[np.ndarray], np.ndarray], max_batch: int,
                     max_wait_ms: float, seconds: float,
                     loads: tuple[float, ...] = CALIBRATION_LOADS,
                     start: tuple[float, float] = (0.0, 0.0), seed: int = 11,
                     ) -> list[ServingResult]:
    """Short serving runs, one per entry of ``loads`` (fractions of the full-batch capacity
    the isolated fit plus ``start`` overheads promise), ``seconds`` in all."""
    svc = float(fitted_ms(np.array(float(max_batch)))) + start[0] + start[1] * max_batch
    runs = []
    for i, load in enumerate(loads):
        rate = min(load * max_batch / svc * 1e3, MAX_GENERATOR_QPS)
        dur = seconds / len(loads)
        runs.append(serve(model, cfg, rate, dur, max_batch, max_wait_ms,
                          warmup_s=min(1.0, dur / 4), seed=seed + i))
    return runs


def fit_serving(runs: list[ServingResult],
                fitted_ms: Callable[[np.ndarray], np.ndarray]) -> ServingCalibration:
    """Overheads (fitted to the medians), timer slack and residuals of pooled serving runs.

    One load alone sees one range of batch sizes and cannot tell a per-batch cost from a
    per-item one, so runs at several loads are pooled."""
    over = np.concatenate([r.timer_overshoot_ms for r in runs])
    slack = float(np.median(over)) if len(over) else 0.12
    oh = serving_overheads(runs, fitted_ms)
    return ServingCalibration(oh[0], oh[1], slack, serving_residuals(runs, fitted_ms, oh))


def calibrate_overheads(model: Callable[..., torch.Tensor], cfg: ModelConfig | ServeInputs,
                        fitted_ms: Callable[[np.ndarray], np.ndarray], max_batch: int,
                        max_wait_ms: float, seconds: float,
                        loads: tuple[float, ...] = CALIBRATION_LOADS,
                        start: tuple[float, float] = (0.0, 0.0), seed: int = 11,
                        ) -> ServingCalibration:
    """What serving adds to the isolated forward pass, from :func:`calibration_runs`."""
    return fit_serving(calibration_runs(model, cfg, fitted_ms, max_batch, max_wait_ms, seconds,
                                        loads, start, seed), fitted_ms)
