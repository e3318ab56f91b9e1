"""The scenario: one TOML file = one experiment, validated by pydantic.

The same model serves the file, ``--set`` overrides, sweeps and the Python API. Every error names
the file, the field (dotted, list items by ``name`` where they have one) and the allowed values.
Field units are in the names: ``_s`` seconds, ``_ms`` milliseconds, ``_qps`` requests per second,
``_usd`` US dollars, ``_w`` watts, ``_gb`` gigabytes.
"""

from __future__ import annotations

import copy
import os
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from simulator import calendar_time, sections
from simulator.borrowing import BorrowCfg
from simulator.cascade.config import StageCfg
from simulator.hardware.node_types import lookup
from simulator.policies.registry import PluginError, load_plugins
from simulator.sections import (  # noqa: F401  (re-exported: the scenario's tables)
    AdmissionCfg,
    ArrivalCfg,
    AutoscalerCfg,
    BatchingCfg,
    ClusterCfg,
    CostCfg,
    DegradationCfg,
    DelayCfg,
    DiurnalCfg,
    FailureCfg,
    MmppState,
    PeakCfg,
    PolicyCfg,
    PolicySpec,
    PoolCfg,
    RequestClassCfg,
    RoutingCfg,
    ServiceCfg,
    ServiceTimeCfg,
    SimulationCfg,
    SizeCfg,
    SlaCfg,
    SpotCfg,
    TraceCfg,
    WorkloadCfg,
    _Model,
)

# PoolCfg.borrow names a table that builds on simulator.sections: resolved here, once both exist
sections.PoolCfg.model_rebuild(_types_namespace={"BorrowCfg": BorrowCfg})
sections.ClusterCfg.model_rebuild()


class ScenarioError(ValueError):
    """A scenario (file, override or dict) is invalid. The message names file and field."""


