"""The engine's Clock runs events exactly as SimPy's Environment does."""

from __future__ import annotations

from typing import Any

import pytest
import simpy
from hypothesis import given
from hypothesis import strategies as st

from simulator.engine.clock import Clock, resume_now

# a process script: per process, a start delay and a list of steps
# ("sleep", d) | ("wait", k) waits for shared event k | ("fire", k) fires it | ("poke", p)
# interrupts process p
STEP = st.one_of(
    st.tuples(st.just("sleep"), st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, 3.25])),
    st.tuples(st.just("wait"), st.integers(0, 2)),
    st.tuples(st.just("fire"), st.integers(0, 2)),
    st.tuples(st.just("poke"), st.integers(0, 3)),
)
SCRIPT = st.lists(st.tuples(st.sampled_from([0.0, 1.0, 2.0]), st.lists(STEP, max_size=6)),
                  min_size=1, max_size=4)


def _trace(env: simpy.Environment, script: list, until: float, fast: bool) -> list:
    """Run ``script`` on ``env`` and return what happened, in order: (time, who, what)."""
    log: list[tuple[float, int, str]] = []
    shared = [env.event() for _ in range(3)]
    procs: list[Any] = []

    def sleep(d: float) -> simpy.Event:
        return env.sleep(d) if fast else env.timeout(d)  # type: ignore[attr-defined]

    def proc(i: int, start: float, steps: list) -> Any:
        try:
            yield sleep(start)
            for kind, arg in steps:
                log.append((env.now, i, f"{kind}{arg}"))
                if kind == "sleep":
                    yield sleep(arg)
                elif kind == "wait":
                    value = yield shared[arg]
                    log.append((env.now, i, f"got{value}"))
                elif kind == "fire" and not shared[arg].triggered:
                    shared[arg].succeed(i)
                elif kind == "poke" and arg < len(procs) and arg != i and procs[arg].is_alive:
                    procs[arg].interrupt(i)
        except simpy.Interrupt as intr:
            log.append((env.now, i, f"interrupted by {intr.cause}"))

    for i, (start, steps) in enumerate(script):
        procs.append(env.process(proc(i, start, steps)))
    env.run(until=until)
    log.append((env.now, -1, "end"))
    return log


@given(SCRIPT, st.sampled_from([0.5, 2.0, 3.25, 7.0]))
def test_clock_runs_scripts_exactly_like_simpy(script: list, until: float) -> None:
    assert _trace(Clock(), script, until, fast=True) == _trace(
        simpy.Environment(), script, until, fast=False)


def test_clock_stops_at_until_and_continues() -> None:
    env = Clock()
    seen: list[float] = []
    env.timer(2.0, lambda ev: seen.append(env.now))
    env.timer(5.0, lambda ev: seen.append(env.now))
    env.run(until=2.0)  # an event at exactly `until` is left for later, as in SimPy
    assert env.now == 2.0 and seen == []
    env.run(until=6.0)
    assert seen == [2.0, 5.0] and env.now == 6.0
    with pytest.raises(ValueError, match="greater than the current"):
        env.run(until=6.0)


def test_clock_crashes_on_an_unhandled_failure_like_simpy() -> None:
    for env in (Clock(), simpy.Environment()):
        def bad(env: simpy.Environment = env) -> Any:
            yield env.timeout(1.0)
            raise KeyError("boom")
        env.process(bad())
        with pytest.raises(KeyError, match="boom"):
            env.run(until=3.0)


def test_clock_rejects_negative_sleep() -> None:
    with pytest.raises(ValueError, match="Negative delay"):
        Clock().sleep(-1.0)


def test_resume_now_runs_the_waiting_process_at_once() -> None:
    env = Clock()
    ev = env.pending()
    got: list[tuple[float, Any]] = []

    def waiter() -> Any:
        value = yield ev
        got.append((env.now, value))

    env.process(waiter())
    env.timer(1.5, lambda _: resume_now(ev, "batch"))
    env.run(until=1.5 + 1e-9)
    assert got == [(1.5, "batch")]
