"""Per-request records of a cascade: one row per origin request, end to end.

Columns: ``id`` (the origin id, in stage-1 arrival order), ``arrival_s`` (at stage 1),
``class``, ``candidates`` (what the last stage returned; 0 when the request did not complete),
``finish_s`` (the answer reached the caller, or the request was lost; NaN in flight),
``outcome`` (``completed``; lost at a stage: ``timed_out`` or ``shed_by_cap`` as a
single-stage run names them, ``dropped`` for any other loss; ``in_flight`` at the end),
``ended_at`` (where a lost request ended, ``"<stage>: <reason>"``; empty otherwise),
``latency_ms`` (finish - arrival) and ``quality_loss`` (of a completed request). Every request
of the run, the warm-up's too, as a single-stage run's records; ``sample:P`` keeps each with
probability P (its own random stream, ``records``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulator.cascade.rows import Rows

OUTCOMES = ("completed", "dropped", "timed_out", "shed_by_cap", "in_flight")


class EndToEndRecords:
    """Collects the records of ended requests (see the module docstring); ``keep``: the share
    kept (1 = all), ``rng``: the stream that draws which."""

    def __init__(self, keep: float, rng: np.random.Generator) -> None:
        self.keep = keep
        self.rng = rng
        self._parts: list[tuple[Rows, int, str, np.ndarray]] = []
        self.rows = 0

    def add(self, rows: Rows, outcome: str, where: str, finish_s: np.ndarray) -> None:
        """Requests ``rows`` ended (``outcome`` one of :data:`OUTCOMES`) at ``finish_s``."""
        if not len(rows):
            return
        if self.keep < 1.0:
            m = self.rng.random(len(rows)) < self.keep
            if not m.any():
                return
            rows, finish_s = rows.take(m), np.asarray(finish_s)[m]
        self._parts.append((rows, OUTCOMES.index(outcome), where, np.asarray(finish_s, float)))
        self.rows += len(rows)

    def frame(self, class_names: list[str]) -> pd.DataFrame:
        """The records, by id."""
        if not self._parts:
            return pd.DataFrame({c: [] for c in ("id", "arrival_s", "class", "candidates",
                                                 "finish_s", "outcome", "ended_at",
                                                 "latency_ms", "quality_loss")})
        r = Rows.concat([p[0] for p in self._parts])
        code = np.concatenate([np.full(len(p[0]), p[1], dtype=np.int8) for p in self._parts])
        where = np.concatenate([np.full(len(p[0]), p[2], dtype=object) for p in self._parts])
        fin = np.concatenate([p[3] for p in self._parts])
        done = code == 0
        df = pd.DataFrame({
            "id": r.origin.astype(np.int64),
            "arrival_s": r.t0,
            "class": pd.Categorical.from_codes(r.cls.astype(np.int64), categories=class_names),
            "candidates": np.where(done, r.cand, 0).astype(np.int64),
            "finish_s": fin,
            "outcome": np.asarray(OUTCOMES, dtype=object)[code],
            "ended_at": where,
            "latency_ms": (fin - r.t0) * 1e3,
            "quality_loss": np.where(done, r.qloss, 0.0),
        })
        return df.sort_values("id", kind="stable").reset_index(drop=True)
