"""The simulation clock: a SimPy ``Environment`` with shortcuts for the engine's hot loop.

Same semantics as SimPy, fewer Python calls per event (a run makes tens of millions of them):

* :meth:`Clock.run` steps through the event queue in one loop, without a ``step()`` call per
  event, and stops exactly where ``Environment.run(until=t)`` stops;
* :meth:`Clock.sleep` and :meth:`Clock.timer` build a ``Timeout`` and push it on the queue in one
  go (no ``schedule()`` call); :meth:`Clock.pending` builds a plain ``Event``;
* :func:`resume_now` triggers an event and runs its callbacks at once.

Everything else (processes, interrupts, conditions, ``env.now``) is SimPy's own. The engine reads
``env._now`` in its hottest lines (the value ``env.now`` returns, without the property call).
These shortcuts use SimPy 4's internals (``_queue``, ``_eid``, ``_now``, the event fields), hence
the ``simpy<5`` pin; ``tests/test_clock.py`` runs random process scripts on both and compares.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappop, heappush
from typing import Any

import simpy
from simpy.core import EmptySchedule
from simpy.events import NORMAL, URGENT, Event, Timeout

_new_timeout = Timeout.__new__


class Clock(simpy.Environment):
    """SimPy's environment with the engine's fast paths (see the module docstring)."""

    def sleep(self, delay_s: float) -> Timeout:
        """A ``Timeout`` of ``delay_s`` seconds (what ``env.timeout(delay_s)`` returns)."""
        if delay_s < 0:
            raise ValueError(f"Negative delay {delay_s}")
        ev = _new_timeout(Timeout)
        ev.env = self
        ev.callbacks = []
        ev._value = None
        ev._delay = delay_s
        ev._ok = True
        heappush(self._queue, (self._now + delay_s, NORMAL, next(self._eid), ev))
        return ev

    def timer(self, delay_s: float, callback: Callable[[Event], None]) -> Timeout:
        """A ``Timeout`` of ``delay_s`` seconds that calls ``callback(event)`` when it fires."""
        ev = self.sleep(delay_s)
        ev.callbacks.append(callback)  # type: ignore[union-attr]
        return ev

    def pending(self) -> Event:
        """A new untriggered event (what ``env.event()`` returns)."""
        return Event(self)

    def run(self, until: float | Event | None = None) -> Any:
        """Run until time ``until`` (s), as ``simpy.Environment.run`` does.

        Events at ``until`` itself are left unprocessed unless urgent and scheduled before the
        run began (SimPy's rule: the stop event is urgent). Other kinds of ``until`` go to
        SimPy's own loop.
        """
        if until is None or isinstance(until, Event):
            return super().run(until)
        at = float(until)
        if at <= self._now:
            raise ValueError(f"until ({at}) must be greater than the current simulation time")
        stop = Event(self)
        stop._ok = True
        stop._value = None
        heappush(self._queue, (at, URGENT, next(self._eid), stop))
        queue = self._queue
        while True:
            try:
                self._now, _, _, event = heappop(queue)
            except IndexError:
                raise EmptySchedule from None  # unreachable: the stop event is queued
            if event is stop:
                stop.callbacks = None
                return None
            callbacks, event.callbacks = event.callbacks, None
            for callback in callbacks:  # type: ignore[union-attr]
                callback(event)
            if not event._ok and not hasattr(event, "_defused"):
                # a failed event nobody handled: crash, as SimPy does
                exc = type(event._value)(*event._value.args)
                exc.__cause__ = event._value
                raise exc


def resume_now(ev: Event, value: Any) -> None:
    """Trigger ``ev`` and run its callbacks now, instead of scheduling it for now.

    The node process waiting on ``ev`` starts its batch at this same simulated instant, one
    event-queue round trip sooner (only the order among events at one instant can differ from
    ``ev.succeed(value)``). Used only from timer callbacks, where no process is active.
    """
    ev._ok = True
    ev._value = value
    callbacks, ev.callbacks = ev.callbacks, None
    for cb in callbacks:  # type: ignore[union-attr]
        cb(ev)
