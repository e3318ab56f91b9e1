"""Fleet: the elastic, unreliable side of the cluster.

Owns every node's life: provisioning, loading the model, serving (the server's loop), draining,
termination; executes autoscaling decisions (provision new nodes, cancel starting ones, drain
ready ones); spot preemptions after a notice; random failures and repairs; and the event log.
The scaling *decisions* come from pure policies (``simulator.policies.autoscaling``); the fleet
only carries them out. It talks to the rest of the engine through a :class:`FleetHost`.

A node is a group of slots, one per model instance (``cluster.pools.instances``): it is
launched, drained, preempted, failed and terminated as one, under the name of its first slot
(the leader); each instance runs its own serving loop (the leader's inside
:meth:`Fleet.node_life`, the others as child processes that end with it).

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
        self._instance_procs: dict[int, list[simpy.Process]] = {}  # leader -> other instances

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Initial nodes (ready at t = 0) and the fleet processes."""
        for p in self.pools:
            p.free = list(reversed(p.node_slots))
            p.desired = p.cfg.nodes
            if p.loan is not None:
                p.lendable = p.loan.changes[0][1]
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
            if p.loan is not None:
                self.env.process(self._lending(p))

    def launch(self, p: Pool, initial: bool = False) -> int | None:
        """Request a node in pool p; returns its slot (None when the pool is full)."""
        if not p.free:
            return None
        if p.loan is not None:
            if p.billed >= p.lendable:  # a borrowed pool holds at most what is lent
                return None
            p.borrows += 1
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
                if phase == "provision":  # a borrowed node: the training job yields it
                    delay = p.cfg.provisioning if p.loan is None else p.loan.delay
                    yield env.timeout(self._delay(delay, self._provisioning[p.name]))
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
                yield from self._serve_node(p, j)
                break
            except simpy.Interrupt as intr:
                lose = self._loses(p, str(intr.cause))
                for proc in self._instance_procs.pop(j, ()):
                    if proc.is_alive:
                        proc.interrupt(intr.cause)
                for s in p.group(j):
                    host.release(s, lose)
                if intr.cause != "fail":
                    break
                self.set_state(p, j, FAILED)
                phase = "repair"
        self.terminate(p, j)

    def _serve_node(self, p: Pool, j: int) -> Generator[simpy.Event, Any, None]:
        """Node j's instances serve until each is told to stop: the leader's loop here, the
        others as child processes this one waits for (a single instance: the loop itself)."""
        if p.instances == 1:
            yield from self.host.serve(j)
            return
        others = [self.env.process(self._instance(s)) for s in p.group(j)[1:]]
        self._instance_procs[j] = others
        yield from self.host.serve(j)
        for proc in others:
            if proc.is_alive:
                yield proc
        self._instance_procs.pop(j, None)

    def _instance(self, s: int) -> Generator[simpy.Event, Any, None]:
        """A non-leader instance's serving loop; it ends quietly when its node is interrupted
        (the node's life releases the instance's batch)."""
        try:
            yield from self.host.serve(s)
        except simpy.Interrupt:
            return

    @staticmethod
    def _loses(p: Pool, cause: str) -> bool:
        """Whether the batch in service is lost (else requeued) when a node stops for cause."""
        if cause == "preempt" and p.cfg.spot is not None:
            return p.cfg.spot.on_preempt == "lose"
        if cause == "fail" and p.cfg.failures is not None:
            return p.cfg.failures.on_failure == "lose"
        return False

    def set_state(self, p: Pool, j: int, state: int) -> None:
        """Move node j (all its instance slots) to ``state`` with exact time integrals."""
        p.advance(self.env.now)
        old = self.nodes.set_state(j, state)
        for s in p.group(j)[1:]:
            self.nodes.set_state(s, state)
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
        p.reclaiming.discard(j)
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
            k = (j - p.slots.start) // p.instances
            rng = self._repairs[j] = self.streams(f"repairs:{p.name}:{k}")
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
            lo, hi = p.bounds()
            want = min(max(want, lo), hi)
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
        starting = [j for j in p.node_slots if state[j] in (PROVISIONING, LOADING)]
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
        ready = [j for j in p.node_slots if state[j] == READY]
        serving = self.host.serving
        ready.sort(key=lambda j: (any(serving(s) for s in p.group(j)), -p.birth_s.get(j, 0.0)))
        for j in ready[:k]:
            self.stop_taking(p, j)
        return min(k, len(ready))

    def stop_taking(self, p: Pool, j: int) -> None:
        """Node j takes no new work (draining, or a preemption notice)."""
        if self.nodes.state[j] != READY:
            return
        self.set_state(p, j, DRAINING)
        for s in p.group(j):
            self.host.stop_taking(s)

    # ------------------------------------------------------------------ borrowing
    def _lending(self, p: Pool) -> Generator[simpy.Event, Any, None]:
        """A borrowed pool's loan: what the training cluster lends changes (nodes above it are
        reclaimed after the notice), and the nodes are wanted from ``lead_s`` before each
        scheduled peak to ``return_after_s`` after it (the pool then holds all it may)."""
        loan = p.loan
        steps = [(t, 0, n) for t, n in loan.changes]
        steps += [(t, 1, int(w)) for a, b in loan.windows for t, w in ((a, True), (b, False))]
        steps.sort()
        for t, kind, v in steps:
            if t > self.env.now:
                yield self.env.timeout(t - self.env.now)
            if kind == 0:
                p.lendable = v
                self.log(p, "lendable", str(v))
                self._reclaim_over(p)
            else:
                p.wanted = bool(v)
                self.log(p, "borrow_window", "open" if v else "closed")
            lo, hi = p.bounds()
            # a window opens: hold all that is lent; it closes: give back down to the floor
            # (the pool's autoscaler, if it scales, asks for more at its next sync)
            want = lo if kind == 1 and not v else min(max(p.desired, lo), hi)
            if want != p.desired:
                self.log(p, "desired", f"{p.desired}->{want}")
            p.desired = want
            self.reconcile(p)

    def _reclaim_over(self, p: Pool) -> None:
        """Take back the borrowed nodes above what is lendable now: starting nodes at once
        (newest first), then nodes already leaving, failed, idle and the newest, each after
        the reclaim notice (it takes no new work meanwhile; a batch still in service at the
        end goes back to the queue)."""
        state = self.nodes.state
        alive = [j for j in p.node_slots if state[j] != TERMINATED and j not in p.reclaiming]
        excess = len(alive) - p.lendable
        if excess <= 0:
            return
        serving = self.host.serving

        def order(j: int) -> tuple[int, bool, float]:
            rank = {PROVISIONING: 0, LOADING: 0, DRAINING: 1, FAILED: 2}.get(int(state[j]), 3)
            return (rank, any(serving(s) for s in p.group(j)), -p.birth_s.get(j, 0.0))

        for j in sorted(alive, key=order)[:excess]:
            p.reclaims += 1
            p.reclaiming.add(j)
            self.log(p, "reclaim_notice", f"node {j}")
            if state[j] in (PROVISIONING, LOADING):
                proc = self.procs.get(j)
                if proc is not None and proc.is_alive:
                    proc.interrupt("reclaim")
                continue
            self.stop_taking(p, j)  # now: the notice is not a scale-down's to drain again
            self.env.process(self._reclaim_after_notice(p, j, p.birth_s.get(j)))

    def _reclaim_after_notice(self, p: Pool, j: int,
                              birth: float | None) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(p.loan.notice_s)
        proc = self.procs.get(j)
        if proc is not None and proc.is_alive and p.birth_s.get(j) == birth:
            proc.interrupt("reclaim")
            self.log(p, "reclaim", f"node {j}")

    # ------------------------------------------------------------------ unreliability
    def _slot_clocks(self, p: Pool, purpose: str, mean_s: float,
                     hit: Callable[[Pool, int], None]) -> Generator[simpy.Event, Any, None]:
        """A Poisson clock per node of pool p (mean ``mean_s`` s between ticks), each drawn
        from its own stream ``<purpose>:<pool>:<k>`` (k: the node's index in the pool); at each
        tick ``hit(p, j)`` decides whether the node led by slot j (if any) is affected. The
        ticks do not depend on the fleet, so variants that scale differently see the same
        process (common random numbers)."""
        leaders = p.node_slots
        gens = [self.streams(f"{purpose}:{p.name}:{k}") for k in range(len(leaders))]
        heap = [(float(g.exponential(mean_s)), k) for k, g in enumerate(gens)]
        heapify(heap)
        env = self.env
        while heap:
            t, k = heap[0]
            if t > env.now:
                yield env.timeout(t - env.now)
            heapreplace(heap, (t + float(gens[k].exponential(mean_s)), k))
            hit(p, leaders[k])

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
        return [j for j in p.node_slots if st[j] in (PROVISIONING, LOADING, READY)]

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
