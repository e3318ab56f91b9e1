"""Recorder: turns finished chunks of the request table into statistics, series and records.

All statistics count requests that arrive at or after ``simulation.warmup_s`` (the measurement
window); the time series covers the whole run. Work is vectorised per chunk.

SLA rule (per request, with its class's SLO): a request violates the SLA when it completed with
latency > SLO, was dropped, timed out, was shed by the memory cap, or is still in flight at the
end of the run and older than the SLO then (``(end_s - arrival) * 1000 > slo_ms``). The
violation rate divides by the requests that ended plus those in flight past their SLO; younger
in-flight requests count in neither.
"""

from __future__ import annotations

import contextlib
import math
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulator.engine.requests import (
    COMPLETED,
    DROPPED,
    OUTCOME_NAMES,
    PENDING,
    SHED,
    TIMED_OUT,
    ChunkView,
    Outcome,
)
from simulator.metrics import LatencySketch, TimeSeries, binned_counts, worst_window
from simulator.rng import stream
from simulator.scenario import Scenario


class ClassStats:
    """Counters and sketches of one request class (measurement window only)."""

    def __init__(self) -> None:
        self.arrived = 0
        self.completed = 0
        self.dropped = 0
        self.timed_out = 0
        self.shed_by_cap = 0  # shed by the memory cap (simulation.max_in_system)
        self.in_flight = 0
        self.violations = 0  # the module docstring's SLA rule, in-flight violations included
        self.in_flight_violations = 0  # in flight at the end and older than the SLO then
        self.degraded = 0
        self.latency = LatencySketch()
        self.wait = LatencySketch()
        # the worst sliding window (metrics.worst_window's dict), set by Recorder.finish
        self.worst_window: dict[str, Any] | None = None

    @property
    def sla_requests(self) -> int:
        """The violation rate's denominator: ended requests and those in flight past the SLO."""
        return (self.completed + self.dropped + self.timed_out + self.shed_by_cap
                + self.in_flight_violations)

    def sla_summary(self) -> dict[str, Any]:
        """violations, violation_rate (NaN when no request counts), in_flight_violations and
        worst_window (when computed)."""
        n = self.sla_requests
        out: dict[str, Any] = {"violations": self.violations,
                               "violation_rate": self.violations / n if n else math.nan,
                               "in_flight_violations": self.in_flight_violations}
        if self.worst_window is not None:
            out["worst_window"] = dict(self.worst_window)
        return out

    def summary(self, slo_ms: float) -> dict[str, Any]:
        return {
            "slo_ms": slo_ms,
            "requests": {
                "arrived": self.arrived, "completed": self.completed, "dropped": self.dropped,
                "timed_out": self.timed_out, "shed_by_cap": self.shed_by_cap,
                "in_flight": self.in_flight,
            },
            "latency_ms": latency_summary(self.latency),
            "queue_wait_ms": {k: v for k, v in latency_summary(self.wait).items() if k != "max"},
            "sla": self.sla_summary(),
            "degraded": self.degraded,
        }


def latency_summary(s: LatencySketch) -> dict[str, float]:
    """mean, p50, p95, p99, max of a sketch (ms); NaN when empty."""
    return {"mean": s.mean, "p50": s.quantile(0.5), "p95": s.quantile(0.95),
            "p99": s.quantile(0.99), "max": s.max if s.n else math.nan}


