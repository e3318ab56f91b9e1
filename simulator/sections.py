"""The tables of a scenario file: [simulation], [workload], [service], [[cluster.pools]],
[policy], [sla] and [cost], as pydantic models (validated, unknown fields rejected).

Units are in the field names: ``_s`` seconds, ``_ms`` milliseconds, ``_qps`` requests per second,
``_usd`` US dollars, ``_w`` watts, ``_gb`` gigabytes. :mod:`simulator.scenario` assembles them.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from simulator.calendar_time import FORMATS, calendar_text, derived_run, same_hour
from simulator.config_base import (
    MAX_AMOUNT,
    MAX_DURATION_S,
    MAX_POOL_NODES,
    MAX_RATE_QPS,
    MAX_TIME,
    MIN_INTERVAL_S,
    DelayCfg,
    NonNegFloat,
    PosFloat,
    _Model,
)
from simulator.hardware.node_types import NodeTypeCfg
from simulator.policies.registry import allowed_names, validate_params

if TYPE_CHECKING:  # resolved by simulator.scenario (borrowing builds on these tables)
    from simulator.borrowing import BorrowCfg


# ----------------------------------------------------------------------------- simulation
class SimulationCfg(_Model):
    """The run's time frame, in one of two forms.

    Legacy form: ``duration_s`` (and ``start_hour``); times count from the run's beginning.
    Calendar form: ``start`` and ``end``, the measurement window in calendar time; the
    warm-up is taken before it (the run begins at ``start - warmup_s``) and ``duration_s`` and
    ``start_hour`` are derived (a dumped scenario carries them; they must agree).
    """

    start: str | None = Field(
        None, description=f"calendar form: start of the measurement window, {FORMATS}; local "
        "clock, 86,400-s days, '02-29' only with a year. Needs `end`; peaks then give `at`. The "
        "run (t = 0, also of traces and autoscaler calendars) begins warmup_s earlier"
    )
    end: str | None = Field(
        None, description="calendar form: end of the measurement window [start, end), same "
        "formats (years in both or neither; without a year an end before `start` falls in the "
        "next year). A --set of start, end or warmup_s re-derives duration_s and start_hour"
    )
    duration_s: PosFloat | None = Field(
        None, le=MAX_DURATION_S,
        description="simulated horizon, warm-up included, s, at most 1e8 (about 3 years; also "
        "when derived). Legacy form: required. Calendar form: derived, end - start + warmup_s "
        "(a value given must equal it)"
    )
    warmup_s: NonNegFloat = Field(
        0.0, le=MAX_DURATION_S,
        description="statistics ignore arrivals in the first warmup_s of the run, s, less than "
        "duration_s (calendar form: the warm-up lies before `start`)"
    )
    seed: int = Field(0, ge=0, lt=2**63,
                      description="experiment seed; every random stream derives from it")
    timeseries_interval_s: PosFloat = Field(
        10.0, ge=MIN_INTERVAL_S, le=MAX_DURATION_S,
        description="time-series row width, s, at least 0.001 (each row is a sampler event "
        "and memory: duration_s / timeseries_interval_s rows)")
    start_hour: float = Field(
        0.0, ge=0, lt=24, description="wall-clock hour at t = 0, the run's beginning (diurnal "
        "curves use clock time). Calendar form: derived from start - warmup_s (a value given "
        "must equal it)"
    )
    records: str = Field(
        "auto",
        description="per-request Parquet records: all | none | sample:P (0<P<=1) | auto "
        "(all up to 1e6 expected requests, else a sample of about 1e6)",
    )
    max_in_system: int = Field(
        2_000_000, ge=1, le=1_000_000_000,
        description="memory cap, requests: a request still waiting when this many later "
        "requests have arrived is shed (outcome 'shed_by_cap'; the summary's overload section "
        "says so), so at most this many wait at once and memory stays bounded under any "
        "overload, whatever the queue limits (about 160 bytes a request: the default holds "
        "~320 MB). Never reached unless a request waits behind this many arrivals",
    )

    @field_validator("records")
    @classmethod
    def _records(cls, v: str) -> str:
        if v in ("all", "none", "auto"):
            return v
        m = re.fullmatch(r"sample:([0-9.eE+-]+)", v)
        if m:
            try:
                p = float(m.group(1))
            except ValueError:
                p = -1.0
            if 0 < p <= 1:
                return v
        raise ValueError("allowed: 'all', 'none', 'auto' or 'sample:P' with 0 < P <= 1")

    @field_validator("start", "end", mode="before")
    @classmethod
    def _calendar(cls, v: Any) -> Any:
        return None if v is None else calendar_text(v)

    @model_validator(mode="after")
    def _window(self) -> SimulationCfg:
        if self.start is None:
            if self.end is not None:
                raise ValueError("simulation.end needs simulation.start (the calendar form "
                                 "gives both)")
            if self.duration_s is None:
                raise ValueError("simulation.duration_s is required (or give simulation.start "
                                 "and simulation.end, the calendar form)")
        else:
            if self.end is None:
                raise ValueError("simulation.start needs simulation.end: the measurement window "
                                 "is [start, end) and duration_s is derived as end - start + "
                                 "warmup_s")
            duration, hour = derived_run(self.start, self.end, self.warmup_s)
            given = self.model_fields_set
            if ("duration_s" in given and self.duration_s is not None
                    and abs(self.duration_s - duration) > 1e-6):
                raise ValueError(
                    f"simulation.duration_s = {self.duration_s:g} disagrees with simulation."
                    f"start/end/warmup_s: the run lasts end - start + warmup_s = {duration:g} s. "
                    "With simulation.start the length is derived: set simulation.end (or "
                    "warmup_s) instead and remove duration_s")
            if "start_hour" in given and not same_hour(self.start_hour, hour):
                raise ValueError(
                    f"simulation.start_hour = {self.start_hour:g} disagrees with simulation."
                    f"start ('{self.start}') - warmup_s ({self.warmup_s:g} s): the run begins at "
                    f"hour {hour:.6g}. With simulation.start the hour is derived: remove "
                    "start_hour")
            self.duration_s, self.start_hour = duration, hour
            if duration > MAX_DURATION_S:
                raise ValueError(f"simulation.start/end: the run lasts {duration:.6g} s; at "
                                 f"most {MAX_DURATION_S:g} s (about 3 years) can be simulated: "
                                 "move simulation.end closer to simulation.start")
        if self.warmup_s >= self.duration_s:
            raise ValueError("warmup_s must be smaller than duration_s")
        return self


# ----------------------------------------------------------------------------- workload
class MmppState(_Model):
    multiplier: NonNegFloat = Field(le=1e6, description="rate multiplier in this state (the "
                                    "states' multipliers are rescaled to mean 1)")
    mean_sojourn_s: PosFloat = Field(ge=1e-3, le=MAX_TIME, description="mean time spent in "
                                     "the state, s, at least 0.001 (each change of state is "
                                     "an event)")


class TraceCfg(_Model):
    path: str = Field(description="CSV file; a relative path is read from the scenario "
                      "file's folder")
    format: Literal["timestamps", "counts"] = "timestamps"
    column: str | None = Field(None, description="column with timestamps or counts")
    time_unit: Literal["s", "ms", "us", "datetime"] = "s"
    interval_s: PosFloat | None = Field(None, le=MAX_TIME, description="bin width of a "
                                        "counts trace, s (required with format 'counts')")
    time_scale: PosFloat = Field(1.0, ge=1e-6, le=1e6,
                                 description="trace seconds per simulated second")
    rate_scale: PosFloat = Field(1.0, le=1e6,
                                 description="multiply the trace's rate (thin or copy)")
    loop: bool = Field(False, description="repeat the trace until duration_s")

    @model_validator(mode="after")
    def _counts(self) -> TraceCfg:
        if self.format == "counts" and self.interval_s is None:
            raise ValueError("format 'counts' needs interval_s (the bin width of each count, s)")
        return self


class ArrivalCfg(_Model):
    process: Literal["poisson", "gamma", "mmpp", "trace"] = "poisson"
    rate_qps: PosFloat | None = Field(None, le=MAX_RATE_QPS,
                                      description="mean arrival rate before curves, QPS")
    cv: PosFloat = Field(1.0, ge=1e-4, le=100.0,
                         description="coefficient of variation of gaps (gamma)")
    states: list[MmppState] = Field(default_factory=list, max_length=1000,
                                    description="MMPP states")
    trace: TraceCfg | None = None

    @model_validator(mode="after")
    def _needs(self) -> ArrivalCfg:
        if self.process == "trace":
            if self.trace is None:
                raise ValueError("process 'trace' needs a [workload.arrival.trace] table")
        elif self.rate_qps is None:
            raise ValueError(f"process '{self.process}' needs rate_qps > 0")
        if self.process == "mmpp" and len(self.states) < 2:
            raise ValueError("process 'mmpp' needs at least two states")
        if self.process == "mmpp" and not any(st.multiplier > 0 for st in self.states):
            raise ValueError("process 'mmpp': every state's multiplier is 0 (no arrivals); "
                             "give at least one state a multiplier > 0")
        return self


class DiurnalCfg(_Model):
    kind: Literal["none", "sinusoid", "hourly", "file"] = "none"
    amplitude: float = Field(0.5, ge=0, le=1, description="sinusoid: relative swing, 0..1")
    peak_hour: float = Field(21.0, ge=0, lt=24, description="sinusoid: hour of the daily maximum")
    period_s: PosFloat = Field(86400.0, ge=60.0, le=MAX_DURATION_S,
                               description="length of one cycle, s, at least 60")
    hourly: list[Annotated[float, Field(ge=0, le=1e6)]] = Field(
        default_factory=list, description="24 relative levels")
    path: str | None = Field(None, description="file: CSV of (time_s, rate) points")
    time_column: str = "time_s"
    rate_column: str = "rate"
    normalize: bool = Field(True, description="rescale the curve to mean 1 over one period")

    @model_validator(mode="after")
    def _needs(self) -> DiurnalCfg:
        if self.kind == "hourly" and len(self.hourly) != 24:
            raise ValueError("kind 'hourly' needs exactly 24 values in 'hourly'")
        if self.kind == "hourly" and sum(self.hourly) <= 0:
            raise ValueError("'hourly' levels must not all be zero")
        if self.kind == "file" and not self.path:
            raise ValueError("kind 'file' needs 'path'")
        return self


class PeakCfg(_Model):
    name: str = "peak"
    start_s: NonNegFloat | None = Field(
        None, le=MAX_TIME,
        description="legacy form: start of the ramp, s after the run's beginning (t = 0); "
        "give exactly one of start_s and `at`"
    )
    at: str | None = Field(
        None, description="calendar form (needs simulation.start): clock time of the start of "
        "the ramp, formats as simulation.start; a year-less date takes the year nearest to "
        "simulation.start. May lie before or after the run"
    )
    ramp_s: NonNegFloat = Field(120.0, le=MAX_TIME,
                                description="ramp from base to full level, s")
    hold_s: NonNegFloat = Field(0.0, le=MAX_TIME, description="time at full level, s")
    decay_s: NonNegFloat = Field(3600.0, le=MAX_TIME, description="decay back to base, s "
                                 "(linear length or exponential time constant)")
    decay: Literal["linear", "exponential"] = "exponential"
    multiplier: Annotated[float, Field(ge=1, le=1e4, allow_inf_nan=False)] = Field(
        description="full level: x the base curve (relative_to='curve') or x rate_qps "
        "('mean'), at most 1e4"
    )
    relative_to: Literal["curve", "mean"] = "mean"

    @field_validator("at", mode="before")
    @classmethod
    def _calendar(cls, v: Any) -> Any:
        return None if v is None else calendar_text(v)

    @model_validator(mode="after")
    def _one_start(self) -> PeakCfg:
        if (self.start_s is None) == (self.at is None):
            raise ValueError("give exactly one of 'start_s' (s after the run's beginning) or "
                             "'at' (a calendar time, with simulation.start)")
        return self


class SizeCfg(_Model):
    distribution: Literal["constant", "lognormal", "pareto", "uniform"] = "constant"
    mean: PosFloat = Field(1.0, le=1e6, description="mean items per request (before capping)")
    sigma: PosFloat = Field(1.0, le=10.0, description="lognormal: sigma of log(size)")
    alpha: Annotated[float, Field(gt=1, le=100, allow_inf_nan=False)] = Field(
        1.5, description="pareto: tail index (>1)"
    )
    min: int = Field(1, ge=1, le=1_000_000, description="smallest size, items")
    max: int = Field(1024, ge=1, le=1_000_000, description="largest size (cap), items")

    @model_validator(mode="after")
    def _bounds(self) -> SizeCfg:
        if self.min > self.max:
            raise ValueError("size.min must be <= size.max")
        return self


class RequestClassCfg(_Model):
    name: str
    share: PosFloat = Field(le=MAX_AMOUNT, description="relative share of arrivals")
    slo_ms: PosFloat | None = Field(None, le=MAX_TIME,
                                    description="class SLO, ms (default sla.slo_ms)")
    timeout_ms: PosFloat | None = Field(None, le=MAX_TIME,
                                        description="queue timeout, ms (default admission)")
    priority: int = Field(0, ge=0, le=1_000_000, description="higher is served first")
    max_queue_length: int | None = Field(
        None, ge=1, le=1_000_000_000,
        description="shed this class beyond this many queued requests of its own"
    )
    size: SizeCfg = Field(default_factory=SizeCfg)


class WorkloadCfg(_Model):
    arrival: ArrivalCfg = Field(default_factory=ArrivalCfg)
    diurnal: DiurnalCfg = Field(default_factory=DiurnalCfg)
    peaks: list[PeakCfg] = Field(default_factory=list)
    classes: list[RequestClassCfg] = Field(
        default_factory=lambda: [RequestClassCfg(name="default", share=1.0)]
    )

    @field_validator("classes")
    @classmethod
    def _unique(cls, v: list[RequestClassCfg]) -> list[RequestClassCfg]:
        _check_unique([c.name for c in v], "class")
        if not v:
            raise ValueError("at least one request class is needed")
        return v


# ----------------------------------------------------------------------------- service
class ServiceTimeCfg(_Model):
    distribution: Literal["exponential", "deterministic", "lognormal", "gamma", "uniform"]
    mean_ms: PosFloat = Field(le=MAX_TIME, description="mean service time of one batch, ms")
    cv: NonNegFloat = Field(1.0, le=100.0,
                            description="coefficient of variation (lognormal/gamma/uniform)")
    per_request_ms: NonNegFloat = Field(0.0, le=MAX_TIME,
                                        description="added per extra request in a batch, ms")
    per_item_ms: NonNegFloat = Field(0.0, le=MAX_TIME,
                                     description="added per item in a batch, ms")

    @model_validator(mode="after")
    def _cv(self) -> ServiceTimeCfg:
        if self.distribution == "uniform" and self.cv > 1 / 3**0.5:
            raise ValueError("uniform service times need cv <= 0.577 (support stays >= 0)")
        return self


class ServiceCfg(_Model):
    time: ServiceTimeCfg | None = None
    profile: str | None = Field(None, description="calibration profile JSON")
    variant: str | None = Field(None, description="model variant inside the profile")
    serving: str | None = Field(None, description="serving-stack profile JSON (peaksim "
                                "calibrate-serving): its per-batch and per-item overheads and "
                                "residuals replace the variant's own; the forward fit stays "
                                "the profile's")
    speed: PosFloat = Field(1.0, ge=1e-6, le=1e6,
                            description="relative node speed: service time / speed")

    @model_validator(mode="after")
    def _one(self) -> ServiceCfg:
        if (self.time is None) == (self.profile is None):
            raise ValueError("give exactly one of 'time' (a distribution) or 'profile'")
        if self.profile is not None and not self.variant:
            raise ValueError("a profile needs 'variant'")
        if self.serving is not None and self.profile is None:
            raise ValueError("'serving' (a serving-stack profile) needs 'profile' (the model "
                             "profile whose forward fit it serves)")
        return self


# ----------------------------------------------------------------------------- cluster
class PolicySpec(_Model):
    """A policy by name with its own parameters, flat: ``{name = "...", <parameters>}``.

    The parameters are checked against the named policy's parameter model (docs: "Policy
    parameters" in docs/scenario-reference.md) and kept with their defaults filled in, so the
    scenario as run shows every value. A ``params`` table is accepted too (merged).
    """

    model_config = ConfigDict(extra="allow", validate_assignment=False)
    KIND: ClassVar[str] = ""
    name: str

    @model_validator(mode="before")
    @classmethod
    def _merge_params(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("params"), dict):
            data = {**data["params"], **{k: v for k, v in data.items() if k != "params"}}
        return data

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        return _registered(cls.KIND, v)

    @model_validator(mode="after")
    def _check(self) -> PolicySpec:
        try:
            self.__pydantic_extra__ = validate_params(self.KIND, self.name,
                                                      self.model_extra or {})
        except ValueError as exc:
            if "unknown parameter" not in str(exc):
                raise
            raise ValueError(f"{exc} (to switch policy with --set or a variant, replace the "
                             f"whole table: ...={{ name = \"{self.name}\" }})") from None
        return self

    @property
    def params(self) -> dict[str, Any]:
        """The policy's parameters (validated, defaults filled in)."""
        return dict(self.model_extra or {})


