"""The dynamic batcher against Triton's own batcher tests (server ``qa/L0_batcher`` and
``qa/L0_model_queue``), replayed.

Each case is a Triton test: its model configuration, the requests it sends (size = batch
dimension, sent at a time in s; "hold N" is ``TRITONSERVER_DELAY_SCHEDULER=N``, the batcher
waits until N requests are queued before its first decision), and what the test asserts: the
executions by batch size (``check_status``'s ``{batch size: executions}``) and each request's
response-time window in ms (``check_response``'s ``(less than, greater than)``). The
configurations: preferred [2, 6], max_batch_size 8, max_queue_delay 10 s (``models/``);
preferred [4, 6], delay 0 (``preferred_batch_only_models/``). Triton's max_batch_size and
preferred sizes count the batch dimension: PeakSim's items (``max_batch_items``).

The batcher is driven by a one-instance loop that asks it whenever the instance is free and
the queue or the clock moved (at each arrival, at its deadline, when a batch ends), as
Triton's batcher thread does; each batch runs 1 ms (Triton's QA models take milliseconds).
A few cases also run through the whole engine.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from simulator import run
from simulator.policies import QueueView, create
from tests.test_golden_events import Golden, event_log

SERVICE_S = 0.001
MAIN = {"max_batch": 8, "max_batch_items": 8, "preferred_sizes": [2, 6], "max_wait_ms": 10_000}
PREF_ONLY = {"max_batch": 8, "max_batch_items": 8, "preferred_sizes": [4, 6], "max_wait_ms": 0}


@dataclass
class Request:
    size: int
    t: float
    level: int = 0  # priority level, 0 first (Triton level 1 is the highest)
    done: float = math.nan


@dataclass
class Replay:
    batches: list[int] = field(default_factory=list)  # executions by batch size (items)
    requests: list[Request] = field(default_factory=list)

    def latency_ms(self, i: int) -> float:
        r = self.requests[i]
        return (r.done - r.t) * 1000.0


def replay(config: dict, sends: list[tuple[int, float] | tuple[int, float, int]],
           hold: int = 0) -> Replay:
    """Serve ``sends`` (size, time s[, level]) on one instance with the dynamic batcher."""
    b = create("batcher", "dynamic", config)
    reqs = [Request(*s) for s in sends]
    order = sorted(range(len(reqs)), key=lambda i: reqs[i].t)
    queue: list[int] = []
    out = Replay(requests=reqs)
    t, nxt, free_at, deadline, holding = 0.0, 0, 0.0, math.inf, hold > 0
    while nxt < len(order) or queue:
        while nxt < len(order) and reqs[order[nxt]].t <= t + 1e-12:
            queue.append(order[nxt])
            nxt += 1
        queue.sort(key=lambda i: (reqs[i].level, reqs[i].t, i))
        if holding and len(queue) >= hold:
            holding = False
        if queue and not holding and t >= free_at:
            head = queue[: b.max_batch]
            view = QueueView(len(queue), np.array([reqs[i].t for i in head]),
                             np.array([reqs[i].size for i in head]), limit=len(head))
            d = b.next_batch(view, t)
            if d.take > 0:
                batch, queue = queue[: d.take], queue[d.take:]
                free_at = t + SERVICE_S
                for i in batch:
                    reqs[i].done = free_at
                out.batches.append(sum(reqs[i].size for i in batch))
                deadline = math.inf
                continue
            deadline = d.wait_until_s if d.wait_until_s is not None else math.inf
        t_next = min(reqs[order[nxt]].t if nxt < len(order) else math.inf,
                     free_at if free_at > t else math.inf, deadline if deadline > t else math.inf)
        assert t_next < math.inf, f"requests {queue} would wait forever at t={t}"
        t = t_next
    return out


LT, GT = 0, 1


def window(lt_ms: float | None = None, gt_ms: float | None = None) -> tuple:
    return (lt_ms, gt_ms)


IMMEDIATE = window(3000)
DELAYED = window(15000, 10000)

# (test, config, sends (size, t[, level]), hold, executions {size: count}, windows per request)
CASES = [
    ("test_static_batch_preferred", MAIN, [(2, 0.0), (6, 0.1)], 0, {2: 1, 6: 1},
     [IMMEDIATE, IMMEDIATE]),
    ("test_static_batch_lt_any_preferred", MAIN, [(1, 0.0)], 0, {1: 1}, [DELAYED]),
    ("test_static_batch_not_preferred", MAIN, [(3, 0.0)], 0, {3: 1}, [DELAYED]),
    ("test_static_batch_gt_max_preferred", MAIN, [(7, 0.0)], 0, {7: 1}, [IMMEDIATE]),
    ("test_multi_batch_not_preferred", MAIN, [(1, 0.0), (3, 1.0)], 0, {4: 1},
     [DELAYED, window(15000, 8000)]),
    ("test_multi_batch_gt_max_preferred", MAIN, [(3, 0.0), (7, 1.0)], 0, {3: 1, 7: 1},
     [IMMEDIATE, IMMEDIATE]),
    ("test_multi_batch_sum_gt_max_preferred", MAIN, [(3, 0.0), (4, 1.0)], 0, {3: 1, 4: 1},
     [IMMEDIATE, DELAYED]),
    ("test_multi_same_output0", MAIN, [(1, 0.0), (1, 0.0)], 0, {2: 1},
     [IMMEDIATE, IMMEDIATE]),
    ("test_multi_batch_delayed_sum_gt_max_preferred", MAIN, [(3, 0.0), (4, 1.0)], 2,
     {3: 1, 4: 1}, [window(6000), DELAYED]),
    ("test_multi_batch_delayed_use_max_batch", MAIN, [(3, 0.0), (4, 0.0), (1, 11.0)], 3,
     {8: 1}, [DELAYED, DELAYED, window(6000)]),
    ("test_multi_batch_use_biggest_preferred", MAIN, [(1, 0.0)] * 6, 6, {6: 1},
     [window(6000)] * 6),
    ("test_multi_batch_use_best_preferred", MAIN, [(1, 0.0), (1, 0.0), (1, 1.0)], 3,
     {2: 1, 1: 1}, [window(6000), window(6000), DELAYED]),
    ("test_preferred_batch_only_aligned", PREF_ONLY, [(1, 0.0)] * 4, 4, {4: 1},
     [window(6000)] * 4),
    ("test_preferred_batch_only_unaligned", PREF_ONLY, [(1, 0.0)] * 5, 5, {4: 1, 1: 1},
     [window(6000)] * 5),
    ("test_preferred_batch_only_use_biggest_preferred", PREF_ONLY, [(1, 0.0)] * 7, 7,
     {6: 1, 1: 1}, [window(6000)] * 7),
    ("test_preferred_batch_only_use_no_preferred_size", PREF_ONLY, [(1, 0.0)] * 3, 3,
     {3: 1}, [window(6000)] * 3),
    # qa/L0_model_queue: preferred [4, 8], max 32, delay 10 s, two priority levels (level 1 =
    # our 0 is served first); 2 and 1 at the low level, then 2 at the high level
    ("test_priority_levels", {"max_batch": 32, "max_batch_items": 32,
                              "preferred_sizes": [4, 8], "max_wait_ms": 10_000},
     [(2, 0.0, 1), (1, 0.1, 1), (2, 0.3, 0)], 0, {4: 1, 1: 1},
     [window(500, 200), DELAYED, window(100)]),
]


@pytest.mark.parametrize(("name", "config", "sends", "hold", "executions", "windows"), CASES,
                         ids=[c[0] for c in CASES])
def test_triton_batcher_expectations(name: str, config: dict, sends: list, hold: int,
                                     executions: dict[int, int], windows: list) -> None:
    r = replay(config, sends, hold)
    assert dict(Counter(r.batches)) == executions, f"{name}: batch sizes {r.batches}"
    for i, (lt, gt) in enumerate(windows):
        ms = r.latency_ms(i)
        assert lt is None or ms < lt, f"{name}: request {i} answered after {ms:.0f} ms"
        assert gt is None or ms > gt, f"{name}: request {i} answered after only {ms:.0f} ms"


def test_requests_count_one_each_without_an_item_cap() -> None:
    """Without max_batch_items, sizes and preferred sizes count requests (a request of 5
    items counts 1): five 1-request arrivals with preferred [4] form 4, then 1."""
    cfg = {"max_batch": 8, "preferred_sizes": [4], "max_wait_ms": 0}
    assert replay(cfg, [(1, 0.0)] * 5, hold=5).batches == [4, 1]
    cfg_items = {**cfg, "max_batch_items": 8}
    # counted in items, five requests of 5 items: a lone 5 >= max_pref 4 leaves alone, each
    assert replay(cfg_items, [(5, 0.0)] * 5, hold=5).batches == [5] * 5


def test_delay_expiry_sends_the_whole_pending_batch_not_a_preferred_cut() -> None:
    """[2, 6], max 8, delay 10 ms: 3 + 1 + 1 queued (no prefix is preferred: 3, 4, 5) wait for
    the delay; at expiry all 5 leave (Triton S4), not a preferred 2."""
    cfg = {**MAIN, "max_wait_ms": 10.0}
    r = replay(cfg, [(3, 0.0), (1, 0.0), (1, 0.0)], hold=3)
    assert r.batches == [5]
    assert r.latency_ms(0) == pytest.approx(10.0 + SERVICE_S * 1000)


# ----------------------------------------------------------------------------- the engine
def _engine(g: Golden, times: list[float], items: int, batching: dict) -> list[tuple]:
    raw = g.scenario(times, service_ms=1.0, items=items, batching={"name": "dynamic",
                                                                   **batching})
    return [e for e in event_log(run(raw)) if e[1] == "start"]


def test_engine_sends_the_biggest_preferred_batch_at_once(tmp_path: Path) -> None:
    """test_multi_batch_use_biggest_preferred through the engine: six simultaneous 1-item
    requests leave as one batch of 6 at once (hits at 2 and 6: the last wins)."""
    starts = _engine(Golden(tmp_path), [0.0] * 6, 1, MAIN)
    assert starts == [(0.0, "start", 0, (0, 1, 2, 3, 4, 5))]


def test_engine_cuts_at_preferred_sizes_with_no_delay(tmp_path: Path) -> None:
    """test_preferred_batch_only_use_biggest_preferred through the engine: seven 1-item
    requests with [4, 6] and no delay: 6 at once, then 1 when the instance is free."""
    starts = _engine(Golden(tmp_path), [0.0] * 7, 1, PREF_ONLY)
    assert starts == [(0.0, "start", 0, (0, 1, 2, 3, 4, 5)), (0.001, "start", 0, (6,))]


def test_engine_sends_a_lone_request_over_max_preferred_at_once(tmp_path: Path) -> None:
    """test_static_batch_gt_max_preferred: a lone request of 7 items (>= 6) leaves at once;
    one of 3 items (between preferred sizes) waits for the delay."""
    assert _engine(Golden(tmp_path), [0.0], 7, MAIN) == [(0.0, "start", 0, (0,))]
    cfg = {**MAIN, "max_wait_ms": 50}
    assert _engine(Golden(tmp_path), [0.0], 3, cfg) == [(0.05, "start", 0, (0,))]