class Scenario(_Model):
    """One experiment. Build from a TOML file with :func:`load_scenario` or from a dict."""

    name: str
    description: str = ""
    simulation: SimulationCfg
    workload: WorkloadCfg = Field(default_factory=WorkloadCfg)
    service: ServiceCfg | None = Field(None, description="default service of every pool")
    cluster: ClusterCfg
    policy: PolicyCfg = Field(default_factory=PolicyCfg)
    sla: SlaCfg
    cost: CostCfg = Field(default_factory=CostCfg)
    stages: list[StageCfg] | None = Field(
        None, description="a recommendation cascade, in order (recall, pre-ranking, ranking, "
        "re-ranking): each stage its own pools, service, batching and candidates under the "
        "end-to-end SLO (sla); absent: one stage, every pool serving it")

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _source: str = PrivateAttr(default="<dict>")
    _units: Any = PrivateAttr(default=None)  # a cascade's units (simulator.cascade.derive)

    @model_validator(mode="before")
    @classmethod
    def _plugins_first(cls, data: Any, info: ValidationInfo) -> Any:
        """Import ``policy.plugins`` before any policy name is checked (they register it)."""
        pol = data.get("policy") if isinstance(data, dict) else None
        specs = pol.get("plugins") if isinstance(pol, dict) else None
        if isinstance(specs, list) and all(isinstance(x, str) for x in specs):
            base = (info.context or {}).get("base_dir")
            load_plugins(specs, Path(base) if base else None)
        return data

    @model_validator(mode="after")
    def _services(self) -> Scenario:
        staged = {}  # pool -> its stage's (or channel's) service, in a cascade
        named: set[str] = set()  # pools some stage names
        for st in self.stages or []:
            for _name, pools, svc, _b in st.units():
                staged.update({p: svc for p in pools if svc is not None})
                named.update(pools)
        for p in self.cluster.pools:
            if self.stages and p.name not in named:
                continue  # the cascade's checks say it serves no stage
            if p.service is None and self.service is None and p.name not in staged:
                raise ValueError(
                    f"pool '{p.name}' has no service: add [service] or cluster.pools.service"
                    + (" (or the service of the stage it serves)" if self.stages else "")
                )
        if self.stages:  # each unit's own checks (simulator.cascade) see its services
            return self
        deg = self.policy.degradation
        if deg.enabled and deg.mode == "variant":
            for p in self.cluster.pools:
                if (p.service or self.service).profile is None:  # type: ignore[union-attr]
                    raise ValueError(f"policy.degradation.mode = 'variant' serves a cheaper "
                                     f"variant of the pools' profile, but pool '{p.name}' has "
                                     "an analytic service (no profile)")
        weighted = self.policy.pool_preference == "weighted"
        for p in self.cluster.pools:
            if p.weight != 1.0 and not weighted:
                raise ValueError(f"cluster.pools.{p.name}.weight applies with "
                                 "policy.pool_preference = 'weighted' only (it is "
                                 f"'{self.policy.pool_preference}')")
        return self

    @model_validator(mode="after")
    def _node_types(self) -> Scenario:
        """A pool naming a known node type (cluster.node_types, else the catalog) takes the
        price (by purchase) and power it leaves unset from it."""
        for p in self.cluster.pools:
            nt = lookup(p.node_type, self.cluster.node_types)
            given = p.model_fields_set
            if p.borrow is not None:
                self._borrowed_defaults(p, nt)
            if nt is None:
                continue
            if "price_per_hour_usd" not in given and p.borrow is None:
                price = {"spot": nt.spot_price_per_hour_usd,
                         "reserved": nt.reserved_price_per_hour_usd}.get(p.purchase)
                p.price_per_hour_usd = nt.price_per_hour_usd if price is None else price
            if "power_idle_w" not in given:
                p.power_idle_w = nt.power_idle_w
            if "power_busy_w" not in given:
                p.power_busy_w = nt.power_busy_w
            if p.power_busy_w < p.power_idle_w:
                raise ValueError(f"cluster.pools.{p.name}: power_busy_w ({p.power_busy_w:g} W) "
                                 f"is below power_idle_w ({p.power_idle_w:g} W)")
        return self

    @staticmethod
    def _borrowed_defaults(p: PoolCfg, nt: Any) -> None:
        """A borrowed node costs what training loses (GPUs x the value of a training
        GPU-hour), is billed by the second, and arrives after the borrow delay."""
        assert p.borrow is not None
        given = p.model_fields_set
        gpus = nt.gpus if nt is not None and nt.gpus else p.borrow.gpus_per_node
        price = gpus * p.borrow.training_value_usd_per_gpu_hour
        # a dumped scenario carries the values derived here: those are accepted as given
        if "price_per_hour_usd" in given and p.price_per_hour_usd != price:
            raise ValueError(f"cluster.pools.{p.name}.price_per_hour_usd does not apply to a "
                             "borrowed pool: its price is what training loses, GPUs x "
                             "borrow.training_value_usd_per_gpu_hour (remove it)")
        if "provisioning" in given and p.provisioning != DelayCfg():
            raise ValueError(f"cluster.pools.{p.name}.provisioning does not apply to a borrowed "
                             "pool: its delay is borrow.borrow_delay (remove provisioning)")
        p.price_per_hour_usd = price
        if "min_billing_s" not in given:
            p.min_billing_s = 0.0

    @model_validator(mode="after")
    def _calendar_peaks(self) -> Scenario:
        """Calendar scenarios place peaks with ``at``; legacy ones with ``start_s``."""
        sim = self.simulation
        for p in self.workload.peaks:
            where = f"workload.peaks.{p.name}"
            if sim.start is None and p.at is not None:
                raise ValueError(f"{where}.at ('{p.at}') needs a calendar scenario: give "
                                 "simulation.start and simulation.end, or use start_s")
            if sim.start is not None and p.start_s is not None:
                at = calendar_time.format_calendar(
                    calendar_time.run_begin(sim.start, sim.warmup_s)
                    + timedelta(seconds=p.start_s),
                    calendar_time.parse_calendar(sim.start).has_year)
                raise ValueError(
                    f"{where}.start_s: in a calendar scenario (simulation.start given) a peak "
                    "gives 'at', a calendar time: start_s counts from the run's beginning "
                    "(start - warmup_s), so moving the window would move the peak. Here it "
                    f"means at = \"{at}\"")
            if sim.start is not None and p.at is not None:
                calendar_time.resolve_at(p.at, sim.start, f"{where}.at")
        return self

    def peak_starts_s(self) -> list[float]:
        """Each peak's ramp start, s since the run's beginning (``at`` resolved; may be
        negative when a peak began before the run), in ``workload.peaks`` order."""
        sim = self.simulation
        return [calendar_time.peak_start_s(start_s=p.start_s, at=p.at, sim_start=sim.start,
                                           warmup_s=sim.warmup_s)
                for p in self.workload.peaks]

    def pool_service(self, pool: PoolCfg) -> ServiceCfg:
        """The service model a pool runs (its own, else the scenario default)."""
        svc = pool.service or self.service
        assert svc is not None  # guaranteed by validation
        return svc

    def resolve_path(self, p: str) -> Path:
        """A path from the scenario: absolute as written (``~`` expanded); relative, against
        the scenario file's folder (a scenario built from a dict: the working directory when
        it was built). Never the current directory of the moment: a scenario reads the same
        files from wherever it is run. On a remote worker a file sent with the task
        (:mod:`simulator.input_copies`) is read from its local copy."""
        from simulator.input_copies import local_copy

        path = Path(p).expanduser()
        return local_copy(path if path.is_absolute() else self._base_dir / path)

    def missing_file(self, field: str, p: str) -> ScenarioError:
        """The error for a file the scenario names that is not there (says where it looked)."""
        where = self.resolve_path(p)
        hint = ""
        if not Path(p).expanduser().is_absolute():
            hint = (f" (relative paths are read from the scenario's folder, {self._base_dir}"
                    + ("; the path exists relative to the current directory: write it "
                       "relative to the scenario file, or absolute" if Path(p).exists() else "")
                    + ")")
        return ScenarioError(f"{self.source}: field '{field}': file not found: {where}{hint}")

    @property
    def source(self) -> str:
        """Where this scenario came from (file path or '<dict>')."""
        return self._source


