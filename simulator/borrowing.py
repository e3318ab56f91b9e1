"""Borrowed training GPUs: the pure side of a pool with ``purchase = "borrowed"``.

Alibaba's Prism (NSDI 2025) serves seasonal promotions with GPUs loaned from its training
clusters. A borrowed pool's node count is capped, over time, by what the training cluster
lends. This module holds everything about that which needs no simulation (no SimPy here; the
fleet wires it in):

* :class:`BorrowCfg`: the pool's ``borrow`` table (a lending calendar or a ``time_s,nodes``
  trace, the borrow delay, the reclaim notice, the value of lost training time, the planning
  lead and return times).
* :class:`CapacitySchedule`: lendable nodes over simulated time (s since the run's beginning),
  a step function; built by :func:`schedule_from_calendar`, :func:`schedule_from_trace`,
  :func:`capacity_schedule` (either, from a ``BorrowCfg``) or
  :func:`capacity_from_alibaba_trace` (the Alibaba DLRM 2025 trace, read at run time).
* :func:`borrow_cost_usd`: what the loan costs the training cluster.
* :func:`borrow_windows_for_peaks`: when borrowed nodes are wanted, from the scheduled peaks.

docs/borrowing.md describes the model, the defaults and their sources.
"""

from __future__ import annotations

import bisect
import csv
import itertools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ConfigDict, Field, field_validator, model_validator

from simulator.calendar_time import (
    FORMATS,
    calendar_text,
    peak_active_s,
    resolve_at,
    to_run_s,
    window,
)
from simulator.config_base import MAX_POOL_NODES, MAX_TIME, DelayCfg, NonNegFloat, _Model

#: trace columns of :func:`schedule_from_trace`
TRACE_COLUMNS = ("time_s", "nodes")
#: AWS Capacity Blocks list price of one H100 GPU-hour (p5.48xlarge USD 39.33/h / 8 GPUs),
#: /work/shared/docs/reference-figures.md [V]
H100_CAPACITY_BLOCK_USD_PER_GPU_HOUR = 4.92


# ----------------------------------------------------------------------------- config
def _time_value(v: Any) -> Any:
    """A window bound: seconds since the run's beginning (a number) or a calendar time."""
    if isinstance(v, bool):
        raise ValueError(f"expected seconds since the run's beginning or a calendar time "
                         f"({FORMATS}); got {v!r}")
    if isinstance(v, int | float):
        x = float(v)
        if not math.isfinite(x) or x < 0 or x > MAX_TIME:
            raise ValueError(f"seconds since the run's beginning must be finite, >= 0 and "
                             f"<= {MAX_TIME:g}; got {v!r}")
        return x
    return calendar_text(v)


class BorrowWindow(_Model):
    """``{from = ..., to = ..., nodes = N}``: the training cluster lends ``nodes`` nodes in
    ``[from, to)``. ``from``/``to``: calendar times (as ``simulation.start``) or seconds since
    the run's beginning, both of the same kind."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, serialize_by_alias=True)

    from_: float | str = Field(alias="from", description="start of the loan: a calendar time "
                               f"({FORMATS}) or s since the run's beginning")
    to: float | str = Field(description="end of the loan (exclusive), same kind as `from`; a "
                            "year-less calendar `to` before `from` falls in the next year")
    nodes: int = Field(ge=0, le=MAX_POOL_NODES, description="nodes lendable in the window")

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _time(cls, v: Any) -> Any:
        return _time_value(v)

    @model_validator(mode="after")
    def _order(self) -> BorrowWindow:
        a, b = self.from_, self.to
        if isinstance(a, str) != isinstance(b, str):
            raise ValueError(f"give 'from' ({a!r}) and 'to' ({b!r}) both as calendar times or "
                             "both as seconds since the run's beginning")
        if isinstance(a, str):
            window(a, b)  # raises when `to` is not after `from` (or years are mixed)
        elif not b > a:
            raise ValueError(f"'to' ({b:g} s) must be after 'from' ({a:g} s)")
        return self

    def length_s(self) -> float:
        """The window's length, s."""
        if isinstance(self.from_, str):
            s, e = window(self.from_, str(self.to))
            return (e - s).total_seconds()
        return float(self.to) - float(self.from_)


