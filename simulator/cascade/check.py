"""The structure of a cascade scenario, checked before its units are built.

Refused, naming the stage and the field: an empty stage list; a stage naming a pool that does
not exist, or a pool another stage (or channel) already serves, or a pool no stage serves; a
stage budget above a class's end-to-end SLO; candidate counts that grow along the funnel where
the stage does not say ``expands = true``; skipping the first stage (it makes the
candidates).
"""

from __future__ import annotations

from typing import Any

from simulator.cascade.derive import input_sizes, size_top


def check_cascade(sc: Any) -> None:
    """Raise ScenarioError for the first structural problem of ``sc.stages``."""
    from simulator.scenario import ScenarioError

    def fail(field: str, msg: str) -> None:
        raise ScenarioError(f"{sc.source}: field '{field}': {msg}")

    stages = sc.stages
    if not stages:
        fail("stages", "an empty stage list: give at least one [[stages]] table, or leave "
             "'stages' out for a single-stage scenario")
    names = [st.name for st in stages]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        fail("stages", f"duplicate stage name '{dup[0]}'")
    pools = {p.name for p in sc.cluster.pools}
    owner: dict[str, str] = {}
    for st in stages:
        owned = ([(f"stages.{st.name}.pools", st.pools)] if st.pools else
                 [(f"stages.{st.name}.channels.{c.name}.pools", c.pools) for c in st.channels])
        for where, ps in owned:
            for p in ps:
                if p not in pools:
                    fail(where, f"pool '{p}' does not exist; cluster.pools: "
                         + ", ".join(sorted(pools)))
                if p in owner:
                    fail(where, f"pool '{p}' already serves {owner[p]}: each pool serves one "
                         "stage (or channel)")
                owner[p] = where.rsplit(".pools", 1)[0]
    idle = sorted(pools - set(owner))
    if idle:
        fail("cluster.pools", f"pool '{idle[0]}' serves no stage: name it in a stage's pools "
             "(or a channel's), or remove it")
    slos = [(c.name, c.slo_ms or sc.sla.slo_ms) for c in sc.workload.classes]
    for st in stages:
        if st.budget_ms is not None:
            tight = [(n, s) for n, s in slos if st.budget_ms > s]
            if tight:
                n, s = min(tight, key=lambda x: x[1])
                fail(f"stages.{st.name}.budget_ms",
                     f"{st.budget_ms:g} ms is larger than the end-to-end SLO of class '{n}' "
                     f"({s:g} ms): a stage's budget is a share of it")
    hops = sum(st.network_ms for st in stages)
    if hops > 0:
        n, s = min(slos, key=lambda x: x[1])
        if hops >= s:
            fail(f"stages.{max(stages, key=lambda x: x.network_ms).name}.network_ms",
                 f"the stages' network hops add up to {hops:g} ms, at least the end-to-end "
                 f"SLO of class '{n}' ({s:g} ms): every request of it would miss the SLO")
    if stages[0].degrade.skip_below_ms is not None:
        fail(f"stages.{stages[0].name}.degrade.skip_below_ms",
             "the first stage cannot be skipped: it makes the candidates the others score")
    sizes = input_sizes(stages, [c.size for c in sc.workload.classes])
    for st, size_in in zip(stages, sizes, strict=True):
        top_in = max(size_top(s) for s in size_in)
        outs = ([(f"stages.{st.name}.candidates_out", st.candidates_out)]
                if st.candidates_out is not None else [])
        if not outs and st.channels:
            outs = [(f"stages.{st.name}.channels.{c.name}.candidates_out", c.candidates_out)
                    for c in st.channels]
        for where, out in outs:
            if out is not None and size_top(out) > top_in and not st.expands:
                fail(where, f"the stage returns up to {size_top(out):,} candidates but "
                     f"receives at most {top_in:,}: candidates grow along the funnel only "
                     "where a stage "
                     "says so (expands = true, e.g. recall)")
