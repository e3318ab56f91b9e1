"""Preflight: everything a run builds before its event loop, checked before it starts.

:func:`preflight` runs wherever a scenario is loaded (:func:`simulator.scenario.
scenario_from_dict`: ``peaksim validate``, ``peaksim run``, compare, sweep and plan) and again
in :func:`simulator.api.run` before it simulates, so a scenario that passes ``validate`` cannot
fail later while its run is assembled. In order, it

1. reads every input file with the run's own code: the arrival trace
   (:func:`simulator.workload.read_trace`), the diurnal curve, the spot preemption traces;
2. builds each pool's scaling policy, the batcher and the router, and checks what the engine
   reads from them (``sync_period_s``, ``max_batch``; profiles and their variants are checked
   when the scenario loads, :func:`simulator.scenario._check_files`);
3. estimates the run's work and memory (:func:`estimate`) and refuses a run that cannot
   finish on this machine, naming the fields responsible and the estimate;
4. assembles the :class:`~simulator.engine.simulation.Simulation` itself (not run): the
   workload, service models, queues, dispatcher and fleet, as the run builds them.

Every failure is a :class:`~simulator.scenario.ScenarioError` written as the scenario's other
errors, ``<file>: field 'a.b.c': ...``, never a traceback.

The estimate counts what a run does: arrivals (the integral of the arrival curve over the run,
diurnal curve and peaks included, or the trace's arrivals), time-series rows (duration /
interval), autoscaler syncs (duration / sync period), spot preemption and failure clocks (node
slots x rate x duration), MMPP state changes; and what it holds at once: the busiest chunk of
requests, the time series, node slots, batchers' tables, the fleet's event log, records kept in
memory. Unit costs (:data:`COSTS`) were measured on the reference machine, the 2-core
development VM of README.md's benchmarks (Python 3.11): ``benchmarks/bench_singles_day.py``
(122 M requests in 535 s, 4.4 us each, peak RSS 799 MB; the estimate says 9.3 min, 0.97 GiB)
and a run dominated by each kind of event or memory. Runs estimated above :data:`MAX_RUN_S` of
run time or :func:`memory_budget_bytes` of memory are refused; the estimate is meant to be
conservative (within a factor of about 2) and a faster machine only gains margin.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from simulator.scenario import PoolCfg, Scenario, ScenarioError

if TYPE_CHECKING:
    from simulator.arrival_curve import ArrivalCurve
    from simulator.engine import Simulation

#: longest estimated run time accepted, s (12 h on the reference machine)
MAX_RUN_S = 12 * 3600.0
#: share of the machine's memory a run may be estimated to need
MEMORY_SHARE = 0.75
#: memory assumed when psutil is not importable, bytes
FALLBACK_MEMORY_BYTES = 8 * 2**30

_MIB = 2**20

#: measured unit costs: run time (s) per event and memory (bytes) per item held at once
COSTS: dict[str, float] = {
    "arrival_central_s": 4.5e-6,  # M/M/8 central, no batching: 4.2 us; Singles' Day: 4.4 us
    "arrival_per_node_s": 18e-6,  # per-node dispatch: power_of_two 11.4 us, JSQ 17.4 us
    "row_s": 10e-6,  # one time-series row (sampler event): 1e6 rows in 10.5 s, one pool
    "row_pool_s": 2e-6,  # each further pool's row
    "sync_s": 2e-4,  # one autoscaler sync: 140-280 us (metrics built each time)
    "slot_tick_s": 4e-5,  # one failure (38 us) or preemption (22 us) clock tick of a slot
    "mmpp_switch_s": 3e-6,  # one MMPP state change (2.8 us)
    "curve_cell_s": 1e-6,  # one cell of the arrival curve's thinning bound (1 per s of run)
    "node_build_s": 2e-5,  # assembling one node slot (1e5 slots in 1.4-2.0 s)
    "base_b": 200 * _MIB,  # the Python process with numpy, pandas and SimPy loaded (130 MiB)
    "request_b": 230.0,  # one request in the request table (1e7 in one chunk: 224 B each)
    "record_b": 170.0,  # one per-request record kept in memory (163 B measured)
    "row_value_b": 17.6,  # one time-series value: 8 B x 2.2 (the frame built at the end)
    "slot_central_b": 2.5 * 1024,  # one node slot, central dispatch (1.9 KiB measured)
    "slot_per_node_b": 3.5 * 1024,  # one node slot with its own queue and batcher (2.8 KiB)
    "batch_size_b": 80.0,  # a batcher's prepared decision per batch size
    "fleet_event_b": 1300.0,  # a failure or preemption: ~4 event-log rows of 320 B
    "trace_value_b": 32.0,  # one arrival time of a trace: 8 B x 4 copies while built
    "trace_loop_s": 5e-6,  # one repetition of a looped trace (a search and a slice)
    "trace_loop_b": 120.0,  # one repetition in a chunk, held until the chunk is joined
}


def memory_budget_bytes() -> tuple[float, float]:
    """(budget, machine total) in bytes: :data:`MEMORY_SHARE` of this machine's memory
    (psutil), or of :data:`FALLBACK_MEMORY_BYTES` when psutil is not installed."""
    try:
        import psutil

        total = float(psutil.virtual_memory().total)
    except Exception:  # psutil missing or unable to read the machine: a fixed assumption
        total = float(FALLBACK_MEMORY_BYTES)
    return MEMORY_SHARE * total, total


@dataclass(frozen=True)
class Item:
    """One source of work or memory in the estimate.

    ``count`` of ``what`` (e.g. 3.6e12 arrivals) costing ``unit`` each (s of run time for
    kind 'time', bytes held at once for kind 'memory'); ``field`` is the scenario field most
    responsible, ``detail`` how the count arises, ``fix`` what to change.
    """

    kind: str
    what: str
    count: float
    unit: float
    field: str
    detail: str
    fix: str

    @property
    def total(self) -> float:
        """count x unit: s of run time or bytes of memory."""
        return self.count * self.unit


@dataclass
class Estimate:
    """What a run is expected to cost: arrivals, run time (s) and peak memory (bytes)."""

    arrivals: float = 0.0
    items: list[Item] = field(default_factory=list)

    @property
    def run_s(self) -> float:
        """Estimated run time on the reference machine, s."""
        return sum(i.total for i in self.items if i.kind == "time")

    @property
    def memory_bytes(self) -> float:
        """Estimated peak memory, bytes (the process included)."""
        return COSTS["base_b"] + sum(i.total for i in self.items if i.kind == "memory")

    def summary(self) -> str:
        """One line: arrivals, run time and memory."""
        return (f"about {self.arrivals:.2g} arrivals, ~{_duration(self.run_s)} of run time, "
                f"~{self.memory_bytes / 2**30:.2g} GiB of memory")


# ----------------------------------------------------------------------------- preflight
def preflight(sc: Scenario, *, seed: int | None = None, records: str | None = None,
              records_path: Path | None = None,
              records_in_memory: bool | None = None) -> Simulation:
    """Check that ``sc`` can run and assemble its :class:`Simulation` (not run).

    ``seed``, ``records``, ``records_path``: as for the Simulation. ``records_in_memory``:
    whether per-request records are kept in memory (default: when ``records_path`` is None;
    loading a scenario passes False, as ``peaksim run`` streams records to a file). Raises
    :class:`ScenarioError` naming the file and field of anything the run would fail on, or
    the estimate when it cannot finish (:func:`check_resources`).
    """
    if seed is not None and not 0 <= seed < 2**63:
        raise ScenarioError(f"{sc.source}: field 'simulation.seed': the seed given to the run "
                            f"({seed}) must be an integer in [0, 2^63)")
    if records is not None:
        from simulator.sections import SimulationCfg

        try:
            SimulationCfg._records(records)  # the field's own rule, for the run's override
        except ValueError as exc:
            raise ScenarioError(f"{sc.source}: field 'simulation.records': the records given "
                                f"to the run ({records!r}): {exc}") from None
    if sc.stages is not None:
        return _cascade(sc, seed, records)  # type: ignore[return-value]
    curve, trace = _arrival_inputs(sc)
    _check_spot_traces(sc)
    policies = _build_policies(sc)
    in_memory = records_path is None if records_in_memory is None else records_in_memory
    est = estimate(sc, curve=curve, trace=trace, policies=policies,
                   records=records, records_in_memory=in_memory)
    check_resources(sc, est)
    return _assemble(sc, seed, records, records_path)


def _cascade(sc: Scenario, seed: int | None, records: str | None) -> Any:
    """A cascade (``stages``): every unit checked as a single-stage scenario (its own
    preflight, errors naming the stage), the estimate of all units together checked, and the
    :class:`~simulator.cascade.simulation.CascadeSimulation` assembled."""
    import dataclasses

    from simulator.cascade.derive import units_of
    from simulator.cascade.simulation import CascadeSimulation

    units = units_of(sc)
    est = Estimate()
    for u in units:
        e = estimate(u.scenario)
        est.arrivals = max(est.arrivals, e.arrivals)
        est.items += [dataclasses.replace(i, field=f"stages.{u.name}: {i.field}")
                      for i in e.items]
    mode = records or sc.simulation.records
    if mode != "none":  # end-to-end records are kept in memory until the end
        kept = {"all": est.arrivals, "auto": min(est.arrivals, 1e6)}.get(mode)
        if kept is None:
            kept = est.arrivals * float(mode.split(":", 1)[1])
        est.items.append(Item("memory", "end-to-end records", kept, COSTS["record_b"],
                              "simulation.records", f"records = '{mode}' kept in memory",
                              "sample them (records = 'sample:P') or turn them off ('none')"))
    check_resources(sc, est)
    try:
        return CascadeSimulation(sc, units, seed, records=records)
    except ScenarioError:
        raise
    except Exception as exc:
        raise ScenarioError(f"{sc.source}: field 'stages': the cascade could not be "
                            f"assembled: {type(exc).__name__}: {exc}") from None


def _fail(sc: Scenario, where: str, exc: BaseException) -> ScenarioError:
    """The ScenarioError for ``exc`` raised while building ``where`` (a field path)."""
    msg = str(exc) if isinstance(exc, (ValueError, OSError)) else f"{type(exc).__name__}: {exc}"
    return ScenarioError(f"{sc.source}: field '{where}': {msg}")


def _arrival_inputs(sc: Scenario) -> tuple[ArrivalCurve, np.ndarray | None]:
    """The arrival curve (diurnal file read) and the trace's checked values (or None)."""
    from simulator.arrival_curve import ArrivalCurve, DiurnalCurve
    from simulator.workload import read_trace

    w = sc.workload
    d = w.diurnal
    where = "workload.diurnal.path" if d.kind == "file" else "workload.diurnal"
    try:
        path = str(sc.resolve_path(d.path)) if d.path else None
        diurnal = DiurnalCurve(d, path, sc.simulation.start_hour)
        curve = ArrivalCurve(w.arrival.rate_qps or 0.0, diurnal, w.peaks, sc.peak_starts_s())
    except Exception as exc:
        raise _fail(sc, where, exc) from None
    trace = None
    tc = w.arrival.trace
    if w.arrival.process == "trace" and tc is not None:
        try:
            trace = read_trace(tc, str(sc.resolve_path(tc.path)))
        except Exception as exc:
            raise _fail(sc, "workload.arrival.trace.path", exc) from None
    return curve, trace