# ----------------------------------------------------------------------------- loading
def _format_loc(raw: Any, loc: tuple[Any, ...]) -> str:
    """Dotted field path; list items shown by their ``name`` when they have one."""
    parts: list[str] = []
    node = raw
    for item in loc:
        if isinstance(item, int):
            name = None
            if isinstance(node, list) and 0 <= item < len(node) and isinstance(node[item], dict):
                name = node[item].get("name")
            parts.append(str(name) if isinstance(name, str) else str(item))
            node = node[item] if isinstance(node, list) and 0 <= item < len(node) else None
        else:
            parts.append(str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts) or "(top level)"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that owns the field at ``loc`` (for listing allowed keys)."""

    model: Any = Scenario
    for item in loc[:-1]:
        if isinstance(item, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(str(item))
        if field is None:
            return None
        model = unwrap_annotation(field.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def unwrap_annotation(ann: Any) -> Any:
    """The inner type of ``X | None``, ``list[X]`` and ``Annotated[X, ...]`` (nested too)."""
    import types
    import typing

    for _ in range(4):
        origin = typing.get_origin(ann)
        if origin in (typing.Union, types.UnionType):
            ann = next(a for a in typing.get_args(ann) if a is not type(None))
        elif origin in (list, typing.Annotated):
            ann = typing.get_args(ann)[0]
        else:
            break
    return ann


def format_validation_error(exc: ValidationError, raw: Any, source: str) -> str:
    """One clear message per problem: '<source>: field 'a.b': what is wrong (allowed ...)'."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = _format_loc(raw, loc)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            owner = _model_at(loc)
            allowed = ", ".join(owner.model_fields) if owner else "see the scenario reference"
            msg = f"unknown field; allowed fields here: {allowed}"
        elif err["type"] == "missing":
            msg = "required field is missing"
        lines.append(f"{source}: field '{where}': {msg}")
    return "\n".join(lines)


