"""Calendar times of a scenario: ``"MM-DD HH:MM"`` strings and seconds since the run's beginning.

The one place that converts calendar strings to simulated time. The scenario model
(``simulation.start``/``end``, ``workload.peaks[].at``), the workload (peak starts), the
warnings (:func:`simulator.scenario.scenario_warnings`) and the report (:func:`peak_starts_s`)
use it.

Conventions:

* A calendar time is a local wall-clock time written ``"MM-DD HH:MM"`` or
  ``"YYYY-MM-DD HH:MM"``, optionally with ``":SS"`` (a TOML local date-time is accepted too).
  Days are 86,400 s: no daylight-saving change, no leap seconds.
* Without a year, a date lies in a common (non-leap) reference year, so ``"02-29"`` needs a
  year. A year-less ``end`` before ``start`` falls in the next year; a year-less peak ``at``
  takes the year that puts it nearest to ``start`` (``"12-31 23:00"`` before a ``"01-01
  00:00"`` window is the evening before). Give years in all of them or in none.
* ``simulation.start`` .. ``simulation.end`` is the measurement window; the warm-up is taken
  before it, so the run (simulated time ``t = 0``) begins at ``start - warmup_s``.

Times in seconds are always seconds since the run's beginning (``t``), floats; hours are
floats in [0, 24).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

#: the accepted spellings, as error messages show them
FORMATS = "'MM-DD HH:MM' or 'YYYY-MM-DD HH:MM' (optionally with ':SS')"
#: the year of a year-less date: a common year, so that '02-29' without a year is refused
REFERENCE_YEAR = 2001
DAY_S = 86400.0
#: an exponential decay counts as active for this many time constants (exp(-3) = 5%)
EXP_DECAY_ACTIVE_TAUS = 3.0

_PATTERN = re.compile(
    r"(?:(?P<y>\d{4})-)?(?P<mo>\d{1,2})-(?P<d>\d{1,2})[ T]"
    r"(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2}))?"
)


@dataclass(frozen=True, slots=True)
class CalendarTime:
    """A parsed calendar time: ``when`` (naive local datetime; in ``REFERENCE_YEAR`` when the
    text gave no year) and ``has_year`` (whether it did)."""

    when: datetime
    has_year: bool

    def in_year(self, year: int) -> datetime:
        """The same month, day and clock time in ``year`` (ValueError for 02-29 outside a
        leap year)."""
        return self.when.replace(year=year)


def parse_calendar(text: str) -> CalendarTime:
    """Parse ``"MM-DD HH:MM[:SS]"`` or ``"YYYY-MM-DD HH:MM[:SS]"``.

    Raises ValueError naming the expected formats (or why the date does not exist).
    """
    m = _PATTERN.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"'{text}' is not a calendar time: expected {FORMATS}, "
                         "e.g. '11-11 00:00'")
    year = int(m["y"]) if m["y"] else None
    try:
        when = datetime(year or REFERENCE_YEAR, int(m["mo"]), int(m["d"]), int(m["h"]),
                        int(m["mi"]), int(m["s"] or 0))
    except ValueError as exc:
        hint = (" (02-29 exists only in leap years: give the year, 'YYYY-02-29 HH:MM')"
                if year is None and (m["mo"], m["d"]) in (("02", "29"), ("2", "29")) else "")
        raise ValueError(f"'{text}' is not a calendar time: {exc}{hint}; expected "
                         f"{FORMATS}") from None
    return CalendarTime(when, year is not None)


def calendar_text(value: Any) -> str:
    """A calendar time field's value as text, checked: a string in one of the :data:`FORMATS`
    (returned stripped, as written) or a TOML local date-time (``datetime`` without a time
    zone, returned as ``"YYYY-MM-DD HH:MM:SS"``). Raises ValueError otherwise."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            raise ValueError(f"'{value}' has a time-zone offset: give the local clock time, "
                             f"{FORMATS}")
        value = value.replace(microsecond=0).strftime("%Y-%m-%d %H:%M:%S")
    if not isinstance(value, str):
        raise ValueError(f"expected a calendar time as a string, {FORMATS}; got {value!r}")
    parse_calendar(value)
    return value.strip()


def format_calendar(when: datetime, with_year: bool = False) -> str:
    """``"MM-DD HH:MM"`` (``":SS"`` added when not zero; ``"YYYY-"`` first with a year)."""
    fmt = ("%Y-" if with_year else "") + "%m-%d %H:%M" + (":%S" if when.second else "")
    return when.strftime(fmt)


def window(start: str, end: str) -> tuple[datetime, datetime]:
    """The measurement window ``[start, end)`` as datetimes, years resolved.

    A year-less ``end`` takes ``start``'s year and rolls into the next one when it would fall
    before ``start``. Raises ValueError naming ``simulation.start``/``simulation.end`` when
    one gives a year and the other not, or when ``end`` is not after ``start``.
    """
    s, e = parse_calendar(start), parse_calendar(end)
    if e.has_year and not s.has_year:
        raise ValueError(f"simulation.end ('{end}') gives a year but simulation.start "
                         f"('{start}') does not: give the year in both or in neither")
    if e.has_year:
        end_dt = e.when
    else:
        end_dt = _in_year(e, s.when.year, "simulation.end", end)
        if end_dt < s.when:
            end_dt = _in_year(e, s.when.year + 1, "simulation.end", end)
    if end_dt <= s.when:
        raise ValueError(f"simulation.end ('{end}') must be after simulation.start "
                         f"('{start}'): the measurement window is [start, end)")
    return s.when, end_dt


