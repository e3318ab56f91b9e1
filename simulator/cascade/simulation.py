"""A cascade run: every unit a single-stage Simulation, linked by :mod:`simulator.cascade.flow`.

The run advances in steps of :data:`STEP_S`: each step asks the last stage for the requests
answered before the step's end, which advances the last stage's units, which pull their
arrivals from the stage before, and so on up to the workload (see :mod:`simulator.cascade.flow`
for why this order gives exactly the run in which all stages share one clock). At the end every
unit is advanced to ``duration_s`` (upstream first) and finished.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from simulator.cascade.derive import Unit, unit_seed
from simulator.cascade.flow import ForkOutput, OriginSource, StageInput, StageOutput, UnitLink
from simulator.cascade.records import EndToEndRecords
from simulator.cascade.series import EndToEndSeries
from simulator.cascade.stats import EndToEnd, StageStats
from simulator.engine import Simulation
from simulator.engine.record import RunRecord
from simulator.rng import stream
from simulator.workload import Workload

#: simulated seconds between the cascade's steps (each asks the last stage for its answers)
STEP_S = 0.5
#: how far past its clock (s) an idle unit reads its arrivals to find the next one: reading
#: them runs the stages before ahead, holding their rows, so a stage that gets nothing for a
#: while (re-ranking skipped by every request at a peak) must not read minutes ahead
LOOKAHEAD_S = 1.0


@dataclass
class CascadeRecord:
    """A finished cascade run: per unit its RunRecord (in stage order), per stage what the
    cascade saw of it, and the end-to-end fates."""

    scenario: Any
    seed: int
    duration_s: float
    warmup_s: float
    wall_s: float
    units: list[tuple[Unit, RunRecord]]
    stages: list[StageStats]
    e2e: EndToEnd
    records_mode: str = "none"
    records: Any = None  # per-request records (simulator.cascade.records), or None


class CascadeSimulation:
    """One run of a cascade scenario (``scenario.stages``) with one seed; ``units`` are its
    units as :func:`simulator.cascade.derive.build_units` makes them. ``trace`` (tests):
    keep every request's times at every stage (:attr:`StageStats.trace`) and every unit's
    per-request records, in memory."""

    def __init__(self, sc: Any, units: list[Unit], seed: int | None = None,
                 trace: bool = False, records: str | None = None) -> None:
        self.sc = sc
        self.seed = sc.simulation.seed if seed is None else int(seed)
        self.duration_s = float(sc.simulation.duration_s)
        self.warmup_s = float(sc.simulation.warmup_s)
        self.units = units
        classes = sc.workload.classes
        self.slo_s = np.array([(c.slo_ms or sc.sla.slo_ms) / 1e3 for c in classes])
        workload = Workload(units[0].scenario, self.seed)
        # per-request records (end to end), as a single-stage run's: auto keeps them all up
        # to a million expected requests, else a sample of about a million
        mode = records or sc.simulation.records
        if mode == "auto":
            expected = workload.mean_rate_qps() * self.duration_s
            mode = "all" if expected <= 1e6 else f"sample:{max(1e6 / expected, 1e-6):.6g}"
        self.records_mode = mode
        keep = None if mode == "none" else (1.0 if mode == "all" else float(mode.split(":")[1]))
        self.e2e = EndToEnd(self.slo_s, self.warmup_s, len(classes),
                            EndToEndSeries(self.duration_s, sc.simulation.timeseries_interval_s),
                            None if keep is None else
                            EndToEndRecords(keep, stream(self.seed, "records")))
        upstream: Any = OriginSource(workload, self.e2e)
        self.stats: list[StageStats] = []
        self.sims: list[Simulation] = []
        self.outputs: list[Any] = []
        for k, st in enumerate(sc.stages):
            mine = [u for u in units if u.stage == k]
            stats = StageStats(st.name, self.warmup_s,
                               None if st.budget_ms is None else st.budget_ms / 1e3)
            if trace:
                stats.trace = []
            links: list[UnitLink] = []
            stage_in = StageInput(k, st, upstream, len(mine), self.slo_s, self.duration_s,
                                  stats, links, stream(self.seed, f"cascade-skip:{st.name}"),
                                  first_stage=k == 0)
            for i, u in enumerate(mine):
                sim = Simulation(u.scenario, seed=unit_seed(self.seed, u.name),
                                 records="all" if trace else "none",
                                 arrivals=stage_in.chunks(i),
                                 arrival_lookahead_s=LOOKAHEAD_S)
                links.append(UnitLink(u.name, sim, u.candidates_out, st.expands,
                                      stream(self.seed, f"cascade-candidates:{u.name}"),
                                      releases=not st.channels, stats=stats))
                self.sims.append(sim)
            if st.channels:
                timeouts = [float("inf") if u.join_timeout_ms is None else u.join_timeout_ms / 1e3
                            for u in mine]
                upstream = ForkOutput(st, links, timeouts, stage_in, stats, self.e2e,
                                      stream(self.seed, f"cascade-join:{st.name}"))
            else:
                upstream = StageOutput(st, links[0], stage_in, stats, self.e2e)
            self.stats.append(stats)
            self.outputs.append(upstream)
        self.last = upstream

    def run(self) -> CascadeRecord:
        t0 = time.perf_counter()
        for sim in self.sims:  # upstream first: a unit may pull arrivals when it starts
            sim.start()
        y = 0.0
        while y < self.duration_s:
            y = min(y + STEP_S, self.duration_s)
            self.e2e.complete(self.last.collect(y))
        wall = time.perf_counter() - t0
        recs = [sim.finish(wall) for sim in self.sims]
        # every stage has run to the end and every next stage has taken its arrivals before
        # it: what each stage still lets out reaches the next point after the end (in transit)
        for st, out in zip(self.stats, self.outputs, strict=True):
            st.in_transit += len(out.collect(self.duration_s + out.net_s + 1.0))
        self.e2e.finish(self.duration_s)
        records = None
        if self.e2e.records is not None:
            records = self.e2e.records.frame([c.name for c in self.sc.workload.classes])
        return CascadeRecord(self.sc, self.seed, self.duration_s, self.warmup_s,
                             time.perf_counter() - t0, list(zip(self.units, recs, strict=True)),
                             self.stats, self.e2e, self.records_mode, records)