def spot_trace_times(path: str | os.PathLike[str]) -> np.ndarray:
    """A spot preemption trace's times, s since the run's beginning, as the run reads them
    (column ``time_s``, else the first); ValueError naming the file when a value is not a
    finite number >= 0 or the file is not a readable CSV. A header without rows: none."""
    import pandas as pd

    from simulator.arrival_curve import read_csv_table

    df = read_csv_table(path, "preemption trace")
    col = "time_s" if "time_s" in df.columns else str(df.columns[0])
    v = pd.to_numeric(df[col], errors="coerce").to_numpy(float)
    bad = ~np.isfinite(v) | (v < 0)
    if bad.any():
        raise ValueError(f"{path}: column '{col}' must hold preemption times in s since the "
                         f"run's beginning, finite numbers >= 0 (first bad value: "
                         f"{df[col][bad].iloc[0]!r})")
    return v


def _check_spot_traces(sc: Scenario) -> None:
    for pc in sc.cluster.pools:
        spot = pc.spot
        if spot is None or not spot.trace:
            continue
        where = f"cluster.pools.{pc.name}.spot.trace"
        path = sc.resolve_path(spot.trace)
        if not path.is_file():
            raise ScenarioError(f"{sc.source}: field '{where}': file not found: {path}")
        try:
            spot_trace_times(path)
        except Exception as exc:
            raise _fail(sc, where, exc) from None