def _in_year(t: CalendarTime, year: int, field: str, text: str) -> datetime:
    try:
        return t.in_year(year)
    except ValueError:
        raise ValueError(f"{field} ('{text}') does not exist in {year}: give the year") from None


def run_begin(start: str, warmup_s: float) -> datetime:
    """When the run begins (``t = 0``): ``warmup_s`` seconds before ``start``."""
    return parse_calendar(start).when - timedelta(seconds=warmup_s)


def clock_hour(when: datetime) -> float:
    """The clock hour of ``when``, a float in [0, 24) (``23:50`` -> 23.8333...)."""
    return (when.hour * 3600 + when.minute * 60 + when.second + when.microsecond / 1e6) / 3600.0


def derived_run(start: str, end: str, warmup_s: float) -> tuple[float, float]:
    """``(duration_s, start_hour)`` of a calendar scenario: the run lasts
    ``end - start + warmup_s`` seconds and begins at clock hour ``start - warmup_s``."""
    s, e = window(start, end)
    return (e - s).total_seconds() + warmup_s, clock_hour(s - timedelta(seconds=warmup_s))


def resolve_at(at: str, start: str, field: str = "at") -> datetime:
    """A peak's ``at`` as a datetime, given the window's ``start``.

    A year-less ``at`` takes the year (``start``'s, the one before or the one after) that puts
    it nearest to ``start``. Raises ValueError naming ``field`` when ``at`` gives a year and
    ``start`` does not.
    """
    a, s = parse_calendar(at), parse_calendar(start)
    if a.has_year:
        if not s.has_year:
            raise ValueError(f"{field} ('{at}') gives a year but simulation.start ('{start}') "
                             "does not: give the year in both or in neither")
        return a.when
    options = []
    for y in (s.when.year - 1, s.when.year, s.when.year + 1):
        try:
            options.append(a.in_year(y))
        except ValueError:
            continue
    if not options:
        raise ValueError(f"{field} ('{at}') does not exist near simulation.start: give the year")
    return min(options, key=lambda d: abs((d - s.when).total_seconds()))


def to_run_s(when: datetime, start: str, warmup_s: float) -> float:
    """Seconds from the run's beginning (``start - warmup_s``) to ``when``; negative before."""
    return (when - run_begin(start, warmup_s)).total_seconds()


def calendar_to_run_s(text: str, start: str, warmup_s: float) -> float:
    """A calendar time (year-less: nearest to ``start``) as seconds since the run's
    beginning; negative when it lies before the run."""
    return to_run_s(resolve_at(text, start), start, warmup_s)


def shift(text: str, seconds: float) -> str:
    """The calendar time ``seconds`` after ``text``, in the same form (year kept if given)."""
    t = parse_calendar(text)
    return format_calendar(t.when + timedelta(seconds=seconds), t.has_year)


def peak_start_s(*, start_s: float | None, at: str | None, sim_start: str | None,
                 warmup_s: float) -> float:
    """A peak's ramp start in seconds since the run's beginning: ``start_s`` as given (the
    legacy form), else ``at`` resolved against the calendar window (may be negative)."""
    if at is None:
        if start_s is None:
            raise ValueError("a peak needs 'start_s' or 'at'")
        return float(start_s)
    if sim_start is None:
        raise ValueError(f"a peak at '{at}' needs simulation.start (the calendar form)")
    return calendar_to_run_s(at, sim_start, warmup_s)


def peak_starts_s(scenario: Mapping[str, Any]) -> list[float]:
    """Each peak's ramp start, seconds since the run's beginning, in ``workload.peaks`` order,
    from a scenario dict as dumped (``Scenario.model_dump(mode="json")``, the ``scenario`` of
    scenario.json). Works for both forms: ``start_s`` peaks and calendar ``at`` peaks."""
    sim = scenario.get("simulation") or {}
    peaks = (scenario.get("workload") or {}).get("peaks") or []
    return [peak_start_s(start_s=p.get("start_s"), at=p.get("at"), sim_start=sim.get("start"),
                         warmup_s=float(sim.get("warmup_s") or 0.0)) for p in peaks]


def peak_active_s(ramp_s: float, hold_s: float, decay_s: float, decay: str) -> float:
    """How long a peak is active from its ramp start: ramp + hold + decay (a linear decay's
    length, or :data:`EXP_DECAY_ACTIVE_TAUS` time constants of an exponential one), s."""
    tail = decay_s if decay == "linear" else EXP_DECAY_ACTIVE_TAUS * decay_s
    return ramp_s + hold_s + tail


def format_run_time(t_s: float, *, start: str | None, warmup_s: float,
                    start_hour: float) -> str:
    """Seconds since the run's beginning as a clock time: ``"MM-DD HH:MM"`` in a calendar
    scenario (year shown if ``start`` gives one), else ``"HH:MM (t = T s)"`` from
    ``start_hour``."""
    if start is not None:
        begin = run_begin(start, warmup_s)
        return format_calendar(begin + timedelta(seconds=round(t_s)),
                               parse_calendar(start).has_year)
    clock = (start_hour * 3600.0 + t_s) % DAY_S
    h, rem = divmod(round(clock) % int(DAY_S), 3600)
    mi, sec = divmod(rem, 60)
    text = f"{h:02d}:{mi:02d}" + (f":{sec:02d}" if sec else "")
    return f"{text} (t = {t_s:g} s)"


def same_hour(a: float, b: float, tol_h: float = 1e-9) -> bool:
    """Two clock hours agree (within ``tol_h``, across midnight too)."""
    d = abs(a - b) % 24.0
    return min(d, 24.0 - d) <= tol_h or math.isclose(a, b)