class AutoscalerCfg(PolicySpec):
    """A scaling policy: ``{name = "hpa", target = 0.5, ...}`` (see "Policy parameters")."""

    KIND: ClassVar[str] = "autoscaler"
    name: str = Field("static", description="a registered autoscaler (see Policy parameters)")


class RoutingCfg(PolicySpec):
    """The router of per-node dispatch: ``{name = "power_of_two", d = 2}``."""

    KIND: ClassVar[str] = "router"
    name: str = Field("round_robin", description="a registered router (per-node dispatch)")


class BatchingCfg(PolicySpec):
    """The batcher: ``{name = "dynamic", max_batch = 32, max_wait_ms = 2}``."""

    KIND: ClassVar[str] = "batcher"
    name: str = Field("none", description="a registered batcher (see Policy parameters)")


class SpotCfg(_Model):
    """Spot capacity: preempted by a Poisson process (or a trace) after a notice."""

    preemptions_per_hour: NonNegFloat = Field(
        0.25, le=3600.0, description="per node, at most 3600 (one a second); AWS buckets "
        "5-20%/month, spot V100 ~1 per 3-4 h"
    )
    notice_s: NonNegFloat = Field(120.0, le=MAX_TIME,
                                  description="interruption notice (AWS: 2 minutes), s")
    on_preempt: Literal["requeue", "lose"] = Field(
        "requeue", description="what happens to the batch in service when the node goes"
    )
    trace: str | None = Field(None, description="CSV of preemption times, s since the run's "
                              "beginning, finite and >= 0 (column time_s, else the first)")


