"""The request table: served batches logged in the hot loop land in the right rows."""

from __future__ import annotations

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from simulator.engine.queues import CentralQueue, fit_run
from simulator.engine.requests import COMPLETED, PENDING, RequestTable
from simulator.workload import Chunk


def _table(sizes: list[list[int]], released: list) -> RequestTable:
    chunks = []
    t = 0.0
    for k, sz in enumerate(sizes):
        n = len(sz)
        times = t + np.arange(n) * 0.001
        chunks.append(Chunk(float(k), float(k + 1), times, np.zeros(n, dtype=np.int16),
                            np.asarray(sz, dtype=np.int64)))
        t += 1.0
    return RequestTable(iter(chunks), released.append)


@given(st.lists(st.integers(1, 40), min_size=1, max_size=30), st.randoms(use_true_random=False))
def test_logged_batches_are_written_to_their_own_rows(cuts: list[int], rnd) -> None:
    n = sum(cuts)
    tab = _table([[1] * n], [])
    assert tab.ensure(n - 1)
    bounds = np.cumsum([0, *cuts])
    order = list(range(len(cuts)))
    rnd.shuffle(order)  # batches finish in any order
    expect_start, expect_finish = np.full(n, np.nan), np.full(n, np.nan)
    expect_node = np.full(n, -1)
    for b in order[: len(order) - 1]:  # the last batch stays in flight
        a, e = int(bounds[b]), int(bounds[b + 1])
        t0, t1 = 10.0 + b, 20.0 + b
        tab.served((a, e, t0, t1, 3 * b))
        expect_start[a:e], expect_finish[a:e], expect_node[a:e] = t0, t1, 3 * b
    tab.apply_served()
    done = ~np.isnan(expect_finish)
    np.testing.assert_array_equal(tab.start, expect_start)
    np.testing.assert_array_equal(tab.finish, expect_finish)
    np.testing.assert_array_equal(tab.node, expect_node)
    assert (tab.outcome[done] == COMPLETED).all() and (tab.outcome[~done] == PENDING).all()


def test_chunks_are_released_only_when_their_logged_batches_are_applied() -> None:
    released: list = []
    tab = _table([[2] * 5, [3] * 5], released)
    assert tab.ensure(4)
    tab.served((0, 5, 1.0, 2.0, 0))  # the whole first chunk, logged only
    assert tab.load_next()  # loading the next chunk applies the log, then releases chunk 0
    assert len(released) == 1 and released[0].first_id == 0
    assert (released[0].outcome == COMPLETED).all() and (released[0].start == 1.0).all()
    assert tab.base == 5 and tab.items(5, 10) == 15


@given(st.lists(st.integers(1, 50), min_size=2, max_size=60), st.floats(0.0, 1.2),
       st.floats(0.0, 0.5), st.floats(0.5, 1.0))
@example([10, 10, 10, 10], 0.6, 0.0, 1.0)
def test_fit_run_matches_a_cumulative_sum(sizes: list[int], frac: float, at: float,
                                          span: float) -> None:
    first = int(at * len(sizes))  # first id of the run, k_max ids in it (k_max >= 1)
    k_max = max(1, round(span * (len(sizes) - first)))
    cap = max(1, int(frac * sum(sizes[first:first + k_max])))  # mostly: not all of them fit
    tab = _table([sizes], [])
    assert tab.ensure(len(sizes) - 1)
    cum = np.cumsum(sizes[first:first + k_max])
    expect = max(int(np.searchsorted(cum, cap, side="right")), 1)
    assert fit_run(tab, first, cap, k_max) == expect


@given(st.lists(st.lists(st.integers(1, 50), min_size=1, max_size=40), min_size=1, max_size=3),
       st.floats(0.0, 1.0), st.integers(1, 400))
def test_items_fill_time_is_the_arrival_that_reaches_the_items(chunks: list[list[int]],
                                                               at: float, items: int) -> None:
    """An empty queue whose next arrival is id `tail`: the arrival that brings `items` items."""
    sizes = [s for c in chunks for s in c]
    tab = _table(chunks, [])
    q = CentralQueue(tab, max_len=10**6)
    tail = int(at * (len(sizes) - 1))
    q.tail = tail  # ids below tail have come and gone
    t = np.concatenate([k + np.arange(len(c)) * 0.001 for k, c in enumerate(chunks)])
    cum = np.cumsum(sizes[tail:])
    g = int(np.searchsorted(cum, items, side="left"))
    expect = float(t[tail + g]) if g < len(cum) else np.inf
    assert q.items_fill_time(items) == expect
