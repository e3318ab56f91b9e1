"""Fleet: the elastic, unreliable side of the cluster.

Executes autoscaling decisions (provision new nodes, cancel starting ones, drain ready ones),
spot preemptions after a notice, random failures and repairs, and keeps the per-pool time
series and the event log. The scaling *decisions* come from pure policies
(``simulator.policies.autoscaling``); this module only carries them out.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import simpy

from simulator.cluster import (
    DRAINING,
    FAILED,
    LOADING,
    PROVISIONING,
    READY,
    STATE_NAMES,
    TERMINATED,
    Pool,
)
from simulator.distributions import make_distribution
from simulator.policies.autoscaling_api import PoolMetrics
from simulator.rng import stream

if TYPE_CHECKING:
    from simulator.engine import Simulation

POOL_SERIES = ("desired", "provisioning", "loading", "ready", "draining", "failed", "busy")


class Fleet:
    """Lifecycle of every node in every pool, driven by SimPy processes."""

    def __init__(self, sim: Simulation, autoscalers: list[Any]) -> None:
        self.sim = sim
        self.env = sim.env
        self.autoscalers = autoscalers  # one policy per pool (None = never reconciled)
        seed = sim.seed
        self.rng = {p.name: stream(seed, f"fleet:{p.name}") for p in sim.pools}
        self.events: list[tuple[float, str, str, str]] = []
        n = sim.series.n
        self.series = {k: np.zeros((n, len(sim.pools))) for k in POOL_SERIES}
        self._prev_busy = [0.0] * len(sim.pools)
        self._tick_state: dict[int, tuple[float, float, float, int, int]] = {}
        self._rate_hist: dict[int, list[float]] = {p.index: [] for p in sim.pools}
        self.procs: dict[int, simpy.Process] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Initial nodes (ready at t = 0) and the fleet processes."""
        for p in self.sim.pools:
            p.free = list(reversed(p.slots))
            p.desired = p.cfg.nodes
            for _ in range(p.cfg.nodes):
                self.launch(p, initial=True)
            pol = self.autoscalers[p.index]
            fixed = type(pol).__name__ == "StaticAutoscaler" and getattr(
                pol, "nodes", None) in (None, p.cfg.nodes)
            needs_loop = pol is not None and (
                not fixed or p.cfg.spot is not None or p.cfg.failures is not None)
            if needs_loop:
                self.env.process(self._autoscale(p, pol))
            if p.cfg.spot is not None:
                self.env.process(self._preemptions(p))
            if p.cfg.failures is not None:
                self.env.process(self._failures(p))

    def launch(self, p: Pool, initial: bool = False) -> int | None:
        """Request a node in pool p; returns its slot (None when the pool is full)."""
        if not p.free:
            return None
        j = p.free.pop()
        now = self.env.now
        p.birth_s[j] = now
        self.set_state(p, j, READY if initial else PROVISIONING)
        self.procs[j] = self.env.process(self.sim.node_life(j, initial))
        return j

    def set_state(self, p: Pool, j: int, state: int) -> None:
        """Move node j to ``state`` with exact time integrals."""
        nodes = self.sim.nodes
        old = int(nodes.state[j])
        p.advance(self.env.now)
        if old != TERMINATED or state != TERMINATED:
            p.counts[old] -= old != TERMINATED
        p.counts[state] += state != TERMINATED
        p.max_billed = max(p.max_billed, p.billed)
        nodes.state[j] = state
        nodes.ready[j] = state == READY
        self.sim._ready_py[j] = state == READY
        self.events.append((self.env.now, p.name, STATE_NAMES[state], f"node {j}"))

    def terminate(self, p: Pool, j: int) -> None:
        """Node j leaves: billing stops (with the pool's minimum billing period)."""
        now = self.env.now
        self.set_state(p, j, TERMINATED)
        life = now - p.birth_s.pop(j, now)
        if life < p.cfg.min_billing_s:
            p.min_billing_extra_s += p.cfg.min_billing_s - life
        p.free.append(j)
        self.procs.pop(j, None)

    def provision_delay(self, p: Pool) -> float:
        d = p.cfg.provisioning
        return float(make_distribution(d.distribution, d.mean_s, d.cv).sample(
            self.rng[p.name], 1)[0]) if d.mean_s > 0 else 0.0

    def repair_delay(self, p: Pool) -> float:
        assert p.cfg.failures is not None
        d = p.cfg.failures.repair
        return float(make_distribution(d.distribution, d.mean_s, d.cv).sample(
            self.rng[p.name], 1)[0]) if d.mean_s > 0 else 0.0

    def log(self, p: Pool, kind: str, detail: str = "") -> None:
        self.events.append((self.env.now, p.name, kind, detail))

    # ------------------------------------------------------------------ scaling
    def metrics(self, p: Pool, tick_s: float) -> PoolMetrics:
        """What the pool's autoscaler sees now (averages over the last tick)."""
        sim = self.sim
        now = self.env.now
        busy, ready_s = p.busy_seconds(now), p.ready_seconds(now)
        arrivals = sim.arrivals_so_far()
        last = self._tick_state.get(p.index, (now - tick_s, 0.0, 0.0, 0, p.served))
        t0, busy0, ready0, arr0, served0 = last
        dt = max(now - t0, 1e-9)
        util = (busy - busy0) / (ready_s - ready0) if ready_s - ready0 > 0 else 0.0
        share = sim.pool_share(p)
        rate = (arrivals - arr0) / dt * share
        served = p.served - served0
        self._tick_state[p.index] = (now, busy, ready_s, arrivals, p.served)
        hist = self._rate_hist[p.index]
        hist.append(rate)
        if len(hist) > 5760:
            del hist[: len(hist) - 5760]
        queue = sim.queue_length_for(p)
        in_service = sim.in_service_for(p)
        s_per_req = ((busy - busy0) / served if served > 0
                     else p.service.mean_time(1, sim.mean_items()))
        forecast = sim.forecast_for(p)
        return PoolMetrics(
            now_s=now, ready=p.counts[READY], starting=p.starting, draining=p.counts[DRAINING],
            desired=p.desired, min_nodes=p.cfg.lo, max_nodes=p.cfg.hi,
            utilization=min(max(util, 0.0), 1.0), concurrency=float(queue + in_service),
            queue_length=float(queue), arrival_rate_qps=rate,
            rate_history=np.asarray(hist), tick_s=tick_s,
            service_s_per_request=float(s_per_req), forecast=forecast,
        )

    def _autoscale(self, p: Pool, policy: Any) -> Generator[simpy.Event, Any, None]:
        """Every sync period: ask the policy, clamp, reconcile the pool to it."""
        tick = float(policy.sync_period_s)
        while True:
            yield self.env.timeout(tick)
            m = self.metrics(p, tick)
            want = int(policy.desired(self.env.now, m))
            want = min(max(want, p.cfg.lo), p.cfg.hi)
            if want != p.desired:
                self.log(p, "desired", f"{p.desired}->{want}")
            p.desired = want
            self.reconcile(p)

    def reconcile(self, p: Pool) -> None:
        """Start or remove nodes so that ready + starting + failed = desired."""
        current = p.counts[READY] + p.starting + p.counts[FAILED]
        if p.desired > current:
            n = 0
            for _ in range(p.desired - current):
                if self.launch(p) is None:
                    break
                n += 1
            if n:
                p.scale_ups += 1
                self.log(p, "scale_up", f"+{n}")
        elif p.desired < current:
            k = current - p.desired
            removed = self._cancel_starting(p, k)
            removed += self.sim.drain_ready(p, k - removed)
            if removed:
                p.scale_downs += 1
                self.log(p, "scale_down", f"-{removed}")

    def _cancel_starting(self, p: Pool, k: int) -> int:
        """Cancel up to k nodes still provisioning or loading (newest first)."""
        nodes = self.sim.nodes
        starting = [j for j in p.slots if nodes.state[j] in (PROVISIONING, LOADING)]
        starting.sort(key=lambda j: -p.birth_s.get(j, 0.0))
        done = 0
        for j in starting[:k]:
            proc = self.procs.get(j)
            if proc is not None and proc.is_alive:
                proc.interrupt("cancel")
                done += 1
        return done

    # ------------------------------------------------------------------ unreliability
    def _alive_nodes(self, p: Pool) -> list[int]:
        st = self.sim.nodes.state
        return [j for j in p.slots if st[j] in (PROVISIONING, LOADING, READY)]

    def _preemptions(self, p: Pool) -> Generator[simpy.Event, Any, None]:
        """Spot preemptions: Poisson per node (or a replayed trace), after a notice."""
        spot = p.cfg.spot
        assert spot is not None
        rng = self.rng[p.name]
        times: list[float] | None = None
        if spot.trace:
            df = pd.read_csv(self.sim.sc.resolve_path(spot.trace))
            col = "time_s" if "time_s" in df.columns else df.columns[0]
            times = sorted(float(x) for x in df[col])
        while True:
            if times is not None:
                if not times:
                    return
                t = times.pop(0)
                if t > self.env.now:
                    yield self.env.timeout(t - self.env.now)
            else:
                rate = spot.preemptions_per_hour / 3600.0 * max(len(self._alive_nodes(p)), 1)
                if rate <= 0:
                    return
                yield self.env.timeout(float(rng.exponential(1.0 / rate)))
            alive = self._alive_nodes(p)
            if not alive:
                continue
            j = alive[int(rng.integers(len(alive)))]
            p.preemptions += 1
            self.log(p, "preemption_notice", f"node {j}")
            self.env.process(self._preempt_after_notice(p, j, spot.notice_s))

    def _preempt_after_notice(self, p: Pool, j: int,
                              notice_s: float) -> Generator[simpy.Event, Any, None]:
        birth = p.birth_s.get(j)
        # during the notice the node takes no new work (as a draining node)
        self.sim.stop_taking(p, j)
        yield self.env.timeout(notice_s)
        proc = self.procs.get(j)
        if proc is not None and proc.is_alive and p.birth_s.get(j) == birth:
            proc.interrupt("preempt")
            self.log(p, "preemption", f"node {j}")

    def _failures(self, p: Pool) -> Generator[simpy.Event, Any, None]:
        """Random failures: each ready node fails at rate 1/MTBF."""
        f = p.cfg.failures
        assert f is not None
        rng = self.rng[p.name]
        while True:
            n = max(p.counts[READY], 1)
            yield self.env.timeout(float(rng.exponential(f.mtbf_h * 3600.0 / n)))
            ready = [j for j in p.slots if self.sim.nodes.state[j] == READY]
            if not ready:
                continue
            j = ready[int(rng.integers(len(ready)))]
            proc = self.procs.get(j)
            if proc is not None and proc.is_alive:
                p.failures += 1
                self.log(p, "failure", f"node {j}")
                proc.interrupt("fail")

    # ------------------------------------------------------------------ outputs
    def sample(self, row: int) -> None:
        """Per-pool counts for time-series row ``row`` (busy: mean over the interval)."""
        now = self.env.now
        width = now - row * self.sim.series.interval_s
        for p in self.sim.pools:
            i = p.index
            b = p.busy_seconds(now)
            s = self.series
            s["desired"][row, i] = p.desired
            s["provisioning"][row, i] = p.counts[PROVISIONING]
            s["loading"][row, i] = p.counts[LOADING]
            s["ready"][row, i] = p.counts[READY]
            s["draining"][row, i] = p.counts[DRAINING]
            s["failed"][row, i] = p.counts[FAILED]
            s["busy"][row, i] = (b - self._prev_busy[i]) / width if width > 0 else 0.0
            self._prev_busy[i] = b

    def pool_frame(self) -> pd.DataFrame:
        """Long-format per-pool time series: t_s, pool, desired, provisioning, ..."""
        t = self.sim.series.t_s
        frames = []
        for p in self.sim.pools:
            d = {"t_s": t, "pool": p.name}
            d.update({k: v[:, p.index] for k, v in self.series.items()})
            frames.append(pd.DataFrame(d))
        return pd.concat(frames, ignore_index=True)

    def event_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.events, columns=["t_s", "pool", "kind", "detail"])