def parse_value(text: str) -> Any:
    """Parse an override value as TOML (numbers, booleans, arrays, inline tables), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_override(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` (dotted; list items by ``name`` or index) to ``value`` in a raw scenario dict.

    ``cluster.pools.gpu.nodes`` and ``cluster.pools.0.nodes`` both reach the pool named 'gpu'
    (the first pool). Missing tables are created; an unknown list item is an error.
    """
    parts = key.split(".")
    if not all(parts):
        raise ScenarioError(f"--set {key}: empty path component")
    node: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            idx = _list_index(node, part, ".".join(parts[: i + 1]))
            if last:
                node[idx] = value
                return
            node = node[idx]
        elif isinstance(node, dict):
            if last:
                node[part] = value
                return
            if part not in node or node[part] is None:
                node[part] = {}
            node = node[part]
        else:
            raise ScenarioError(f"--set {key}: '{'.'.join(parts[:i])}' is not a table or list")


def _list_index(items: list[Any], part: str, where: str) -> int:
    for idx, it in enumerate(items):
        if isinstance(it, dict) and it.get("name") == part:
            return idx
    if part.lstrip("-").isdigit():
        idx = int(part)
        if -len(items) <= idx < len(items):
            return idx % len(items)
    names = [str(it.get("name")) for it in items if isinstance(it, dict) and "name" in it]
    raise ScenarioError(
        f"--set {where}: no list item named or numbered '{part}'; items: "
        f"{', '.join(names) or f'0..{len(items) - 1}'}"
    )


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> list[tuple[str, Any]]:
    """``["a.b=3", ...]`` -> ``[("a.b", 3), ...]`` with TOML-typed values."""
    out = []
    for pair in pairs:
        if "=" not in pair:
            raise ScenarioError(f"--set {pair}: expected KEY=VALUE")
        k, v = pair.split("=", 1)
        out.append((k.strip(), parse_value(v.strip())))
    return out