@dataclass
class _Policies:
    """The policies a run builds: per pool its autoscaler (None: reserved) and where it was
    given, the batcher (one; per-node dispatch builds one per node)."""

    autoscalers: list[tuple[Any, str]]
    batcher: Any
    max_batch: int


def _autoscaler_field(sc: Scenario, pc: PoolCfg) -> str:
    return f"cluster.pools.{pc.name}.autoscaler" if pc.autoscaler else "policy.autoscaling"


def _build_policies(sc: Scenario) -> _Policies:
    """Build the policies as the run does and check what the engine reads from them."""
    from simulator.policies import create

    autoscalers: list[tuple[Any, str]] = []
    for pc in sc.cluster.pools:
        where = _autoscaler_field(sc, pc)
        if pc.purchase == "reserved":
            autoscalers.append((None, where))
            continue
        spec = pc.autoscaler or sc.policy.autoscaling
        try:
            pol = create("autoscaler", spec.name, spec.params)
            period = float(pol.sync_period_s)
            if not math.isfinite(period) or period <= 0:
                raise ValueError(f"autoscaler '{spec.name}': sync_period_s must be a finite "
                                 f"number of seconds > 0 (got {period!r})")
            if not callable(getattr(pol, "desired", None)):
                raise ValueError(f"autoscaler '{spec.name}' has no desired(now_s, metrics) "
                                 "method")
        except Exception as exc:
            raise _fail(sc, where, exc) from None
        autoscalers.append((pol, where))
    b = sc.policy.batching
    try:
        batcher = create("batcher", b.name, b.params)
        max_batch = int(batcher.max_batch)
        if max_batch < 1:
            raise ValueError(f"batcher '{b.name}': max_batch must be >= 1 (got {max_batch})")
    except Exception as exc:
        raise _fail(sc, "policy.batching", exc) from None
    if sc.policy.dispatch == "per_node":
        r = sc.policy.routing
        try:
            create("router", r.name, r.params)
        except Exception as exc:
            raise _fail(sc, "policy.routing", exc) from None
    return _Policies(autoscalers, batcher, max_batch)


