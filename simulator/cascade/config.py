"""The ``[[stages]]`` tables of a scenario: a recommendation cascade (recall -> pre-ranking ->
ranking -> re-ranking), each stage its own service on its own pools under one end-to-end SLO.

A stage names the ``cluster.pools`` it owns (each pool belongs to one stage or channel) and may
override the scenario's service, batching, routing, dispatch, admission and degradation. A
request enters stage 1 with its class's ``size`` (items: the query, or DeepRecSys-like query
sizes); every stage scores its input candidates and passes ``candidates_out`` on (a number or a
size distribution; by default its input count). A fork stage (``channels``) sends each request
to every channel in parallel (recall: embedding retrieval, item-to-item, trending) and joins
their candidates. Units: ``_ms`` milliseconds, candidates in items.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from simulator.sections import (
    MAX_TIME,
    AdmissionCfg,
    BatchingCfg,
    DegradationCfg,
    NonNegFloat,
    PosFloat,
    RoutingCfg,
    ServiceCfg,
    SizeCfg,
    _check_unique,
    _Model,
)


def _as_size(v: Any) -> Any:
    """``candidates_out = 500`` is a constant count (``500.0`` too); a table is a size
    distribution; any other number is refused as not a count."""
    if isinstance(v, bool):
        return v
    if isinstance(v, float):
        if not (math.isfinite(v) and v == int(v)):
            raise ValueError(f"{v!r} is not a count: give a positive whole number of "
                             "candidates, or a size distribution table such as { distribution"
                             " = \"uniform\", mean = 400, min = 200, max = 600 }")
        v = int(v)
    if isinstance(v, int):
        return {"distribution": "constant", "mean": v, "min": v, "max": v}
    return v


def _name(v: str) -> str:
    """A stage or channel name: it names a unit (``stage`` or ``stage/channel``: its random
    streams and its rows in the summary) and a ``--set`` / metric path (``stages.<name>.``),
    so it may not be empty or hold ``.`` or ``/`` (two units would share a name)."""
    if not v.strip() or v != v.strip():
        raise ValueError(f"{v!r}: a name may not be empty or begin or end with spaces")
    bad = sorted({c for c in v if c in "./"})
    if bad:
        raise ValueError(f"{v!r}: a name may not contain {' or '.join(map(repr, bad))} "
                         "(it names the stage's units, 'stage/channel', and the paths "
                         "'stages.<stage>.<field>')")
    return v


class ChannelCfg(_Model):
    """One parallel channel of a fork stage (e.g. one recall source)."""

    name: str
    _named = field_validator("name")(_name)
    pools: list[str] = Field(min_length=1, description="names of the cluster.pools serving "
                             "this channel")
    service: ServiceCfg | None = Field(None, description="default: the stage's, else the "
                                       "scenario's [service] (a pool's own service wins)")
    batching: BatchingCfg | None = Field(None, description="default: the stage's, else "
                                         "policy.batching")
    candidates_out: SizeCfg = Field(description="candidates this channel returns per "
                                    "request: a count or a size distribution")
    timeout_ms: PosFloat | None = Field(
        None, le=MAX_TIME, description="the join stops waiting for this channel this long "
        "after the request entered the stage, ms (its candidates are then lost; the channel "
        "still finishes its work)")

    _size = field_validator("candidates_out", mode="before")(_as_size)


class StageDegradeCfg(_Model):
    """Degrading the funnel under load, decided when a request reaches the stage from the
    end-to-end budget it has left (``sla`` SLO of its class minus its age)."""

    skip_below_ms: NonNegFloat | None = Field(
        None, le=MAX_TIME, description="skip the stage when the request has less than this "
        "left of its end-to-end SLO, ms: its candidates are cut to the stage's candidates_out "
        "at no cost in time")
    shrink_below_ms: NonNegFloat | None = Field(
        None, le=MAX_TIME, description="score fewer candidates (shrink_to of them) when the "
        "request has less than this left of its end-to-end SLO, ms")
    shrink_to: float = Field(0.5, gt=0, lt=1, allow_inf_nan=False,
                             description="fraction of the candidates kept when shrinking")
    skip_quality_loss: NonNegFloat = Field(
        0.0, le=1.0, description="quality lost per request that skips the stage (e.g. NDCG or "
        "AUC points; counted in the summary)")
    shrink_quality_loss: NonNegFloat = Field(
        0.0, le=1.0, description="quality lost per request scored on shrunk candidates")

    @model_validator(mode="after")
    def _order(self) -> StageDegradeCfg:
        # (by value, not by the fields given: a scenario dumped with its defaults and read
        # again, as compare and sweep do, gives them all)
        fields = type(self).model_fields
        for knob, trigger in (("shrink_to", "shrink_below_ms"),
                              ("shrink_quality_loss", "shrink_below_ms"),
                              ("skip_quality_loss", "skip_below_ms")):
            if getattr(self, knob) != fields[knob].default and getattr(self, trigger) is None:
                raise ValueError(f"{knob} is given without {trigger}: it would never apply "
                                 f"(give {trigger}, the end-to-end budget left below which "
                                 "the stage degrades)")
        if (self.skip_below_ms is not None and self.shrink_below_ms is not None
                and self.shrink_below_ms < self.skip_below_ms):
            raise ValueError(f"shrink_below_ms ({self.shrink_below_ms:g}) < skip_below_ms "
                             f"({self.skip_below_ms:g}): a request shrinks before it skips, "
                             "so shrink_below_ms must be the larger")
        return self


class StageCfg(_Model):
    """One stage of the cascade, in order (see the module docstring)."""

    name: str
    _named = field_validator("name")(_name)
    pools: list[str] = Field(default_factory=list, description="names of the cluster.pools "
                             "serving this stage (a fork stage gives channels instead)")
    channels: list[ChannelCfg] = Field(default_factory=list, description="parallel channels "
                                       "of a fork stage, joined when all have answered or "
                                       "timed out")
    service: ServiceCfg | None = Field(None, description="default: the scenario's [service] "
                                       "(a pool's own service wins)")
    batching: BatchingCfg | None = Field(None, description="default: policy.batching")
    routing: RoutingCfg | None = Field(None, description="default: policy.routing")
    dispatch: Literal["central", "per_node"] | None = Field(
        None, description="default: policy.dispatch (a fork stage's channels too)")
    admission: AdmissionCfg | None = Field(None, description="default: policy.admission")
    degradation: DegradationCfg | None = Field(
        None, description="the stage's own queue-driven degradation (policy.degradation's "
        "rules within the stage; default: policy.degradation)")
    candidates_out: SizeCfg | None = Field(
        None, description="candidates passed on per request: a count or a size distribution "
        "(default: the input count; a fork stage: the sum of its channels')")
    expands: bool = Field(False, description="the stage may return more candidates than it "
                          "receives (recall: one query in, hundreds of candidates out)")
    budget_ms: PosFloat | None = Field(None, le=MAX_TIME, description="the stage's latency "
                                       "budget, ms (its own SLO; at most the end-to-end SLO)")
    network_ms: NonNegFloat = Field(0.0, le=MAX_TIME, description="hop to the next stage "
                                    "(or back to the caller after the last), ms")
    degrade: StageDegradeCfg = Field(default_factory=StageDegradeCfg)

    _size = field_validator("candidates_out", mode="before")(_as_size)

    @field_validator("channels")
    @classmethod
    def _unique(cls, v: list[ChannelCfg]) -> list[ChannelCfg]:
        _check_unique([c.name for c in v], "channel")
        return v

    @model_validator(mode="after")
    def _shape(self) -> StageCfg:
        if bool(self.pools) == bool(self.channels):
            raise ValueError("give exactly one of 'pools' (the stage's pools) or 'channels' "
                             "(a fork stage's parallel channels)")
        if self.channels and len(self.channels) < 2:
            raise ValueError("a fork stage needs at least 2 channels (one channel: give "
                             "'pools' instead)")
        return self

    def units(self) -> list[tuple[str, list[str], ServiceCfg | None, BatchingCfg | None]]:
        """(unit name, pools, service, batching) of each simulated unit: the stage itself, or
        each channel as ``stage/channel``."""
        if not self.channels:
            return [(self.name, self.pools, self.service, self.batching)]
        return [(f"{self.name}/{c.name}", c.pools, c.service or self.service,
                 c.batching or self.batching) for c in self.channels]