class FailureCfg(_Model):
    """Random node failures: exponential time between failures, then a repair."""

    mtbf_h: PosFloat = Field(ge=1e-3, le=MAX_TIME, description="mean time between failures "
                             "per node, h, at least 0.001 (3.6 s)")
    repair: DelayCfg = Field(
        default_factory=lambda: DelayCfg(distribution="exponential", mean_s=600.0, cv=1.0),
        description="time to repair (MTTR), then the model is loaded again",
    )
    on_failure: Literal["requeue", "lose"] = "requeue"


class PlacementCfg(_Model):
    """Where a replica's memory sits on the pool's node type (docs/hardware.md): the planner
    picks the cheapest layout that fits (fewest nodes, then GPUs per replica, then the least
    added latency); ``sharding`` restricts it."""

    sharding: Literal["auto", "none", "table_wise", "row_wise"] = Field(
        "auto", description="embedding-table layout over a replica's GPUs: none (one GPU), "
        "table_wise, row_wise, or auto (the cheapest that fits)")
    host_cache: bool = Field(False, description="also allow tables in host DDR with a share "
                             "cached in HBM (TorchRec UVM caching)")
    caching_ratio: float = Field(0.2, gt=0, le=1, allow_inf_nan=False,
                                 description="share of each host-resident table cached in HBM "
                                 "(TorchRec's default 0.2)")
    max_nodes_per_replica: int = Field(1, ge=1, le=64, description="nodes one replica may span "
                                       "(tables sharded across nodes over the network)")
    embedding_scale: float = Field(
        1.0, gt=0, le=1e6, allow_inf_nan=False,
        description="production tables = the profile's rows x this (the profile measured a "
        "smaller model; latency is the profile's, memory and all-to-all follow the scale)")


