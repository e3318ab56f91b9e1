"""Service-time distributions that know their own mean and variance (Ciw's idea).

All values are in seconds. ``sample(rng, n)`` draws ``n`` values at once with numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Distribution:
    """Base class: a positive random variable with known moments."""

    mean: float

    @property
    def variance(self) -> float:
        raise NotImplementedError

    @property
    def cv(self) -> float:
        """Coefficient of variation (std / mean)."""
        return math.sqrt(self.variance) / self.mean

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True)
class Exponential(Distribution):
    @property
    def variance(self) -> float:
        return self.mean**2

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.exponential(self.mean, n)


@dataclass(frozen=True)
class Deterministic(Distribution):
    @property
    def variance(self) -> float:
        return 0.0

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, self.mean)


@dataclass(frozen=True)
class Lognormal(Distribution):
    cv_: float = 1.0

    @property
    def variance(self) -> float:
        return (self.cv_ * self.mean) ** 2

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.cv_ < 1e-6:  # numerically deterministic
            return np.full(n, self.mean)
        s2 = math.log1p(self.cv_**2)
        mu = math.log(self.mean) - s2 / 2
        return rng.lognormal(mu, math.sqrt(s2), n)


@dataclass(frozen=True)
class Gamma(Distribution):
    cv_: float = 1.0

    @property
    def variance(self) -> float:
        return (self.cv_ * self.mean) ** 2

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.cv_ < 1e-6:  # shape 1/cv^2 would overflow
            return np.full(n, self.mean)
        k = 1.0 / self.cv_**2
        return rng.gamma(k, self.mean / k, n)


@dataclass(frozen=True)
class Uniform(Distribution):
    cv_: float = 0.5

    @property
    def variance(self) -> float:
        return (self.cv_ * self.mean) ** 2

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        half = self.cv_ * self.mean * math.sqrt(3.0)
        return rng.uniform(self.mean - half, self.mean + half, n)


def make_distribution(name: str, mean_s: float, cv: float = 1.0) -> Distribution:
    """Distribution by scenario name; ``mean_s`` in seconds."""
    if name == "exponential":
        return Exponential(mean_s)
    if name == "deterministic":
        return Deterministic(mean_s)
    if name == "lognormal":
        return Lognormal(mean_s, cv)
    if name == "gamma":
        return Gamma(mean_s, cv)
    if name == "uniform":
        return Uniform(mean_s, cv)
    raise ValueError(
        f"unknown distribution '{name}'; allowed: exponential, deterministic, lognormal, "
        "gamma, uniform"
    )
