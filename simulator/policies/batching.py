"""Batchers: decide how many waiting requests a free node takes now, or how long to wait.

``none`` takes one request at a time; ``dynamic`` is Triton's dynamic batcher (see
:class:`DynamicBatcher` for its rules, read from Triton's scheduler source and replayed against
Triton's own batcher tests in ``tests/test_triton_batcher.py``).
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from pydantic import Field, model_validator

from simulator.policies.registry import PolicyParams, parse_params, register
from simulator.policies.views import BatchDecision, QueueView

_new_tuple = tuple.__new__


class Batcher(Protocol):
    """Batching policy interface."""

    max_batch: int

    def next_batch(self, queue: QueueView, now_s: float) -> BatchDecision:
        """Take k requests now, or wait (until a time or a queue size)."""
        ...


@register("batcher", "none")
class NoBatching:
    """One request per batch, taken as soon as a node is free."""

    Params = PolicyParams  # no parameters
    max_batch = 1
    takes_one = True  # capability: takes one waiting request whenever asked, never waits

    def next_batch(self, queue: QueueView, now_s: float) -> BatchDecision:
        if queue.n_waiting > 0:
            return BatchDecision(take=1)
        return BatchDecision(wake_at_size=1)


NonNegMs = Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)]

#: the largest max_batch: a batcher keeps one prepared decision per batch size (per node
#: under per-node dispatch), and no serving system batches more requests at once
MAX_BATCH = 65_536


class DynamicParams(PolicyParams):
    """Triton ``dynamic_batching`` settings (units in the names)."""

    max_batch: Annotated[int, Field(ge=1, le=MAX_BATCH, description=(
        "most requests in one batch (Triton max_batch_size when requests count 1 each), at "
        "most 65,536"))]
    max_batch_items: Annotated[int | None, Field(ge=1, le=1_000_000_000, description=(
        "most items in one batch (Triton max_batch_size in batch-dimension units); when set, "
        "sizes and preferred_sizes count items"))] = None
    max_wait_ms: Annotated[NonNegMs, Field(description="Triton max_queue_delay_microseconds, "
                                           "in ms: longest wait for a fuller batch, measured "
                                           "from the oldest request's arrival")] = 0.0
    preferred_sizes: Annotated[list[int], Field(default_factory=list, description=(
        "Triton preferred_batch_size: in requests, or in items with max_batch_items "
        "(default: the largest batch)"))]
    timer_slack_ms: Annotated[NonNegMs, Field(description="overshoot of the batcher's timer "
                                              "(added to max_wait_ms), ms")] = 0.0

    @model_validator(mode="after")
    def _sizes(self) -> DynamicParams:
        cap, unit = ((self.max_batch_items, "max_batch_items") if self.max_batch_items
                     else (self.max_batch, "max_batch"))
        if any(s < 1 or s > cap for s in self.preferred_sizes):
            raise ValueError(f"preferred_sizes must lie in [1, {unit} = {cap}]")
        return self


@register("batcher", "dynamic")
class DynamicBatcher:
    """Triton's dynamic batcher (``dynamic_batching`` in a Triton model config).

    Sizes are counted in *units*: one per request, or, when ``max_batch_items`` is set, the
    request's items (Triton's batch dimension: a request of 3 counts 3). ``max_bs`` is the
    largest batch in units (``max_batch_items``, else ``max_batch``); ``preferred_sizes`` are in
    the same units and default to ``[max_bs]`` (Triton normalises an empty list so);
    ``max_pref`` is the largest of them. ``max_batch`` also caps the requests in a batch.
    Requests are never split. The rules (Triton core ``src/dynamic_batch_scheduler.cc``,
    ``GetDynamicBatch``; ``docs/user_guide/batcher.md``):

    1. Scan the queue in service order, adding requests to a pending batch. The first request
       always joins (a lone request larger than ``max_bs`` goes alone). A later request that
       would take the pending size past ``max_pref`` marks a cut before it, unless a cut is
       marked already; one that would take it past ``max_bs`` (or past ``max_batch``
       requests) ends the scan: the batch cannot grow.
    2. A prefix whose size is *exactly* a preferred size marks a cut there (the last such
       prefix wins: sizes may jump over a preferred size).
    3. The delay has expired when the oldest pending request has waited ``max_wait_ms``
       (Triton's ``max_queue_delay_microseconds``; here plus ``timer_slack_ms``, the overshoot
       of a real batcher's timer). A delay of 0 never expires and never waits.
    4. Decide, in order: a cut, and the delay not expired -> send the prefix up to the cut, at
       once (even with more queued); the batch cannot grow, or its size reached ``max_pref``
       -> send it all; the delay expired, or a delay of 0 -> send it all (as it is: not cut to a
       preferred size); otherwise wait until the oldest request's arrival + the delay.
    5. While it waits, only a new arrival can change the decision before the deadline: the
       next preferred size (the engine wakes it at that many requests, or items), or
       ``max_batch`` requests.

    So a lone request of exactly ``max_batch_items`` items (an exact fill) leaves at once, and
    at the deadline the whole pending batch leaves. Triton's payload growth while an instance
    is busy, priority-level queue policies and shape checks are not modelled here (queue
    priorities and timeouts are PeakSim admission settings).
    """

    Params = DynamicParams

    def __init__(self, **params: Any) -> None:
        p = parse_params("batcher", "dynamic", DynamicParams, params)
        self.max_batch = p.max_batch
        self.max_batch_items = p.max_batch_items
        self.max_wait_s = p.max_wait_ms / 1000.0
        self.slack_s = p.timer_slack_ms / 1000.0
        self._delay_s = self.max_wait_s + self.slack_s  # the wait budget, s
        self.max_bs = self.max_batch_items if self.max_batch_items is not None else self.max_batch
        given = sorted(set(p.preferred_sizes))
        self.given_preferred = given
        self.preferred = given or [self.max_bs]
        self._pref_set = frozenset(self.preferred)
        self.max_pref = self.preferred[-1]
        # decisions are immutable: the "take k" ones are built once (k <= max_batch)
        self._take = [BatchDecision(take=k) for k in range(self.max_batch + 1)]

    def _wait(self, deadline: float, size: int | None, items: int | None) -> BatchDecision:
        # built per batch, so built as the plain tuple it is (BatchDecision's own constructor
        # costs twice as much): (take, wait_until_s, wake_at_size, wake_at_items)
        return _new_tuple(BatchDecision, (0, deadline, size, items))

    def next_batch(self, queue: QueueView, now_s: float) -> BatchDecision:
        n = queue.n_waiting
        if n == 0:
            return BatchDecision(wake_at_size=1)
        if self.given_preferred:
            return self._scan(queue, now_s)
        # no preferred sizes: preferred = [max_bs] (the fast paths of the same rules)
        mb = self.max_batch
        m = n if n < mb else mb
        cap = self.max_batch_items
        if cap is None:
            if m == mb:  # a full batch (a preferred hit, or it cannot grow)
                return self._take[m]
        else:
            k, pending = queue.fill(cap, m)
            # the next request does not fit, max_batch requests, or exactly full (or a lone
            # oversized request): the batch cannot grow
            if k < m or m == mb or pending >= cap:
                return self._take[k]
        deadline = queue.oldest_s + self._delay_s  # type: ignore[operator]
        if now_s >= deadline or self.max_wait_s <= 0:
            return self._take[m]
        # wait (plain tuple: built per batch, BatchDecision's constructor costs twice as much)
        return _new_tuple(BatchDecision, (0, deadline, mb, cap))

    def _scan(self, queue: QueueView, now_s: float) -> BatchDecision:
        """Rules 1-5 with preferred sizes given (see the class docstring)."""
        n = queue.n_waiting
        m = n if n < self.max_batch else self.max_batch
        items = self.max_batch_items is not None
        sizes = queue.items[:m].tolist() if items else None
        max_pref, max_bs, pref = self.max_pref, self.max_bs, self._pref_set
        pending = taken = cut = 0
        grows = True
        for i in range(m):
            b = max(sizes[i], 1) if sizes is not None else 1
            if i:
                if cut == 0 and pending + b > max_pref:
                    cut = i  # the prefix before this request
                if pending + b > max_bs:
                    grows = False
                    break
            pending += b
            taken = i + 1
            if pending in pref:
                cut = taken
        else:
            grows = m < self.max_batch  # max_batch requests: it cannot grow
        oldest = float(queue.arrival_s[:taken].min())
        deadline = oldest + self.max_wait_s + self.slack_s
        expired = self.max_wait_s > 0 and now_s >= deadline
        if cut and not expired:
            return self._take[cut]
        if not grows or pending >= max_pref or expired or self.max_wait_s <= 0:
            return self._take[taken]
        nxt = next(p for p in self.preferred if p > pending)  # exists: pending < max_pref
        if items:
            return self._wait(deadline, self.max_batch, nxt)
        return self._wait(deadline, nxt, None)
