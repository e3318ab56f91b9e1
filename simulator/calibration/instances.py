"""Slowdown of concurrent model instances on one node, measured (``peaksim calibrate
--instances``, ``peaksim calibrate-instances``).

Triton's ``instance_group`` count, or N worker processes on a CPU node, serve N batches at once
on one node's devices; each batch then takes longer. For each variant and count ``n`` this module
runs ``n`` spawned worker processes (one torch thread each, every one holding the same seeded
variants the calibration builds), releases them together through a barrier, and lets each loop
batches of a representative size for a time window, timing every batch. Only batches that lie
wholly inside the stretch where all ``n`` workers were busy count (the first starts after the
last worker started, the last ends before the first worker stopped), so a cell measures ``n``
batches truly in flight at once.

Drift (the notes: the machine's speed drifts in correlated stretches, 1.5x within 25 s) is
cancelled by interleaving: every round visits every (variant, size) cell and, inside it, the
counts in A/B order (1, 2, 4 then 4, 2, 1 in the next round), so a slow stretch falls on all
counts alike; which workers serve a count rotates between rounds. The factor of a count at a size
is the pooled median per-batch time at ``n`` over the pooled median at 1; a variant's factor is
the geometric mean over the representative sizes (the middle and the largest measured batch by
default). The per-round factors give the spread. Counts above the machine's logical CPUs are
measured as they are (they show oversubscription: workers time-slice) and flagged in the method.

torch is imported in the workers and inside functions only.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_COUNT = 64
Progress = Callable[[str, int, int], None]  # (description, done, total)

#: settings of a full and a quick (--quick, tests) measurement
FULL = {"rounds": 4, "window_s": 1.0, "warmup": 3, "train_steps": 300}
QUICK = {"rounds": 2, "window_s": 0.2, "warmup": 2, "train_steps": 20}


def parse_counts(text: str) -> list[int]:
    """'1,2,4' -> [1, 2, 4]; ValueError (one line) unless positive integers <= MAX_COUNT
    including 1 (the reference every factor is relative to)."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise ValueError("expected comma-separated instance counts such as 1,2,4")
    try:
        counts = sorted({int(p) for p in parts})
    except ValueError:
        raise ValueError(f"expected comma-separated integers such as 1,2,4, got {text!r}") from None
    if counts[0] < 1:
        raise ValueError(f"instance counts must be positive integers (got {counts[0]})")
    if counts[-1] > MAX_COUNT:
        raise ValueError(f"at most {MAX_COUNT} instances per node (got {counts[-1]})")
    if counts[0] != 1:
        raise ValueError("the counts must include 1: every factor is relative to one instance "
                         f"(got {','.join(map(str, counts))})")
    return counts