class BorrowCfg(_Model):
    """A borrowed pool's loan terms: how many nodes the training cluster lends over time
    (``calendar`` or ``trace``, exactly one), how long a borrow takes, the reclaim notice and
    what lost training time is worth."""

    calendar: list[BorrowWindow] | None = Field(
        None, min_length=1, description="lending windows {from, to, nodes}; must not overlap "
        "(adjacent windows give a step profile)")
    trace: str | None = Field(
        None, min_length=1, description="CSV with columns time_s,nodes: nodes lendable from "
        "time_s (s since the run's beginning) on; 0 before the first row")
    gpus_per_node: int = Field(
        8, ge=1, le=64, description="GPUs per borrowed node (training nodes: 8, e.g. "
        "p5.48xlarge / p4d.24xlarge)")
    borrow_delay: DelayCfg = Field(
        default_factory=lambda: DelayCfg(distribution="lognormal", mean_s=120.0, cv=0.5),
        description="request -> node handed over: pre-empt the training job, checkpoint "
        "(30-120 s), release and schedule the pod (Alibaba DLRM p90 59 s); the model load "
        "follows as for any node")
    reclaim_notice_s: NonNegFloat = Field(
        120.0, le=MAX_TIME, description="notice before training takes a node back, s "
        "(assumed as AWS's 2-minute spot notice)")
    training_value_usd_per_gpu_hour: NonNegFloat = Field(
        H100_CAPACITY_BLOCK_USD_PER_GPU_HOUR, le=1e6,
        description="value of one lost training GPU-hour, USD (AWS Capacity Blocks H100)")
    checkpoint_overhead_s: NonNegFloat = Field(
        120.0, le=MAX_TIME, description="training GPU time lost per borrow per GPU, s "
        "(checkpoint 30-120 s; top of the range)")
    lead_s: NonNegFloat = Field(
        600.0, le=MAX_TIME, description="borrow this long before a scheduled peak's ramp, s")
    return_after_s: NonNegFloat = Field(
        600.0, le=MAX_TIME, description="give the nodes back this long after a peak has "
        "decayed, s (Ray Serve downscale delay)")

    @model_validator(mode="after")
    def _one_source(self) -> BorrowCfg:
        if (self.calendar is None) == (self.trace is None):
            raise ValueError("give exactly one of 'calendar' (lending windows) or 'trace' "
                             "(a time_s,nodes CSV)")
        return self


# ----------------------------------------------------------------------------- schedule
@dataclass(frozen=True, slots=True)
class CapacitySchedule:
    """Lendable nodes over simulated time: a step function, ``steps[i] = (t_s, nodes)`` from
    ``t_s`` on (until the next step). The first step is at ``t = 0``; times strictly
    increase; consecutive values differ. Before 0, :meth:`at` gives the value at 0."""

    steps: tuple[tuple[float, int], ...]

    def __post_init__(self) -> None:
        if not self.steps or self.steps[0][0] != 0.0:
            raise ValueError("a capacity schedule starts at t = 0")
        for (t0, _), (t1, _) in itertools.pairwise(self.steps):
            if not t1 > t0:
                raise ValueError("capacity schedule times must increase")
        for t, n in self.steps:
            if not math.isfinite(t) or n < 0 or int(n) != n:
                raise ValueError(f"bad capacity step ({t}, {n})")

    @classmethod
    def from_points(cls, points: Sequence[tuple[float, int]]) -> CapacitySchedule:
        """A schedule from ``(t_s, nodes)`` points in increasing time (nodes from ``t_s`` on):
        points before 0 clamp to 0 (the last of them holds at 0), 0 nodes before the first
        point, repeats of the same value dropped."""
        at0 = 0
        later: list[tuple[float, int]] = []
        for t, n in points:
            if t <= 0.0:
                at0 = int(n)
            else:
                later.append((float(t), int(n)))
        steps = [(0.0, at0)]
        for t, n in later:
            if n != steps[-1][1]:
                steps.append((t, n))
        return cls(tuple(steps))

    def at(self, t: float) -> int:
        """Nodes lendable at ``t`` (s since the run's beginning)."""
        i = bisect.bisect_right(self._times(), t) - 1
        return self.steps[max(i, 0)][1]

    def changes(self) -> list[tuple[float, int]]:
        """``(t_s, nodes)`` of every change, the value at ``t = 0`` first."""
        return list(self.steps)

    def max(self) -> int:
        """The most nodes ever lendable."""
        return max(n for _, n in self.steps)

    def _times(self) -> list[float]:
        return [t for t, _ in self.steps]


