"""check_invariants: verify a finished run against PeakSim's invariants.

Needs per-request records in memory (``run(..., records="all")``). Each check raises
:class:`InvariantError` naming the invariant and the first offending request.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

EPS = 1e-9


class InvariantError(AssertionError):
    """A run broke one of the documented invariants."""


def check_invariants(result: Any, *, max_batch: int | None = None) -> None:
    """Conservation, causality, capacity (one batch per node, batch size), accounting."""
    rec: pd.DataFrame | None = result.records
    s = result.summary
    if rec is None:
        raise InvariantError("check_invariants needs records='all'")
    check_conservation(s, rec)
    check_causality(rec)
    check_capacity(rec, max_batch or int(result.scenario.policy.batching.max_batch))


def check_conservation(s: dict[str, Any], rec: pd.DataFrame) -> None:
    """arrived = completed + dropped + timed_out + in_flight, per class and in total."""
    r = s["requests"]
    if r["arrived"] != r["completed"] + r["dropped"] + r["timed_out"] + r["in_flight"]:
        raise InvariantError(f"conservation broken in summary: {r}")
    if len(rec) != r["arrived_incl_warmup"]:
        raise InvariantError(f"{len(rec)} records but {r['arrived_incl_warmup']} arrivals")
    if rec["id"].duplicated().any():
        raise InvariantError("a request id appears twice: a request ended more than once")
    warm = rec[rec["arrival_s"] >= s["warmup_s"]]
    counts = warm["outcome"].value_counts()
    for k in ("completed", "dropped", "timed_out", "in_flight"):
        if int(counts.get(k, 0)) != r[k]:
            raise InvariantError(f"{k}: summary {r[k]} but records {int(counts.get(k, 0))}")
    for name, cs in s.get("classes", {}).items():
        cr = cs["requests"]
        if cr["arrived"] != cr["completed"] + cr["dropped"] + cr["timed_out"] + cr["in_flight"]:
            raise InvariantError(f"conservation broken for class {name}: {cr}")


def check_causality(rec: pd.DataFrame) -> None:
    """arrival <= start <= finish for served requests; ended requests end after arrival."""
    done = rec[rec["outcome"] == "completed"]
    bad = done[(done["start_s"] < done["arrival_s"] - EPS) |
               (done["finish_s"] < done["start_s"] - EPS)]
    if len(bad):
        raise InvariantError(f"causality broken: {bad.iloc[0].to_dict()}")
    ended = rec[rec["outcome"].isin(["dropped", "timed_out"])]
    bad = ended[ended["finish_s"] < ended["arrival_s"] - EPS]
    if len(bad):
        raise InvariantError(f"a request left before it arrived: {bad.iloc[0].to_dict()}")
    started = rec[rec["start_s"].notna()]
    bad = started[started["start_s"] < started["arrival_s"] - EPS]
    if len(bad):
        raise InvariantError(f"a request started before it arrived: {bad.iloc[0].to_dict()}")


def check_capacity(rec: pd.DataFrame, max_batch: int) -> None:
    """A node serves one batch at a time; no batch exceeds max_batch requests."""
    served = rec[rec["start_s"].notna() & (rec["node"] >= 0)]
    if served.empty:
        return
    batches = served.groupby(["node", "start_s"], sort=True).agg(
        size=("id", "size"), finish=("finish_s", "max"))
    if (batches["size"] > max_batch).any():
        b = batches[batches["size"] > max_batch].iloc[0]
        raise InvariantError(f"batch of {int(b['size'])} > max_batch {max_batch}")
    for node, g in batches.groupby(level="node"):
        starts = g.index.get_level_values("start_s").to_numpy()
        fin = g["finish"].to_numpy()
        prev_fin = fin[:-1]
        if np.any(starts[1:] < np.nan_to_num(prev_fin, nan=np.inf) - EPS):
            raise InvariantError(f"node {node} started a batch before finishing the previous")