class PoolCfg(_Model):
    name: str
    purchase: Literal["on_demand", "reserved", "spot", "borrowed"] = Field(
        "on_demand", description="reserved: paid for `nodes` all the time, never scaled; "
        "borrowed: training-cluster GPUs lent as `borrow` says (docs/borrowing.md)"
    )
    nodes: int = Field(ge=0, le=MAX_POOL_NODES, description="nodes at t = 0 (an empty pool is "
                       "an error, except a borrowed one), at most 100,000 (as min_nodes and "
                       "max_nodes)")
    min_nodes: int | None = Field(None, ge=0, le=MAX_POOL_NODES,
                                  description="autoscaling floor (default: nodes)")
    max_nodes: int | None = Field(None, ge=1, le=MAX_POOL_NODES,
                                  description="autoscaling ceiling (default: nodes)")
    node_type: str = Field(
        "generic", description="the machine each node is: a name from cluster.node_types or "
        "the built-in catalog (docs/hardware.md) gives GPUs, memory, price and power; any "
        "other name is a label only (no memory check, no GPU count)")
    instances: int = Field(
        1, ge=1, le=64, description="model instances per node serving batches at once "
        "(Triton's instance_group count; worker processes on a CPU node); needs their "
        "slowdown: the profile's `instances` block (peaksim calibrate-instances) or "
        "instance_slowdown; central dispatch only")
    instance_slowdown: dict[int, Annotated[float, Field(gt=0, le=1000,
                                                        allow_inf_nan=False)]] | None = Field(
        None, description="service-time multiplier when n instances of a node serve at once "
        "{1 = 1.0, 2 = ..., <instances> = ...} (default: the profile's measured or projected "
        "factors; linear between the counts given)")
    price_per_hour_usd: NonNegFloat = Field(
        1.006, le=MAX_AMOUNT,
        description="per node, USD/h (default AWS g5.xlarge on-demand, us-east-1)"
    )
    min_billing_s: NonNegFloat = Field(60.0, le=MAX_TIME,
                                       description="minimum billed time per node, s")
    power_idle_w: NonNegFloat = Field(60.0, le=MAX_AMOUNT, description="node power when idle, W")
    power_busy_w: NonNegFloat = Field(300.0, le=MAX_AMOUNT,
                                      description="node power when serving, W")
    model_memory_gb: NonNegFloat | None = Field(
        None, le=1e6, description="model size per replica, GB (default: from the profile, else 0)"
    )
    provisioning: DelayCfg = Field(
        default_factory=DelayCfg,
        description="request -> node up (Kubernetes GPU node 60-120 s, secondary)",
    )
    load_bandwidth_gbps: PosFloat = Field(
        1.0, ge=1e-6, le=1e6,
        description="model load bandwidth, GB/s (load time = model size / this + warm-up)"
    )
    container_start_s: NonNegFloat = Field(
        0.0, le=MAX_TIME, description="fixed start-up before loading (image pull, runtime init), s"
    )
    spot: SpotCfg | None = Field(None, description="preemption model (purchase = 'spot')")
    placement: PlacementCfg | None = Field(
        None, description="memory placement and sharding of a replica (default: the "
        "cheapest layout that fits, when node_type is a known type and the service a profile)")
    borrow: BorrowCfg | None = Field(
        None, description="loan terms of a borrowed pool (purchase = 'borrowed'): lendable "
        "nodes over time (calendar or trace), borrow delay, reclaim notice, training value")
    failures: FailureCfg | None = None
    autoscaler: AutoscalerCfg | None = Field(
        None, description="scaling policy {name = ..., <its parameters>}; default "
        "policy.autoscaling"
    )
    weight: PosFloat = Field(1.0, le=MAX_AMOUNT,
                             description="pool_preference 'weighted': relative share")
    service: ServiceCfg | None = Field(None, description="overrides the scenario's [service]")

    @field_validator("nodes")
    @classmethod
    def _not_empty(cls, v: int, info: ValidationInfo) -> int:
        if v == 0 and info.data.get("purchase") != "borrowed":
            raise ValueError("Input should be greater than or equal to 1 (an empty pool is an "
                             "error; only a borrowed pool may start with nodes = 0)")
        return v

    @model_validator(mode="after")
    def _bounds(self) -> PoolCfg:
        lo = self.nodes if self.min_nodes is None else self.min_nodes
        hi = self.nodes if self.max_nodes is None else self.max_nodes
        if not lo <= self.nodes <= hi:
            raise ValueError(f"need min_nodes <= nodes <= max_nodes (got {lo}, {self.nodes}, {hi})")
        if self.purchase == "spot" and self.spot is None:
            self.spot = SpotCfg()
        if self.purchase != "spot" and self.spot is not None:
            raise ValueError("'spot' settings need purchase = 'spot'")
        if self.purchase == "reserved" and (lo != self.nodes or hi != self.nodes):
            raise ValueError("a reserved pool is not scaled: leave min_nodes/max_nodes unset")
        if hi * self.instances > MAX_POOL_NODES:
            raise ValueError(f"max_nodes x instances = {hi:,} x {self.instances} model "
                             f"instances: at most {MAX_POOL_NODES:,} per pool (each is a "
                             "serving slot)")
        if self.instance_slowdown is not None:
            bad = [n for n in self.instance_slowdown if not 1 <= n <= 64]
            if bad:
                raise ValueError(f"instance_slowdown counts are concurrent instances, 1 to 64 "
                                 f"(got {bad[0]})")
        if self.purchase == "borrowed" and self.borrow is None:
            raise ValueError("purchase = 'borrowed' needs 'borrow' with a capacity source: "
                             "borrow.calendar (lending windows) or borrow.trace (a time_s,nodes "
                             "CSV)")
        if self.purchase != "borrowed" and self.borrow is not None:
            raise ValueError("'borrow' settings need purchase = 'borrowed'")
        if hi < 1:
            raise ValueError("max_nodes must be at least 1")
        return self

    @property
    def lo(self) -> int:
        """Autoscaling floor."""
        return self.nodes if self.min_nodes is None else self.min_nodes

    @property
    def hi(self) -> int:
        """Autoscaling ceiling."""
        return self.nodes if self.max_nodes is None else self.max_nodes