def schedule_from_calendar(cfg: BorrowCfg | Sequence[BorrowWindow], sim_start: str | None,
                           warmup_s: float = 0.0) -> CapacitySchedule:
    """The lending calendar as a schedule, in s since the run's beginning (``sim_start`` less
    ``warmup_s``; ``sim_start`` = ``simulation.start``, None outside the calendar form, when
    windows must be in seconds).

    A year-less ``from`` takes the year nearest to ``sim_start`` (as a peak's ``at``); ``to`` is
    ``from`` plus the window's length. Windows before the run clamp to 0. Overlapping windows
    are refused (ValueError naming both): write adjacent windows for a step profile.
    """
    windows = cfg.calendar if isinstance(cfg, BorrowCfg) else list(cfg)
    if windows is None:
        raise ValueError("this borrow table has no 'calendar' (it gives a 'trace')")
    spans: list[tuple[float, float, int, int]] = []
    for k, w in enumerate(windows):
        if isinstance(w.from_, str):
            if sim_start is None:
                raise ValueError(f"borrow.calendar[{k}]: calendar times ('{w.from_}') need "
                                 "simulation.start (the calendar form); else give seconds")
            begin = to_run_s(resolve_at(w.from_, sim_start, f"borrow.calendar[{k}].from"),
                             sim_start, warmup_s)
        else:
            begin = float(w.from_)
        spans.append((begin, begin + w.length_s(), w.nodes, k))
    spans.sort()
    for a, b in itertools.pairwise(spans):
        if b[0] < a[1]:
            raise ValueError(f"borrow.calendar[{a[3]}] and borrow.calendar[{b[3]}] overlap "
                             f"(t = {a[0]:g}..{a[1]:g} s and {b[0]:g}..{b[1]:g} s): windows "
                             "must not overlap; write adjacent windows for a step profile")
    points: list[tuple[float, int]] = []
    for begin, end, nodes, _ in spans:
        if points and points[-1][0] == begin:
            points[-1] = (begin, nodes)  # an adjacent window starts where the last ended
        else:
            points.append((begin, nodes))
        points.append((end, 0))
    return CapacitySchedule.from_points(points)


