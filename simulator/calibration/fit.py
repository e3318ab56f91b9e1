"""Fit latency(batch size) through measured medians and describe the residuals.

Two candidates per variant, chosen by *per-point* relative error (never R^2: on this CPU an
R^2 > 0.98 hid a 64% miss at batch 1):

- ``affine``: t = a + b * items, least squares in relative terms (weights 1 / median^2);
  its error is the largest |fit - median| / median over the measured points.
- ``piecewise_linear``: through the (isotonic) medians; its stated error is the leave-one-out
  error: each interior point predicted from its neighbours, so the number bounds what the fit
  does *between* measured sizes (where the simulator uses it), not the trivial 0 at the points.

The affine fit is preferred when its error is within ``affine_tol`` of the piecewise one (it
extrapolates more sensibly); otherwise piecewise-linear. Pure numpy: no torch here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_RESIDUALS = 1000


@dataclass(frozen=True)
class Fit:
    """A fitted latency curve: points (x items, y ms) interpolated piecewise-linearly."""

    kind: str
    x: list[float]
    y_ms: list[float]
    max_rel_error: float
    point_errors: list[float]  # per measured point (affine: in-sample; piecewise: leave-one-out)

    def __call__(self, items: np.ndarray | float) -> np.ndarray:
        """Fitted latency (ms); linear extrapolation of the end segments (as the simulator)."""
        x, y = np.asarray(self.x), np.asarray(self.y_ms)
        q = np.asarray(items, dtype=float)
        if len(x) == 1:
            return np.full_like(q, y[0])
        out = np.interp(q, x, y)
        hi, lo = q > x[-1], q < x[0]
        out = np.where(hi, y[-1] + (y[-1] - y[-2]) / (x[-1] - x[-2]) * (q - x[-1]), out)
        low = np.maximum(y[0] + (y[1] - y[0]) / (x[1] - x[0]) * (q - x[0]), 0.05 * y[0])
        return np.where(lo, low, out)


def isotonic(y: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Non-decreasing least-squares fit (pool adjacent violators): more items never faster."""
    w = np.ones_like(y, dtype=float) if w is None else np.asarray(w, dtype=float)
    blocks: list[list[float]] = []  # [mean, weight, count]
    for yi, wi in zip(np.asarray(y, dtype=float), w, strict=True):
        blocks.append([yi, wi, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, c2 = blocks.pop()
            m1, w1, c1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    return np.concatenate([np.full(int(c), m) for m, _, c in blocks])


def fit_affine(x: np.ndarray, med: np.ndarray) -> tuple[float, float]:
    """Relative least squares a + b*x ~ med; returns (a, b) with a, b >= 0."""
    w = 1.0 / med
    A = np.stack([np.ones_like(x), x], axis=1) * w[:, None]
    (a, b), *_ = np.linalg.lstsq(A, med * w, rcond=None)
    if b < 0:
        a, b = float(np.mean(med)), 0.0
    if a <= 0:
        a = 1e-6
        b = float(np.sum(x * med * w**2) / np.sum(x * x * w**2))
    return float(a), float(b)


def loo_errors(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Leave-one-out relative error of piecewise-linear interpolation at interior points
    (end points: 0, as they are kept by construction)."""
    err = np.zeros(len(x))
    for i in range(1, len(x) - 1):
        pred = y[i - 1] + (y[i + 1] - y[i - 1]) * (x[i] - x[i - 1]) / (x[i + 1] - x[i - 1])
        err[i] = abs(pred - y[i]) / y[i]
    return err


def held_out_errors(kind: str, batch_sizes: list[int] | list[float],
                    medians: list[float]) -> list[float | None]:
    """Leave-one-out relative error per measured point: the fit of the same ``kind`` refitted
    through the medians without that point, |prediction - median| / median there. End points
    are None (predicting them would be extrapolation, which no interior point measures).
    Computed from a profile's stored medians, so it works for any profile."""
    x = np.asarray(batch_sizes, dtype=float)
    med = np.asarray(medians, dtype=float)
    out: list[float | None] = [None] * len(x)
    for i in range(1, len(x) - 1):
        keep = np.arange(len(x)) != i
        if kind == "affine":
            a, b = fit_affine(x[keep], med[keep])
            pred = a + b * x[i]
        else:
            pred = float(np.interp(x[i], x[keep], isotonic(med[keep])))
        out[i] = float(abs(pred - med[i]) / med[i])
    return out


def fit_latency(batch_sizes: list[int], medians: list[float], affine_tol: float = 0.01) -> Fit:
    """Choose affine or piecewise-linear for one variant by per-point relative error."""
    x = np.asarray(batch_sizes, dtype=float)
    med = np.asarray(medians, dtype=float)
    if np.any(np.diff(x) <= 0) or np.any(med <= 0):
        raise ValueError("batch sizes must increase and medians be positive")
    y_iso = isotonic(med)
    if len(x) == 1:
        return Fit("piecewise_linear", x.tolist(), y_iso.tolist(), 0.0, [0.0])
    pw_err = np.maximum(loo_errors(x, y_iso), np.abs(y_iso - med) / med)
    a, b = fit_affine(x, med)
    y_aff = a + b * x
    aff_err = np.abs(y_aff - med) / med
    if len(x) >= 3 and aff_err.max() <= pw_err.max() + affine_tol:
        return Fit("affine", x.tolist(), y_aff.tolist(), float(aff_err.max()), aff_err.tolist())
    return Fit("piecewise_linear", x.tolist(), y_iso.tolist(), float(pw_err.max()),
               pw_err.tolist())


def residuals(fit: Fit, batch_sizes: list[int], samples_ms: list[np.ndarray],
              limit: int = MAX_RESIDUALS, seed: int = 0) -> list[float]:
    """Measured / fitted ratios pooled over all batch sizes, subsampled to ``limit`` values
    (equal share per batch size, seeded), rounded to 4 decimals, sorted."""
    rng = np.random.default_rng(seed)
    per = max(1, limit // max(1, len(batch_sizes)))
    out: list[np.ndarray] = []
    for b, s in zip(batch_sizes, samples_ms, strict=True):
        r = np.asarray(s, dtype=float) / float(fit(b))
        if len(r) > per:
            r = rng.choice(r, per, replace=False)
        out.append(r)
    allr = np.sort(np.concatenate(out))[:limit]
    return [round(float(v), 4) for v in allr]


def summarize(samples_ms: np.ndarray) -> dict[str, float]:
    """Median, p99 and mean of one cell's samples (ms)."""
    s = np.asarray(samples_ms, dtype=float)
    return {"median": float(np.median(s)), "p99": float(np.quantile(s, 0.99)),
            "mean": float(s.mean())}