def _assemble(sc: Scenario, seed: int | None, records: str | None,
              records_path: Path | None) -> Simulation:
    """The Simulation, assembled as the run assembles it (any failure named)."""
    from simulator.engine import Simulation

    try:
        return Simulation(sc, seed=seed, records=records, records_path=records_path)
    except ScenarioError:
        raise
    except Exception as exc:
        raise ScenarioError(f"{sc.source}: field '(top level)': the run could not be "
                            f"assembled: {type(exc).__name__}: {exc}") from None


# ----------------------------------------------------------------------------- estimate
def _run_length(sc: Scenario) -> str:
    """How the scenario gives the run's length, for messages."""
    sim = sc.simulation
    d = float(sim.duration_s or 0.0)
    if sim.start is not None:
        return f"the run's {_duration(d)} (simulation.start/end and warmup_s)"
    return f"the run's {_duration(d)} (simulation.duration_s)"


def _shorten(sc: Scenario) -> str:
    if sc.simulation.start is not None:
        return "move simulation.end closer to simulation.start"
    return "shorten simulation.duration_s"


def _curve_stats(curve: ArrivalCurve, duration_s: float) -> tuple[float, float]:
    """(expected arrivals, highest rate QPS) of the curve over [0, duration_s]: trapezoids
    on a uniform grid plus a fine grid over each peak's active span."""
    from simulator.calendar_time import peak_active_s

    grids = [np.linspace(0.0, duration_s, 50_001)]
    for p, a in zip(curve.peaks, curve.peak_starts_s, strict=True):
        b = a + peak_active_s(p.ramp_s, p.hold_s, p.decay_s, p.decay)
        lo, hi = max(a, 0.0), min(b, duration_s)
        if hi > lo:
            grids.append(np.linspace(lo, hi, 2_001))
            grids.append(np.linspace(lo, min(hi, lo + p.ramp_s + p.hold_s + 1.0), 201))
    t = np.unique(np.concatenate(grids))
    r = curve.rate(t)
    arrivals = float(np.sum((r[1:] + r[:-1]) * 0.5 * np.diff(t)))
    peak = float(r.max())
    d = curve.diurnal
    if d.cfg.kind != "none":  # the curve's highest level, wherever the grid fell
        phase = np.linspace(0.0, d.period, 4_097)
        peak = max(peak, curve.base_qps * float(np.max(d(phase - d.shift_s))))
    return arrivals, peak