class ClusterCfg(_Model):
    pools: list[PoolCfg] = Field(min_length=1)
    node_types: list[NodeTypeCfg] = Field(
        default_factory=list, description="machine types of this scenario (GPUs, memory, "
        "prices, power), used by name in cluster.pools.node_type; they win over the built-in "
        "catalog (docs/hardware.md)")

    @field_validator("pools")
    @classmethod
    def _unique(cls, v: list[PoolCfg]) -> list[PoolCfg]:
        _check_unique([p.name for p in v], "pool")
        return v

    @field_validator("node_types")
    @classmethod
    def _unique_types(cls, v: list[NodeTypeCfg]) -> list[NodeTypeCfg]:
        _check_unique([t.name for t in v], "node type")
        return v


# ----------------------------------------------------------------------------- policy
class AdmissionCfg(_Model):
    max_queue_length: int = Field(
        100_000, ge=1, le=1_000_000_000,
        description="queued requests (central queue, or per node); more are rejected"
    )
    timeout_ms: PosFloat | None = Field(None, le=MAX_TIME,
                                        description="drop a request that waited longer, ms")


class DegradationCfg(_Model):
    """Graceful degradation under overload."""

    enabled: bool = False
    queue_delay_ms: PosFloat = Field(
        50.0, le=MAX_TIME,
        description="degrade while the oldest waiting request has waited this long, ms"
    )
    share: Annotated[float, Field(ge=0, le=1)] = Field(
        0.5, description="fraction of arriving requests sent to the fallback while degraded"
    )
    mode: Literal["cache", "variant", "shrink"] = Field(
        "cache", description="cache: a cached default list; variant: a cheaper model variant; "
        "shrink: score fewer of the request's items (shrink_to)"
    )
    cache_latency_ms: NonNegFloat = Field(2.0, le=MAX_TIME,
                                          description="latency of a cached answer, ms")
    fallback_variant: str | None = Field(None, description="variant mode: profile variant")
    shrink_to: Annotated[float, Field(gt=0, lt=1)] | None = Field(
        None, description="shrink mode: a degraded request is scored on ceil(items * shrink_to) "
        "of its items, at least 1 (default 0.4)"
    )
    quality_loss: NonNegFloat | None = Field(
        None, le=1.0,
        description="AUC lost per degraded request (default: measured for the variant; "
        "cache mode: 0.05; shrink mode: required, the loss depends on the candidates cut)"
    )

    @model_validator(mode="after")
    def _mode(self) -> DegradationCfg:
        if self.mode == "variant" and self.enabled and self.fallback_variant is None:
            raise ValueError("mode 'variant' needs fallback_variant (a variant of the pools' "
                             "profile)")
        if self.mode != "variant" and self.fallback_variant is not None:
            raise ValueError(f"fallback_variant applies to mode 'variant' only (mode = "
                             f"'{self.mode}')")
        if self.mode != "shrink" and self.shrink_to is not None:
            raise ValueError(f"shrink_to applies to mode 'shrink' only (mode = '{self.mode}')")
        if self.mode == "shrink" and self.enabled and self.quality_loss is None:
            raise ValueError("mode 'shrink' needs quality_loss (the AUC a request scored on "
                             "shrink_to of its items loses: it depends on the candidates cut, "
                             "so there is no default)")
        return self

    @property
    def shrink_share(self) -> float:
        """Shrink mode: the fraction of its items a degraded request keeps."""
        return 0.4 if self.shrink_to is None else self.shrink_to


