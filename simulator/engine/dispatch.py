"""The dispatcher interface: how requests reach nodes.

Two dispatchers implement it: :class:`~simulator.engine.central.CentralDispatcher` (one shared
queue; free nodes pull batches from it) and :class:`~simulator.engine.push.PushDispatcher` (a
router pushes each arrival into one node's queue; each node batches from its own queue). The
serving loop (:class:`~simulator.engine.server.Server`), the fleet and the observer talk to
either through this interface only; nothing else in the engine knows which one runs.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from simulator.engine.nodes import Pool
from simulator.engine.requests import DROPPED, TIMED_OUT, RequestTable
from simulator.engine.server import Batch


class Dispatcher(Protocol):
    """What the rest of the engine asks of a dispatcher."""

    #: routers read the node table's busy columns: the server keeps them
    shows_busy: bool

    def start(self) -> None:
        """Start the dispatcher's own processes (e.g. one that routes arrivals)."""
        ...

    # serving loop
    def take(self, j: int) -> Batch | None:
        """A batch for node j now; None after arranging to wake it (Server.resume / wake);
        or STOP when the node must stop serving (not ready, nothing left for it)."""
        ...

    # fleet
    def node_ready(self, j: int) -> None:
        """Node j became ready: let it (and idle nodes) look for work."""
        ...

    def stop_taking(self, j: int) -> None:
        """Node j takes no new work (draining, preemption notice); its loop is woken to leave
        when it has nothing left."""
        ...

    def release(self, j: int, lose: bool) -> None:
        """Node j stopped abruptly: its batch in service (and anything queued for it) is
        requeued, or lost when ``lose``."""
        ...

    # observation
    def observe(self, now_s: float) -> None:
        """Bring lazy queue state up to date (admissions, timeouts) before it is read."""
        ...

    def queue_length(self) -> int:
        """Requests waiting now (all queues)."""
        ...

    def queue_length_for(self, p: Pool) -> float:
        """Requests waiting for pool p now (its share of a shared queue)."""
        ...

    def arrivals_so_far(self) -> int:
        """Requests arrived up to now (including rejected ones)."""
        ...

    def oldest_wait_s(self, j: int) -> float:
        """How long the oldest request in the queue node j serves from has waited (s)."""
        ...

    def finish(self, end_s: float) -> None:
        """End of run: admit and expire what the run's last instant holds."""
        ...

    def queue_peaks(self) -> tuple[int, int, list[int] | None]:
        """(most requests one queue held at once, requests rejected by a full queue, per class
        the most of its own requests one queue held, or None when not counted)."""
        ...


def requeue_or_lose(table: RequestTable, ids: np.ndarray, lose: bool, pool: Pool,
                    now_s: float) -> bool:
    """Requests ``ids`` left pool ``pool``'s node unserved: lose them (they end dropped) or
    prepare them to wait again. Returns True when the caller must put them back in a queue."""
    if lose:
        table.end(ids, DROPPED, now_s)
        pool.lost_requests += len(ids)
        return False
    pool.requeued_requests += len(ids)
    table.restart(ids)
    return True


def drop_expired(table: RequestTable, batch: Batch, now_s: float, timeout_s: np.ndarray,
                 min_timeout_s: float) -> Batch:
    """The requests of a batch just taken whose queue timeout passed leave as timed out (at
    their deadline); returns the rest. ``timeout_s``: per class (s); ``min_timeout_s``: the
    shortest of them (a batch whose oldest request waited less cannot hold a late one)."""
    tab = table
    if type(batch) is range and now_s - tab.arrival_s[batch.start - tab.base] <= min_timeout_s:
        return batch
    if type(batch) is range:
        batch = np.arange(batch.start, batch.stop)
    loc = batch - tab.base
    deadline = tab.t[loc] + timeout_s[tab.cls[loc]]
    late = deadline < now_s
    if late.any():
        tab.end(batch[late], TIMED_OUT, deadline[late])
        return batch[~late]
    return batch
