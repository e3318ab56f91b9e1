"""Observation: the time series, the measurement window's integrals and what autoscalers see.

One owner for every look at the running system: the sampler process fills a row of the time
series (and of the per-pool series) at each interval boundary and notes the busy, billed and
provisioned node-seconds at the end of the warm-up; :meth:`Observer.metrics` builds the
:class:`PoolMetrics` an autoscaler sees. It reads the pools' accounting, the dispatcher's queues
and the server's batches in service, and changes none of them (beyond bringing the queues' lazy
admission up to date).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import pandas as pd
import simpy

from simulator.engine.clock import Clock
from simulator.engine.dispatch import Dispatcher
from simulator.engine.nodes import (
    DRAINING,
    FAILED,
    LOADING,
    PROVISIONING,
    READY,
    Pool,
    ready_share,
)
from simulator.engine.server import Server
from simulator.metrics import TimeSeries
from simulator.policies.autoscaling_api import PoolMetrics

POOL_SERIES = ("desired", "provisioning", "loading", "ready", "draining", "failed", "busy")
_RATE_HISTORY = 5760  # ticks of arrival-rate history kept for autoscalers


class Observer:
    """The sampler, the warm-up snapshot and autoscaler metrics (see the module docstring).

    ``mean_items``: mean items per request (for a service-time guess before any batch);
    ``forecast``: the prior rate curve (QPS as a function of s) or None.
    """

    def __init__(self, env: Clock, duration_s: float, warmup_s: float, series: TimeSeries,
                 pools: list[Pool], dispatcher: Dispatcher, server: Server, mean_items: int,
                 forecast: Callable[[float], float] | None) -> None:
        self.env = env
        self.duration_s = duration_s
        self.warmup_s = warmup_s
        self.series = series
        self.pools = pools
        self.dispatcher = dispatcher
        self.server = server
        self.mean_items = mean_items
        self.forecast = forecast
        n, k = series.n, len(pools)
        self.pool_series = {name: np.zeros((n, k)) for name in POOL_SERIES}
        self._prev_busy = [0.0] * k  # busy node-seconds at the last row, all pools
        self._prev_pool_busy = [0.0] * k
        self._at_warmup: tuple[list[float], list[float], list[float]] | None = None
        self._tick_state: dict[int, tuple[float, float, float, int, int]] = {}
        self._rate_hist: dict[int, list[float]] = {p.index: [] for p in pools}

    def start(self) -> None:
        self.env.process(self._sampler())

    # ------------------------------------------------------------------ the sampler
    def _sampler(self) -> Generator[simpy.Event, Any, None]:
        """Fill the time series at each interval boundary (and note the warm-up integrals)."""
        env = self.env
        iv = self.series.interval_s
        bounds = [k * iv for k in range(1, self.series.n) if k * iv < self.duration_s]
        for t in sorted({*bounds, self.warmup_s}):
            if t > env.now:
                yield env.timeout(t - env.now)
            self.dispatcher.observe(env.now)
            if self._at_warmup is None and env.now >= self.warmup_s:
                self._snapshot(env.now)
            k = round(t / iv) - 1
            if abs((k + 1) * iv - t) < 1e-9 and k >= 0:
                self._fill_row(k)

    def _snapshot(self, now: float) -> None:
        self._at_warmup = ([p.busy_seconds(now) for p in self.pools],
                           [p.billed_seconds(now) for p in self.pools],
                           [p.provisioned_seconds(now) for p in self.pools])

    def _fill_row(self, k: int) -> None:
        """Row k of the time series, observed at its end (now)."""
        s = self.series
        now = self.env.now
        busy = [p.busy_seconds(now) for p in self.pools]
        width = now - k * s.interval_s
        s.busy_nodes[k] = (sum(busy) - sum(self._prev_busy)) / width if width > 0 else 0.0
        s.provisioned_nodes[k] = sum(p.billed for p in self.pools)
        s.queue_len[k] = self.dispatcher.queue_length()
        s.in_system[k] = s.queue_len[k] + self.server.in_service()
        self._prev_busy = busy
        ps = self.pool_series
        for p in self.pools:
            i = p.index
            b = p.busy_seconds(now)
            ps["desired"][k, i] = p.desired
            ps["provisioning"][k, i] = p.counts[PROVISIONING]
            ps["loading"][k, i] = p.counts[LOADING]
            ps["ready"][k, i] = p.counts[READY]
            ps["draining"][k, i] = p.counts[DRAINING]
            ps["failed"][k, i] = p.counts[FAILED]
            ps["busy"][k, i] = (b - self._prev_pool_busy[i]) / width if width > 0 else 0.0
            self._prev_pool_busy[i] = b

    def finish(self, end_s: float) -> None:
        """End of run: the last row, and the warm-up integrals if the warm-up never ended."""
        self._fill_row(self.series.n - 1)
        if self._at_warmup is None:
            self._snapshot(end_s)

    # ------------------------------------------------------------------ the window
    def _window(self, end: list[float], i: int) -> list[float]:
        start = self._at_warmup[i] if self._at_warmup else [0.0] * len(self.pools)
        return [e - s for e, s in zip(end, start, strict=True)]

    def busy_seconds_window(self) -> list[float]:
        """Busy node-seconds per pool inside [warmup_s, duration_s]."""
        return self._window([p.busy_seconds(self.duration_s) for p in self.pools], 0)

    def billed_seconds_window(self) -> list[float]:
        """Billed node-seconds per pool inside [warmup_s, duration_s] (minimum billing in)."""
        return self._window([p.billed_seconds(self.duration_s) for p in self.pools], 1)

    def provisioned_seconds_window(self) -> list[float]:
        """Provisioned node-seconds per pool inside [warmup_s, duration_s]."""
        return self._window([p.provisioned_seconds(self.duration_s) for p in self.pools], 2)

    def pool_frame(self) -> pd.DataFrame:
        """Long-format per-pool time series: t_s, pool, desired, provisioning, ..."""
        t = self.series.t_s
        frames = []
        for p in self.pools:
            d: dict[str, Any] = {"t_s": t, "pool": p.name}
            d.update({k: v[:, p.index] for k, v in self.pool_series.items()})
            frames.append(pd.DataFrame(d))
        return pd.concat(frames, ignore_index=True)

    # ------------------------------------------------------------------ autoscalers
    def metrics(self, p: Pool, tick_s: float) -> PoolMetrics:
        """What pool p's autoscaler sees now (averages over the last tick)."""
        now = self.env.now
        busy, ready_s = p.busy_seconds(now), p.ready_seconds(now)
        arrivals = self.dispatcher.arrivals_so_far()
        last = self._tick_state.get(p.index, (now - tick_s, 0.0, 0.0, 0, p.served))
        t0, busy0, ready0, arr0, served0 = last
        dt = max(now - t0, 1e-9)
        util = (busy - busy0) / (ready_s - ready0) if ready_s - ready0 > 0 else 0.0
        share = ready_share(self.pools, p)
        rate = (arrivals - arr0) / dt * share
        served = p.served - served0
        self._tick_state[p.index] = (now, busy, ready_s, arrivals, p.served)
        hist = self._rate_hist[p.index]
        hist.append(rate)
        if len(hist) > _RATE_HISTORY:
            del hist[: len(hist) - _RATE_HISTORY]
        queue = self.dispatcher.queue_length_for(p)
        in_service = self.server.in_service(p)
        s_per_req = ((busy - busy0) / served if served > 0
                     else p.service.mean_time(1, self.mean_items))
        forecast = None
        if self.forecast is not None:
            f, pools = self.forecast, self.pools

            def forecast(t: float) -> float:
                return f(t) * ready_share(pools, p)

        return PoolMetrics(
            now_s=now, ready=p.counts[READY], starting=p.starting, draining=p.counts[DRAINING],
            desired=p.desired, min_nodes=p.cfg.lo, max_nodes=p.cfg.hi,
            utilization=min(max(util, 0.0), 1.0), concurrency=float(queue + in_service),
            queue_length=float(queue), arrival_rate_qps=rate,
            rate_history=np.asarray(hist), tick_s=tick_s,
            service_s_per_request=float(s_per_req), forecast=forecast,
        )
