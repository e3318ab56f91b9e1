"""Fleet: the elastic, unreliable side of the cluster.

Owns every node's life: provisioning, loading the model, serving (the server's loop), draining,
termination; executes autoscaling decisions (provision new nodes, cancel starting ones, drain
ready ones); spot preemptions after a notice; random failures and repairs; and the event log.
The scaling *decisions* come from pure policies (``simulator.policies.autoscaling``); the fleet
only carries them out. It talks to the rest of the engine through a :class:`FleetHost`.

Walk of one spot preemption: :meth:`Fleet._preemptions` picks a node; after
:meth:`Fleet.stop_taking` (state DRAINING, the dispatcher stops giving it work) and the notice,
it interrupts the node's :meth:`Fleet.node_life`, which asks the host to ``release`` the node
(the dispatcher requeues or loses its batch in service) and terminates it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from heapq import heapify, heapreplace
from typing import Any

import numpy as np
import pandas as pd
import simpy

from simulator.distributions import make_distribution
from simulator.engine.clock import Clock
from simulator.engine.nodes import (
    DRAINING,
    FAILED,
    LOADING,
    PROVISIONING,
    READY,
    STATE_NAMES,
    TERMINATED,
    NodeTable,
    Pool,
)
from simulator.policies.autoscaling_api import PoolMetrics
from simulator.scenario import DelayCfg


@dataclass(frozen=True)
class FleetHost:
    """What the fleet needs from the rest of the engine (wired by the Simulation).

    serve(j): a ready node's serving loop (returns when the node has nothing left to do);
    serving(j): whether node j has a batch in service; node_ready(j): node j became ready;
    stop_taking(j): node j takes no new work; release(j, lose): node j stops abruptly, its
    batch in service is requeued or lost; metrics(pool, tick_s): what the pool's autoscaler
    sees now.
    """

    serve: Callable[[int], Generator[simpy.Event, Any, None]]
    serving: Callable[[int], bool]
    node_ready: Callable[[int], None]
    stop_taking: Callable[[int], None]
    release: Callable[[int, bool], None]
    metrics: Callable[[Pool, float], PoolMetrics]


class Fleet:
    """Lifecycle of every node in every pool, driven by SimPy processes.

    ``autoscalers``: one policy per pool (None: never reconciled); ``streams(name)``: the
    random stream of a purpose (``provisioning:<pool>``, ``preemptions:<pool>:<k>``,
    ``failures:<pool>:<k>``, ``repairs:<pool>:<k>`` for the pool's k-th slot; see
    :mod:`simulator.rng`); ``preemption_times``: replayed preemption times per pool (s).
    """

    def __init__(self, env: Clock, pools: list[Pool], nodes: NodeTable, autoscalers: list[Any],
                 streams: Callable[[str], np.random.Generator], host: FleetHost,
                 preemption_times: dict[str, list[float]] | None = None) -> None:
        self.env = env
        self.pools = pools
        self.nodes = nodes
        self.autoscalers = autoscalers
        self.streams = streams
        self._provisioning = {p.name: streams(f"provisioning:{p.name}") for p in pools}
        self._repairs: dict[int, np.random.Generator] = {}  # per slot, made when first needed
        self.host = host
        self._pool_of = [pools[p] for p in nodes.pool_of.tolist()]
        self._preemption_times = preemption_times or {}
        self.events: list[tuple[float, str, str, str]] = []
        self.procs: dict[int, simpy.Process] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Initial nodes (ready at t = 0) and the fleet processes."""
        for p in self.pools:
            p.free = list(reversed(p.slots))
            p.desired = p.cfg.nodes
            for _ in range(p.cfg.nodes):
                self.launch(p, initial=True)
            pol = self.autoscalers[p.index]
            holds = getattr(pol, "holds", None)
            fixed = holds is not None and holds(p.cfg.nodes)
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
        p.birth_s[j] = self.env.now
        self.set_state(p, j, READY if initial else PROVISIONING)
        self.procs[j] = self.env.process(self.node_life(j, initial))
        return j

    def node_life(self, j: int, initial: bool) -> Generator[simpy.Event, Any, None]:
        """A node's life: provisioning, loading the model, serving until drained.

        Interrupts: 'cancel' (scale-down while starting), 'preempt' (spot), 'fail' (the node
        fails, is repaired, loads the model again and serves again).
        """
        env = self.env
        p = self._pool_of[j]
        host = self.host
        phase = "serve" if initial else "provision"
        while True:
            try:
                if phase == "provision":
                    yield env.timeout(self._delay(p.cfg.provisioning,
                                                  self._provisioning[p.name]))
                    phase = "load"
                elif phase == "repair":
                    assert p.cfg.failures is not None
                    yield env.timeout(self._delay(p.cfg.failures.repair, self._repair_rng(p, j)))
                    phase = "load"
                if phase == "load":
                    self.set_state(p, j, LOADING)
                    yield env.timeout(p.load_time_s)
                    self.set_state(p, j, READY)
                    phase = "serve"
                    host.node_ready(j)
                yield from host.serve(j)
                break
            except simpy.Interrupt as intr:
                host.release(j, self._loses(p, str(intr.cause)))
                if intr.cause != "fail":
                    break
                self.set_state(p, j, FAILED)
                phase = "repair"
        self.terminate(p, j)

    @staticmethod
    def _loses(p: Pool, cause: str) -> bool:
        """Whether the batch in service is lost (else requeued) when a node stops for cause."""
        if cause == "preempt" and p.cfg.spot is not None:
            return p.cfg.spot.on_preempt == "lose"
        if cause == "fail" and p.cfg.failures is not None:
            return p.cfg.failures.on_failure == "lose"
        return False

    def set_state(self, p: Pool, j: int, state: int) -> None:
        """Move node j to ``state`` with exact time integrals."""
        p.advance(self.env.now)
        old = self.nodes.set_state(j, state)
        if old != TERMINATED or state != TERMINATED:
            p.counts[old] -= old != TERMINATED
        p.counts[state] += state != TERMINATED
        p.max_billed = max(p.max_billed, p.billed)
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

    @staticmethod
    def _delay(d: DelayCfg, rng: np.random.Generator) -> float:
        """A provisioning or repair delay, s."""
        return float(make_distribution(d.distribution, d.mean_s, d.cv).sample(
            rng, 1)[0]) if d.mean_s > 0 else 0.0

    def _repair_rng(self, p: Pool, j: int) -> np.random.Generator:
        rng = self._repairs.get(j)
        if rng is None:
            rng = self._repairs[j] = self.streams(f"repairs:{p.name}:{j - p.slots.start}")
        return rng

    def log(self, p: Pool, kind: str, detail: str = "") -> None:
        self.events.append((self.env.now, p.name, kind, detail))

    # ------------------------------------------------------------------ scaling
    def _autoscale(self, p: Pool, policy: Any) -> Generator[simpy.Event, Any, None]:
        """Every sync period: ask the policy, clamp, reconcile the pool to it."""
        tick = float(policy.sync_period_s)
        while True:
            yield self.env.timeout(tick)
            m = self.host.metrics(p, tick)
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
            removed += self._drain_ready(p, k - removed)
            if removed:
                p.scale_downs += 1
                self.log(p, "scale_down", f"-{removed}")

    def _cancel_starting(self, p: Pool, k: int) -> int:
        """Cancel up to k nodes still provisioning or loading (newest first)."""
        state = self.nodes.state
        starting = [j for j in p.slots if state[j] in (PROVISIONING, LOADING)]
        starting.sort(key=lambda j: -p.birth_s.get(j, 0.0))
        done = 0
        for j in starting[:k]:
            proc = self.procs.get(j)
            if proc is not None and proc.is_alive:
                proc.interrupt("cancel")
                done += 1
        return done

    def _drain_ready(self, p: Pool, k: int) -> int:
        """Drain up to k ready nodes of pool p, idle ones first, then the newest; returns
        how many."""
        if k <= 0:
            return 0
        state = self.nodes.state
        ready = [j for j in p.slots if state[j] == READY]
        ready.sort(key=lambda j: (self.host.serving(j), -p.birth_s.get(j, 0.0)))
        for j in ready[:k]:
            self.stop_taking(p, j)
        return min(k, len(ready))

    def stop_taking(self, p: Pool, j: int) -> None:
        """Node j takes no new work (draining, or a preemption notice)."""
        if self.nodes.state[j] != READY:
            return
        self.set_state(p, j, DRAINING)
        self.host.stop_taking(j)

    # ------------------------------------------------------------------ unreliability
    def _slot_clocks(self, p: Pool, purpose: str, mean_s: float,
                     hit: Callable[[Pool, int], None]) -> Generator[simpy.Event, Any, None]:
        """A Poisson clock per node slot of pool p (mean ``mean_s`` s between ticks), each
        drawn from its own stream ``<purpose>:<pool>:<k>``; at each tick ``hit(p, j)`` decides
        whether the node in slot j (if any) is affected. The ticks do not depend on the fleet,
        so variants that scale differently see the same process (common random numbers)."""
        gens = [self.streams(f"{purpose}:{p.name}:{k}") for k in range(len(p.slots))]
        heap = [(float(g.exponential(mean_s)), k) for k, g in enumerate(gens)]
        heapify(heap)
        env = self.env
        first = p.slots.start
        while heap:
            t, k = heap[0]
            if t > env.now:
                yield env.timeout(t - env.now)
            heapreplace(heap, (t + float(gens[k].exponential(mean_s)), k))
            hit(p, first + k)

    def _preemptions(self, p: Pool) -> Generator[simpy.Event, Any, None]:
        """Spot preemptions: a Poisson clock per node slot (or a replayed trace, each time
        hitting a random alive node); a hit node gets a notice, then is preempted."""
        spot = p.cfg.spot
        assert spot is not None
        times = self._preemption_times.get(p.name)
        if times is None:
            if spot.preemptions_per_hour > 0:
                yield from self._slot_clocks(p, "preemptions", 3600.0 / spot.preemptions_per_hour,
                                             self._preempt)
            return
        rng = self.streams(f"preemptions:{p.name}")
        for t in times:
            if t > self.env.now:
                yield self.env.timeout(t - self.env.now)
            alive = self._alive_nodes(p)
            if alive:
                self._preempt(p, alive[int(rng.integers(len(alive)))])

    def _alive_nodes(self, p: Pool) -> list[int]:
        st = self.nodes.state
        return [j for j in p.slots if st[j] in (PROVISIONING, LOADING, READY)]

    def _preempt(self, p: Pool, j: int) -> None:
        """Preemption notice for node j, if it is alive (provisioning, loading or ready)."""
        if self.nodes.state[j] not in (PROVISIONING, LOADING, READY):
            return
        assert p.cfg.spot is not None
        p.preemptions += 1
        self.log(p, "preemption_notice", f"node {j}")
        self.env.process(self._preempt_after_notice(p, j, p.cfg.spot.notice_s))

    def _preempt_after_notice(self, p: Pool, j: int,
                              notice_s: float) -> Generator[simpy.Event, Any, None]:
        birth = p.birth_s.get(j)
        # during the notice the node takes no new work (as a draining node)
        self.stop_taking(p, j)
        yield self.env.timeout(notice_s)
        proc = self.procs.get(j)
        if proc is not None and proc.is_alive and p.birth_s.get(j) == birth:
            proc.interrupt("preempt")
            self.log(p, "preemption", f"node {j}")

    def _failures(self, p: Pool) -> Generator[simpy.Event, Any, None]:
        """Random failures: each ready node fails at rate 1/MTBF (a clock per slot)."""
        f = p.cfg.failures
        assert f is not None
        yield from self._slot_clocks(p, "failures", f.mtbf_h * 3600.0, self._fail)

    def _fail(self, p: Pool, j: int) -> None:
        """Node j fails, if it is ready; it is repaired and loads the model again."""
        if self.nodes.state[j] != READY:
            return
        proc = self.procs.get(j)
        if proc is not None and proc.is_alive:
            p.failures += 1
            self.log(p, "failure", f"node {j}")
            proc.interrupt("fail")

    # ------------------------------------------------------------------ outputs
    def event_frame(self) -> pd.DataFrame:
        """The event log: t_s, pool, kind (a node state or a fleet action), detail."""
        return pd.DataFrame(self.events, columns=["t_s", "pool", "kind", "detail"])
