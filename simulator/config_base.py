"""The base of every scenario table: the strict pydantic model and the shared numeric bounds.

Kept apart from :mod:`simulator.sections` so that tables defined elsewhere (node types in
:mod:`simulator.hardware.node_types`, borrowing in :mod:`simulator.borrowing`) build on the same
rules without an import cycle.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]

# Bounds that keep a run finishable (docs/scenario-reference.md shows every field's range;
# simulator.preflight estimates what the values allowed here add up to before a run starts)
#: longest simulated horizon, s (about 3.2 years)
MAX_DURATION_S = 1e8
#: narrowest time-series row, s (a row costs memory and a sampler event)
MIN_INTERVAL_S = 1e-3
#: most nodes in one pool (every node slot costs memory and, per node, processes)
MAX_POOL_NODES = 100_000
#: highest mean arrival rate, QPS
MAX_RATE_QPS = 1e9
#: a bound on times and durations that are not the run's length (delays, SLOs, windows), s
#: or ms: far beyond any run, finite
MAX_TIME = 1e9
#: a bound on money, power and other magnitudes that only scale results
MAX_AMOUNT = 1e9


class _Model(BaseModel):
    # NaN and infinities are refused in every float of a scenario (pydantic allows them by
    # default: a NaN fails no bound and used to pass validate, then break the run)
    model_config = ConfigDict(extra="forbid", validate_assignment=False, allow_inf_nan=False)


class DelayCfg(_Model):
    """A random delay (s): node provisioning, repair time."""

    distribution: Literal["exponential", "deterministic", "lognormal", "gamma", "uniform"] = (
        "lognormal"
    )
    mean_s: NonNegFloat = Field(90.0, le=MAX_TIME, description="mean delay, s")
    cv: NonNegFloat = Field(0.3, le=100.0, description="coefficient of variation")