class PolicyCfg(_Model):
    plugins: list[str] = Field(
        default_factory=list,
        description="modules that register policies, imported before the scenario is checked "
        "and in every worker: dotted module names, or .py files relative to the scenario",
    )
    dispatch: Literal["central", "per_node"] = "central"
    routing: RoutingCfg = Field(default_factory=RoutingCfg)
    batching: BatchingCfg = Field(default_factory=BatchingCfg)
    admission: AdmissionCfg = Field(default_factory=AdmissionCfg)
    autoscaling: AutoscalerCfg = Field(
        default_factory=AutoscalerCfg,
        description="default scaling policy of every pool {name = ..., <its parameters>}",
    )
    pool_preference: Literal["cheapest", "fastest", "weighted", "ordered"] = Field(
        "cheapest", description="which pool's idle node takes work first (central dispatch)"
    )
    degradation: DegradationCfg = Field(default_factory=DegradationCfg)

    @model_validator(mode="after")
    def _dispatch_settings(self) -> PolicyCfg:
        """Settings one dispatcher does not use are refused, naming both."""
        if self.dispatch == "central" and (self.routing.name != "round_robin"
                                           or self.routing.params):
            raise ValueError(f"policy.routing ({self.routing.name}) routes requests under "
                             "dispatch = 'per_node' only; with policy.dispatch = 'central' free "
                             "nodes pull from one queue: remove policy.routing")
        if self.dispatch == "per_node" and self.pool_preference != "cheapest":
            raise ValueError(f"policy.pool_preference ({self.pool_preference}) chooses among "
                             "idle nodes under dispatch = 'central' only; with policy.dispatch "
                             "= 'per_node' the router picks: remove policy.pool_preference")
        return self


