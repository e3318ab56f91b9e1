"""Batchers: decide how many waiting requests a free node takes now, or how long to wait.

Semantics follow Triton's dynamic batcher: form the largest batch <= ``max_batch`` (and
<= ``max_batch_items`` items) in arrival order; a preferred size that can be formed is sent at
once; otherwise wait at most ``max_wait_ms`` after the oldest request arrived (default 0: never
wait), plus ``timer_slack_ms``, the overshoot of a real batcher's timer.
"""

from __future__ import annotations

from typing import Any, Protocol

from simulator.policies.registry import register
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

    max_batch = 1
    takes_one = True  # capability: takes one waiting request whenever asked, never waits

    def __init__(self, **_: Any) -> None:
        pass

    def next_batch(self, queue: QueueView, now_s: float) -> BatchDecision:
        if queue.n_waiting > 0:
            return BatchDecision(take=1)
        return BatchDecision(wake_at_size=1)


@register("batcher", "dynamic")
class DynamicBatcher:
    """Triton-style dynamic batching (see module docstring)."""

    def __init__(
        self,
        max_batch: int = 8,
        max_batch_items: int | None = None,
        max_wait_ms: float = 0.0,
        preferred_sizes: list[int] | tuple[int, ...] = (),
        timer_slack_ms: float = 0.0,
        **_: Any,
    ) -> None:
        if max_batch < 1:
            raise ValueError("dynamic batcher: max_batch must be >= 1")
        self.max_batch = int(max_batch)
        self.max_batch_items = max_batch_items
        self.max_wait_s = max_wait_ms / 1000.0
        self.slack_s = timer_slack_ms / 1000.0
        self.preferred = sorted(set(int(s) for s in preferred_sizes))
        # decisions are immutable: the "take k" ones are built once (k <= max_batch)
        self._take = [BatchDecision(take=k) for k in range(self.max_batch + 1)]
        # wake early when the waiting requests outgrow the item cap: that batch is due at once
        self._wake_items = max_batch_items + 1 if max_batch_items is not None else None

    def next_batch(self, queue: QueueView, now_s: float) -> BatchDecision:
        n = queue.n_waiting
        if n == 0:
            return BatchDecision(wake_at_size=1)
        # k: the largest batch the caps allow; capped: a cap (not the queue) limits it
        if n > self.max_batch:
            n = self.max_batch
        k, capped = n, n == self.max_batch
        if self.max_batch_items is not None and n > 1:  # a lone request always fits
            k = queue.fit_items(self.max_batch_items, n)  # >= 1: an oversized one goes alone
            if k < n:
                capped = True
        if capped:
            return self._take[k]
        assert queue.oldest_s is not None
        deadline = queue.oldest_s + self.max_wait_s + self.slack_s
        preferred = self.preferred
        if self.max_wait_s <= 0 or now_s >= deadline:
            if preferred:
                fitting = [p for p in preferred if p <= k]
                if fitting and self.max_wait_s > 0:
                    return self._take[fitting[-1]]
            return self._take[k]
        target = self.max_batch
        if preferred:
            if k in preferred:
                return self._take[k]
            larger = [p for p in preferred if p > k]
            target = larger[0] if larger else self.max_batch
        # wait: (take, wait_until_s, wake_at_size, wake_at_items); built per batch, so built
        # as the plain tuple it is (BatchDecision's own constructor costs twice as much)
        return _new_tuple(BatchDecision, (0, deadline, target, self._wake_items))