def representative_sizes(batch_sizes: list[int]) -> list[int]:
    """The middle and the largest measured batch size (one size if they coincide)."""
    s = sorted(set(int(b) for b in batch_sizes))
    return sorted({s[len(s) // 2], s[-1]})


def logical_cpus() -> int:
    """CPUs this process may run on (the affinity mask), else os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass
class InstanceSpec:
    """What to measure. ``model``: the built-in DLRM's ModelConfig, or None with ``model_ref``
    (an own model's factory or .pt2 file, as ``measure.Spec``)."""

    model: Any
    variants: list[str]
    counts: list[int]
    batch_sizes: list[int]
    model_ref: str | None = None
    variant_refs: dict[str, str] = field(default_factory=dict)
    rounds: int = FULL["rounds"]
    window_s: float = FULL["window_s"]
    warmup: int = FULL["warmup"]
    train_steps: int = FULL["train_steps"]
    min_batches: int = 3
    nice: int = 0  # os.nice increment of the workers (negative: ahead of other processes; root)


@dataclass
class InstanceResult:
    """samples[variant][batch][n] = per-round arrays of per-batch wall times (ms); cpu_samples:
    the same batches' on-CPU times of the worker's thread (ms)."""

    spec: InstanceSpec
    samples: dict[str, dict[int, dict[int, list[np.ndarray]]]]
    cpu_samples: dict[str, dict[int, dict[int, list[np.ndarray]]]]
    cpus: int
    cpu_model: str
    seconds: float
    foreign_cpu: float | None = None  # other processes' share of the CPUs while measuring
    loadavg: tuple[float, float] | None = None  # 1-min load average before, after

    def stat_ms(self, v: str, b: int, n: int, stat: str = "mean") -> float:
        a = np.concatenate(self.samples[v][b][n])
        return float(a.mean() if stat == "mean" else np.median(a))

    def size_factor(self, v: str, b: int, n: int, stat: str = "mean") -> float:
        return 1.0 if n == 1 else self.stat_ms(v, b, n, stat) / self.stat_ms(v, b, 1, stat)

    def round_factors(self, v: str, b: int, n: int, stat: str = "mean") -> list[float]:
        f = np.mean if stat == "mean" else np.median
        cell, ref = self.samples[v][b][n], self.samples[v][b][1]
        return [float(f(a) / f(r)) for a, r in zip(cell, ref, strict=True)]

    def factor(self, v: str, n: int) -> float:
        """The stored factor (1.0 at n = 1): per size, the on-CPU-time ratio (slowdown while
        running: shared caches, memory bandwidth) times max(1, n / logical CPUs) (n always-busy
        equal-priority instances on fewer cores each get cores / n of one); geometric mean over
        the sizes. Robust to other processes on the machine, which only deschedule."""
        if n == 1:
            return 1.0
        share = max(1.0, n / self.cpus)
        fs = [self.cpu_factor(v, b, n) * share for b in self.spec.batch_sizes]
        return float(math.exp(sum(math.log(f) for f in fs) / len(fs)))

    def wall_factor(self, v: str, n: int, stat: str = "mean") -> float:
        """Geometric mean over the sizes of the wall-clock ratios (1.0 at n = 1): equal to
        ``factor`` on an idle machine; inflated where other processes took CPU time."""
        if n == 1:
            return 1.0
        fs = [self.size_factor(v, b, n, stat) for b in self.spec.batch_sizes]
        return float(math.exp(sum(math.log(f) for f in fs) / len(fs)))

    def cpu_factor(self, v: str, b: int, n: int) -> float:
        """Mean on-CPU time per batch at n over at 1: the slowdown while running (shared caches,
        memory bandwidth, sibling hyperthreads), without the time spent descheduled."""
        c = self.cpu_samples[v][b]
        return float(np.concatenate(c[n]).mean() / np.concatenate(c[1]).mean())

    def on_cpu(self, v: str, b: int, n: int) -> float:
        """Share of the batches' wall time their thread was on a CPU."""
        return float(np.concatenate(self.cpu_samples[v][b][n]).sum()
                     / np.concatenate(self.samples[v][b][n]).sum())

    def oversubscribed(self) -> list[int]:
        return [n for n in self.spec.counts if n > self.cpus]


def _busy_s() -> float | None:
    """CPU-seconds all processes spent busy since boot (/proc/stat), None where unreadable."""
    try:
        with open("/proc/stat") as fh:
            f = [int(x) for x in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = f
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    import resource

    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def _common_window(runs: list[list[tuple[int, ...]]]) -> list[list[tuple[int, ...]]]:
    """Per worker, the batches (start, end, ...) lying wholly inside the stretch where all
    workers were busy; a worker left with none keeps all its batches (a starved worker)."""
    lo = max(r[0][0] for r in runs)
    hi = min(r[-1][1] for r in runs)
    out = []
    for r in runs:
        kept = [t for t in r if t[0] >= lo and t[1] <= hi]
        out.append(kept or r)
    return out


def _worker(spec: InstanceSpec, conn: Any, barriers: dict[int, Any]) -> None:
    """A model instance: build the variants, report ready, then serve commands
    ("run", variant, batch, n) -> per-batch (start_ns, end_ns) list, until ("stop",)."""
    try:
        import torch

        torch.set_num_threads(1)
        if spec.nice:
            os.nice(spec.nice)
        from simulator.calibration.own_model import (
            build_variants,
            load_user_variant,
            model_of,
            sample_inputs,
        )
        from simulator.calibration.variants import quiet_quantization

        with quiet_quantization():
            mspec, _ = model_of(spec)
            user = {n: load_user_variant(n, r)[0] for n, r in spec.variant_refs.items()
                    if n in spec.variants}
            vs = build_variants(mspec, spec.variants, "cpu", spec.train_steps, user)
        missing = [v for v in spec.variants if v not in vs.models]
        if missing:
            conn.send(("error", "; ".join(f"variant {v}: {vs.skipped.get(v, 'not built')}"
                                          for v in missing)))
            return
        inputs = {b: sample_inputs(mspec, b, 1000 + b) for b in spec.batch_sizes}
        conn.send(("ready", None))
        while True:
            msg = conn.recv()
            if msg[0] == "stop":
                return
            _, v, b, n = msg
            m, args = vs.models[v], inputs[b]
            times: list[tuple[int, int, int]] = []
            with torch.inference_mode():
                for _ in range(spec.warmup):
                    m(*args)
                barriers[n].wait(timeout=600)
                go = time.perf_counter_ns()
                end_by = go + int(spec.window_s * 1e9)
                while True:
                    c = time.thread_time_ns()
                    s = time.perf_counter_ns()
                    m(*args)
                    e = time.perf_counter_ns()
                    times.append((s, e, time.thread_time_ns() - c))
                    if e >= end_by and len(times) >= spec.min_batches:
                        break
            conn.send(("times", times))
    except BaseException as exc:  # report, do not hang the parent
        with contextlib.suppress(Exception):
            conn.send(("error", f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"))


def _recv(conn: Any, proc: Any, what: str) -> Any:
    try:
        msg = conn.recv()
    except EOFError:
        raise RuntimeError(f"instance worker died while {what} (exit code "
                           f"{proc.exitcode})") from None
    if msg[0] == "error":
        raise RuntimeError(f"instance worker failed while {what}: {msg[1]}")
    return msg[1]


def measure_instances(spec: InstanceSpec, progress: Progress | None = None) -> InstanceResult:
    """Run the measurement (see the module docstring); the workers are spawned here."""
    from simulator.calibration.build import cpu_info

    t_start = time.perf_counter()
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    busy0, own0 = _busy_s(), _own_cpu_s()
    counts = sorted(spec.counts)
    n_max = counts[-1]
    ctx = mp.get_context("spawn")
    barriers = {n: ctx.Barrier(n) for n in counts}
    procs, conns = [], []
    try:
        for _ in range(n_max):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(spec, child, barriers), daemon=True)
            p.start()
            child.close()
            procs.append(p)
            conns.append(parent)
        for i, (c, p) in enumerate(zip(conns, procs, strict=True)):
            if progress:
                progress(f"building the variants in {n_max} worker processes", i, n_max)
            _recv(c, p, "building the variants")
        samples: dict[str, dict[int, dict[int, list[np.ndarray]]]] = {
            v: {b: {n: [] for n in counts} for b in spec.batch_sizes} for v in spec.variants}
        cpu: dict[str, dict[int, dict[int, list[np.ndarray]]]] = {
            v: {b: {n: [] for n in counts} for b in spec.batch_sizes} for v in spec.variants}
        total = spec.rounds * len(spec.variants) * len(spec.batch_sizes) * len(counts)
        done = 0
        for r in range(spec.rounds):
            order = counts if r % 2 == 0 else counts[::-1]  # A/B: drift falls on all counts
            for v in spec.variants:
                for b in spec.batch_sizes:
                    for n in order:
                        if progress:
                            progress(f"round {r + 1}/{spec.rounds} {v} batch {b}: {n} at once",
                                     done, total)
                        who = [(r + k) % n_max for k in range(n)]  # rotate the workers
                        for w in who:
                            conns[w].send(("run", v, b, n))
                        runs = [_recv(conns[w], procs[w], f"timing {v} at batch {b}")
                                for w in who]
                        kept = _common_window(runs)
                        samples[v][b][n].append(np.asarray(
                            [(t[1] - t[0]) / 1e6 for k in kept for t in k]))
                        cpu[v][b][n].append(np.asarray([t[2] / 1e6 for k in kept for t in k]))
                        done += 1
        for c in conns:
            c.send(("stop",))
        for p in procs:
            p.join(timeout=30)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
    name, _ = cpu_info()
    span = time.perf_counter() - t_start
    cpus = logical_cpus()
    busy1, own1 = _busy_s(), _own_cpu_s()
    foreign = (None if busy0 is None or busy1 is None else
               max(0.0, (busy1 - busy0) - (own1 - own0)) / (span * cpus))
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return InstanceResult(spec, samples, cpu, cpus, name or platform.machine(), span, foreign,
                          None if load0 is None or load1 is None else (load0, load1))


def oversubscribed_note(counts: list[int], cpus: int) -> str:
    over = [n for n in counts if n > cpus]
    if not over:
        return ""
    return (f"OVERSUBSCRIBED counts (above the {cpus} logical CPUs of the measuring machine): "
            f"{','.join(map(str, over))} - their workers time-slice the cores, so those factors "
            "show oversubscription, not a bigger node")


LEGEND = ("Per variant and size (mean/median wall ms; wall factor (mean); median wall factor; "
          "on-CPU-time factor = the slowdown while running; share of wall time on a CPU (below "
          "100%: descheduled, by other instances or other processes); per-round wall factor "
          "range; batches): ")


def scaling_block(res: InstanceResult) -> dict[str, Any]:
    """The profile's ``instances`` block (schema: ``simulator.profiles.InstanceScaling``); the
    per-cell medians, batch counts and per-round spread go into ``method``."""
    sp = res.spec
    counts = sorted(sp.counts)
    cells = []
    for v in sp.variants:
        parts = []
        for b in sp.batch_sizes:
            txt = [f"n1 {res.stat_ms(v, b, 1):.3f}/{res.stat_ms(v, b, 1, 'median'):.3f} ms "
                   f"(on CPU {res.on_cpu(v, b, 1):.0%})"]
            for n in counts[1:]:
                rf = res.round_factors(v, b, n)
                nb = sum(len(a) for a in res.samples[v][b][n])
                txt.append(f"n{n} {res.stat_ms(v, b, n):.3f}/{res.stat_ms(v, b, n, 'median'):.3f}"
                           f" ms x{res.size_factor(v, b, n):.3f} (median ratio "
                           f"x{res.size_factor(v, b, n, 'median'):.3f}; on-CPU ratio "
                           f"x{res.cpu_factor(v, b, n):.3f}, on CPU {res.on_cpu(v, b, n):.0%}; "
                           f"rounds {min(rf):.3f}-{max(rf):.3f}; {nb} batches)")
            parts.append(f"b{b}: " + ", ".join(txt))
        cells.append(f"{v}: " + "; ".join(parts))
    note = oversubscribed_note(counts, res.cpus)
    busy = ("" if res.foreign_cpu is None else
            f"other processes used {res.foreign_cpu:.0%} of the CPUs while measuring"
            + ("" if res.loadavg is None else
               f" (1-min load average {res.loadavg[0]:.2f} before, {res.loadavg[1]:.2f} after)")
            + (" - NOT an idle machine: the wall-clock factors carry that load"
               if res.foreign_cpu > 0.1 else "") + ". ")
    nice = f", workers at nice {sp.nice:+d}" if sp.nice else ""
    method = (
        f"measured on {res.cpu_model} ({res.cpus} logical CPUs, torch threads 1 per instance) "
        f"in {res.seconds:.0f} s{nice}: n spawned worker processes, each holding the same "
        f"seeded variants the calibration builds ({sp.train_steps} fine-tune steps), released "
        f"together by a barrier, each looping batches of {'/'.join(map(str, sp.batch_sizes))} "
        f"items for {sp.window_s:g} s per cell; only batches wholly inside the stretch where "
        f"all n were busy count; {sp.rounds} rounds visiting counts "
        f"{','.join(map(str, counts))} in A/B order (reversed every other round) to cancel "
        "drift. FACTOR = per size, the mean on-CPU time per batch (thread CPU time) at n over "
        f"at 1 (the slowdown while running: shared caches, memory bandwidth) x max(1, n / "
        f"{res.cpus}) (n always-busy instances on {res.cpus} cores each get {res.cpus}/n of "
        "one), geometric mean over the sizes: robust to other processes, which only "
        "deschedule. Wall-clock factors (mean per-batch wall time at n / at 1; equal on an idle "
        "machine; a median hides the time-slicing gaps when a batch is shorter than the "
        "scheduler's slice) for comparison: "
        + "; ".join(f"{v} " + " ".join(f"n{n} x{res.wall_factor(v, n):.3f}" for n in counts[1:])
                    for v in sp.variants) + ". " + busy
        + (note + ". " if note else "")
        + LEGEND + " | ".join(cells))
    slowdown = {v: {str(n): round(res.factor(v, n), 4) for n in counts} for v in sp.variants}
    return {"source": "measured", "method": method, "slowdown": slowdown}


def spec_from_profile(raw: dict[str, Any]) -> tuple[Any, str | None, dict[str, str]]:
    """(ModelConfig or None, model_ref, variant_refs) rebuilding a profile's model from its
    ``model`` block: the built-in DLRM's config (or preset), else the own model's factory or
    exported program. ValueError (one line) when the block names no model."""
    model = raw.get("model") or {}
    if model.get("config") and model.get("kind", "builtin-dlrm") == "builtin-dlrm":
        from simulator.calibration.model import ModelConfig

        cfg = dict(model["config"])
        cfg["extra"] = dict(cfg.get("extra") or {})
        return ModelConfig.from_dict(cfg), None, {}
    if model.get("preset"):
        from simulator.calibration.model import get_preset

        return get_preset(str(model["preset"])), None, {}
    ref = model.get("exported_program") or model.get("factory")
    if ref:
        return None, str(ref), dict(model.get("user_variants") or {})
    raise ValueError("field 'model': no model to rebuild (neither the built-in DLRM's "
                     "config/preset nor an own model's factory or exported_program); "
                     "measure with peaksim calibrate --instances instead")


def add_block_text(text: str, block: dict[str, Any]) -> str:
    """The profile's JSON text with its ``instances`` block added (or replaced), every other
    byte unchanged: a file that round-trips through json (PeakSim writes indent 1) is
    re-dumped with the key in place; otherwise the block is inserted before the final brace."""
    import json

    raw = json.loads(text)
    if json.dumps(raw, indent=1) + "\n" == text or "instances" in raw:
        if "instances" in raw:
            raw["instances"] = block
        else:  # after "device" (the schema's order), else at the end
            items = list(raw.items())
            at = next((i + 1 for i, (k, _) in enumerate(items) if k == "device"), len(items))
            raw = dict([*items[:at], ("instances", block), *items[at:]])
        return json.dumps(raw, indent=1) + "\n"
    end = text.rstrip().rfind("}")
    body = text[:end].rstrip()
    sep = "," if not body.endswith("{") else ""
    return (body + sep + '\n "instances": ' + json.dumps(block, indent=1).replace("\n", "\n ")
            + "\n" + text[end:])