def _trace_span_s(tc: Any, raw: np.ndarray) -> float:
    """How long one pass of a trace lasts in simulated s (as TraceSource computes it)."""
    if tc.format == "timestamps":
        last = float(raw.max() - raw.min())
        gap = last / (len(raw) - 1) if len(raw) > 1 else 0.0
        return (last + (gap if gap > 0 else 1.0)) / tc.time_scale
    return len(raw) * tc.interval_s / tc.time_scale


def _trace_stats(sc: Scenario, raw: np.ndarray, chunk_of: Any) -> tuple[float, float, float]:
    """(arrivals in the run, arrivals in the busiest chunk, values held while built) of a
    trace, from its checked values (as :class:`simulator.workload.TraceSource` replays it)."""
    tc = sc.workload.arrival.trace
    assert tc is not None
    d = float(sc.simulation.duration_s or 0.0)
    k = tc.rate_scale
    span = _trace_span_s(tc, raw)
    if tc.format == "timestamps":
        times = np.sort(raw - raw.min()) / tc.time_scale
        per_span = float(len(times))
        held = len(times) * max(k, 1.0)
    else:
        assert tc.interval_s is not None
        width = tc.interval_s / tc.time_scale
        csum = np.concatenate([[0.0], np.cumsum(raw)])
        times = None
        per_span = float(csum[-1])
        held = per_span * k
    if tc.loop:
        reps = d / span
        arrivals = per_span * reps
    elif times is not None:
        arrivals = float(np.searchsorted(times, d))
    else:
        arrivals = float(csum[min(len(raw), math.ceil(d / width))])
    arrivals *= k
    w = chunk_of(arrivals / d if d > 0 else 0.0)
    if tc.loop and w >= span:
        busiest = per_span * math.ceil(w / span + 1)
    elif times is not None:
        busiest = float(np.max(np.searchsorted(times, times + w) - np.arange(len(times))))
    else:
        m = min(len(raw), math.ceil(w / width) + 1)
        busiest = float(np.max(csum[m:] - csum[:-m])) if m < len(csum) else per_span
    return arrivals, min(busiest * k, arrivals), held


