"""The service model of a model profile served by a serving-stack profile.

Without per-size residuals this is :class:`simulator.service.ProfileService` on the combined
variant (the model's forward fit, the stack's overheads and residuals). With
``residuals_by_items`` a batch's residual is drawn from the range its size falls in.
"""

from __future__ import annotations

import numpy as np

from simulator.profiles import VariantProfile
from simulator.service import _BLOCK, ProfileService
from simulator.serving_profile import ServingStackProfile, combine


class SizeResidualService(ProfileService):
    """ProfileService whose residual depends on the batch's size range (ms x residual)."""

    def __init__(self, variant: VariantProfile, ranges: list[tuple[int, int, list[float]]],
                 speed: float, rng: np.random.Generator) -> None:
        super().__init__(variant, speed, rng)
        self._pools = [np.asarray(r, dtype=float) for _, _, r in ranges]
        self._pool_mean = [float(p.mean()) for p in self._pools]
        self._hi = np.array([hi for _, hi, _ in ranges])
        self._bufs: list[list[float]] = [[] for _ in ranges]
        self._pos = [0] * len(ranges)
        self._range_tab = [self._search(n) for n in range(self._TABLE_MAX + 1)]

    def _search(self, n_items: int) -> int:
        return min(int(np.searchsorted(self._hi, n_items)), len(self._hi) - 1)

    def _range_of(self, n_items: int) -> int:
        return (self._range_tab[n_items] if n_items <= self._TABLE_MAX
                else self._search(n_items))

    def sample(self, n_requests: int, n_items: int) -> float:
        """One batch's service time, s."""
        j = self._range_of(n_items)
        i = self._pos[j]
        if i >= len(self._bufs[j]):
            self._bufs[j] = self._rng.choice(self._pools[j], _BLOCK).tolist()
            i = 0
        self._pos[j] = i + 1
        return self._base_s(n_items) * self._bufs[j][i] / self.speed

    def mean_time(self, n_requests: int, n_items: int) -> float:
        return self._base_s(n_items) * self._pool_mean[self._range_of(n_items)] / self.speed


def stack_service(variant: VariantProfile, stack: ServingStackProfile, name: str, speed: float,
                  rng: np.random.Generator) -> ProfileService:
    """The service model of variant ``name`` served by ``stack``."""
    combined = combine(variant, stack, name)
    ranges = stack.for_variant(name).residuals_by_items
    if not ranges:
        return ProfileService(combined, speed, rng)
    return SizeResidualService(combined, [(r.min_items, r.max_items, r.residuals)
                                          for r in ranges], speed, rng)