def schedule_from_trace(path: str | os.PathLike[str]) -> CapacitySchedule:
    """A ``time_s,nodes`` CSV as a schedule: ``nodes`` (a whole number >= 0) lendable from
    ``time_s`` (s since the run's beginning, finite, <= 1e9, strictly increasing) on; 0 before
    the first row; rows before 0 clamp to 0. Exactly these two columns. Raises ValueError
    naming the file, the row (its line in the file) and the column."""
    name = str(path)
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise ValueError(f"borrow trace {name}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ValueError(f"borrow trace {name}: not a text CSV") from None
    if not rows:
        raise ValueError(f"borrow trace {name}: empty; expected a header time_s,nodes")
    header = [c.strip() for c in rows[0]]
    if header != list(TRACE_COLUMNS):
        raise ValueError(f"borrow trace {name}: row 1 (header) is {','.join(header)!r}; "
                         "expected exactly the columns time_s,nodes")
    points: list[tuple[float, int]] = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue  # a blank line
        if len(row) != len(TRACE_COLUMNS):
            raise ValueError(f"borrow trace {name}: row {line} has {len(row)} fields; "
                             "expected 2 (time_s,nodes)")
        t = _number(name, line, "time_s", row[0])
        n = _number(name, line, "nodes", row[1])
        if abs(t) > MAX_TIME:
            raise ValueError(f"borrow trace {name}: row {line}, column time_s: {t:g} is beyond "
                             f"+-{MAX_TIME:g} s")
        if n < 0 or n != int(n) or n > MAX_POOL_NODES:
            raise ValueError(f"borrow trace {name}: row {line}, column nodes: {row[1].strip()!r}"
                             f" is not a whole number in 0..{MAX_POOL_NODES}")
        if points and not t > points[-1][0]:
            raise ValueError(f"borrow trace {name}: row {line}, column time_s: {t:g} is not "
                             f"after the previous row's {points[-1][0]:g}; times must increase")
        points.append((t, int(n)))
    if not points:
        raise ValueError(f"borrow trace {name}: no data rows")
    return CapacitySchedule.from_points(points)


def _number(name: str, line: int, column: str, text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise ValueError(f"borrow trace {name}: row {line}, column {column}: {text.strip()!r} is "
                         "not a number") from None
    if not math.isfinite(x):
        raise ValueError(f"borrow trace {name}: row {line}, column {column}: {text.strip()!r} "
                         "is not finite (NaN and infinities are refused)")
    return x


def capacity_schedule(cfg: BorrowCfg, *, sim_start: str | None = None, warmup_s: float = 0.0,
                      base_dir: str | os.PathLike[str] | None = None) -> CapacitySchedule:
    """The schedule of a borrow table: its calendar, or its trace (a relative path taken from
    ``base_dir``, the scenario file's folder)."""
    if cfg.calendar is not None:
        return schedule_from_calendar(cfg, sim_start, warmup_s)
    assert cfg.trace is not None
    path = Path(cfg.trace)
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    return schedule_from_trace(path)


# ----------------------------------------------------------------------------- cost
def borrow_cost_usd(borrowed_node_seconds: float, borrows: int, gpus_per_node: int,
                    cfg: BorrowCfg) -> dict[str, float]:
    """What the loan costs the training cluster, with its parts.

    lost GPU-hours = borrowed_node_seconds x gpus_per_node / 3600 (time lent)
                   + checkpoint_overhead_s x gpus_per_node x borrows / 3600 (per borrow);
    cost = lost GPU-hours x training_value_usd_per_gpu_hour. ``borrows`` counts nodes
    borrowed (a borrow of k nodes at once is k borrows).
    """
    if not (math.isfinite(borrowed_node_seconds) and borrowed_node_seconds >= 0):
        raise ValueError(f"borrowed_node_seconds must be finite and >= 0; got "
                         f"{borrowed_node_seconds!r}")
    if isinstance(borrows, bool) or int(borrows) != borrows or borrows < 0:
        raise ValueError(f"borrows must be a whole number >= 0; got {borrows!r}")
    if isinstance(gpus_per_node, bool) or int(gpus_per_node) != gpus_per_node or gpus_per_node < 1:
        raise ValueError(f"gpus_per_node must be a whole number >= 1; got {gpus_per_node!r}")
    lent_h = borrowed_node_seconds * gpus_per_node / 3600.0
    checkpoint_h = cfg.checkpoint_overhead_s * gpus_per_node * borrows / 3600.0
    value = cfg.training_value_usd_per_gpu_hour
    return {
        "lent_gpu_hours": lent_h,
        "checkpoint_gpu_hours": checkpoint_h,
        "lost_training_gpu_hours": lent_h + checkpoint_h,
        "usd_per_gpu_hour": value,
        "lent_usd": lent_h * value,
        "checkpoint_usd": checkpoint_h * value,
        "total_usd": (lent_h + checkpoint_h) * value,
    }


# ----------------------------------------------------------------------------- planning
def borrow_windows_for_peaks(peaks: Sequence[Any], lead_s: float, return_after_s: float, *,
                             starts_s: Sequence[float] | None = None
                             ) -> list[tuple[float, float]]:
    """When borrowed nodes are wanted: for each peak (a ``PeakCfg``: ramp_s, hold_s, decay_s,
    decay), from ``lead_s`` before its ramp starts until ``return_after_s`` after it has
    decayed (linear: after decay_s; exponential: after 3 time constants, as
    :func:`simulator.calendar_time.peak_active_s`).

    ``starts_s``: each peak's ramp start, s since the run's beginning (default: the peaks'
    ``start_s``; ``Scenario.peak_starts_s()`` resolves calendar ``at``). Returns ``[(from_s,
    to_s), ...]`` sorted, overlapping or touching windows merged, clamped to ``t >= 0``;
    windows that end by ``t = 0`` are dropped.
    """
    for label, v in (("lead_s", lead_s), ("return_after_s", return_after_s)):
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{label} must be finite and >= 0; got {v!r}")
    if starts_s is None:
        starts = [p.start_s for p in peaks]
        if any(s is None for s in starts):
            raise ValueError("calendar peaks ('at') need starts_s (Scenario.peak_starts_s())")
    else:
        starts = [float(s) for s in starts_s]
        if len(starts) != len(peaks):
            raise ValueError(f"one start per peak: {len(peaks)} peaks, {len(starts)} starts")
    spans = sorted(
        (s - lead_s, s + peak_active_s(p.ramp_s, p.hold_s, p.decay_s, p.decay) + return_after_s)
        for p, s in zip(peaks, starts, strict=True)
    )
    out: list[tuple[float, float]] = []
    for a, b in spans:
        if b <= 0.0:
            continue
        a = max(a, 0.0)
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def wanted_at(windows: Sequence[tuple[float, float]], t: float) -> bool:
    """Whether ``t`` lies in one of ``windows`` (``[from_s, to_s)``)."""
    return any(a <= t < b for a, b in windows)


# ----------------------------------------------------------------------------- Alibaba trace
#: columns :func:`capacity_from_alibaba_trace` reads
ALIBABA_COLUMNS = ("role", "gpu_request", "creation_time", "scheduled_time", "deletion_time")


def alibaba_gpu_demand(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, float]:
    """GPUs held by the trace's GPU-node (HN) instances over trace time.

    An HN instance holds ``gpu_request`` GPUs from ``scheduled_time`` (NaN: before the trace
    began, so from 0) to ``deletion_time`` (NaN: after the trace ended). Returns ``(times,
    gpus, end_s)``: ``gpus[i]`` held from ``times[i]`` on (``times[0] = 0``, increasing) and
    the trace's end (its latest time). Raises ValueError naming the file, row and column of a
    malformed value.
    """
    name = str(path)
    try:
        df = pd.read_csv(path, usecols=list(ALIBABA_COLUMNS))
    except (OSError, ValueError) as exc:
        raise ValueError(f"Alibaba trace {name}: cannot read the columns "
                         f"{', '.join(ALIBABA_COLUMNS)} ({exc})") from None
    if df.empty:
        raise ValueError(f"Alibaba trace {name}: no rows")
    for col in ALIBABA_COLUMNS[1:]:
        num = pd.to_numeric(df[col], errors="coerce")
        bad = (num.isna() & df[col].notna()) | np.isinf(num) | (num < 0)
        if col == "gpu_request":
            bad |= num.isna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"Alibaba trace {name}: row {i + 2}, column {col}: "
                             f"{df[col].iloc[i]!r} is not a finite number >= 0"
                             + ("" if col == "gpu_request" else " (or empty)"))
        df[col] = num
    roles = df["role"]
    bad = ~roles.isin(["CN", "HN"])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"Alibaba trace {name}: row {i + 2}, column role: {roles.iloc[i]!r} "
                         "is neither CN nor HN")
    times = df[["creation_time", "scheduled_time", "deletion_time"]].to_numpy(float)
    end_s = float(np.nanmax(times)) if np.isfinite(times).any() else 0.0
    hn = df[roles == "HN"]
    sched = hn["scheduled_time"].to_numpy(float)
    created = hn["creation_time"].to_numpy(float)
    gone = hn["deletion_time"].to_numpy(float)
    rows = hn.index.to_numpy() + 2
    odd = np.isnan(sched) & ~np.isnan(created)
    if odd.any():
        raise ValueError(f"Alibaba trace {name}: row {rows[odd][0]}, column scheduled_time: "
                         "empty (before the trace) but creation_time is given")
    back = ~np.isnan(sched) & ~np.isnan(gone) & (gone < sched)
    if back.any():
        raise ValueError(f"Alibaba trace {name}: row {rows[back][0]}, column deletion_time: "
                         "before scheduled_time")
    g = hn["gpu_request"].to_numpy(float)
    begin = np.nan_to_num(sched, nan=0.0)
    ends = ~np.isnan(gone)
    ev_t = np.concatenate([[0.0], begin, gone[ends]])
    ev_d = np.concatenate([[0.0], g, -g[ends]])
    order = np.argsort(ev_t, kind="stable")
    ev_t, held = ev_t[order], np.cumsum(ev_d[order])
    last = np.r_[ev_t[1:] != ev_t[:-1], True]  # the value after all events at one time
    return ev_t[last], held[last], end_s