def estimate(sc: Scenario, *, curve: ArrivalCurve | None = None,
             trace: np.ndarray | None = None, policies: _Policies | None = None,
             records: str | None = None, records_in_memory: bool = False) -> Estimate:
    """What running ``sc`` costs: the work and memory items of :class:`Estimate`.

    ``curve``, ``trace``, ``policies``: as :func:`preflight` built them (built here when
    None). ``records``: overrides ``simulation.records``; ``records_in_memory``: records are
    kept in memory (else streamed to a file: no memory).
    """
    from simulator.workload import Workload

    if curve is None or (trace is None and sc.workload.arrival.process == "trace"):
        curve, trace = _arrival_inputs(sc)
    if policies is None:
        policies = _build_policies(sc)
    sim = sc.simulation
    d = float(sim.duration_s or 0.0)
    iv = sim.timeseries_interval_s
    arr = sc.workload.arrival
    per_node = sc.policy.dispatch == "per_node"
    est = Estimate()
    items = est.items

    def chunk_of(mean_qps: float) -> float:  # Workload.chunk_s: whole intervals
        k = max(1, math.floor(Workload.CHUNK_ARRIVALS / (max(mean_qps, 1e-9) * iv)))
        return k * iv

    # arrivals
    if arr.process == "trace" and trace is not None:
        tc = arr.trace
        assert tc is not None
        arrivals, busiest, held = _trace_stats(sc, trace, chunk_of)
        src = (f"the trace {tc.path}: {len(trace):,} rows"
               + (f" x rate_scale {tc.rate_scale:g}" if tc.rate_scale != 1 else "")
               + (f", looped over {_run_length(sc)}" if tc.loop else ""))
        fld = "workload.arrival.trace"
        fix = (f"{_shorten(sc)}, lower workload.arrival.trace.rate_scale"
               + (" or raise time_scale" if tc.loop else ""))
        items.append(Item("memory", "trace arrival times", held, COSTS["trace_value_b"],
                          fld, src, fix))
        if tc.loop:
            span = _trace_span_s(tc, trace)
            reps = d / span
            w = chunk_of(arrivals / d if d > 0 else 0.0)
            detail = (f"{_run_length(sc)} / the trace's span of {span:.3g} s (last arrival + "
                      "the mean gap, / time_scale)")
            loop_fix = "raise workload.arrival.trace.time_scale or " + _shorten(sc)
            items.append(Item("time", "repetitions of the looped trace", reps,
                              COSTS["trace_loop_s"], "workload.arrival.trace.loop", detail,
                              loop_fix))
            items.append(Item("memory", "repetitions of the looped trace in one chunk",
                              min(reps, w / span + 1), COSTS["trace_loop_b"],
                              "workload.arrival.trace.loop", detail, loop_fix))
    else:
        arrivals, peak_qps = _curve_stats(curve, d)
        mult = 1.0
        if arr.process == "mmpp":
            soj = np.asarray([s.mean_sojourn_s for s in arr.states])
            m = np.asarray([s.multiplier for s in arr.states])
            mean = float((soj / soj.sum() * m).sum())
            mult = float(m.max()) / mean if mean > 0 else 1.0
            switches = d * len(soj) / float(soj.sum())
            items.append(Item("time", "MMPP state changes", switches, COSTS["mmpp_switch_s"],
                              "workload.arrival.states",
                              f"{len(soj)} states of mean sojourn "
                              f"{float(soj.mean()):.3g} s over {_run_length(sc)}",
                              "lengthen the states' mean_sojourn_s or " + _shorten(sc)))
        w = chunk_of(arrivals / d if d > 0 else 0.0)
        busiest = min(peak_qps * mult * w, arrivals)
        shape = [x for x, on in (("the diurnal curve", sc.workload.diurnal.kind != "none"),
                                 ("the peaks", bool(sc.workload.peaks))) if on]
        src = (f"workload.arrival.rate_qps = {arr.rate_qps:g} QPS"
               + (f" with {' and '.join(shape)}" if shape else "")
               + f", over {_run_length(sc)}")
        fld = "workload.arrival.rate_qps"
        fix = (f"{_shorten(sc)} or lower workload.arrival.rate_qps"
               + (" (or the peaks' multiplier)" if sc.workload.peaks else ""))
        if not curve.is_constant():
            cells = d * (4.0 if arr.process == "gamma" else 1.0)
            items.append(Item("time", "arrival-curve cells", cells, COSTS["curve_cell_s"],
                              "simulation.duration_s", f"one a second over {_run_length(sc)}",
                              _shorten(sc)))
    est.arrivals = arrivals
    unit = COSTS["arrival_per_node_s" if per_node else "arrival_central_s"]
    items.append(Item("time", "arrivals", arrivals, unit, fld, src, fix))
    cap = float(getattr(sim, "max_in_system", 0) or 0)
    live = max(2.0 * busiest, min(cap, arrivals))
    live_detail = (f"twice the busiest chunk of about {busiest:.2g} arrivals, generated "
                   f"together: the highest rate x simulation.timeseries_interval_s = {iv:g} s "
                   "or more")
    live_field, live_fix = "simulation.timeseries_interval_s", (
        "narrow simulation.timeseries_interval_s (requests are generated an interval or more "
        "at a time) or lower the peak rate")
    if min(cap, arrivals) > 2.0 * busiest:
        live_detail = (f"requests waiting at once under overload, up to simulation."
                       f"max_in_system = {cap:,.0f}")
        live_field, live_fix = "simulation.max_in_system", "lower simulation.max_in_system"
    items.append(Item("memory", "requests held at once", live, COSTS["request_b"],
                      live_field, live_detail, live_fix))

    # records kept in memory
    mode = records or sim.records
    if records_in_memory and mode != "none":
        if mode == "all":
            kept = arrivals
        elif mode == "auto":
            kept = min(arrivals, 1e6)
        else:
            kept = arrivals * float(mode.split(":", 1)[1])
        items.append(Item("memory", "per-request records", kept, COSTS["record_b"],
                          "simulation.records", f"records = '{mode}' kept in memory",
                          "write them to a file (records_path), sample them "
                          "(records = 'sample:P') or turn them off ('none')"))

    # the time series
    pools = sc.cluster.pools
    rows = max(1.0, math.ceil(d / iv - 1e-9))
    classes = len(sc.workload.classes)
    items.append(Item("time", "time-series rows", rows,
                      COSTS["row_s"] + COSTS["row_pool_s"] * (len(pools) - 1),
                      "simulation.timeseries_interval_s",
                      f"{_run_length(sc)} / simulation.timeseries_interval_s = {iv:g} s",
                      "widen simulation.timeseries_interval_s or " + _shorten(sc)))
    items.append(Item("memory", "time-series rows", rows,
                      COSTS["row_value_b"] * (13 + 2 * classes + 7 * len(pools)),
                      "simulation.timeseries_interval_s",
                      f"{_run_length(sc)} / simulation.timeseries_interval_s = {iv:g} s, "
                      f"with {classes} request class(es) and {len(pools)} pool(s)",
                      "widen simulation.timeseries_interval_s or " + _shorten(sc)))

    # nodes, batchers, autoscalers, failures and preemptions
    # a slot per model instance: max_nodes x instances
    slots = sum(pc.hi * pc.instances for pc in pools)
    biggest = max(pools, key=lambda pc: pc.hi * pc.instances)
    slot_field = f"cluster.pools.{biggest.name}.max_nodes"
    slot_detail = (f"the pools' max_nodes (or nodes) x instances, {slots:,} in all, "
                   f"{biggest.hi * biggest.instances:,} in pool '{biggest.name}'")
    slot_b = COSTS["slot_per_node_b" if per_node else "slot_central_b"]
    items.append(Item("memory", "node slots", slots, slot_b, slot_field, slot_detail,
                      "lower the pools' max_nodes"))
    items.append(Item("time", "node slots", slots, COSTS["node_build_s"], slot_field,
                      slot_detail, "lower the pools' max_nodes"))
    batchers = slots if per_node else 1
    items.append(Item("memory", "batch sizes prepared by batchers",
                      batchers * (policies.max_batch + 1), COSTS["batch_size_b"],
                      "policy.batching.max_batch",
                      f"max_batch = {policies.max_batch:,} in each of {batchers:,} batchers",
                      "lower policy.batching.max_batch"))
    for pc, (pol, where) in zip(pools, policies.autoscalers, strict=True):
        holds = getattr(pol, "holds", None)
        fixed = holds is not None and holds(pc.nodes)
        # asked every sync_period_s unless it holds the count and no node can go (Fleet.start)
        if pol is not None and not (fixed and pc.spot is None and pc.failures is None):
            period = float(pol.sync_period_s)
            items.append(Item("time", f"autoscaler syncs of pool '{pc.name}'", d / period,
                              COSTS["sync_s"], f"{where}.sync_period_s",
                              f"{_run_length(sc)} / sync_period_s = {period:g} s",
                              f"lengthen {where}.sync_period_s or {_shorten(sc)}"))
        for rate_per_s, what, fld2, fix2 in _clocks(pc):
            ticks = pc.hi * rate_per_s * d
            detail = (f"{pc.hi:,} node slots x {rate_per_s * 3600:g} per node-hour x "
                      f"{_run_length(sc)}")
            items.append(Item("time", what, ticks, COSTS["slot_tick_s"], fld2, detail, fix2))
            items.append(Item("memory", what, ticks, COSTS["fleet_event_b"], fld2, detail,
                              fix2))
    return est


