"""Batch and request logs of a real server, read strictly, and the serving-stack fit.

Two CSV formats (a header row, then one data row per batch or per request):

* **batch log**: ``items,start_s,end_s`` (one row per batch: items in the batch, dispatch
  instant, finish instant), rows in dispatch order. Optional ``deadline_s``: the instant the
  batcher's timer was due for a batch dispatched by its timer (empty otherwise); its median
  lateness becomes ``timer_overshoot_ms``. Optional ``load``: a label per row.
* **request log**: ``arrival_s,finish_s,batch_id`` (one row per request), rows in arrival
  order. Optional ``items`` (items of the request, default 1), ``start_s`` (the dispatch
  instant of the request's batch, when the server logs it, e.g. Triton's COMPUTE_START) and
  ``load`` (a label per load level, used by ``validate-calibration --request-log``).

Time columns may be named with the suffix of their unit (``start_ms``, ``end_us``) or without
one (``start``, ``end``, ``arrival``, ``finish``: the unit is ``--time-unit``, default s).

Every value is checked; the first bad one is refused with a one-line :class:`LogError` naming
the file, the 1-based data row and the column: missing columns, non-numeric values, NaN or
infinities, negative or unsorted times, a batch (request) finishing before it starts
(arrives), items <= 0, an empty file.

**Batches from a request log.** A request log has no dispatch instant unless it carries
``start_s``. Without it, a batch's dispatch is estimated as the latest of (a) the arrival of
its last request (it cannot leave before all its requests are there), (b) the finish of the
previous batch (one worker serves one batch at a time: the estimate assumes a single serial
model instance) and, when the batcher's ``max_wait_ms`` and ``max_batch`` are given, (c) the
first request's arrival + ``max_wait_ms`` for a batch smaller than ``max_batch`` (it left on the
timer). The estimate is a lower bound on the true dispatch, so batch times derived this way are
upper bounds (too long by the timer's overshoot and any idle gap the server took); a log with
``start_s`` or a batch log is better.

The fit (:func:`fit_stack`) needs no torch: overhead(items) = median observed batch time per
size minus the model profile's fitted forward time at that size, fitted affine in items,
weighted by the square root of the number of batches of that size; residuals = observed /
(forward fit + overheads), per batch.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


class LogError(ValueError):
    """A batch or request log that cannot be used (names file, row and column)."""


@dataclass
class BatchLog:
    """Batches, in dispatch order. Times in s (as logged, not shifted)."""

    path: str
    items: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    deadline_s: np.ndarray  # NaN where the batch did not leave on the timer
    load: list[str] = field(default_factory=list)

    @property
    def batch_ms(self) -> np.ndarray:
        """Dispatch -> finish time of each batch, ms."""
        return (self.end_s - self.start_s) * 1e3


@dataclass
class RequestLog:
    """Requests, in arrival order. Times in s (as logged)."""

    path: str
    arrival_s: np.ndarray
    finish_s: np.ndarray
    batch_id: list[str]
    items: np.ndarray
    start_s: np.ndarray | None  # dispatch of the request's batch, when logged
    load: list[str] | None

    @property
    def latency_ms(self) -> np.ndarray:
        return (self.finish_s - self.arrival_s) * 1e3


def _find(header: list[str], base: str, unit: str | None, path: str,
          required: bool = True) -> tuple[str | None, float]:
    """The column for ``base`` (``base``, ``base_s``, ``base_ms`` or ``base_us``) and its
    seconds-per-unit factor."""
    hits = [(h, u) for u in ("s", "ms", "us") for h in header if h == f"{base}_{u}"]
    if base in header:
        hits.append((base, unit or "s"))
    if len(hits) > 1:
        raise LogError(f"{path}: columns {', '.join(h for h, _ in hits)} all name '{base}'; "
                       "keep one")
    if not hits:
        if required:
            raise LogError(f"{path}: row 0 (header): column '{base}_s' (or {base}, {base}_ms, "
                           f"{base}_us) missing; columns: {', '.join(header) or '(none)'}")
        return None, 1.0
    h, u = hits[0]
    if unit is not None and h != base and u != unit:
        raise LogError(f"{path}: column '{h}' is in {u} but --time-unit says {unit}")
    return h, UNITS[u]


def _rows(path: str | Path) -> tuple[list[str], list[list[str]]]:
    p = Path(path)
    if not p.is_file():
        raise LogError(f"{path}: log file not found")
    try:
        with p.open(newline="") as fh:
            rows = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LogError(f"{path}: not a readable CSV file ({exc})") from None
    if not rows:
        raise LogError(f"{path}: the log is empty (no header, no rows)")
    header = [h.strip() for h in rows[0]]
    if len(rows) < 2:
        raise LogError(f"{path}: the log has a header but no data rows")
    return header, rows[1:]


def _number(path: str, row: int, col: str, text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise LogError(f"{path}: row {row}, column '{col}': not a number: {text!r}") from None
    if not math.isfinite(v):
        raise LogError(f"{path}: row {row}, column '{col}': not a finite number: {text!r}")
    return v


def _cell(path: str, header: list[str], r: list[str], row: int, col: str) -> str:
    i = header.index(col)
    if i >= len(r):
        raise LogError(f"{path}: row {row}, column '{col}': missing value (row too short)")
    return r[i].strip()


def _time(path: str, header: list[str], r: list[str], row: int, col: str,
          scale: float) -> float:
    v = _number(path, row, col, _cell(path, header, r, row, col))
    if v < 0:
        raise LogError(f"{path}: row {row}, column '{col}': negative time {v:g}")
    return v * scale


def _items(path: str, header: list[str], r: list[str], row: int, col: str) -> int:
    v = _number(path, row, col, _cell(path, header, r, row, col))
    if v <= 0 or v != int(v):
        raise LogError(f"{path}: row {row}, column '{col}': items must be a whole number > 0, "
                       f"got {v:g}")
    return int(v)


def read_batch_log(path: str | Path, time_unit: str | None = None) -> BatchLog:
    """Read and check a batch log (see the module docstring); raises LogError."""
    ps = str(path)
    header, rows = _rows(path)
    if "items" not in header:
        raise LogError(f"{ps}: row 0 (header): column 'items' missing; columns: "
                       f"{', '.join(header)}")
    c_start, f_start = _find(header, "start", time_unit, ps)
    c_end, f_end = _find(header, "end", time_unit, ps)
    c_dl, f_dl = _find(header, "deadline", time_unit, ps, required=False)
    assert c_start is not None and c_end is not None
    n = len(rows)
    items = np.empty(n, dtype=np.int64)
    start, end = np.empty(n), np.empty(n)
    dl = np.full(n, np.nan)
    load: list[str] = []
    for k, r in enumerate(rows):
        row = k + 1
        items[k] = _items(ps, header, r, row, "items")
        start[k] = _time(ps, header, r, row, c_start, f_start)
        end[k] = _time(ps, header, r, row, c_end, f_end)
        if end[k] < start[k]:
            raise LogError(f"{ps}: row {row}, column '{c_end}': the batch finishes "
                           f"({end[k]:g} s) before it starts ({start[k]:g} s)")
        if k and start[k] < start[k - 1]:
            raise LogError(f"{ps}: row {row}, column '{c_start}': not sorted: dispatch "
                           f"{start[k]:g} s comes after {start[k - 1]:g} s (sort by dispatch)")
        if c_dl is not None:
            text = _cell(ps, header, r, row, c_dl) if header.index(c_dl) < len(r) else ""
            if text:
                dl[k] = _number(ps, row, c_dl, text) * f_dl
        if "load" in header:
            load.append(_cell(ps, header, r, row, "load"))
    return BatchLog(ps, items, start, end, dl, load)


def read_request_log(path: str | Path, time_unit: str | None = None) -> RequestLog:
    """Read and check a request log (see the module docstring); raises LogError."""
    ps = str(path)
    header, rows = _rows(path)
    c_arr, f_arr = _find(header, "arrival", time_unit, ps)
    c_fin, f_fin = _find(header, "finish", time_unit, ps)
    c_start, f_start = _find(header, "start", time_unit, ps, required=False)
    assert c_arr is not None and c_fin is not None
    if "batch_id" not in header:
        raise LogError(f"{ps}: row 0 (header): column 'batch_id' missing; columns: "
                       f"{', '.join(header)}")
    n = len(rows)
    arr, fin = np.empty(n), np.empty(n)
    items = np.ones(n, dtype=np.int64)
    start = np.empty(n) if c_start is not None else None
    bids: list[str] = []
    load: list[str] | None = [] if "load" in header else None
    for k, r in enumerate(rows):
        row = k + 1
        arr[k] = _time(ps, header, r, row, c_arr, f_arr)
        fin[k] = _time(ps, header, r, row, c_fin, f_fin)
        if fin[k] < arr[k]:
            raise LogError(f"{ps}: row {row}, column '{c_fin}': the request finishes "
                           f"({fin[k]:g} s) before it arrives ({arr[k]:g} s)")
        if k and arr[k] < arr[k - 1]:
            raise LogError(f"{ps}: row {row}, column '{c_arr}': not sorted: arrival "
                           f"{arr[k]:g} s comes after {arr[k - 1]:g} s (sort by arrival)")
        if start is not None and c_start is not None:
            start[k] = _time(ps, header, r, row, c_start, f_start)
            if start[k] > fin[k]:
                raise LogError(f"{ps}: row {row}, column '{c_fin}': the batch finishes "
                               f"({fin[k]:g} s) before it starts ({start[k]:g} s)")
        b = _cell(ps, header, r, row, "batch_id")
        if not b:
            raise LogError(f"{ps}: row {row}, column 'batch_id': empty")
        bids.append(b)
        if "items" in header:
            items[k] = _items(ps, header, r, row, "items")
        if load is not None:
            load.append(_cell(ps, header, r, row, "load"))
    return RequestLog(ps, arr, fin, bids, items, start, load)


def batches_from_requests(log: RequestLog, max_batch: int | None = None,
                          max_wait_ms: float | None = None) -> BatchLog:
    """Batches derived from a request log (see the module docstring for the dispatch
    estimate when the log has no ``start_s``)."""
    groups: dict[str, list[int]] = {}
    for i, b in enumerate(log.batch_id):
        groups.setdefault(b, []).append(i)
    idx = sorted(groups.values(), key=lambda g: float(log.finish_s[g].max()))
    n = len(idx)
    items = np.empty(n, dtype=np.int64)
    start, end = np.empty(n), np.empty(n)
    load: list[str] = []
    prev_end = -np.inf
    for k, g in enumerate(idx):
        items[k] = int(log.items[g].sum())
        end[k] = float(log.finish_s[g].max())
        if log.start_s is not None:
            s = float(log.start_s[g].max())
        else:
            s = max(float(log.arrival_s[g].max()), prev_end)
            if max_wait_ms is not None and max_batch is not None and items[k] < max_batch:
                s = max(s, float(log.arrival_s[g].min()) + max_wait_ms / 1e3)
            s = min(s, end[k])
        start[k] = s
        prev_end = end[k]
        if log.load is not None:
            load.append(log.load[g[0]])
    order = np.argsort(start, kind="stable")
    return BatchLog(log.path, items[order], start[order], end[order], np.full(n, np.nan),
                    [load[i] for i in order] if load else [])


def write_batch_log(path: str | Path, items: Sequence[int] | np.ndarray,
                    start_s: Sequence[float] | np.ndarray, end_s: Sequence[float] | np.ndarray,
                    deadline_s: Sequence[float] | np.ndarray | None = None,
                    load: Sequence[str] | None = None) -> None:
    """Write a batch log in the format :func:`read_batch_log` reads (times in s)."""
    with Path(path).open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["items", "start_s", "end_s", "deadline_s"] + (["load"] if load else []))
        for k in range(len(items)):
            d = float(deadline_s[k]) if deadline_s is not None else float("nan")
            row = [int(items[k]), f"{float(start_s[k]):.7f}", f"{float(end_s[k]):.7f}",
                   f"{d:.7f}" if math.isfinite(d) else ""]
            if load:
                row.append(load[k])
            w.writerow(row)


def write_request_log(path: str | Path, arrival_s: np.ndarray, finish_s: np.ndarray,
                      batch_id: Sequence[Any], start_s: np.ndarray | None = None,
                      load: Sequence[str] | None = None) -> None:
    """Write a request log in the format :func:`read_request_log` reads (times in s)."""
    with Path(path).open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["arrival_s", "finish_s", "batch_id"] + (["start_s"] if start_s is not None
                                                            else []) + (["load"] if load else []))
        for k in range(len(arrival_s)):
            row: list[Any] = [f"{arrival_s[k]:.7f}", f"{finish_s[k]:.7f}", batch_id[k]]
            if start_s is not None:
                row.append(f"{start_s[k]:.7f}")
            if load:
                row.append(load[k])
            w.writerow(row)


def harness_batch_log(result: Any, path: str | Path, load: str | None = None) -> None:
    """Write a batch log of a run of PeakSim's own harness
    (:class:`simulator.calibration.serving.ServingResult`, measured window only), so that the
    harness is one way to produce the logs ``calibrate-serving`` reads."""
    sel = result.batch_start >= result.warmup_s
    start = result.batch_start[sel]
    write_batch_log(path, result.batch_items[sel], start, start + result.batch_ms[sel] / 1e3,
                    load=[load] * int(sel.sum()) if load else None)


# ----------------------------------------------------------------------------- fit
def overhead_fit(items: np.ndarray, batch_ms: np.ndarray,
                 fitted_ms: Callable[[np.ndarray], np.ndarray],
                 min_count: int = 3) -> tuple[float, float]:
    """(overhead_ms_per_batch, overhead_ms_per_item) >= 0: affine fit, weighted by sqrt(count),
    of median(batch time | items) - fitted forward time(items), over sizes seen at least
    ``min_count`` times (the logic of PeakSim's harness calibration)."""
    xs, ys, ws = [], [], []
    for k in np.unique(items):
        t = batch_ms[items == k]
        if len(t) >= min_count:
            xs.append(float(k))
            ys.append(float(np.median(t)) - float(fitted_ms(np.array(float(k)))))
            ws.append(float(len(t)))
    if not xs:
        return 0.0, 0.0
    x, y, w = np.array(xs), np.array(ys), np.sqrt(np.array(ws))
    if len(x) == 1:
        return max(0.0, y[0]), 0.0
    A = np.stack([np.ones_like(x), x], axis=1) * w[:, None]
    (a, b), *_ = np.linalg.lstsq(A, y * w, rcond=None)
    if b < 0:
        a, b = float(np.average(y, weights=w**2)), 0.0
    if a < 0:
        a, b = 0.0, max(0.0, float(np.sum(x * y * w**2) / np.sum(x * x * w**2)))
    return max(0.0, float(a)), max(0.0, float(b))


def size_ranges(items: np.ndarray, ratio: np.ndarray, min_batches: int = 100,
                limit: int = 1000, seed: int = 0) -> list[dict[str, Any]] | None:
    """Residuals per range of batch sizes: ranges 1, 2, 3-4, 5-8, 9-16, ... (powers of two),
    each merged with the next until it holds ``min_batches`` batches (the last one with the
    one before); the first range starts at 1, the last ends at the largest size seen. None
    when fewer than two ranges remain (one pool of residuals says the same)."""
    top = int(items.max())
    edges = [1, 2]
    while edges[-1] < top:
        edges.append(edges[-1] * 2)
    bounds = [(1, 1)] + [(a + 1, b) for a, b in itertools.pairwise(edges)]
    groups: list[list[int]] = []
    cur: list[int] = []
    for lo, hi in bounds:
        cur = cur or [lo, hi]
        cur[1] = hi
        if int(((items >= cur[0]) & (items <= cur[1])).sum()) >= min_batches:
            groups.append(cur)
            cur = []
    if cur:
        if groups:
            groups[-1][1] = cur[1]
        else:
            groups.append(cur)
    groups[-1][1] = max(groups[-1][1], top)
    if len(groups) < 2:
        return None
    rng = np.random.default_rng(seed)
    out = []
    for lo, hi in groups:
        r = ratio[(items >= lo) & (items <= hi)]
        if len(r) > limit:
            r = rng.choice(r, limit, replace=False)
        out.append({"min_items": lo, "max_items": hi,
                    "residuals": [round(float(x), 4) for x in np.sort(r)]})
    return out


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fit_stack(log: BatchLog, fitted_ms: Callable[[np.ndarray], np.ndarray], *, name: str,
              source: str, variant: str, model_profile: str, server: str = "",
              skip_s: float = 0.0, min_count: int = 3, limit: int = 1000, seed: int = 0,
              timer_overshoot_ms: float | None = None, log_path: str | None = None,
              time_unit: str | None = None, notes: str = "",
              min_range: int = 100) -> dict[str, Any]:
    """A serving-stack profile (as a dict, valid against ServingStackProfile) fitted to the
    batches of ``log`` that start ``skip_s`` or more after its first batch; residuals per
    range of batch sizes too (:func:`size_ranges`; ``min_range`` = 0: none)."""
    sel = log.start_s >= log.start_s.min() + skip_s
    if not sel.any():
        raise LogError(f"{log.path}: no batch starts after the first {skip_s:g} s (--skip-s)")
    ks = log.items[sel].astype(float)
    ms = log.batch_ms[sel]
    oh = overhead_fit(ks, ms, fitted_ms, min_count)
    pred = np.asarray(fitted_ms(ks), dtype=float) + oh[0] + oh[1] * ks
    ratio_all = ms / pred
    ok = ratio_all > 0
    ratio = ratio_all[ok]
    if not len(ratio):
        raise LogError(f"{log.path}: every batch took 0 ms: the times carry no information")
    if len(ratio) > limit:
        ratio = np.random.default_rng(seed).choice(ratio, limit, replace=False)
    by_items = (size_ranges(ks[ok], ratio_all[ok], min_range, limit, seed)
                if min_range > 0 else None)
    sizes, counts, med, fwd, prd = [], [], [], [], []
    for k in np.unique(ks):
        t = ms[ks == k]
        if len(t) >= min_count:
            f = float(fitted_ms(np.array(k)))
            sizes.append(int(k))
            counts.append(len(t))
            med.append(round(float(np.median(t)), 5))
            fwd.append(round(f, 5))
            prd.append(round(f + oh[0] + oh[1] * k, 5))
    errs = [abs(p - m) / m for p, m in zip(prd, med, strict=True) if m > 0]
    over = log.deadline_s[sel]
    late = (log.start_s[sel] - over)[np.isfinite(over)] * 1e3
    if timer_overshoot_ms is None and len(late):
        timer_overshoot_ms = max(0.0, float(np.median(late)))
    p = Path(log_path or log.path)
    return {
        "schema_version": 1,
        "kind": "serving_stack",
        "name": name,
        "provenance": {
            "source": source, "file": str(p), "sha256": sha256_file(p) if p.is_file() else None,
            "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "server": server,
            "model_profile": model_profile,
            "model_profile_sha256": (sha256_file(model_profile)
                                     if Path(model_profile).is_file() else None),
            "variant": variant, "time_unit": time_unit, "notes": notes,
        },
        "overhead_ms_per_batch": round(oh[0], 5),
        "overhead_ms_per_item": round(oh[1], 6),
        "residuals": [round(float(r), 4) for r in np.sort(ratio)],
        "residuals_by_items": by_items,
        "timer_overshoot_ms": (round(timer_overshoot_ms, 5) if timer_overshoot_ms is not None
                               else None),
        "diagnostics": {"batches": int(sel.sum()), "sizes": sizes, "counts": counts,
                        "median_ms": med, "forward_ms": fwd, "predicted_ms": prd,
                        "max_rel_error": round(max(errs), 5) if errs else 0.0,
                        "min_count": min_count},
    }
