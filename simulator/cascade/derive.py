"""Each unit of a cascade (a stage, or a fork stage's channel) as a single-stage scenario.

A unit's scenario is the cascade's with: its own pools (``cluster.pools`` cut to the unit's),
the stage's service, batching, routing, dispatch, admission and degradation where given, its
input candidates as the classes' ``size`` (stage 1 keeps the workload's), the stage budget as
its SLO (else the end-to-end SLOs), no SLA penalty (the cascade charges it end to end) and the
fixed costs (engineers, data) in the first unit only. Its arrivals do not come from its own
workload: the cascade feeds them (:mod:`simulator.cascade.flow`); the workload section stays for
what reads it before the run (the arrival curve a predictive autoscaler forecasts with, the
resource estimate). Every unit runs with its own seed, drawn from the run's seed and the unit's
name, so no two units share a random stream.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from simulator.cascade.config import StageCfg
from simulator.rng import stream
from simulator.sections import SizeCfg

#: a unit's name: the stage's, or ``stage/channel``
UNIT_SEP = "/"


@dataclass(frozen=True)
class Unit:
    """One simulated unit: ``stage`` index, its config, the channel (None: the stage itself),
    its scenario (single-stage) and the candidates it returns per request."""

    stage: int
    cfg: StageCfg
    channel: str | None
    name: str
    scenario: Any  # simulator.scenario.Scenario (not imported: no cycle)
    candidates_out: SizeCfg | None
    join_timeout_ms: float | None  # fork channels: the join stops waiting after this


def input_sizes(stages: list[StageCfg], first: list[SizeCfg]) -> list[list[SizeCfg]]:
    """The candidate-count distribution entering each stage, per class (stage 1: the
    classes' sizes). A stage passes on its ``candidates_out``, or what it received; a fork
    stage without one passes the sum of its channels' (a constant of the summed means)."""
    out = [list(first)]
    for st in stages[:-1]:
        prev = out[-1]
        if st.candidates_out is not None:
            out.append([st.candidates_out] * len(prev))
        elif st.channels:
            tot = sum(c.candidates_out.mean for c in st.channels)
            hi = sum(c.candidates_out.max for c in st.channels)
            size = SizeCfg(distribution="constant", mean=min(tot, hi), min=1, max=max(1, hi))
            out.append([size] * len(prev))
        else:
            out.append(list(prev))
    return out


def size_top(s: SizeCfg) -> int:
    """The most items a size distribution draws (a constant: its rounded mean in range)."""
    if s.distribution == "constant":
        return int(min(max(round(s.mean), s.min), s.max))
    return int(s.max)


def unit_seed(seed: int, name: str) -> int:
    """The seed of unit ``name`` under the run's ``seed``."""
    return int(stream(seed, f"cascade-unit:{name}").integers(0, 2**63 - 1))


def unit_raw(raw: dict[str, Any], st: StageCfg, pools: list[str], service: Any,
             batching: Any, sizes: list[SizeCfg], name: str,
             fixed_costs: bool) -> dict[str, Any]:
    """The raw single-stage scenario of one unit (see the module docstring)."""
    d = copy.deepcopy(raw)
    d.pop("stages", None)
    d["name"] = f"{raw.get('name', 'scenario')}{UNIT_SEP}{name}"
    d["cluster"] = {**d.get("cluster", {}),
                    "pools": [p for p in d["cluster"]["pools"] if p["name"] in pools]}
    if service is not None:
        d["service"] = service.model_dump()
    pol = d.setdefault("policy", {})
    for key, val in (("batching", batching), ("routing", st.routing),
                     ("admission", st.admission), ("degradation", st.degradation)):
        if val is not None:
            pol[key] = val.model_dump()
    if st.dispatch is not None:
        pol["dispatch"] = st.dispatch
        if st.dispatch == "per_node":
            pol.pop("pool_preference", None)
        elif st.routing is None:
            pol.pop("routing", None)
    classes = d.setdefault("workload", {}).setdefault("classes", [{"name": "default",
                                                                    "share": 1.0}])
    for c, size in zip(classes, sizes, strict=True):
        c["size"] = size.model_dump()
        if st.budget_ms is not None:
            c["slo_ms"] = None
    sla = d.setdefault("sla", {})
    if st.budget_ms is not None:
        sla["slo_ms"] = st.budget_ms
    sla["penalty_usd_per_violation"] = 0.0
    sla["penalty_usd_per_degraded"] = 0.0
    d.setdefault("simulation", {})["records"] = "none"
    if not fixed_costs:
        cost = d.setdefault("cost", {})
        cost["engineers"] = 0.0
        cost["data_gb"] = 0.0
    return d


def build_units(sc: Any) -> list[Unit]:
    """Every unit of the cascade scenario ``sc`` in stage order (channels in their order),
    each with its validated single-stage scenario; a unit that cannot run is refused naming
    the stage (ScenarioError)."""
    from simulator.scenario import scenario_from_dict

    raw = sc.model_dump()
    stages: list[StageCfg] = sc.stages
    sizes = input_sizes(stages, [c.size for c in sc.workload.classes])
    out: list[Unit] = []
    for k, st in enumerate(stages):
        chans = st.channels or [None]
        for ch in chans:
            name = st.name if ch is None else f"{st.name}{UNIT_SEP}{ch.name}"
            pools = st.pools if ch is None else ch.pools
            service = st.service if ch is None else (ch.service or st.service)
            batching = st.batching if ch is None else (ch.batching or st.batching)
            d = unit_raw(raw, st, pools, service, batching, sizes[k], name, not out)
            where = f"stages.{st.name}" + ("" if ch is None else f".channels.{ch.name}")
            usc = scenario_from_dict(d, f"{sc.source} [{where}]", base_dir=sc._base_dir)
            out.append(Unit(k, st, None if ch is None else ch.name, name, usc,
                            st.candidates_out if ch is None else ch.candidates_out,
                            None if ch is None else ch.timeout_ms))
    return out


def units_of(sc: Any) -> list[Unit]:
    """The units of ``sc``, built once per scenario object (validation, the estimate, profile
    guards and the run share them)."""
    cached = sc._units
    if cached is None:
        cached = build_units(sc)
        sc._units = cached
    return cached  # type: ignore[no-any-return]
