"""Guard rails on calibration profiles: what a run asks of a profile that it did not measure.

A profile measures each variant's batch latency at a few batch sizes (``batch_sizes``, items);
past the largest one the simulator extrapolates the last fitted segment in a straight line.
:func:`profile_guards` compares, per pool (and the degradation fallback variant), the largest
batch the run can form with the variant's measured range, and flags test profiles (written by
``peaksim calibrate --quick``, ``purpose = "test"``). Each guard is a :class:`Guard`: the
scenario field it concerns and a one-sentence message. ``scenario_warnings`` prints them
(``validate``, ``run``, compare, sweep and plan); ``--strict`` turns them into a refusal; the
run's summary carries them under ``profile_guards``.

The largest batch a run can form, in items: with ``max_batch_items`` the batcher fills up to it,
and a lone request larger than it goes alone, so ``max(min(max_batch_items, max_batch x
largest request), largest request)``; without it, ``max_batch x largest request``. The largest
request is the largest ``workload.classes[].size`` can draw (``size.max``; a constant size is
its rounded mean within [min, max]). A batcher without ``max_batch`` (a plugin) counts 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulator.scenario import Scenario

#: a run may form batches up to this many times the largest measured size before it warns
RANGE_FACTOR = 2.0


@dataclass(frozen=True)
class Guard:
    """One guard-rail finding: the scenario field it concerns and what is wrong."""

    field: str
    message: str
    kind: str  # "range" (batches past the measured range) or "test_profile"


def largest_request_items(sc: Scenario) -> int:
    """The most items one request of the scenario can hold."""
    out = 1
    for c in sc.workload.classes:
        s = c.size
        top = (min(max(round(s.mean), s.min), s.max) if s.distribution == "constant"
               else s.max)
        out = max(out, int(top))
    return out


def largest_batch_items(sc: Scenario) -> int:
    """The most items one batch of the run can hold (see the module docstring)."""
    from simulator.policies.registry import create

    b = sc.policy.batching
    try:
        batcher = create("batcher", b.name, b.params)
    except Exception:  # preflight names a batcher that cannot be built
        return largest_request_items(sc)
    req = largest_request_items(sc)
    max_batch = int(getattr(batcher, "max_batch", 1) or 1)
    cap = getattr(batcher, "max_batch_items", None)
    if cap:
        return max(min(int(cap), max_batch * req), req)
    return max_batch * req


def _uses(sc: Scenario) -> list[tuple[str, str, str, str]]:
    """(pool, profile field, profile path as written, variant) for every profiled service a
    run uses, the degradation fallback variant included."""
    out = []
    deg = sc.policy.degradation
    for p in sc.cluster.pools:
        svc = sc.pool_service(p)
        if svc.profile is None or svc.variant is None:
            continue
        where = (f"cluster.pools.{p.name}.service" if p.service is not None else "service")
        out.append((p.name, where, svc.profile, svc.variant))
        if deg.enabled and deg.mode == "variant" and deg.fallback_variant:
            out.append((p.name, where, svc.profile, deg.fallback_variant))
    return out


def _loaded_uses(sc: Scenario) -> list[tuple[str, str, str, str, Any, Any, Any]]:
    """:func:`_uses` with each profile's resolved path, the profile and the variant read
    (those that cannot be read are left out: the scenario's own checks name them)."""
    from simulator.profiles import ProfileError, get_variant, load_profile

    out = []
    for pool, where, ppath, vname in _uses(sc):
        path = sc.resolve_path(ppath)
        try:
            prof = load_profile(path)
            out.append((pool, where, ppath, vname, path, prof, get_variant(prof, vname, path)))
        except ProfileError:
            continue
    return out


def profile_guards(sc: Scenario) -> list[Guard]:
    """Every guard-rail finding of a valid scenario (no duplicates, scenario order); a
    cascade's, per unit (its stage named in the field)."""

    if sc.stages is not None:
        from simulator.cascade.derive import units_of

        # a later stage's request sizes are the candidates the stage before passes on
        return [Guard(f"stages.{u.name}: {g.field}", g.message if u.stage == 0 else
                      g.message.replace("workload.classes size.max", "the candidates it "
                                        "receives: the stage before's candidates_out"), g.kind)
                for u in units_of(sc) for g in profile_guards(u.scenario)]

    need = largest_batch_items(sc)
    found: dict[str, Guard] = {}
    for pool, where, ppath, vname, path, prof, v in _loaded_uses(sc):
        if prof.purpose == "test":
            msg = (f"profile '{prof.name}' ({ppath}) is a test profile (calibrate --quick, "
                   "purpose 'test'): measured with few sizes and repetitions, not for capacity "
                   "decisions; calibrate without --quick")
            found.setdefault(f"test:{path}", Guard(f"{where}.profile", msg, "test_profile"))
        top = max(v.batch_sizes)
        if need > RANGE_FACTOR * top:
            msg = (f"pool '{pool}' serves variant '{vname}' of profile '{prof.name}' "
                   f"({ppath}), measured up to {top:,} items, but the run can form batches of "
                   f"{need:,} items (policy.batching max_batch / max_batch_items and "
                   f"workload.classes size.max): extrapolating {need / top:.0f}x past the "
                   f"measured range: latency beyond {top:,} items is a straight-line guess; "
                   f"calibrate up to {need:,} items (--batch-sizes) or cap the batch "
                   "(max_batch_items)")
            found.setdefault(f"range:{pool}:{vname}",
                             Guard(f"{where}.profile", msg, "range"))
    return list(found.values())


def summary_section(sc: Scenario, max_items_seen: int | None) -> dict[str, Any]:
    """The summary's ``profile_guards``: the largest possible and formed batch (items), each
    profiled pool's measured range, and the guard-rail warnings."""

    if sc.stages is not None:  # a cascade's summary merges its units' sections
        return {}

    pools: dict[str, Any] = {}
    for pool, _where, _ppath, vname, _path, prof, v in _loaded_uses(sc):
        entry = pools.setdefault(pool, {"profile": prof.name, "purpose": prof.purpose,
                                        "measured_max_items": {}})
        entry["measured_max_items"][vname] = max(v.batch_sizes)
    if not pools:
        return {}
    return {"largest_possible_batch_items": largest_batch_items(sc),
            "largest_formed_batch_items": max_items_seen,
            "pools": pools, "warnings": [g.message for g in profile_guards(sc)]}


def formed_note(section: dict[str, Any]) -> str | None:
    """A sentence when the largest batch formed went past any pool's measured range."""
    seen = section.get("largest_formed_batch_items")
    if not seen:
        return None
    tops = [(p, v, m) for p, e in section.get("pools", {}).items()
            for v, m in e["measured_max_items"].items()]
    past = [(p, v, m) for p, v, m in tops if seen > m]
    if not past:
        return None
    p, v, m = min(past, key=lambda t: t[2])
    return (f"the largest batch formed held {seen:,} items, past the {m:,} items measured for "
            f"variant '{v}' (pool '{p}'): its latency was extrapolated")


def strict_check(sc: Scenario, label: str = "") -> None:
    """``--strict``: refuse a scenario with any guard-rail finding (ScenarioError, exit 2).
    ``label`` names the compare variant, sweep point or plan point the scenario is."""
    from simulator.scenario import ScenarioError

    guards = profile_guards(sc)
    if guards:
        where = f"{label}: " if label else ""
        raise ScenarioError("\n".join(
            f"{where}{sc.source}: field '{g.field}': {g.message} (refused under --strict)"
            for g in guards))
