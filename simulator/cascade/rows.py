"""Requests travelling between the stages of a cascade, as columns (one row per request).

:class:`Rows` carries what the next stage needs to know of a request: when it gets there, who it
is end to end (its origin id and arrival), its class, how many candidates it brings and the
quality it has lost on the way. :class:`IdColumns` holds rows by a growing integer id (a unit's
request ids, or origin ids) in a buffer that drops released rows, so memory follows the
requests in flight, not the run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FIELDS = (("t", np.float64), ("origin", np.int64), ("t0", np.float64), ("cls", np.int16),
          ("cand", np.int64), ("qloss", np.float64))


@dataclass
class Rows:
    """Requests as columns: ``t`` (s, when they reach the next point), ``origin`` (id in
    stage-1 arrival order), ``t0`` (s, arrival at stage 1), ``cls`` (class index), ``cand``
    (candidates, items), ``qloss`` (quality lost so far)."""

    t: np.ndarray
    origin: np.ndarray
    t0: np.ndarray
    cls: np.ndarray
    cand: np.ndarray
    qloss: np.ndarray

    def __len__(self) -> int:
        return len(self.t)

    @classmethod
    def empty(cls) -> Rows:
        return cls(*(np.empty(0, dtype=dt) for _, dt in FIELDS))

    @classmethod
    def concat(cls, parts: list[Rows]) -> Rows:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f, _ in FIELDS))

    def take(self, idx: np.ndarray | slice) -> Rows:
        return Rows(*(getattr(self, f)[idx] for f, _ in FIELDS))

    def sorted(self) -> Rows:
        """By ``t`` (stable: ties keep their order)."""
        if len(self.t) < 2 or bool(np.all(self.t[:-1] <= self.t[1:])):
            return self
        return self.take(np.argsort(self.t, kind="stable"))

    def split(self, before_s: float) -> tuple[Rows, Rows]:
        """(rows with t < before_s, the others), each in its order."""
        m = self.t < before_s
        if m.all():
            return self, Rows.empty()
        if not m.any():
            return Rows.empty(), self
        return self.take(m), self.take(~m)


class IdColumns:
    """Rows addressed by consecutive integer ids from 0: ``append`` gives the next ids,
    ``get(ids)`` reads them, ``release_below(id)`` lets rows before ``id`` go (the buffer
    is compacted when it must grow, so it holds about the rows not released)."""

    def __init__(self) -> None:
        self.rows = Rows.empty()
        self.base = 0  # id of self.rows' first row
        self.end = 0  # next id
        self._released = 0  # rows before this id may go

    def append(self, rows: Rows) -> range:
        """Store ``rows`` under the next ids; return those ids."""
        if not len(rows):
            return range(self.end, self.end)
        drop = self._released - self.base
        if drop > 0:  # compact: the released prefix goes with this copy
            self.rows = Rows.concat([self.rows.take(slice(drop, None)), rows])
            self.base = self._released
        else:
            self.rows = Rows.concat([self.rows, rows])
        ids = range(self.end, self.end + len(rows))
        self.end = ids.stop
        return ids

    def get(self, ids: range | np.ndarray) -> Rows:
        if type(ids) is range:
            return self.rows.take(slice(ids.start - self.base, ids.stop - self.base))
        return self.rows.take(np.asarray(ids) - self.base)

    def column(self, name: str) -> np.ndarray:
        """A column of the rows held (ids ``base`` ..), writable in place."""
        return getattr(self.rows, name)  # type: ignore[no-any-return]

    def release_below(self, gid: int) -> None:
        self._released = max(self._released, min(gid, self.end))