class RecordSink:
    """Per-request records: all, a seeded sample, or none; to Parquet (atomic) or memory."""

    def __init__(self, mode: str, seed: int, path: Path | None, class_names: list[str],
                 pool_of_node: np.ndarray, pool_names: list[str],
                 leader_of_slot: np.ndarray | None = None) -> None:
        self.mode = mode
        self.p = float(mode.split(":", 1)[1]) if mode.startswith("sample:") else 1.0
        self.rng = stream(seed, "records")
        self.path = path
        # a unique temporary name in the target folder: two runs into one folder never
        # share it (the fixed "records.parquet.tmp" let one run's file replace the other's)
        self.tmp = (path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
                    if path else None)
        self.frames: list[pd.DataFrame] = []
        self.writer: Any = None
        self.class_names = class_names
        self.pool_of_node = pool_of_node
        self.pool_names = pool_names
        # pools with several model instances per node: the served log names the instance's
        # slot; records name the node (its leader slot, as the fleet's event log does) and
        # the instance (0 .. instances - 1) in a column of its own
        self.leader_of_slot = leader_of_slot
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
        outcome_names = np.array([OUTCOME_NAMES[o] for o in Outcome])
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
        if self.leader_of_slot is not None:
            lead = np.where(node >= 0, self.leader_of_slot[np.maximum(node, 0)], -1)
            df["node"] = lead
            df.insert(df.columns.get_loc("node") + 1, "instance",
                      np.where(node >= 0, node - lead, -1))
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

    def abort(self) -> None:
        """Stop without a result: close and remove the temporary file (run interrupted)."""
        if self.writer is not None:
            with contextlib.suppress(Exception):  # the file is removed anyway
                self.writer.close()
            self.writer = None
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)

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
    """Collects statistics from finished chunks of requests.

    ``end_s``: the run's end (s), when requests still in flight are judged against their SLO;
    ``series`` must count the scenario's classes (``TimeSeries(..., class_names)``). Call
    :meth:`finish` after the last chunk.
    """

    def __init__(self, sc: Scenario, series: TimeSeries, sink: RecordSink, end_s: float) -> None:
        self.warmup_s = sc.simulation.warmup_s
        self.end_s = float(end_s)
        self.series = series
        self.sink = sink
        self.slo_ms = np.asarray(
            [c.slo_ms or sc.sla.slo_ms for c in sc.workload.classes], dtype=float
        )
        self.class_names = [c.name for c in sc.workload.classes]
        if series.class_names != self.class_names:
            raise ValueError("the time series must count the scenario's request classes")
        self.classes = [ClassStats() for _ in sc.workload.classes]
        self.total = ClassStats()
        self.total_arrivals_all = 0  # including warm-up
        # per class, by arrival interval, whole run: requests in the violation rate's
        # denominator (the violations themselves are the series' class_violations)
        self.counted_by_interval = np.zeros((len(self.classes), series.n), dtype=np.int64)
        iv = series.interval_s
        # worst window: whole intervals, the first one starting at or after the warm-up
        self.window_intervals = max(1, round(sc.sla.worst_window_s / iv))
        self.first_window_interval = max(0, math.ceil(self.warmup_s / iv - 1e-9))

    def on_chunk(self, v: ChunkView) -> None:
        """Account for one finished chunk (called by the request table)."""
        s = self.series
        self.total_arrivals_all += len(v.t)
        b = s.bin_of(v.t)  # arrival intervals, computed once for every by-arrival count
        s.count_bins("arrivals", b)
        done = v.outcome == COMPLETED
        s.count("completions", v.finish[done])
        # the series' dropped: rejected, lost with a node, or shed by the memory cap
        s.count_bins("dropped", b[(v.outcome == DROPPED) | (v.outcome == SHED)])
        s.count("timed_out", v.finish[v.outcome == TIMED_OUT])
        lat_all = (v.finish[done] - v.t[done]) * 1000.0
        s.latency_by_arrival(v.t[done], lat_all)
        self.sink.add(v)

        # the SLA rule (module docstring), whole run: series and worst-window counts
        k = len(self.classes)
        cls_all = v.cls.astype(np.int64)
        slo = self.slo_ms[cls_all]
        pending = v.outcome == PENDING
        late = pending & ((self.end_s - v.t) * 1000.0 > slo)  # in flight past the SLO
        over = np.zeros(len(v.t), dtype=bool)
        over[done] = lat_all > slo[done]
        viol = (over | (v.outcome == DROPPED) | (v.outcome == TIMED_OUT) | (v.outcome == SHED)
                | late)
        s.count_classes(b, cls_all, viol)
        counted = ~pending | late
        if counted.any():
            lo, c = binned_counts(b[counted], cls_all[counted], k)
            self.counted_by_interval[:, lo:lo + c.shape[1]] += c

        m = v.t >= self.warmup_s
        if not m.any():
            return
        cls = cls_all[m]
        out = v.outcome[m]
        lat = (v.finish[m] - v.t[m]) * 1000.0
        wait = (v.start[m] - v.t[m]) * 1000.0
        counts = np.zeros((len(Outcome), k), dtype=np.int64)
        np.add.at(counts, (out.astype(np.int64), cls), 1)
        n_viol = np.bincount(cls[viol[m]], minlength=k)
        n_late = np.bincount(cls[late[m]], minlength=k)
        deg = v.degraded[m].astype(bool)
        for i, st in enumerate(self.classes):
            sel = cls == i
            st.degraded += int((deg & sel).sum())
            self._add(st, counts[:, i], int(n_viol[i]), int(n_late[i]),
                      lat[sel & (out == COMPLETED)], wait[sel & (out == COMPLETED)])
        self.total.degraded += int(deg.sum())
        self._add(self.total, counts.sum(axis=1), int(n_viol.sum()), int(n_late.sum()),
                  lat[out == COMPLETED], wait[out == COMPLETED])

    def finish(self) -> None:
        """After the last chunk: the worst window of every class and of all requests."""
        iv = self.series.interval_s
        viol = self.series.class_violations
        args = (self.first_window_interval, self.window_intervals, iv)
        for i, st in enumerate(self.classes):
            st.worst_window = worst_window(viol[i], self.counted_by_interval[i], *args)
        self.total.worst_window = worst_window(viol.sum(axis=0),
                                               self.counted_by_interval.sum(axis=0), *args)

    @staticmethod
    def _add(st: ClassStats, c: np.ndarray, viol: int, late: int, lat: np.ndarray,
             wait: np.ndarray) -> None:
        st.arrived += int(c.sum())
        st.completed += int(c[COMPLETED])
        st.dropped += int(c[DROPPED])
        st.timed_out += int(c[TIMED_OUT])
        st.shed_by_cap += int(c[SHED])
        st.in_flight += int(c[PENDING])
        st.violations += viol
        st.in_flight_violations += late
        st.latency.add(lat)
        st.wait.add(wait)