def scenario_from_dict(
    raw: dict[str, Any],
    source: str = "<dict>",
    overrides: list[tuple[str, Any]] | None = None,
    base_dir: Path | None = None,
) -> Scenario:
    """Validate a raw dict (plus overrides); raise ScenarioError with a clear message."""
    raw = copy.deepcopy(raw)
    for k, v in overrides or []:
        apply_override(raw, k, v)
    _rederive_calendar(raw, [k for k, _ in overrides or []])
    try:
        base_dir = Path(os.path.abspath(base_dir or Path.cwd()))  # fixed now, not per call
        sc = Scenario.model_validate(raw, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ScenarioError(format_validation_error(exc, raw, source)) from None
    except PluginError as exc:
        raise ScenarioError(f"{source}: field 'policy.plugins': {exc}") from None
    sc._source = source
    sc._base_dir = base_dir
    _check_files(sc)
    if sc.stages is not None:  # a cascade's structure, each error naming its stage's field
        from simulator.cascade.check import check_cascade

        check_cascade(sc)
    from simulator.preflight import preflight

    # everything the run builds before simulating, and whether it can finish: validate and
    # run refuse the same scenarios (records stream to a file in `peaksim run`)
    preflight(sc, records_in_memory=False)
    return sc


#: what a calendar scenario derives (dropped when an override moves the window)
_DERIVED = ("duration_s", "start_hour")
_WINDOW_KEYS = ("simulation.start", "simulation.end", "simulation.warmup_s")


def _rederive_calendar(raw: dict[str, Any], keys: list[str]) -> None:
    """After a ``--set`` of simulation.start, end or warmup_s on a calendar scenario, the
    derived duration_s and start_hour of a dump (or the file) are dropped, unless also set,
    so that they are derived anew instead of refused as stale."""
    sim = raw.get("simulation")
    if not isinstance(sim, dict) or sim.get("start") is None:
        return
    if any(k in _WINDOW_KEYS for k in keys):
        for f in _DERIVED:
            if f"simulation.{f}" not in keys:
                sim.pop(f, None)


#: tables of a scenario file that configure an experiment command (compare, sweep, plan), not
#: the scenario: taken out before it is validated, so one file serves run and experiments
EXPERIMENT_TABLES = ("compare", "sweep", "plan")


def load_scenario(
    path: str | Path, overrides: list[tuple[str, Any]] | list[str] | None = None
) -> Scenario:
    """Read a TOML scenario file, apply ``--set`` overrides and validate it (the experiment
    tables, :data:`EXPERIMENT_TABLES`, are left to the experiment commands)."""
    p = Path(path)
    if not p.is_file():
        raise ScenarioError(f"{p}: scenario file not found")
    try:
        raw = tomllib.loads(p.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{p}: cannot read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{p}: not valid TOML ({exc})") from None
    for k in EXPERIMENT_TABLES:
        raw.pop(k, None)
    ov: list[tuple[str, Any]] = []
    if overrides:
        ov = (
            parse_overrides(overrides)  # type: ignore[arg-type]
            if isinstance(overrides[0], str)
            else list(overrides)  # type: ignore[arg-type]
        )
    return scenario_from_dict(raw, str(p), ov, p.parent)


def _check_files(sc: Scenario) -> None:
    """Referenced files exist and profiles hold the named variant (errors name the field)."""
    from simulator.profiles import ProfileError, get_variant, load_profile

    services: list[tuple[str, ServiceCfg]] = []
    if sc.service is not None:
        services.append(("service", sc.service))
    for p in sc.cluster.pools:
        if p.service is not None:
            services.append((f"cluster.pools.{p.name}.service", p.service))
    for where, svc in services:
        if svc.profile is None:
            continue
        path = sc.resolve_path(svc.profile)
        if not path.is_file():
            raise sc.missing_file(f"{where}.profile", svc.profile)
        try:
            prof = load_profile(path)
            get_variant(prof, svc.variant or "", path)
        except ProfileError as exc:
            raise ScenarioError(f"{sc.source}: field '{where}.profile': {exc}") from None
        if svc.serving is not None:
            from simulator.serving_profile import ServingProfileError, load_serving_profile

            spath = sc.resolve_path(svc.serving)
            if not spath.is_file():
                raise sc.missing_file(f"{where}.serving", svc.serving)
            try:
                load_serving_profile(spath)
            except ServingProfileError as exc:
                raise ScenarioError(f"{sc.source}: field '{where}.serving': {exc}") from None
        deg = sc.policy.degradation
        if deg.enabled and deg.mode == "variant" and deg.fallback_variant:
            try:
                get_variant(prof, deg.fallback_variant, path)
            except ProfileError as exc:
                raise ScenarioError(f"{sc.source}: field 'policy.degradation.fallback_variant':"
                                    f" {exc}") from None
    arr = sc.workload.arrival
    if arr.process == "trace" and arr.trace is not None:
        tp = sc.resolve_path(arr.trace.path)
        if not tp.is_file():
            raise sc.missing_file("workload.arrival.trace.path", arr.trace.path)
    d = sc.workload.diurnal
    if d.kind == "file" and d.path and not sc.resolve_path(d.path).is_file():
        raise sc.missing_file("workload.diurnal.path", d.path)


# ----------------------------------------------------------------------------- warnings
def scenario_warnings(sc: Scenario, outside: bool = True) -> list[str]:
    """Advice on a valid scenario, one sentence each (plain text, no markup): a peak active
    during the warm-up (its arrivals are not counted), a peak that began before the run (the
    run starts mid-peak), a peak entirely outside the run (it adds nothing), and the profile
    guard rails (:func:`simulator.profile_guards.profile_guards`: batches more than twice the
    largest measured size, a test profile).

    A peak is active from its ramp start to the end of ramp + hold + decay (an exponential
    decay counts for three time constants). Times are shown as clock times. ``outside``:
    also report peaks entirely outside the run (a window chosen on purpose often leaves some).
    """
    sim = sc.simulation
    dur = float(sim.duration_s or 0.0)
    warm = sim.warmup_s

    def clock(t: float) -> str:
        return calendar_time.format_run_time(t, start=sim.start, warmup_s=warm,
                                             start_hour=sim.start_hour)

    out: list[str] = []
    for p, a in zip(sc.workload.peaks, sc.peak_starts_s(), strict=True):
        b = a + calendar_time.peak_active_s(p.ramp_s, p.hold_s, p.decay_s, p.decay)
        head = f"peak '{p.name}' is active {clock(a)} to {clock(b)}"
        if b <= 0 or a >= dur:
            if not outside:
                continue
            knobs = ("the peak's at, or simulation.start/end" if sim.start is not None
                     else "the peak's start_s, or simulation.duration_s")
            out.append(f"{head}, entirely outside the run ({clock(0)} to {clock(dur)}), so it "
                       f"adds nothing: move the peak or the run ({knobs})")
        elif warm > 0 and a < warm:
            fix = ("start the window earlier (simulation.start) or shorten simulation.warmup_s"
                   if sim.start is not None else
                   "use the calendar form (simulation.start/end and the peak's `at`), which "
                   "takes the warm-up before the window, or shorten simulation.warmup_s")
            out.append(f"{head}, during the warm-up {clock(0)} to {clock(warm)} "
                       f"(simulation.warmup_s = {warm:g} s) whose arrivals the statistics "
                       f"ignore: {fix}")
        elif a < 0:
            out.append(f"{head}: it began before the run ({clock(0)}), which starts mid-peak "
                       "with idle nodes and empty queues: start the window earlier or take a "
                       "warm-up (simulation.warmup_s)")
    from simulator.profile_guards import profile_guards

    # guard rails on the profiles: batches past the measured range, test profiles
    out += [g.message for g in profile_guards(sc)]
    out += _timer_slack_advice(sc)
    return out


def _timer_slack_advice(sc: Scenario) -> list[str]:
    """A serving stack that measured its batcher's timer overshoot, in a run whose batcher
    waits (``max_wait_ms`` > 0) without ``timer_slack_ms``: say what to set. Not applied
    silently: one batcher may serve pools with different stacks, and the setting is the
    batcher's (``policy.batching``)."""
    from simulator.serving_profile import ServingProfileError, load_serving_profile

    if sc.stages is not None:
        from simulator.cascade.derive import units_of

        return [f"stages.{u.name}: {w}" for u in units_of(sc) for w in _timer_slack_advice(
            u.scenario)]
    b = sc.policy.batching
    params = b.params  # defaults filled in; model_fields_set: what the user gave
    if "timer_slack_ms" not in params or "timer_slack_ms" in b.model_fields_set \
            or not float(params.get("max_wait_ms", 0) or 0) > 0:
        return []
    out = []
    for p in sc.cluster.pools:
        svc = sc.pool_service(p)
        if svc.serving is None or svc.variant is None:
            continue
        try:
            over = load_serving_profile(sc.resolve_path(svc.serving)).for_variant(
                svc.variant).timer_overshoot_ms
        except ServingProfileError:  # validation names it
            continue
        if over:
            out.append(f"pool '{p.name}': serving stack {svc.serving} measured its batcher's "
                       f"timer {over:.3g} ms late (timer_overshoot_ms), but "
                       "policy.batching.timer_slack_ms is not set (0 ms): set "
                       f"policy.batching.timer_slack_ms = {over:.3g} to model it")
    return list(dict.fromkeys(out))

