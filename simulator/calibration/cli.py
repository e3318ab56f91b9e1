"""Click commands of the calibration pipeline: ``calibrate``, ``profile show|project`` and
``validate-calibration``. torch is imported only inside command bodies, so registering these
commands in ``peaksim`` costs nothing to ``peaksim run``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

QUICK = {"batch_sizes": "1,8,32", "reps": 10, "rounds": 2, "processes": 1, "train_steps": 20,
         "eval_samples": 4000, "serving_s": 1.0}
DEFAULT_SIZES = "1,2,4,8,16,32,64,128,256,512,1024"


def _ints(s: str) -> list[int]:
    try:
        out = sorted({int(x) for x in s.split(",") if x.strip()})
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {s!r}") from None
    if not out or out[0] < 1:
        raise click.BadParameter("batch sizes must be >= 1")
    return out


def _counts(text: str, option: str = "--instances") -> list[int]:
    """Instance counts, or a one-line usage error (exit 2)."""
    from simulator.calibration.instances import parse_counts

    try:
        return parse_counts(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def _echo_instances(block: dict[str, Any]) -> None:
    counts = sorted({int(n) for by_n in block["slowdown"].values() for n in by_n})
    click.echo(f"instances ({block['source']}): " + "; ".join(
        f"{v} " + " ".join(f"n{n} x{by_n[str(n)]:.3f}" for n in counts if str(n) in by_n)
        for v, by_n in block["slowdown"].items()))
    method = block.get("method", "")
    if "OVERSUBSCRIBED" in method:
        note = method.split("OVERSUBSCRIBED", 1)[1].split(". ")[0]
        click.secho(f"warning: OVERSUBSCRIBED{note}", fg="yellow", err=True)
    if "NOT an idle machine" in method:
        click.secho("warning: other processes used the CPUs while measuring (see the block's "
                    "method); re-measure on an idle machine to compare", fg="yellow", err=True)


class ModelError(click.ClickException):
    """An own model (``--model``/``--variant-factory``) cannot be used: one line, exit 2."""

    exit_code = 2


def _variant_refs(items: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, ref = item.partition("=")
        if not sep or not name.strip() or not ref.strip():
            raise ModelError(f"--variant-factory {item}: expected NAME=module:function")
        if name.strip() in out:
            raise ModelError(f"--variant-factory: variant '{name.strip()}' given twice")
        out[name.strip()] = ref.strip()
    return out


def require_torch() -> Any:
    """torch, or a one-line error saying how to install the calibration extra."""
    try:
        import torch
    except ImportError:
        raise click.ClickException(
            "calibration needs PyTorch, which is not installed: pip install 'peaksim["
            "calibration]' (torch 2.13.0; from a checkout: make install-dev)") from None
    return torch


def _progress() -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn())


@click.command("calibrate")
@click.option("--variants", default=None,
              help="[default: fp32,bf16,int8,int8_emb,pruned,distilled; with --model: every "
                   "variant that applies plus the --variant-factory ones]")
@click.option("--model", "model_ref", default=None, metavar="REF",
              help="calibrate your own model: module:function, path/to/file.py:function (the "
                   "factory returns (module, sample[, labels]) or a ModelSpec) or a "
                   "torch.export .pt2 file with a dynamic batch dim; see docs/calibration.md")
@click.option("--variant-factory", "variant_factories", multiple=True, metavar="NAME=REF",
              help="a variant of your own (e.g. a distilled student): a factory returning a "
                   "Module that takes the same inputs; repeatable")
@click.option("--batch-sizes", default=None, help=f"items per batch [default: {DEFAULT_SIZES}]")
@click.option("--threads", default=1, show_default=True, help="torch intra-op threads")
@click.option("--quick", is_flag=True, help="3 sizes, 10 reps, 1 process: < 30 s (tests)")
@click.option("--preset", type=click.Choice(["tiny", "production"]), default="production",
              show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--reps", default=150, show_default=True, help="timed calls per cell per process")
@click.option("--processes", default=2, show_default=True,
              help="fresh processes, run one after another, whose samples are pooled")
@click.option("--serving-s", default=8.0, show_default=True,
              help="seconds of real serving per variant to measure serving overheads (0: skip)")
@click.option("--serve-batch", default=32, show_default=True, help="max batch in that run")
@click.option("--serve-wait-ms", default=2.0, show_default=True, help="max wait in that run, ms")
@click.option("--batch-log-out", type=click.Path(file_okay=False), default=None,
              help="also write the serving runs as batch logs, DIR/<variant>.csv (the format "
                   "calibrate-serving reads: PeakSim's harness is one server among others)")
@click.option("--instances", "instances", default=None, metavar="COUNTS",
              help="also measure the slowdown of N concurrent instances (worker processes) "
                   "at these counts, e.g. 1,2,4 (must include 1; at most 64): the profile's "
                   "'instances' block (see calibrate-instances)")
@click.option("--node-type", default=None, metavar="NAME",
              help="the node type this machine is (a catalog name or your scenario's "
                   "cluster.node_types): pools of another type refuse the profile")
@click.option("--name", default=None, help="profile name [default: file stem]")
@click.option("--out", type=click.Path(dir_okay=False), required=True)
def calibrate(variants: str | None, model_ref: str | None, variant_factories: tuple[str, ...],
              batch_sizes: str | None, threads: int, quick: bool, preset: str,
              device: str, reps: int, processes: int, serving_s: float, serve_batch: int,
              serve_wait_ms: float, batch_log_out: str | None, name: str | None,
              out: str, instances: str | None = None, node_type: str | None = None) -> None:
    """Measure the model variants and write a latency profile (JSON): the built-in DLRM, or
    your own model with --model."""
    import numpy as np

    counts = _counts(instances) if instances is not None else None
    torch = require_torch()
    if counts and device != "cpu":
        raise click.BadParameter("measured instance factors are CPU worker processes only; "
                                 "for a GPU, project them (peaksim profile project)",
                                 param_hint="--instances")

    from simulator.calibration.build import make_profile, provenance, write_profile
    from simulator.calibration.fit import fit_latency
    from simulator.calibration.measure import Spec, run_pooled
    from simulator.calibration.model import get_preset
    from simulator.calibration.serving import calibration_runs, fit_serving
    from simulator.calibration.variants import VARIANTS

    refs = _variant_refs(variant_factories)
    names: list[str] | None = [v.strip() for v in (variants or "").split(",") if v.strip()]
    if not model_ref:  # the built-in DLRM: its own six variants, plus the user's
        names = names or list(VARIANTS)
        bad = [v for v in names if v not in (*VARIANTS, *refs)]
        if bad:
            raise click.BadParameter(f"unknown variant(s) {bad}; allowed: {', '.join(VARIANTS)} "
                                     "and the --variant-factory names")
        names = ["fp32", *(n for n in names if n != "fp32"),  # fp32: the quality reference
                 *(n for n in refs if n not in names)]
    elif not names:
        names = None  # every variant that applies, and the user's
    else:  # fp32 first (the quality reference), then the requested and the user's
        from simulator.calibration.own_model import AUTO_VARIANTS

        bad = [v for v in names if v not in (*AUTO_VARIANTS, "distilled", *refs)]
        if bad:
            raise ModelError(f"--variants: unknown variant(s) {', '.join(bad)}; derived: "
                             f"{', '.join(AUTO_VARIANTS)}; others come from --variant-factory "
                             "NAME=module:function")
        names = ["fp32", *(n for n in names if n != "fp32"), *(n for n in refs if n not in names)]
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda: torch finds no CUDA device here (torch "
                         f"{torch.__version__}, CUDA build {torch.version.cuda or 'none'}); "
                         "measure on a machine with a GPU or project a CPU profile with "
                         "peaksim profile project")
    if model_ref or refs:
        from simulator.calibration.own_model import (
            ModelSpecError,
            load_model,
            load_user_variant,
        )

        def absolute(ref: str) -> str:  # fresh processes resolve a file from any folder
            target, _, func = ref.rpartition(":")
            return (f"{Path(target).expanduser().resolve()}:{func}"
                    if target.endswith(".py") else ref)

        model_ref = absolute(model_ref) if model_ref else None
        refs = {k: absolute(r) for k, r in refs.items()}
        try:  # refuse a broken factory here, in one line, before any measuring
            if model_ref:
                load_model(model_ref)
            for vname, vref in refs.items():
                load_user_variant(vname, vref)
        except ModelSpecError as exc:
            raise ModelError(str(exc)) from None
    q = QUICK if quick else {}
    spec = Spec(model=None if model_ref else get_preset(preset), variants=names,
                model_ref=model_ref, variant_refs=refs,
                batch_sizes=_ints(batch_sizes or str(q.get("batch_sizes", DEFAULT_SIZES))),
                reps=int(q.get("reps", reps)), rounds=int(q.get("rounds", 4)), threads=threads,
                device=device, train_steps=int(q.get("train_steps", 300)),
                eval_samples=int(q.get("eval_samples", 20_000)))
    procs = int(q.get("processes", processes))
    serving_s = float(q.get("serving_s", serving_s)) if quick else serving_s
    torch.set_num_threads(threads)
    with _progress() as bar:
        task = bar.add_task("measuring", total=1)

        def progress(desc: str, done: int, total: int) -> None:
            bar.update(task, description=desc, completed=done, total=max(total, 1))

        measured = run_pooled(spec, procs, progress)
        overheads: dict[str, tuple[float, float]] = {}
        serving_resid: dict[str, list[float]] = {}
        collation = None
        if serving_s > 0 and device == "cpu":
            progress("building variants for the serving run", 0, 1)
            models, inputs = _serving_models(spec, serve_batch)
            collation = inputs.collation
            for i, v in enumerate(models):
                progress(f"serving {v} (max batch {serve_batch}, wait {serve_wait_ms} ms)",
                         i, len(models))
                med = [float(np.median(c)) for c in measured.samples_ms[v]]
                fit = fit_latency(spec.batch_sizes, med)
                runs = calibration_runs(models[v], inputs, fit, serve_batch, serve_wait_ms,
                                        serving_s, seed=11 + i)
                cal = fit_serving(runs, fit)
                overheads[v] = (cal.overhead_ms_per_batch, cal.overhead_ms_per_item)
                serving_resid[v] = cal.residuals
                if batch_log_out:
                    _write_harness_logs(runs, Path(batch_log_out) / f"{v}.csv")
            bar.update(task, description="done", completed=1, total=1)
    prov = provenance(spec, {"processes": procs, "serving_overheads": {
        "seconds_per_variant": serving_s, "max_batch": serve_batch, "max_wait_ms": serve_wait_ms,
        "loads": "3% and 45% of full-batch capacity (batches of ~1-3 and ~15-25), pooled",
        "collation": collation}})
    if serving_s <= 0 or device != "cpu":
        prov["serving_overheads"] = ("not measured (" + ("--serving-s 0" if serving_s <= 0 else
                                     "PeakSim's harness serves on CPU") + "): overheads are 0; "
                                     "combine the profile with a serving-stack profile "
                                     "(service.serving) from your server's batch log")
    for vname, how in measured.own.get("derived", {}).items():  # how each was built
        click.echo(f"variant {vname}: {how}")
    for vname, why in measured.own.get("skipped", {}).items():
        click.echo(f"variant {vname} skipped: {why}")
    if batch_log_out and overheads:
        click.echo(f"harness batch logs: {batch_log_out}/<variant>.csv")
    prof = make_profile(name or Path(out).stem, spec, measured, overheads, prov, serving_resid,
                        purpose="test" if quick else "production")
    if counts:
        from simulator.calibration.instances import FULL
        from simulator.calibration.instances import QUICK as IQ
        from simulator.profiles import Profile

        block = _measure_instances(spec.model, spec.model_ref, spec.variant_refs,
                                   list(measured.samples_ms), counts, spec.batch_sizes,
                                   {**(IQ if quick else FULL),
                                    "train_steps": spec.train_steps})
        items = list(prof.items())
        at = next(i + 1 for i, (k, _) in enumerate(items) if k == "device")
        prof = dict([*items[:at], ("instances", block), *items[at:]])
        Profile.model_validate(prof)
        _echo_instances(block)
    write_profile(with_node_type(prof, node_type), out)
    click.echo(f"wrote {out}")


def with_node_type(prof: dict[str, Any], node_type: str | None) -> dict[str, Any]:
    """The profile tied to ``node_type`` (after its device block), or as it is for None."""
    if not node_type:
        return prof
    items = [(k, v) for k, v in prof.items() if k != "node_type"]
    at = next((i + 1 for i, (k, _) in enumerate(items) if k == "device"), len(items))
    return dict([*items[:at], ("node_type", node_type), *items[at:]])


def _serving_models(spec: Any, max_batch: int) -> tuple[dict[str, Any], Any]:
    """The measured variants built in this process (CPU) and the harness's requests for them:
    the built-in DLRM's, or an own model's (rows of its sampler, see ``own_inputs``)."""
    from simulator.calibration.own_model import (
        build_variants,
        load_user_variant,
        model_of,
        sample_inputs,
    )
    from simulator.calibration.serving import own_inputs

    mspec, _ = model_of(spec)
    user = {n: load_user_variant(n, r)[0] for n, r in spec.variant_refs.items()}
    vs = build_variants(mspec, spec.variants, "cpu", spec.train_steps, user)
    inputs = (mspec.serving_inputs() if mspec.serving_inputs is not None else
              own_inputs(lambda b, seed: sample_inputs(mspec, b, seed), max_batch))
    return vs.models, inputs


def _write_harness_logs(runs: list[Any], path: Path) -> None:
    """The harness runs of one variant (measured windows) as one batch log, run after run on
    one time line, each labelled with its load (``load`` column: offered QPS)."""
    import numpy as np

    from simulator.output import atomic_write
    from simulator.serving_logs import write_batch_log

    items, start, end, load = [], [], [], []
    t0 = 0.0
    for r in runs:
        sel = r.batch_start >= r.warmup_s
        st = r.batch_start[sel] + t0
        items.append(r.batch_items[sel])
        start.append(st)
        end.append(st + r.batch_ms[sel] / 1e3)
        load += [f"{r.rate_qps:.0f}qps"] * int(sel.sum())
        t0 += r.duration_s + 1.0  # runs apart on the time line
    atomic_write(path, lambda tmp: write_batch_log(
        tmp, np.concatenate(items), np.concatenate(start), np.concatenate(end), load=load))


def _measure_instances(model: Any, model_ref: str | None, variant_refs: dict[str, str],
                       variants: list[str], counts: list[int], batch_sizes: list[int],
                       settings: dict[str, Any]) -> dict[str, Any]:
    """Measure the ``instances`` block with a progress bar (``instances.measure_instances``)."""
    from simulator.calibration.instances import (
        InstanceSpec,
        logical_cpus,
        measure_instances,
        representative_sizes,
        scaling_block,
    )

    over = [n for n in counts if n > logical_cpus()]
    if over:
        click.secho(f"note: counts {','.join(map(str, over))} exceed this machine's "
                    f"{logical_cpus()} logical CPUs: measured as they are (oversubscribed) and "
                    "flagged in the profile", fg="yellow", err=True)
    ispec = InstanceSpec(model=model, model_ref=model_ref, variant_refs=variant_refs,
                         variants=variants, counts=counts,
                         batch_sizes=representative_sizes(batch_sizes), **settings)
    with _progress() as bar:
        task = bar.add_task("instances", total=1)

        def progress(desc: str, done: int, total: int) -> None:
            bar.update(task, description=desc, completed=done, total=max(total, 1))

        try:
            res = measure_instances(ispec, progress)
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from None
        bar.update(task, description="instances measured", completed=1, total=1)
    return scaling_block(res)


@click.command("calibrate-instances")
@click.option("--profile", "profile_path", required=True,
              type=click.Path(dir_okay=False), help="the profile to add the block to")
@click.option("--instances", "instances", default="1,2,4", show_default=True,
              metavar="COUNTS", help="concurrent instances to measure (must include 1; at "
                                     "most 64); counts above the logical CPUs are flagged")
@click.option("--variants", default=None, help="[default: every variant in the profile]")
@click.option("--batch-sizes", default=None, help="sizes to time [default: the middle and the "
              "largest of the profile's measured sizes]")
@click.option("--quick", is_flag=True, help="2 rounds of 0.2 s windows, 20 fine-tune steps "
              "(tests)")
@click.option("--rounds", default=None, type=int, help="interleaved rounds [default: 4]")
@click.option("--window-s", default=None, type=float,
              help="seconds each instance loops batches per cell [default: 1.0]")
@click.option("--train-steps", default=None, type=int,
              help="fine-tune steps of pruned/distilled [default: 300, as calibrate]")
@click.option("--nice", default=0, show_default=True, type=click.IntRange(-20, 19),
              help="priority increment of the worker processes; negative (root only) puts "
                   "them ahead of other processes on a shared machine (recorded in the block)")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="write here instead of in place")
def calibrate_instances(profile_path: str, instances: str, variants: str | None,
                        batch_sizes: str | None, quick: bool, rounds: int | None,
                        window_s: float | None, train_steps: int | None,
                        out: str | None, nice: int = 0) -> None:
    """Measure the slowdown of concurrent model instances (worker processes) on this CPU and
    add the 'instances' block to an EXISTING profile, leaving every other byte of it as it is
    (written atomically). The model is rebuilt from the profile's 'model' block."""
    import json

    from simulator.calibration.instances import FULL, QUICK, spec_from_profile
    from simulator.profiles import ProfileError, load_profile

    counts = _counts(instances)
    try:
        prof = load_profile(profile_path)
    except ProfileError as exc:
        raise click.ClickException(str(exc)) from None
    text = Path(profile_path).read_text()
    raw = json.loads(text)
    names = [v.strip() for v in (variants or "").split(",") if v.strip()] or list(prof.variants)
    bad = [v for v in names if v not in prof.variants]
    if bad:
        raise click.BadParameter(f"unknown variant(s) {', '.join(bad)}; the profile has "
                                 f"{', '.join(prof.variants)}", param_hint="--variants")
    if prof.device.kind != "cpu" or prof.source != "measured":
        raise click.ClickException(
            f"{profile_path}: calibrate-instances measures worker processes on this CPU; the "
            f"profile is '{prof.source}' on '{prof.device.kind}' (for a projected GPU profile: "
            "peaksim profile project FILE --instances-only)")
    try:
        model, model_ref, refs = spec_from_profile(raw)
    except ValueError as exc:
        raise click.ClickException(f"{profile_path}: {exc}") from None
    sizes = (_ints(batch_sizes) if batch_sizes else
             sorted({b for v in names for b in prof.variants[v].batch_sizes}))
    settings = {**(QUICK if quick else FULL)}
    for k, val in (("rounds", rounds), ("window_s", window_s), ("train_steps", train_steps)):
        if val is not None:
            if (val <= 0 and k != "train_steps") or val < 0:
                raise click.BadParameter(f"must be positive (got {val})",
                                         param_hint=f"--{k.replace('_', '-')}")
            settings[k] = val
    if nice < 0 and hasattr(os, "geteuid") and os.geteuid() != 0:
        raise click.BadParameter("a negative priority increment needs root", param_hint="--nice")
    settings["nice"] = nice
    require_torch()
    device_name = prof.device.name
    block = _measure_instances(model, model_ref, refs, names, counts, sizes, settings)
    if device_name not in block["method"]:
        click.secho(f"note: the profile was measured on '{device_name}'; these factors come "
                    "from this machine (named in the block's method)", fg="yellow", err=True)
    _write_instances_block(text, block, Path(out or profile_path))


