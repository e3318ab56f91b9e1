"""A second serving implementation, *not* PeakSim's harness, that writes batch and request logs.

It serves the built-in DLRM (a variant of the model a PeakSim profile was calibrated on) under
open-loop Poisson arrivals at several rates, one after another, and writes the two logs
``peaksim calibrate-serving`` and ``peaksim validate-calibration --request-log`` read:
``batches.csv`` (items,start_s,end_s,deadline_s,load) and ``requests.csv``
(arrival_s,finish_s,batch_id,start_s,load).

How it differs from ``simulator/calibration/serving.py`` (the harness):

* **queue**: a ``queue.Queue`` (every put wakes the waiting collector) instead of a deque
  under a ``threading.Condition`` notified only for the first and the max_batch-th request;
* **batching loop**: the collector blocks on ``get()`` for the first request, drains what is
  queued with ``get_nowait()``, then waits for more with ``get(timeout=...)`` until the batch
  is full or the oldest request has waited ``max_wait_ms`` (Triton's rule, which PeakSim's
  ``dynamic`` batcher models);
* **collation**: every request's features are pre-made tensors of their final shape
  (dense ``(1, 13)``, ids ``(tables, 1)``), joined with ``torch.cat``; the harness stacks
  per-request rows with ``torch.stack``;
* **requests** are plain tuples of ints and floats (no per-request objects holding tensors).

Usage::

    python benchmarks/other_server.py --profile scenarios/profiles/cpu-x86.json \\
        --variant fp32 --rates 300,1500,4500 --duration 10 --out-dir /tmp/other-fp32
"""

from __future__ import annotations

import argparse
import gc
import queue
import threading
import time
from pathlib import Path

import numpy as np