# ----------------------------------------------------------------------------- SLA and cost
class SlaCfg(_Model):
    slo_ms: PosFloat = Field(le=MAX_TIME, description="end-to-end latency objective, ms")
    penalty_usd_per_violation: NonNegFloat = Field(0.0, le=MAX_AMOUNT,
                                                   description="USD per violating request")
    penalty_usd_per_degraded: NonNegFloat = Field(0.0, le=MAX_AMOUNT,
                                                  description="USD per degraded request")
    worst_window_s: PosFloat = Field(
        300.0, le=MAX_TIME,
        description="length of the sliding window of the worst-window violation rate, "
        "s; rounded to a whole number of time-series intervals (at least one)"
    )
    overload_share: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = Field(
        0.01, description="a run is overloaded when more than this share of requests is shed "
        "by full queues, times out waiting or is shed by the memory cap simulation."
        "max_in_system (or the backlog grows at full utilisation); requests lost with a "
        "preempted or failed node are losses, not overload"
    )


class CostCfg(_Model):
    electricity_usd_per_kwh: NonNegFloat = Field(0.12, le=1e3, description="USD per kWh")
    pue: Annotated[float, Field(ge=1, le=10, allow_inf_nan=False)] = Field(
        1.0, description="data-centre power usage effectiveness multiplier"
    )
    storage_usd_per_gb_month: NonNegFloat = Field(0.10, le=1e6, description="USD per GB-month")
    data_gb: NonNegFloat = Field(0.0, le=1e12, description="feature/embedding data stored, GB")
    engineers: NonNegFloat = Field(0.0, le=1e6, description="engineers working on the service")
    engineer_monthly_usd: NonNegFloat = Field(0.0, le=MAX_AMOUNT,
                                              description="cost of one engineer, USD/month")
    effort_hours: NonNegFloat = Field(0.0, le=MAX_TIME,
                                      description="engineering effort charged, h")
    hours_per_month: PosFloat = Field(730.0, ge=1.0, le=1e4,
                                      description="hours in the monthly cost basis, h")


def _check_unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"duplicate {what} name '{n}'")
        seen.add(n)


def _registered(kind: str, name: str) -> str:
    names = allowed_names(kind)
    if name not in names:
        raise ValueError(f"unknown {kind} '{name}'; allowed: {', '.join(names)}")
    return name
