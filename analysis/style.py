"""Shared look of every PeakSim figure: headless backend, one colour per policy, saving.

Figures are built as ``matplotlib.figure.Figure`` objects without pyplot's global figure
registry, so they can be returned, inspected, saved and shown in Jupyter alike.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterable, Mapping

import matplotlib

# Headless by default (tests, CI, `peaksim report`); a notebook that already chose a backend
# (pyplot imported, or MPLBACKEND set, as ipykernel does) keeps its own.
if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
    matplotlib.use("Agg")

from matplotlib.figure import Figure

#: Colour cycle (matplotlib's tab10, colour-blind friendlier order first).
PALETTE: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)

#: Fixed colours of the cost components, in stacking order (bottom first).
COST_COLORS: dict[str, str] = {
    "compute": "#4c72b0", "energy": "#dd8452", "storage": "#55a868",
    "human": "#8172b3", "sla_penalty": "#c44e52",
}

#: Fixed colours of cluster event kinds on timelines.
EVENT_COLORS: dict[str, str] = {
    "scale_up": "#2ca02c", "scale_down": "#9467bd", "preemption": "#d62728",
    "failure": "#000000", "recovery": "#17becf",
}

FIG_DPI = 110


def palette(names: Iterable[str], base: Mapping[str, str] | None = None) -> dict[str, str]:
    """One colour per name, in order of first appearance; ``base`` entries are kept.

    Pass the same mapping to every figure of a report so a policy has one colour throughout.
    """
    out: dict[str, str] = dict(base or {})
    used = set(out.values())
    free = [c for c in PALETTE if c not in used]
    i = 0
    for n in names:
        if n in out:
            continue
        out[n] = free[i % len(free)] if free else PALETTE[i % len(PALETTE)]
        i += 1
    return out


def new_figure(width_in: float = 8.0, height_in: float = 4.5) -> Figure:
    """An empty figure of the given size (inches), with constrained layout."""
    return Figure(figsize=(width_in, height_in), dpi=FIG_DPI, layout="constrained")


def to_bytes(fig: Figure, fmt: str) -> bytes:
    """The figure rendered as ``png`` or ``svg`` bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=FIG_DPI)
    return buf.getvalue()


def empty_note(fig: Figure, text: str) -> Figure:
    """Write ``text`` in the middle of an axes-less figure (data missing)."""
    fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, color="#555555")
    return fig


def name_scenario(fig: Figure, scenario: str | None) -> Figure:
    """Put the scenario's name in the figure's title: ``NAME: <suptitle>`` (a suptitle
    ``Scenario NAME`` when there is none). Idempotent."""
    if not scenario:
        return fig
    sup = fig.get_suptitle()
    if sup.startswith(f"{scenario}: ") or sup == f"Scenario {scenario}":
        return fig
    fig.suptitle(f"{scenario}: {sup}" if sup else f"Scenario {scenario}")
    return fig
