"""Seeded random streams: one numpy Generator per named purpose.

Streams are keyed by name, not by creation order, so adding a stream never shifts another one.
Two runs with the same seed therefore see identical arrivals even when one of them routes,
fails or batches differently: the basis of common random numbers across policy variants.
"""

from __future__ import annotations

import zlib

import numpy as np


def stream(seed: int, name: str) -> np.random.Generator:
    """The Generator for purpose ``name`` under experiment ``seed`` (stable across versions)."""
    key = zlib.crc32(name.encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(key,)))


class BufferedRandom:
    """Fast scalar draws for policies: uniforms drawn in blocks from one Generator.

    ``random()`` costs a list index instead of a numpy call; the sequence depends only on the
    seed and the number of draws, so decisions stay deterministic.
    """

    __slots__ = ("_block", "_buf", "_gen", "_i")

    def __init__(self, gen: np.random.Generator, block: int = 4096) -> None:
        self._gen = gen
        self._block = block
        self._buf: list[float] = []
        self._i = 0

    def random(self) -> float:
        """A uniform draw in [0, 1)."""
        if self._i >= len(self._buf):
            self._buf = self._gen.random(self._block).tolist()
            self._i = 0
        u = self._buf[self._i]
        self._i += 1
        return u

    def integers(self, n: int) -> int:
        """A uniform integer in [0, n)."""
        return min(int(self.random() * n), n - 1)

    @property
    def generator(self) -> np.random.Generator:
        """The underlying Generator, for vectorised draws."""
        return self._gen