def _clocks(pc: PoolCfg) -> list[tuple[float, str, str, str]]:
    """(rate per node slot per s, what, field, fix) of a pool's failure and preemption
    clocks (the fleet ticks one clock per slot)."""
    out = []
    base = f"cluster.pools.{pc.name}"
    if pc.failures is not None:
        out.append((1.0 / (pc.failures.mtbf_h * 3600.0), f"failures in pool '{pc.name}'",
                    f"{base}.failures.mtbf_h",
                    f"raise {base}.failures.mtbf_h or lower {base}.max_nodes"))
    if pc.spot is not None and not pc.spot.trace and pc.spot.preemptions_per_hour > 0:
        out.append((pc.spot.preemptions_per_hour / 3600.0, f"preemptions in pool '{pc.name}'",
                    f"{base}.spot.preemptions_per_hour",
                    f"lower {base}.spot.preemptions_per_hour or {base}.max_nodes"))
    return out


def _duration(s: float) -> str:
    """Seconds as a short human duration."""
    if not math.isfinite(s):
        return f"{s} s"
    for unit, size in (("years", 365.25 * 86400), ("days", 86400.0), ("h", 3600.0),
                       ("min", 60.0)):
        if s >= size:
            return f"{s / size:.3g} {unit}"
    return f"{s:.3g} s"


