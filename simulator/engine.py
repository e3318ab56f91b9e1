"""The SimPy engine: nodes serve batches; the engine executes routing and batching decisions.

Processes (each reads like the system it models):

* ``node``: take a batch (or wait until the dispatcher hands one over), serve it for the time
  the service model draws, record it, repeat;
* ``arrivals`` (per-node dispatch only): at each arrival, ask the router for a node and push the
  request into that node's queue;
* ``sampler``: at every time-series boundary, look at queue lengths and busy time.

With central dispatch requests are not events: the shared queue is a range of the sorted
arrival array and free nodes pull from it; a timer event exists only while some node is idle
(for the next arrival, or the batcher's deadline). SimPy events therefore happen per batch and
per node state change, not per request.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
import simpy

from simulator.clock import Clock
from simulator.cluster import FAILED, LOADING, READY, NodeTable, Pool
from simulator.engine_central import CentralDispatch
from simulator.engine_fleet import FleetHooks
from simulator.engine_overload import Overload
from simulator.engine_push import PushDispatch
from simulator.fleet import Fleet
from simulator.metrics import TimeSeries
from simulator.policies import create
from simulator.policies.batching import NoBatching
from simulator.policies.views import BatchDecision, QueueView
from simulator.queues import CentralQueue, NodeQueue
from simulator.recorder import Recorder, RecordSink
from simulator.requests import COMPLETED, RequestTable
from simulator.rng import BufferedRandom, stream
from simulator.scenario import Scenario, ScenarioError
from simulator.service import build_service
from simulator.workload import Workload


class Simulation(CentralDispatch, PushDispatch, FleetHooks, Overload):
    """One run of one scenario with one seed."""

    def __init__(self, sc: Scenario, seed: int | None = None, records: str | None = None,
                 records_path: Path | None = None) -> None:
        self.sc = sc
        self.seed = sc.simulation.seed if seed is None else int(seed)
        self.env = Clock()
        self.duration_s = sc.simulation.duration_s
        self.warmup_s = sc.simulation.warmup_s
        try:
            self.workload = Workload(sc, self.seed)
        except (ValueError, OSError) as exc:
            raise ScenarioError(f"{sc.source}: field 'workload': {exc}") from None
        pol = sc.policy

        # cluster: each pool owns max_nodes slots
        self.pools: list[Pool] = []
        nid = 0
        for i, pc in enumerate(sc.cluster.pools):
            svc_cfg = sc.pool_service(pc)
            path = sc.resolve_path(svc_cfg.profile) if svc_cfg.profile else None
            svc = build_service(svc_cfg, stream(self.seed, f"service:{pc.name}"), path)
            self.pools.append(Pool(i, pc, svc, range(nid, nid + pc.hi)))
            nid += pc.hi
        pool_of = np.concatenate([np.full(len(p.slots), p.index, dtype=np.int32)
                                  for p in self.pools])
        self.nodes = NodeTable(nid, pool_of, pol.admission.max_queue_length)
        self._svc = [self.pools[p].service for p in pool_of.tolist()]
        self._pool_of = [self.pools[p] for p in pool_of.tolist()]
        self._current: list[range | np.ndarray | None] = [None] * nid
        self._bstart = [0.0] * nid  # start of the batch in service, s
        self._ready_py = [False] * nid  # mirror of nodes.ready for the hot loop
        autoscalers = []
        for pc in sc.cluster.pools:
            if pc.purchase == "reserved":
                autoscalers.append(None)
                continue
            cfg = dict(pc.autoscaler or pol.autoscaling)
            name = str(cfg.pop("name", "static"))
            try:
                autoscalers.append(create("autoscaler", name, **cfg))
            except (ValueError, TypeError) as exc:
                where = (f"cluster.pools.{pc.name}.autoscaler" if pc.autoscaler
                         else "policy.autoscaling")
                raise ScenarioError(f"{sc.source}: field '{where}': {exc}") from None

        # measurement
        self.series = TimeSeries(self.duration_s, sc.simulation.timeseries_interval_s)
        mode = records or sc.simulation.records
        if mode == "auto":
            expected = self.workload.mean_rate_qps() * self.duration_s
            mode = "all" if expected <= 1e6 else f"sample:{max(1e6 / expected, 1e-6):.6g}"
        self.records_mode = mode
        self.sink = RecordSink(mode, self.seed, records_path, [c.name for c in sc.workload.classes],
                               self.nodes.pool_of, [p.name for p in self.pools])
        self.recorder = Recorder(sc, self.series, self.sink)
        self.table = RequestTable(self.workload.chunks(), self.recorder.on_chunk)

        # admission and timeouts (s per class; inf = none)
        default_to = pol.admission.timeout_ms
        tos = [c.timeout_ms or default_to for c in sc.workload.classes]
        self.timeout_s = np.asarray([t / 1000.0 if t else np.inf for t in tos])
        self.has_timeouts = bool(np.isfinite(self.timeout_s).any())
        self.min_timeout_s = float(self.timeout_s.min())

        # policies
        b = pol.batching
        bargs = dict(max_batch=b.max_batch, max_batch_items=b.max_batch_items,
                     max_wait_ms=b.max_wait_ms, preferred_sizes=b.preferred_sizes,
                     timer_slack_ms=b.timer_slack_ms, **b.params)
        self.central = pol.dispatch == "central"
        n = self.nodes.n
        if self.central:
            self.queue = self._make_queue()
            self.queue.min_timeout_s = self.min_timeout_s
            self.batcher = create("batcher", b.name, **bargs)
            self._fast = type(self.batcher) is NoBatching
            self.idle: list[deque[int]] = [deque() for _ in self.pools]
            self._n_idle = 0
            self._pool_order = self._preference_order()
            self._timer_at = math.inf
            self._timer: simpy.Event | None = None  # the dispatcher's live timer
            self._fifo = type(self.queue) is CentralQueue
            q = self.queue  # its bound methods, made once (the hot loop calls them per batch)
            self._q_methods = (q.oldest_s, q.head_arrays, q.fit_items)
            self._lookahead = (self._fifo and self.queue.divert is None
                               and not self._fast)
            # the batcher's last decision to wait: (head id then, wake-up time); it stands
            # until that time or until the head of the queue changes (FIFO queue only)
            self._wait_head, self._wait_t = -1, -math.inf
        else:
            self.node_q = [NodeQueue() for _ in range(n)]
            self.batchers = [create("batcher", b.name, **bargs) for _ in range(n)]
            self._fast = type(self.batchers[0]) is NoBatching
            r = pol.routing
            self.router = create("router", r.name, d=r.d, **r.params)
            self.route_rng = BufferedRandom(stream(self.seed, "routing"))
            self._waiting = [False] * n
            self._wake_size = [0] * n
            self._wake_items = [10**18] * n  # wake a waiting node at this many queued items
            self._wait_items = [0] * n  # items queued at a waiting node
            self._node_timer_gen = [0] * n
        self._wake: list[simpy.Event | None] = [None] * n
        self._next_gid = 0
        if not self.central:
            self._fallback = None
        self.fleet = Fleet(self, autoscalers)
        self.max_batch_seen = 0
        self._busy_at_warmup: list[float] | None = None
        self._billed_at_warmup: list[float] | None = None
        self._prov_at_warmup: list[float] | None = None
        self._prev_busy: list[float] = [0.0] * len(self.pools)
        self.wall_s = 0.0

    # ================================================================== processes
    def run(self) -> Simulation:
        """Run to ``duration_s`` and finish the bookkeeping."""
        t0 = time.perf_counter()
        env = self.env
        self.fleet.start()
        if not self.central:
            env.process(self._arrivals())
        env.process(self._sampler())
        env.run(until=self.duration_s)
        self._finish()
        self.wall_s = time.perf_counter() - t0
        return self

    def node_life(self, j: int, initial: bool) -> Generator[simpy.Event, Any, None]:
        """A node's life: provisioning, loading the model, serving until drained.

        Interrupts: 'cancel' (scale-down while starting), 'preempt' (spot), 'fail' (the node
        fails, is repaired, loads the model again and serves again).
        """
        env = self.env
        p = self._pool_of[j]
        fleet = self.fleet
        phase = "serve" if initial else "provision"
        while True:
            try:
                if phase == "provision":
                    yield env.timeout(fleet.provision_delay(p))
                    phase = "load"
                elif phase == "repair":
                    yield env.timeout(fleet.repair_delay(p))
                    phase = "load"
                if phase == "load":
                    fleet.set_state(p, j, LOADING)
                    yield env.timeout(p.load_time_s)
                    fleet.set_state(p, j, READY)
                    phase = "serve"
                    self._kick()
                yield from self._serve(j)
                break
            except simpy.Interrupt as intr:
                self._release(j, str(intr.cause))
                if intr.cause != "fail":
                    break
                fleet.set_state(p, j, FAILED)
                phase = "repair"
        fleet.terminate(p, j)

    def _serve(self, j: int) -> Generator[simpy.Event, Any, None]:
        """Serve: take a batch, serve it, record it; wait when there is nothing to take.

        Returns when the node is draining and has nothing left to do. This loop is the hot
        path: per batch it touches the request arrays once at start and once at finish.
        """
        env = self.env
        tab = self.table
        nodes = self.nodes
        svc = self._svc[j]
        pool = self._pool_of[j]
        pi = pool.index
        central = self.central
        ready = self._ready_py
        current = self._current
        bstart = self._bstart
        fallback = self._fallback  # degraded-mode services (set once, at start)
        needs_items = svc.needs_items or fallback is not None
        track_nodes = self.records_mode != "none"  # the node column is only for records
        served = tab.served
        while True:
            if not ready[j] and (central or not len(self.node_q[j])):
                return
            batch = self._take(j)
            if batch is None:
                if not ready[j]:
                    return
                ev = env.pending()
                self._wake[j] = ev
                batch = yield ev
                self._wake[j] = None
                if batch is None:
                    continue
            now = env._now
            # start: bookkeeping over the batch (ids are global; ranges are consecutive ids;
            # a range's start, finish and outcome are logged when it finishes)
            base = tab.base
            if type(batch) is range:
                a = batch.start - base
                k = len(batch)
                if needs_items:
                    ib = tab.items_before
                    items = ib[a + k] - ib[a]
                else:
                    items = k  # ignored by the service model
                if track_nodes:
                    tab.node[a:a + k] = j
            else:
                k = len(batch)
                loc = batch - base
                items = int(tab.size[loc].sum())
                tab.start[loc] = now
                tab.node[loc] = j
            if fallback is not None and self._degrade_batch():
                dt = fallback[pi].sample(k, items)
                if type(batch) is range:
                    tab.degraded[a:a + k] = 1
                else:
                    tab.degraded[loc] = 1
            else:
                dt = svc.sample(k, items)
            if not central:
                nodes.busy[j] = 1
                nodes.busy_until_s[j] = now + dt
            bstart[j] = now
            pool.n_busy += 1
            pool.busy_start_sum_s += now
            current[j] = batch
            if k > self.max_batch_seen:
                self.max_batch_seen = k
            yield env.sleep(dt)
            current[j] = None
            # finish
            t0 = now
            now = env._now
            if type(batch) is range:
                served((batch.start, batch.stop, t0, now))
            else:
                loc = batch - tab.base
                tab.finish[loc] = now
                tab.outcome[loc] = COMPLETED
            if not central:
                nodes.busy[j] = 0
            pool.n_busy -= 1
            pool.busy_start_sum_s -= t0
            pool.busy_done_s += now - t0
            pool.batches += 1
            pool.served += k

    def _sampler(self) -> Generator[simpy.Event, Any, None]:
        """Fill the time series at each interval boundary (and note busy time at warm-up)."""
        env = self.env
        iv = self.series.interval_s
        self._prev_busy = [0.0] * len(self.pools)
        bounds = [k * iv for k in range(1, self.series.n) if k * iv < self.duration_s]
        marks = sorted({*bounds, self.warmup_s})
        for t in marks:
            if t > env.now:
                yield env.timeout(t - env.now)
            self._observe()
            if self._busy_at_warmup is None and env.now >= self.warmup_s:
                self._busy_at_warmup = [p.busy_seconds(env.now) for p in self.pools]
                self._billed_at_warmup = [p.billed_seconds(env.now) for p in self.pools]
                self._prov_at_warmup = [p.provisioned_seconds(env.now) for p in self.pools]
            k = round(t / iv) - 1
            if abs((k + 1) * iv - t) < 1e-9 and k >= 0:
                self._fill_row(k)

    def _fill_row(self, k: int) -> None:
        """Row k of the time series, observed at its end (now)."""
        s = self.series
        now = self.env.now
        busy = [p.busy_seconds(now) for p in self.pools]
        width = now - k * s.interval_s
        s.busy_nodes[k] = (sum(busy) - sum(self._prev_busy)) / width if width > 0 else 0.0
        s.provisioned_nodes[k] = sum(p.billed for p in self.pools)
        s.queue_len[k] = self._queue_length()
        s.in_system[k] = s.queue_len[k] + self.in_service(self._current)
        self._prev_busy = busy
        self.fleet.sample(k)

    # ================================================================== dispatch
    def _observe(self) -> None:
        """Bring lazy state up to date (admissions, timeouts) before looking at queues."""
        now = self.env.now
        if self.central:
            self.queue.materialize(now)
            if self.has_timeouts:
                self.queue.expire(now, self.timeout_s)
        elif self.has_timeouts:
            for j, q in enumerate(self.node_q):
                self._expire_node(j, q, now)

    def _queue_length(self) -> int:
        if self.central:
            return self.queue.len
        return int(self.nodes.queue_len.sum())

    def _take(self, j: int) -> range | np.ndarray | None:
        """A batch for node j now, or None after arranging a wake-up."""
        if self.central:
            batch, wake_t = self._decide_central()
            if batch is None:
                self.idle[self._pool_of[j].index].append(j)
                self._n_idle += 1
                self._arm(wake_t)
            return batch
        return self._take_node(j)

    def _ask(self, batcher: Any, q: NodeQueue, now: float) -> BatchDecision:
        """Build the batcher's read-only view of node queue ``q`` and ask for a decision."""
        tab = self.table
        oldest = float(tab.t[q.ids[0] - tab.base]) if len(q) else None
        view = QueueView(len(q), oldest_s=oldest, limit=batcher.max_batch,
                         load=lambda k: q.head_arrays(k, tab))
        return batcher.next_batch(view, now)

    # ================================================================== end of run
    def _finish(self) -> None:
        """Admit the last arrivals, then hand every chunk to the recorder."""
        end = self.duration_s
        self.table.ensure_time(end)
        if self.central:
            self.queue.materialize(end)
            if self.has_timeouts:
                self.queue.expire(end, self.timeout_s)
        self._fill_row(self.series.n - 1)
        if self._busy_at_warmup is None:
            self._busy_at_warmup = [p.busy_seconds(end) for p in self.pools]
            self._billed_at_warmup = [p.billed_seconds(end) for p in self.pools]
            self._prov_at_warmup = [p.provisioned_seconds(end) for p in self.pools]
        for p in self.pools:  # nodes alive at the end are billed at least min_billing_s
            p.advance(end)
            for born in p.birth_s.values():
                if end - born < p.cfg.min_billing_s:
                    p.min_billing_extra_s += p.cfg.min_billing_s - (end - born)
        tab = self.table
        for j, batch in enumerate(self._current):  # in service at the end: started, in flight
            if type(batch) is range:
                tab.start[batch.start - tab.base:batch.stop - tab.base] = self._bstart[j]
        tab.flush_all()
        self.records = self.sink.close()

    def billed_seconds_window(self) -> list[float]:
        """Billed node-seconds per pool inside [warmup_s, duration_s] (minimum billing in)."""
        end = [p.billed_seconds(self.duration_s) for p in self.pools]
        start = self._billed_at_warmup or [0.0] * len(self.pools)
        return [e - s for e, s in zip(end, start, strict=True)]

    def provisioned_seconds_window(self) -> list[float]:
        """Provisioned node-seconds per pool inside [warmup_s, duration_s]."""
        end = [p.provisioned_seconds(self.duration_s) for p in self.pools]
        start = self._prov_at_warmup or [0.0] * len(self.pools)
        return [e - s for e, s in zip(end, start, strict=True)]

    def busy_seconds_window(self) -> list[float]:
        """Busy node-seconds per pool inside [warmup_s, duration_s]."""
        end = [p.busy_seconds(self.duration_s) for p in self.pools]
        start = self._busy_at_warmup or [0.0] * len(self.pools)
        return [e - s for e, s in zip(end, start, strict=True)]
