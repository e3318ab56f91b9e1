"""Concurrent model instances on one node: how many, and how much each batch slows down.

A node with ``instances = k`` (Triton's ``instance_group`` count, or k worker processes on a CPU
node) serves up to k batches at once. They share the node's devices, so a batch that starts
while n instances (itself included) are serving takes ``factor(n)`` times its single-instance
time. The factors are measured (``peaksim calibrate-instances``), projected
(``peaksim profile project``) or given in the scenario (``cluster.pools.instance_slowdown``);
they are never assumed to be 1. Between the counts given the factor is linear; a count beyond
the largest given is refused.
"""

from __future__ import annotations

from collections.abc import Mapping


class InstancesError(ValueError):
    """The instance count cannot be served with the factors available (message says why)."""


def slowdown_table(by_n: Mapping[int, float], instances: int) -> tuple[float, ...]:
    """Factors for 1..``instances`` concurrent batches (index n - 1), linear between the
    counts in ``by_n`` (the factor at 1 is 1.0 when not given). Raises InstancesError when
    ``instances`` exceeds the largest count given."""
    pts = dict(by_n)
    pts.setdefault(1, 1.0)
    xs = sorted(pts)
    if instances > xs[-1]:
        raise InstancesError(f"factors are known up to {xs[-1]} concurrent instances "
                             f"(given: {', '.join(str(x) for x in xs)}), not {instances}")
    out = []
    for n in range(1, instances + 1):
        if n in pts:
            out.append(float(pts[n]))
            continue
        hi = next(x for x in xs if x > n)
        lo = max(x for x in xs if x < n)
        w = (n - lo) / (hi - lo)
        out.append(float(pts[lo] + w * (pts[hi] - pts[lo])))
    return tuple(out)