def check_resources(sc: Scenario, est: Estimate) -> None:
    """Refuse a run that cannot finish: estimated above :data:`MAX_RUN_S` of run time or
    above the memory budget. The message names the items that weigh most (at least a fifth
    of the total each), their fields, the estimate and what to change."""
    lines: list[str] = []
    run_s = est.run_s
    if run_s > MAX_RUN_S:
        for it in _heaviest(est, "time", run_s):
            cap = MAX_RUN_S / it.unit
            lines.append(
                f"{sc.source}: field '{it.field}': about {it.count:.2g} {it.what} "
                f"({it.detail}), an estimated {_duration(it.total)} of run time (~"
                f"{it.unit * 1e6:.3g} us each); PeakSim refuses runs estimated above "
                f"{_duration(MAX_RUN_S)} (here about {cap:.2g} {it.what}; this run: "
                f"~{_duration(run_s)} in all): {it.fix}")
    budget, total = memory_budget_bytes()
    mem = est.memory_bytes
    if mem > budget:
        for it in _heaviest(est, "memory", mem - COSTS["base_b"]):
            lines.append(
                f"{sc.source}: field '{it.field}': about {it.count:.2g} {it.what} "
                f"({it.detail}) need ~{_gib(it.total)} of memory; the run would need "
                f"~{_gib(mem)}, more than the {_gib(budget)} a run may use "
                f"({MEMORY_SHARE:.0%} of this machine's {_gib(total)}): {it.fix}")
    if lines:
        raise ScenarioError("\n".join(lines))


def _heaviest(est: Estimate, kind: str, total: float) -> list[Item]:
    items = sorted((i for i in est.items if i.kind == kind), key=lambda i: -i.total)
    return [i for i in items if i.total >= 0.2 * total] or items[:1]


def _gib(b: float) -> str:
    return f"{b / 2**30:.3g} GiB"
