"""The Simulation: assembles the engine's parts from a scenario, runs them, returns a RunRecord.

Parts, one owner per concept (docs/architecture.md walks one request through them):

* :class:`~simulator.engine.requests.RequestTable`: every request's state; the one place a
  request ends;
* a dispatcher (:mod:`~simulator.engine.central` or :mod:`~simulator.engine.push`): how
  requests reach nodes, with the queues, batchers and router it needs;
* :class:`~simulator.engine.server.Server`: the nodes' serving loops, batches in service;
* :class:`~simulator.engine.fleet.Fleet`: nodes' lives, scaling, preemptions, failures;
* :class:`~simulator.engine.observer.Observer`: time series, warm-up integrals, autoscaler
  metrics;
* :class:`~simulator.engine.recorder.Recorder`: statistics and records of ended requests;
* :class:`~simulator.engine.admission.Admission` and
  :class:`~simulator.engine.degradation.Degradation`: rules both dispatchers apply.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulator.engine.admission import Admission
from simulator.engine.central import CentralDispatcher
from simulator.engine.clock import Clock
from simulator.engine.degradation import Degradation, central_admits, fallback_services
from simulator.engine.dispatch import Dispatcher
from simulator.engine.fleet import Fleet, FleetHost
from simulator.engine.nodes import NodeTable, Pool
from simulator.engine.observer import Observer
from simulator.engine.push import PushDispatcher
from simulator.engine.record import PoolRecord, QueueRecord, RunRecord
from simulator.engine.recorder import Recorder, RecordSink
from simulator.engine.requests import RequestTable
from simulator.engine.server import Server
from simulator.hardware.pool_hardware import PoolHardware, pool_hardware
from simulator.metrics import TimeSeries
from simulator.policies import create
from simulator.rng import BufferedRandom, stream
from simulator.scenario import PoolCfg, Scenario, ScenarioError
from simulator.service import build_service
from simulator.workload import Chunk, Workload


class Simulation:
    """One run of one scenario with one seed.

    ``records``: overrides ``simulation.records``; ``records_path``: stream records to this
    Parquet file instead of memory. ``arrivals``: the requests' chunks when they do not come
    from the scenario's workload (a cascade stage fed by the stage before it); the workload
    still gives the classes and the arrival curve a forecast reads.
    """

    def __init__(self, sc: Scenario, seed: int | None = None, records: str | None = None,
                 records_path: Path | None = None,
                 arrivals: Iterator[Chunk] | None = None,
                 arrival_lookahead_s: float = math.inf) -> None:
        self.sc = sc
        self.seed = sc.simulation.seed if seed is None else int(seed)
        self.env = env = Clock()
        self.duration_s = sc.simulation.duration_s
        self.warmup_s = sc.simulation.warmup_s
        try:
            self.workload = Workload(sc, self.seed)
        except (ValueError, OSError) as exc:
            raise ScenarioError(f"{sc.source}: field 'workload': {exc}") from None
        pol = sc.policy

        # the cluster: each pool owns max_nodes x instances slots
        self.pools: list[Pool] = []
        self.hardware: list[PoolHardware] = []
        nid = 0
        for i, pc in enumerate(sc.cluster.pools):
            svc_cfg = sc.pool_service(pc)
            path = sc.resolve_path(svc_cfg.profile) if svc_cfg.profile else None
            svc = build_service(svc_cfg, stream(self.seed, f"service:{pc.name}"), path,
                                sc.resolve_path(svc_cfg.serving) if svc_cfg.serving else None)
            hw = pool_hardware(sc, pc)
            n_slots = pc.hi * hw.instances  # one slot per model instance
            self.pools.append(Pool(i, pc, svc, range(nid, nid + n_slots),
                                   instances=hw.instances, slowdown=hw.slowdown,
                                   loan=hw.loan, comm_s=hw.batch_comm(),
                                   device_groups=hw.device_groups))
            self.hardware.append(hw)
            nid += n_slots
        pool_of = np.concatenate([np.full(len(p.slots), p.index, dtype=np.int32)
                                  for p in self.pools])
        self.nodes = NodeTable(nid, pool_of, pol.admission.max_queue_length)
        autoscalers = [self._autoscaler(pc) for pc in sc.cluster.pools]

        # measurement and the request table
        class_names = [c.name for c in sc.workload.classes]
        self.series = TimeSeries(self.duration_s, sc.simulation.timeseries_interval_s,
                                 class_names)
        mode = records or sc.simulation.records
        if mode == "auto":
            expected = self.workload.mean_rate_qps() * self.duration_s
            mode = "all" if expected <= 1e6 else f"sample:{max(1e6 / expected, 1e-6):.6g}"
        self.records_mode = mode
        leaders = None
        if any(p.instances > 1 for p in self.pools):
            leaders = np.asarray([p.leader(j) for p in self.pools for j in p.slots],
                                 dtype=np.int64)
        self.sink = RecordSink(mode, self.seed, records_path, class_names, self.nodes.pool_of,
                               [p.name for p in self.pools], leaders)
        # requests still in flight at duration_s are judged against their SLO then
        self.recorder = Recorder(sc, self.series, self.sink, end_s=self.duration_s)
        self.table = RequestTable(self.workload.chunks() if arrivals is None else arrivals,
                                  self.recorder.on_chunk)
        self.table.lookahead_s = arrival_lookahead_s

        # serving, dispatch, degradation
        self.server = Server(env, self.table, self.nodes, self.pools,
                             [self.pools[p].service for p in pool_of.tolist()])
        self.admission = Admission(sc)
        self.degradation = self._degradation()
        self.dispatcher = self._dispatcher()
        fallback = self.degradation.fallback
        degrade = None
        if fallback is not None:
            deg, disp = self.degradation, self.dispatcher

            def degrade(j: int) -> bool:
                return deg.degrade(disp.oldest_wait_s(j))

        self.server.connect(self.dispatcher.take, shows_busy=self.dispatcher.shows_busy,
                            fallback=fallback, degrade=degrade)

        # observation and the fleet
        forecast = None
        if self.workload.trace is None:
            curve = self.workload.curve

            def forecast(t: float) -> float:
                return float(curve.rate(np.array([t]))[0])

        self.observer = Observer(env, self.duration_s, self.warmup_s, self.series, self.pools,
                                 self.dispatcher, self.server, self._mean_items(), forecast)
        host = FleetHost(serve=self.server.serve, serving=self.server.serving,
                         node_ready=self.dispatcher.node_ready,
                         stop_taking=self.dispatcher.stop_taking,
                         release=self.dispatcher.release, metrics=self.observer.metrics)
        self.fleet = Fleet(env, self.pools, self.nodes, autoscalers,
                           lambda name: stream(self.seed, name), host, self._preemption_traces())
        self.wall_s = 0.0

    # ------------------------------------------------------------------ assembly
    def _autoscaler(self, pc: PoolCfg) -> Any:
        """The pool's scaling policy (None for a reserved pool: never reconciled)."""
        if pc.purchase == "reserved":
            return None
        spec = pc.autoscaler or self.sc.policy.autoscaling
        return create("autoscaler", spec.name, spec.params)

    def _degradation(self) -> Degradation:
        deg = self.sc.policy.degradation
        fallback = None
        if deg.enabled and deg.mode == "variant":
            fallback = fallback_services(self.sc, self.pools,
                                         lambda name: stream(self.seed, name))
        return Degradation(deg, self.env, self.table, stream(self.seed, "degradation"),
                           fallback)

    def _dispatcher(self) -> Dispatcher:
        pol = self.sc.policy
        b = pol.batching
        timeout_s = self.admission.timeout_s
        if pol.dispatch == "central":
            queue = self.admission.central_queue(self.table)
            deg = self.degradation
            if deg.caches:
                env = self.env
                queue.divert = lambda ids: deg.divert(ids, queue.len, queue.max_wait_s(env.now))
            elif deg.shrinks:  # (no request leaves: the hook cuts items before they queue)
                env = self.env
                queue.divert = lambda ids: deg.shrink(ids, queue.len, queue.max_wait_s(env.now),
                                                      central_admits(queue, ids))
            weights = None
            if pol.pool_preference == "weighted":
                weights = [p.cfg.weight for p in self.pools]
            batcher = create("batcher", b.name, b.params)
            self.batch_limit = int(batcher.max_batch)
            return CentralDispatcher(
                self.env, self.table, self.server, self.pools, self.nodes, queue,
                batcher, timeout_s, self.duration_s,
                self._preference_order(), weights, stream(self.seed, "pool_choice"))
        r = pol.routing
        n = self.nodes.n
        batchers = [create("batcher", b.name, b.params) for _ in range(n)]
        self.batch_limit = int(batchers[0].max_batch)
        return PushDispatcher(
            self.env, self.table, self.server, self.pools, self.nodes,
            [self.admission.node_queue(self.table) for _ in range(n)], batchers,
            create("router", r.name, r.params),
            BufferedRandom(stream(self.seed, "routing")), timeout_s, self.duration_s,
            self.degradation, self.admission.max_in_system)

    def _preference_order(self) -> list[int]:
        """Pool indices in the order idle nodes take work (central dispatch)."""
        pref = self.sc.policy.pool_preference
        idx = list(range(len(self.pools)))
        if pref == "cheapest":
            return sorted(idx, key=lambda i: self.pools[i].cfg.price_per_hour_usd)
        if pref == "fastest":
            return sorted(idx, key=lambda i: self.pools[i].service.mean_time(1, 1))
        return idx

    def _preemption_traces(self) -> dict[str, list[float]]:
        """Replayed preemption times per spot pool with a trace (s)."""
        out = {}
        for p in self.pools:
            spot = p.cfg.spot
            if spot is not None and spot.trace:
                df = pd.read_csv(self.sc.resolve_path(spot.trace))
                col = "time_s" if "time_s" in df.columns else df.columns[0]
                out[p.name] = sorted(float(x) for x in df[col])
        return out

    def _mean_items(self) -> int:
        """Mean items per request (share-weighted class means, capped)."""
        cl = self.sc.workload.classes
        tot = sum(c.share for c in cl)
        return max(1, round(sum(c.share * min(c.size.mean, c.size.max) for c in cl) / tot))

    # ------------------------------------------------------------------ running
    def run(self) -> RunRecord:
        """Run to ``duration_s``, finish the bookkeeping and return the record."""
        t0 = time.perf_counter()
        try:
            self.start()
            self.env.run(until=self.duration_s)
            records = self._finish()
        except BaseException:  # Ctrl-C, SIGTERM (SystemExit), errors: no partial file stays
            self.sink.abort()
            raise
        self.wall_s = time.perf_counter() - t0
        return self._record(records)

    # a run in steps (a cascade advances its stages together): start, advance ..., finish
    def start(self) -> None:
        """Start the fleet, the dispatcher and the observer (time 0)."""
        self.fleet.start()
        self.dispatcher.start()
        self.observer.start()

    def advance(self, until_s: float) -> None:
        """Process every event before ``until_s`` (s; capped at ``duration_s``); events at
        ``until_s`` itself wait for the next step, so steps give the same run as one."""
        until_s = min(until_s, self.duration_s)
        if until_s > self.env.now:
            self.env.run(until=until_s)

    def finish(self, wall_s: float = 0.0) -> RunRecord:
        """After advancing to ``duration_s``: the bookkeeping and the record."""
        self.advance(self.duration_s)
        try:
            records = self._finish()
        except BaseException:
            self.sink.abort()
            raise
        self.wall_s = wall_s
        return self._record(records)

    def _finish(self) -> pd.DataFrame | None:
        """Admit the last arrivals, then hand every chunk to the recorder."""
        end = self.duration_s
        self.table.ensure_time(end)
        self.dispatcher.finish(end)
        self.observer.finish(end)
        for p in self.pools:  # nodes alive at the end are billed at least min_billing_s
            p.advance(end)
            for born in p.birth_s.values():
                if end - born < p.cfg.min_billing_s:
                    p.min_billing_extra_s += p.cfg.min_billing_s - (end - born)
        self.server.finish()
        self.table.flush_all()
        self.recorder.finish()
        return self.sink.close()

    def _record(self, records: pd.DataFrame | None) -> RunRecord:
        obs = self.observer
        busy = obs.busy_seconds_window()
        billed = obs.billed_seconds_window()
        prov = obs.provisioned_seconds_window()
        pools = [PoolRecord(
            name=p.name, purchase=p.cfg.purchase,
            price_per_hour_usd=p.cfg.price_per_hour_usd * hw.machines_per_node,
            power_idle_w=p.cfg.power_idle_w * hw.machines_per_node,
            power_busy_w=p.cfg.power_busy_w * hw.machines_per_node,
            model_gb=p.model_gb, busy_s=b, billed_s=ns, provisioned_s=pr,
            max_billed=p.max_billed, final_desired=p.desired, batches=p.batches,
            served=p.served, preemptions=p.preemptions, failures=p.failures,
            scale_ups=p.scale_ups, scale_downs=p.scale_downs, lost_requests=p.lost_requests,
            requeued_requests=p.requeued_requests, instances=p.instances,
            gpus_per_node=hw.gpus_per_node,
            node_type=None if hw.node_type is None else hw.node_type.name,
            borrows=p.borrows, reclaims=p.reclaims, machines_per_node=hw.machines_per_node,
            slowdown_source=hw.slowdown_source,
            placement=None if hw.plan is None else hw.plan.describe())
            for p, hw, b, ns, pr in zip(self.pools, self.hardware, busy, billed, prov,
                                        strict=True)]
        rec = self.recorder
        deg = self.degradation
        peak, rejected, class_peak = self.dispatcher.queue_peaks()
        queue = QueueRecord(per_node=self.sc.policy.dispatch == "per_node",
                            limit=self.admission.max_queue_length, peak=peak, rejected=rejected,
                            class_limit=list(self.admission.class_limit), class_peak=class_peak,
                            max_in_system=self.admission.max_in_system,
                            shed_by_cap=self.table.shed_by_cap)
        return RunRecord(
            scenario=self.sc, seed=self.seed, duration_s=self.duration_s,
            warmup_s=self.warmup_s, wall_s=self.wall_s, pools=pools, total=rec.total,
            classes=rec.classes, class_names=rec.class_names,
            slo_ms=[float(x) for x in rec.slo_ms],
            arrivals_incl_warmup=rec.total_arrivals_all,
            final_queue_length=float(self.series.queue_len[-1]),
            max_batch_seen=self.server.max_batch_seen, batch_limit=self.batch_limit,
            quality_loss_per_degraded=deg.quality_loss_per_degraded(),
            records_mode=self.records_mode, queue=queue, timeseries=self.series.to_frame(),
            pool_series=obs.pool_frame(), events=self.fleet.event_frame(), records=records,
            max_items_seen=self.server.max_items_seen)