def capacity_from_alibaba_trace(path: str | os.PathLike[str], *, training_cluster_gpus: int,
                                gpus_per_node: int, start_s: float = 0.0,
                                duration_s: float | None = None) -> CapacitySchedule:
    """Lendable nodes over time from the Alibaba DLRM 2025 trace (Prism, NSDI 2025;
    ``disaggregated_DLRM_trace.csv``), read at run time.

    Assumption: the trace's GPU-node (HN) serving instances and a training cluster share one
    pool of ``training_cluster_gpus`` GPUs; serving keeps what its alive HN instances request
    and training runs on the rest, which is what it can lend. Lendable nodes at trace time
    ``tau`` = ``floor(max(0, training_cluster_gpus - HN GPUs held at tau) / gpus_per_node)``.
    The trace gives the timing and size of the serving fleet's churn (3,123 to 3,412 GPUs over
    31 days); the pool's size is the caller's.

    Trace time ``start_s`` becomes simulated ``t = 0``; ``duration_s`` (default: to the
    trace's end) cuts the schedule, which holds its last value afterwards.
    """
    if isinstance(training_cluster_gpus, bool) or int(training_cluster_gpus) != \
            training_cluster_gpus or training_cluster_gpus < 0:
        raise ValueError(f"training_cluster_gpus must be a whole number >= 0; got "
                         f"{training_cluster_gpus!r}")
    if isinstance(gpus_per_node, bool) or int(gpus_per_node) != gpus_per_node or gpus_per_node < 1:
        raise ValueError(f"gpus_per_node must be a whole number >= 1; got {gpus_per_node!r}")
    times, held, end_s = alibaba_gpu_demand(path)
    if not (math.isfinite(start_s) and 0.0 <= start_s < end_s):
        raise ValueError(f"start_s must lie in the trace, 0 <= start_s < {end_s:g} s; got "
                         f"{start_s!r}")
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be finite and > 0; got {duration_s!r}")
    free = np.maximum(training_cluster_gpus - held, 0.0)
    nodes = np.floor(free / gpus_per_node).astype(int)
    keep = np.ones(len(times), bool) if duration_s is None else times < start_s + duration_s
    points = [(float(t - start_s), int(n)) for t, n in zip(times[keep], nodes[keep],
                                                          strict=True)]
    return CapacitySchedule.from_points(points)


def write_schedule_csv(schedule: CapacitySchedule, path: str | os.PathLike[str]) -> None:
    """Write a schedule as a ``time_s,nodes`` CSV (what :func:`schedule_from_trace` reads)."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(TRACE_COLUMNS)
        for t, n in schedule.changes():
            w.writerow([repr(float(t)) if t != int(t) else int(t), n])