@click.group("profile")
def profile() -> None:
    """Inspect and project calibration profiles."""


@profile.command("show")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="write a PNG plot")
def show(file: str, plot: str | None) -> None:
    """Table of variant x batch size (items): median, p99, fitted forward time, fit error
    (in-sample and held-out) and service time with serving overheads (ms)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from simulator.calibration.fit import held_out_errors
    from simulator.profiles import ProfileError, fitted_ms, load_profile, service_ms

    try:
        prof = load_profile(file)
    except ProfileError as exc:
        raise click.ClickException(str(exc)) from None
    con = Console()
    purpose = prof.purpose or "not recorded (older file)"
    node = (f"node type {prof.node_type}" if prof.node_type
            else "node type not recorded (any pool may use it)")
    con.print(f"[bold]{escape(prof.name)}[/] ({prof.source}) on {escape(prof.device.name)}; "
              f"{escape(node)}; purpose: {purpose}", highlight=False)
    if prof.purpose == "test":
        con.print("[yellow]a test profile (calibrate --quick): not for capacity decisions[/]")
    con.print("fit error: in-sample = |fit - median| / median at each measured size; held-out "
              "= leave-one-out: the fit refitted without that size, predicting it (interior "
              "sizes only): what the fit does between measured sizes", highlight=False)
    for name, v in prof.variants.items():
        q = v.quality
        sizes = [float(b) for b in v.batch_sizes]
        med = v.latency_ms.median
        fits = fitted_ms(v, sizes)
        ins = [abs(f - m) / m for f, m in zip(fits, med, strict=True)]
        held = held_out_errors(v.fit.kind, sizes, med)
        held_max = max((h for h in held if h is not None), default=None)
        held_txt = f"{held_max:.1%}" if held_max is not None else "n/a (under 3 sizes)"
        con.print(f"[bold]{name}[/]: {v.fit.kind} fit; fit error in-sample {max(ins):.1%}, "
                  f"held-out {held_txt} (stored in the profile: {v.fit.max_rel_error:.1%}); "
                  f"measured {min(v.batch_sizes):,}-{max(v.batch_sizes):,} items; "
                  f"{v.model_bytes / 1e6:.1f} MB; load {v.load_time_s:.3f} s; first call "
                  f"{v.first_call_ms:.2f} ms; AUC delta "
                  f"{q.auc_delta if q.auc_delta is not None else 'n/a'}", highlight=False)
        ob, oi = v.overhead_ms_per_batch, v.overhead_ms_per_item
        at = sorted({1, 16, max(v.batch_sizes)})
        adds = ", ".join(f"+{ob + oi * n:.2f} ms at {n:,} item{'s' if n > 1 else ''} "
                         f"({(ob + oi * n) / float(fitted_ms(v, n)):.0%} of the forward pass)"
                         for n in at)
        con.print(f"  serving overheads: +{ob:.3f} ms/batch +{oi:.4f} ms/item "
                  f"({oi * 1e3:.1f} us/item) = {adds}", highlight=False)
        t = Table()
        for col in ("items", "median ms", "p99 ms", "fit ms", "in-sample err", "held-out err",
                    "+ overheads ms"):
            t.add_column(col, justify="right")
        served = service_ms(v, sizes)
        for b, m, p99, f, e_in, e_ho, sv in zip(v.batch_sizes, med, v.latency_ms.p99, fits,
                                                 ins, held, served, strict=True):
            t.add_row(f"{b:,}", f"{m:.3f}", f"{p99:.3f}", f"{f:.3f}", f"{e_in:.1%}",
                      f"{e_ho:.1%}" if e_ho is not None else "end", f"{sv:.3f}")
        con.print(t)
    _show_instances(con, prof)
    if plot:
        _plot(prof, plot)
        con.print(f"wrote {plot}")


def _show_instances(con: Any, prof: Any) -> None:
    """The ``instances`` block: variant x count table of service-time multipliers."""
    import re

    from rich.table import Table

    block = prof.instances
    if block is None:
        con.print("instances: no block (concurrent instances not measured or projected)")
        return
    counts = sorted({n for by_n in block.slowdown.values() for n in by_n})
    m = re.search(r"OVERSUBSCRIBED counts \(above the (\d+) logical CPUs[^)]*\): ([\d,]+)",
                  block.method)
    over = {int(x) for x in m.group(2).split(",")} if m else set()
    t = Table(title=f"instances ({block.source}): service-time multiplier of a batch when n "
              "instances serve at once" + (f"; * oversubscribed (above {m.group(1)} logical "
                                            "CPUs)" if m else ""))
    t.add_column("variant")
    for n in counts:
        t.add_column(f"n = {n}{'*' if n in over else ''}", justify="right")
    for v, by_n in block.slowdown.items():
        t.add_row(v, *(f"{by_n[n]:.3f}" if n in by_n else "-" for n in counts))
    con.print(t)
    con.print(f"method: {block.method}", highlight=False)


def _plot(prof: Any, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from simulator.profiles import service_ms

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, v in prof.variants.items():
        line = ax.plot(v.fit.x, v.fit.y_ms, label=f"{name} forward ({v.fit.kind})")[0]
        ax.scatter(v.batch_sizes, v.latency_ms.median, color=line.get_color(), s=12)
        if v.overhead_ms_per_batch or v.overhead_ms_per_item:  # what the simulator draws
            ax.plot(v.fit.x, service_ms(v, v.fit.x), "--", color=line.get_color(),
                    label=f"{name} + serving overheads ({v.overhead_ms_per_batch:.3g} ms/batch "
                          f"+ {v.overhead_ms_per_item:.3g} ms/item)")
    ax.set(xscale="log", yscale="log", xlabel="batch size (items)", ylabel="batch latency (ms)",
           title=f"{prof.name} ({prof.source}): solid forward pass, dashed service time")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


#: the node type a projection is for, by target GPU (one model instance per GPU)
PROJECTED_NODE_TYPES = {"a10g": "g5.xlarge", "h100": "p5.48xlarge"}


@profile.command("project")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--gpu", type=click.Choice(["a10g", "h100"]), default=None,
              help="target GPU (required unless --instances-only)")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="output profile (required unless --instances-only, which writes in place)")
@click.option("--instances", "instances", default="1,2,4,8", show_default=True,
              metavar="COUNTS", help="counts of concurrent instances on one GPU to project "
                                     "slowdown factors for (must include 1; at most 64)")
@click.option("--instances-only", is_flag=True,
              help="FILE is a projected GPU profile: add (or replace) only its 'instances' "
                   "block, every other byte unchanged, in place (or to --out)")
@click.option("--node-type", default=None, metavar="NAME",
              help="the node type the projection is for [default: g5.xlarge for a10g, "
                   "p5.48xlarge for h100]; pools of another type refuse the profile")
def project(file: str, gpu: str | None, out: str | None, instances: str = "1,2,4,8",
            instances_only: bool = False, node_type: str | None = None) -> None:
    """Project a measured CPU profile onto a GPU by roofline ("source": "projected"), with the
    slowdown of concurrent instances; or, with --instances-only, add that block to an existing
    projected GPU profile."""
    from simulator.calibration.build import write_profile
    from simulator.calibration.roofline import project_profile
    from simulator.profiles import Profile, ProfileError, load_profile

    counts = _counts(instances)
    if instances_only:
        _project_instances_in_place(file, gpu, out, counts)
        return
    if gpu is None or out is None:
        raise click.UsageError("profile project needs --gpu and --out (or --instances-only)")
    src = load_profile(file)  # a valid profile first (errors name the file and field)
    raw = json.loads(Path(file).read_text())
    if src.source != "measured" or src.device.kind != "cpu":
        raise ProfileError(f"{file}: field 'source': profile project needs a profile measured "
                           f"on a CPU (source 'measured', device.kind 'cpu'); this one is "
                           f"'{src.source}' on '{src.device.kind}'")
    arch = (raw.get("model") or {}).get("variants") or {}
    missing = [v for v in raw["variants"] if v not in arch]
    if missing:
        raise ProfileError(f"{file}: field 'model.variants': no model architecture recorded "
                           f"for variant(s) {', '.join(missing)} (written by peaksim "
                           "calibrate), so latency cannot be projected")
    prof = with_node_type(project_profile(raw, gpu, counts),
                          node_type or PROJECTED_NODE_TYPES[gpu])
    Profile.model_validate(prof)
    write_profile(prof, out)
    _echo_instances(prof["instances"])
    click.echo(f"wrote {out}")


def _project_instances_in_place(file: str, gpu: str | None, out: str | None,
                                counts: list[int]) -> None:
    """Add the projected ``instances`` block to a projected GPU profile: the GPU's figures from
    its provenance (as projected; else --gpu), each variant's architecture from
    ``model.variants`` (else the built-in DLRM's ``model.config`` and the variant's widths)."""
    from simulator.calibration.model import ModelConfig
    from simulator.calibration.roofline import GPU, GPUS, project_instances, variant_arch
    from simulator.profiles import ProfileError, load_profile

    try:
        prof = load_profile(file)
    except ProfileError as exc:
        raise click.ClickException(str(exc)) from None
    if prof.device.kind != "gpu" or prof.source != "projected":
        raise click.ClickException(
            f"{file}: --instances-only needs a projected GPU profile (source 'projected', "
            f"device.kind 'gpu'); this one is '{prof.source}' on '{prof.device.kind}' (for a "
            "CPU profile: peaksim calibrate-instances)")
    text = Path(file).read_text()
    raw = json.loads(text)
    g = (raw.get("provenance") or {}).get("gpu")
    try:
        dev = GPU(**g) if isinstance(g, dict) else GPUS[gpu] if gpu else None
    except TypeError as exc:
        raise click.ClickException(f"{file}: field 'provenance.gpu' is not a GPU record "
                                   f"({exc})") from None
    if dev is None:
        raise click.ClickException(f"{file}: no 'provenance.gpu' record; name the GPU with "
                                   "--gpu a10g|h100")
    model = raw.get("model") or {}
    arch_raw = model.get("variants") or {}
    arch = {}
    for v in prof.variants:
        if v in arch_raw:
            arch[v] = ModelConfig.from_dict(arch_raw[v])
        elif model.get("config") and model.get("kind", "builtin-dlrm") == "builtin-dlrm":
            arch[v] = variant_arch(ModelConfig.from_dict(model["config"]), v)
        else:
            raise click.ClickException(f"{file}: field 'model.variants': no architecture "
                                       f"recorded for variant {v}")
    block = project_instances(arch, {v: p.batch_sizes for v, p in prof.variants.items()}, dev,
                              counts)
    _write_instances_block(text, block, Path(out or file))


@click.command("validate-calibration")
@click.option("--profile", "profile_path", default="scenarios/profiles/cpu-x86.json",
              show_default=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--variant", default="fp32", show_default=True)
@click.option("--max-batch", default=32, show_default=True)
@click.option("--max-wait-ms", default=2.0, show_default=True)
@click.option("--loads", default="0.3,0.6,0.85", show_default=True,
              help="server utilisations PeakSim predicts (rates found by bisection)")
@click.option("--duration", default=8.0, show_default=True, help="real serving s per run")
@click.option("--replicates", default=3, show_default=True,
              help="real serving runs per load (in rounds over the loads; latencies pooled)")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="also write the rows as JSON (atomically)")
@click.option("--sim-duration", default=60.0, show_default=True, help="simulated s per load")
@click.option("--recalibrate-s", default=8.0, show_default=True,
              help="first re-measure serving overheads in a serving run this long (0: use the "
                   "profile's as they are)")
@click.option("--seed", default=1, show_default=True)
@click.option("--check", is_flag=True, help="exit 1 unless p50 within 10%% and p99 within 20%% "
              "at the two lowest loads")
@click.option("--request-log", type=click.Path(dir_okay=False), default=None,
              help="instead of serving here: replay this request log's arrivals through "
                   "PeakSim and compare with its latencies per load level (no torch)")
@click.option("--serving", type=click.Path(dir_okay=False), default=None,
              help="with --request-log: serving-stack profile (peaksim calibrate-serving); "
                   "default: the model profile's own overheads")
@click.option("--timer-slack-ms", type=float, default=None,
              help="with --request-log: batcher timer overshoot, ms [default: the stack's "
                   "timer_overshoot_ms, else 0]")
@click.option("--time-unit", type=click.Choice(["s", "ms", "us"]), default=None,
              help="with --request-log: unit of time columns named without a suffix")
@click.option("--warmup-s", default=1.0, show_default=True,
              help="with --request-log: leave out each level's first S seconds")
@click.option("--gap-s", default=1.0, show_default=True,
              help="with --request-log and no 'load' column: a gap this long between "
                   "arrivals starts a new load level")
@click.option("--sim-reps", default=5, show_default=True,
              help="with --request-log: simulations per level (seeds), latencies pooled")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="with --request-log: write the comparison figure (PNG); an --out ending "
                   "in .png does the same")
def validate_calibration(profile_path: str, variant: str, max_batch: int, max_wait_ms: float,
                         loads: str, duration: float, replicates: int, out: str | None,
                         sim_duration: float, recalibrate_s: float, seed: int,
                         check: bool, request_log: str | None = None,
                         serving: str | None = None, timer_slack_ms: float | None = None,
                         time_unit: str | None = None, warmup_s: float = 1.0,
                         gap_s: float = 1.0, sim_reps: int = 5,
                         plot_path: str | None = None) -> None:
    """Serve the real model under Poisson load and compare latency with PeakSim's prediction
    (or, with --request-log, compare a real server's logged latencies with PeakSim's)."""
    if request_log is not None:
        from simulator.serving_cli import validate_request_log

        validate_request_log(request_log, profile_path, variant, serving, max_batch,
                             max_wait_ms, timer_slack_ms, time_unit, warmup_s, gap_s,
                             sim_reps, seed, out, plot_path, check)
        return
    require_torch()
    from rich.console import Console
    from rich.table import Table

    from simulator.calibration.fidelity import validate

    con = Console(width=max(Console().width, 150))
    levels = [float(x) for x in loads.split(",")]
    rows, used = validate(profile_path, variant, levels, max_batch, max_wait_ms, duration,
                          recalibrate_s, sim_duration, seed,
                          progress=lambda s: con.print(f"[dim]{s}[/]"), replicates=replicates)
    t = Table(title=f"{variant}: real serving vs PeakSim (max batch {max_batch}, wait "
              f"{max_wait_ms} ms, full-batch capacity {used['capacity_qps']:,.0f} qps, timer "
              f"slack {used['timer_slack_ms']:.3f} ms)")
    for col in ("load", "qps", "util real", "util sim", "p50 real/sim", "p50 err",
                "p95 real/sim", "p95 err", "p99 real/sim", "p99 err", "real runs' spread p50/p99"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(f"{r.load:.0%}", f"{r.rate_qps:,.0f}", f"{r.real_util:.2f}", f"{r.sim_util:.2f}",
                  *[x for k in ("p50", "p95", "p99") for x in
                    (f"{r.real[k]:.2f}/{r.sim[k]:.2f}", f"{r.error(k):+.1%}")],
                  f"{r.run_spread('p50'):.0%} / {r.run_spread('p99'):.0%}")
    con.print(t)
    if out:
        from dataclasses import asdict

        from simulator.output import write_json
        write_json(Path(out), {"variant": variant, "max_batch": max_batch,
                                      "max_wait_ms": max_wait_ms, "used": used,
                                      "rows": [{**asdict(r), "errors": {
                                          k: r.error(k) for k in ("p50", "p95", "p99")}}
                                          for r in rows]})
        con.print(f"wrote {out}")
    con.print(f"overheads used: {used['overhead_ms_per_batch']:.3f} ms/batch + "
              f"{used['overhead_ms_per_item'] * 1e3:.1f} us/item")
    if check:
        low = sorted(rows, key=lambda r: r.load)[:2]
        ok = all(abs(r.error("p50")) <= 0.10 and abs(r.error("p99")) <= 0.20 for r in low)
        if not ok:
            raise SystemExit(1)


commands = [calibrate, calibrate_instances, profile, validate_calibration]

if __name__ == "__main__":
    @click.group()
    def _main() -> None:
        pass

    for c in commands:
        _main.add_command(c)
    _main()


def _write_instances_block(text: str, block: dict[str, Any], target: Path) -> None:
    """Write profile ``text`` with its ``instances`` block added (or replaced), every other
    byte unchanged, atomically to ``target``; validated first."""
    from simulator.calibration.instances import add_block_text
    from simulator.output import atomic_write
    from simulator.profiles import Profile, _load_cached

    new = add_block_text(text, block)
    Profile.model_validate(json.loads(new))
    atomic_write(target, lambda p: p.write_text(new))
    _load_cached.cache_clear()
    _echo_instances(block)
    click.echo(f"wrote {target}")
