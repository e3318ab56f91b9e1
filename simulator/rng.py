"""Seeded random streams: one numpy Generator per named purpose.

Streams are keyed by name, not by creation order, so adding a stream never shifts another one.
Each purpose draws from its own stream, so the draws of one purpose never depend on how many
draws another made: two runs with the same seed see identical arrivals, sizes, preemptions and
failures even when one of them routes, batches or scales differently (common random numbers
across policy variants; ``tests/test_streams.py``). The streams:

==============================  =========================================================
``arrivals``                    arrival times (thinning, renewal gaps, MMPP path, trace scaling)
``classes``                     which class each arrival belongs to
``sizes:<class>``               items per request of that class
``service:<pool>``              batch service times of the pool's model
``fallback:<pool>``             service times of the pool's degraded-mode variant
``routing``                     the router's random choices (per-node dispatch)
``pool_choice``                 which pool's idle node takes work (``pool_preference = weighted``)
``degradation``                 which requests / batches are degraded
``provisioning:<pool>``         provisioning delays of the pool's new nodes
``preemptions:<pool>:<k>``      preemption clock of the pool's k-th node slot (Poisson)
``preemptions:<pool>``          which node a replayed (trace) preemption hits
``failures:<pool>:<k>``         failure clock of the pool's k-th node slot (Poisson)
``repairs:<pool>:<k>``          repair times of the pool's k-th node slot
``records``                     which requests a sampled record keeps
==============================  =========================================================

A node slot's preemption and failure clocks tick in simulated time whether or not the slot holds
a node; a tick hits the node only if it is there (alive for a preemption, ready for a failure).
This is the same hazard per node as a pool-wide Poisson process over the current nodes, but the
ticks do not depend on how many nodes the autoscaler keeps.
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
