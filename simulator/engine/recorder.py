"""Recorder: turns finished chunks of the request table into statistics, series and records.

All statistics count requests that arrive at or after ``simulation.warmup_s`` (the measurement
window); the time series covers the whole run. Work is vectorised per chunk.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulator.engine.requests import COMPLETED, DROPPED, PENDING, TIMED_OUT, ChunkView
from simulator.metrics import LatencySketch, TimeSeries
from simulator.rng import stream
from simulator.scenario import Scenario


class ClassStats:
    """Counters and sketches of one request class (measurement window only)."""

    def __init__(self) -> None:
        self.arrived = 0
        self.completed = 0
        self.dropped = 0
        self.timed_out = 0
        self.in_flight = 0
        self.violations = 0
        self.degraded = 0
        self.latency = LatencySketch()
        self.wait = LatencySketch()

    def summary(self, slo_ms: float) -> dict[str, Any]:
        ended = self.completed + self.dropped + self.timed_out
        return {
            "slo_ms": slo_ms,
            "requests": {
                "arrived": self.arrived, "completed": self.completed, "dropped": self.dropped,
                "timed_out": self.timed_out, "in_flight": self.in_flight,
            },
            "latency_ms": latency_summary(self.latency),
            "queue_wait_ms": {k: v for k, v in latency_summary(self.wait).items() if k != "max"},
            "sla": {"violations": self.violations,
                    "violation_rate": self.violations / ended if ended else math.nan},
            "degraded": self.degraded,
        }


def latency_summary(s: LatencySketch) -> dict[str, float]:
    """mean, p50, p95, p99, max of a sketch (ms); NaN when empty."""
    return {"mean": s.mean, "p50": s.quantile(0.5), "p95": s.quantile(0.95),
            "p99": s.quantile(0.99), "max": s.max if s.n else math.nan}


class RecordSink:
    """Per-request records: all, a seeded sample, or none; to Parquet (atomic) or memory."""

    def __init__(self, mode: str, seed: int, path: Path | None, class_names: list[str],
                 pool_of_node: np.ndarray, pool_names: list[str]) -> None:
        self.mode = mode
        self.p = float(mode.split(":", 1)[1]) if mode.startswith("sample:") else 1.0
        self.rng = stream(seed, "records")
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp") if path else None
        self.frames: list[pd.DataFrame] = []
        self.writer: Any = None
        self.class_names = class_names
        self.pool_of_node = pool_of_node
        self.pool_names = pool_names
        self.rows = 0

    def add(self, v: ChunkView) -> None:
        if self.mode == "none" or len(v.t) == 0:
            return
        sel = np.arange(len(v.t))
        if self.p < 1.0:
            sel = sel[self.rng.random(len(v.t)) < self.p]
        if len(sel) == 0:
            return
        node = v.node[sel]
        pool = np.where(node >= 0, self.pool_of_node[np.maximum(node, 0)], -1)
        outcome_names = np.array(["in_flight", "completed", "dropped", "timed_out"])
        df = pd.DataFrame({
            "id": v.first_id + sel,
            "arrival_s": v.t[sel],
            "class": pd.Categorical.from_codes(v.cls[sel].astype(np.int64),
                                               categories=self.class_names),
            "items": v.size[sel],
            "start_s": v.start[sel],
            "finish_s": v.finish[sel],
            "node": node,
            "pool": [self.pool_names[p] if p >= 0 else "" for p in pool.tolist()],
            "outcome": outcome_names[v.outcome[sel]],
            "latency_ms": (v.finish[sel] - v.t[sel]) * 1000.0,
            "queue_wait_ms": (v.start[sel] - v.t[sel]) * 1000.0,
        })
        self.rows += len(df)
        if self.path is None:
            self.frames.append(df)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df, preserve_index=False)
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(str(self.tmp), table.schema)
        self.writer.write_table(table)

    def close(self) -> pd.DataFrame | None:
        """Finish: rename the Parquet file into place, or return the in-memory frame."""
        if self.writer is not None:
            self.writer.close()
            assert self.tmp is not None and self.path is not None
            os.replace(self.tmp, self.path)
            return None
        if self.frames:
            return pd.concat(self.frames, ignore_index=True)
        return None


class Recorder:
    """Collects statistics from finished chunks of requests."""

    def __init__(self, sc: Scenario, series: TimeSeries, sink: RecordSink) -> None:
        self.warmup_s = sc.simulation.warmup_s
        self.series = series
        self.sink = sink
        self.slo_ms = np.asarray(
            [c.slo_ms or sc.sla.slo_ms for c in sc.workload.classes], dtype=float
        )
        self.class_names = [c.name for c in sc.workload.classes]
        self.classes = [ClassStats() for _ in sc.workload.classes]
        self.total = ClassStats()
        self.total_arrivals_all = 0  # including warm-up

    def on_chunk(self, v: ChunkView) -> None:
        """Account for one finished chunk (called by the request table)."""
        s = self.series
        self.total_arrivals_all += len(v.t)
        s.count("arrivals", v.t)
        done = v.outcome == COMPLETED
        s.count("completions", v.finish[done])
        s.count("dropped", v.t[v.outcome == DROPPED])
        s.count("timed_out", v.finish[v.outcome == TIMED_OUT])
        lat_all = (v.finish[done] - v.t[done]) * 1000.0
        s.latency_by_arrival(v.t[done], lat_all)
        self.sink.add(v)

        m = v.t >= self.warmup_s
        if not m.any():
            return
        cls = v.cls[m].astype(np.int64)
        out = v.outcome[m]
        lat = (v.finish[m] - v.t[m]) * 1000.0
        wait = (v.start[m] - v.t[m]) * 1000.0
        k = len(self.classes)
        counts = np.zeros((4, k), dtype=np.int64)
        np.add.at(counts, (out.astype(np.int64), cls), 1)
        viol_lat = (out == COMPLETED) & (lat > self.slo_ms[cls])
        viol = np.bincount(cls[viol_lat], minlength=k) + counts[DROPPED] + counts[TIMED_OUT]
        deg = v.degraded[m].astype(bool)
        for i, st in enumerate(self.classes):
            sel = cls == i
            st.degraded += int((deg & sel).sum())
            self._add(st, counts[:, i], int(viol[i]), lat[sel & (out == COMPLETED)],
                      wait[sel & (out == COMPLETED)])
        self.total.degraded += int(deg.sum())
        self._add(self.total, counts.sum(axis=1), int(viol.sum()), lat[out == COMPLETED],
                  wait[out == COMPLETED])

    @staticmethod
    def _add(st: ClassStats, c: np.ndarray, viol: int, lat: np.ndarray, wait: np.ndarray) -> None:
        st.arrived += int(c.sum())
        st.completed += int(c[COMPLETED])
        st.dropped += int(c[DROPPED])
        st.timed_out += int(c[TIMED_OUT])
        st.in_flight += int(c[PENDING])
        st.violations += viol
        st.latency.add(lat)
        st.wait.add(wait)