def serve_levels(model, cfg, rates: list[float], duration_s: float, max_batch: int,
                 max_wait_ms: float, seed: int, gap_s: float = 2.0,
                 pool: int = 4096) -> tuple[dict[str, np.ndarray], dict[str, list]]:
    """Serve each rate for ``duration_s`` (one after another, ``gap_s`` apart); returns the
    per-request and per-batch logs (times in s since the first level's start)."""
    import torch

    from simulator.calibration.model import make_inputs

    dense_pool, idx_pool, _ = make_inputs(cfg, pool, seed=seed + 57)
    dense_rows = [dense_pool[j:j + 1].clone() for j in range(pool)]  # (1, num_dense) each
    id_cols = [idx_pool[:, j:j + 1].clone() for j in range(pool)]  # (tables, 1) each
    rng = np.random.default_rng(seed)
    arrivals, levels = [], []
    t_begin = 0.0
    for li, rate in enumerate(rates):
        n = int(rate * duration_s * 1.3) + 10
        a = np.cumsum(rng.exponential(1.0 / rate, n))
        a = a[a < duration_s] + t_begin
        arrivals.append(a)
        levels += [f"{rate:g} qps"] * len(a)
        t_begin += duration_s + gap_s
        del li
    arr = np.concatenate(arrivals)
    picks = rng.integers(0, pool, len(arr))
    n = len(arr)
    t_arr = np.full(n, np.nan)
    t_fin = np.full(n, np.nan)
    t_start = np.full(n, np.nan)
    bid = np.full(n, -1, dtype=np.int64)
    batches: dict[str, list] = {"items": [], "start_s": [], "end_s": [], "deadline_s": [],
                                "load": []}
    q: queue.Queue = queue.Queue()
    wait_s = max_wait_ms / 1e3
    with torch.inference_mode():
        for k in (1, 2, 4, 8, 16, max_batch):
            for _ in range(3):
                model(torch.cat(dense_rows[:k]), torch.cat(id_cols[:k], dim=1),
                      torch.arange(k))
    gc.collect()
    gc.freeze()
    t0 = time.perf_counter()
    STOP = (-1, 0.0, 0)

    def generate() -> None:
        for i, (due, j) in enumerate(zip(arr.tolist(), picks.tolist(), strict=True)):
            delay = t0 + due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            q.put((i, time.perf_counter(), j))
        q.put(STOP)

    def collector() -> None:
        nb = 0
        with torch.inference_mode():
            while True:
                first = q.get()
                if first[0] < 0:
                    return
                batch = [first]
                deadline = first[1] + wait_s
                done = False
                while len(batch) < max_batch:
                    try:
                        item = q.get_nowait()
                    except queue.Empty:
                        remaining = deadline - time.perf_counter()
                        if remaining <= 0:
                            break
                        try:
                            item = q.get(timeout=remaining)
                        except queue.Empty:
                            break
                    if item[0] < 0:
                        done = True
                        break
                    batch.append(item)
                start = time.perf_counter()
                k = len(batch)
                dense = torch.cat([dense_rows[j] for _, _, j in batch])
                ids = torch.cat([id_cols[j] for _, _, j in batch], dim=1)
                model(dense, ids, torch.arange(k))
                fin = time.perf_counter()
                for i, ta, _ in batch:
                    t_arr[i], t_fin[i], t_start[i], bid[i] = ta - t0, fin - t0, start - t0, nb
                batches["items"].append(k)
                batches["start_s"].append(start - t0)
                batches["end_s"].append(fin - t0)
                batches["deadline_s"].append(deadline - t0 if k < max_batch else float("nan"))
                batches["load"].append(levels[batch[0][0]])
                nb += 1
                if done:
                    return

    threads = [threading.Thread(target=generate, daemon=True),
               threading.Thread(target=collector, daemon=True)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    gc.unfreeze()
    reqs = {"arrival_s": t_arr, "finish_s": t_fin, "start_s": t_start, "batch_id": bid,
            "load": np.array(levels)}
    return reqs, batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="scenarios/profiles/cpu-x86.json")
    ap.add_argument("--variant", default="fp32")
    ap.add_argument("--rates", default="300,1500,4500", help="qps per load level")
    ap.add_argument("--duration", type=float, default=10.0, help="s per level")
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--max-wait-ms", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--out-dir", required=True)
    a = ap.parse_args()

    import torch

    from simulator.calibration.fidelity import build_served_model
    from simulator.profiles import load_profile
    from simulator.serving_logs import write_batch_log, write_request_log

    torch.set_num_threads(1)
    prof = load_profile(a.profile)
    model, cfg = build_served_model(prof, a.variant)
    rates = [float(x) for x in a.rates.split(",")]
    reqs, b = serve_levels(model, cfg, rates, a.duration, a.max_batch, a.max_wait_ms, a.seed)
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_batch_log(out / "batches.csv", b["items"], b["start_s"], b["end_s"], b["deadline_s"],
                    b["load"])
    ok = np.isfinite(reqs["finish_s"])
    write_request_log(out / "requests.csv", reqs["arrival_s"][ok], reqs["finish_s"][ok],
                      reqs["batch_id"][ok].tolist(), reqs["start_s"][ok],
                      reqs["load"][ok].tolist())
    items = np.asarray(b["items"])
    bs, be = np.asarray(b["start_s"]), np.asarray(b["end_s"])
    loads = np.asarray(b["load"])
    for lab in dict.fromkeys(b["load"]):
        m = loads == lab
        lat = (reqs["finish_s"] - reqs["arrival_s"])[ok & (reqs["load"] == lab)] * 1e3
        span = be[m].max() - bs[m].min()
        print(f"{a.variant} {lab}: {m.sum()} batches, mean items {items[m].mean():.1f}, util "
              f"{(be[m] - bs[m]).sum() / span:.2f}, p50 {np.median(lat):.2f} ms, p99 "
              f"{np.quantile(lat, 0.99):.2f} ms")
    print(f"wrote {out / 'batches.csv'} and {out / 'requests.csv'}")


if __name__ == "__main__":
    main()
