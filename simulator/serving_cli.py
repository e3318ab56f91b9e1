"""``peaksim calibrate-serving`` and the ``--request-log`` path of ``validate-calibration``.

Neither needs torch: they read logs, a model profile and a serving-stack profile.
"""

from __future__ import annotations

from pathlib import Path

import click


class LogRefused(click.ClickException):
    """A log, profile or option that cannot be used: one line, exit code 2."""

    exit_code = 2


UNIT = click.Choice(["s", "ms", "us"])


@click.command("calibrate-serving")
@click.option("--model-profile", required=True, type=click.Path(dir_okay=False),
              help="model profile JSON whose forward fit the overheads are relative to")
@click.option("--variant", required=True, help="the model variant the server ran")
@click.option("--batch-log", type=click.Path(dir_okay=False), default=None,
              help="CSV, one row per batch: items,start_s,end_s[,deadline_s]")
@click.option("--request-log", type=click.Path(dir_okay=False), default=None,
              help="CSV, one row per request: arrival_s,finish_s,batch_id[,items,start_s]")
@click.option("--time-unit", type=UNIT, default=None,
              help="unit of time columns named without a unit suffix [default: s]")
@click.option("--max-batch", type=int, default=None,
              help="request log only: the server's max batch (dispatch estimate)")
@click.option("--max-wait-ms", type=float, default=None,
              help="request log only: the server's max wait, ms (dispatch estimate)")
@click.option("--skip-s", default=0.0, show_default=True,
              help="leave out batches starting in the log's first S seconds (warm-up)")
@click.option("--timer-overshoot-ms", type=float, default=None,
              help="record this timer overshoot (else the median lateness from deadline_s)")
@click.option("--server", default="", help="free text describing the server (provenance)")
@click.option("--name", default=None, help="stack name [default: file stem of --out]")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def calibrate_serving(model_profile: str, variant: str, batch_log: str | None,
                      request_log: str | None, time_unit: str | None, max_batch: int | None,
                      max_wait_ms: float | None, skip_s: float,
                      timer_overshoot_ms: float | None, server: str, name: str | None,
                      out: str) -> None:
    """Fit a serving-stack profile (overheads and residuals) to a real server's log."""
    from simulator.output import write_json
    from simulator.profiles import ProfileError, fitted_ms, get_variant, load_profile
    from simulator.serving_logs import (
        LogError,
        batches_from_requests,
        fit_stack,
        read_batch_log,
        read_request_log,
    )
    from simulator.serving_profile import ServingStackProfile

    if (batch_log is None) == (request_log is None):
        raise LogRefused("give exactly one of --batch-log or --request-log")
    try:
        prof = load_profile(model_profile)
        v = get_variant(prof, variant, model_profile)
    except ProfileError as exc:
        raise LogRefused(str(exc)) from None
    try:
        if batch_log is not None:
            log = read_batch_log(batch_log, time_unit)
            source, path = "batch-log", batch_log
        else:
            assert request_log is not None
            log = batches_from_requests(read_request_log(request_log, time_unit), max_batch,
                                        max_wait_ms)
            source, path = "request-log", request_log
        notes = "" if batch_log else (
            "batches from the request log: dispatch from its start_s column when present, "
            "else estimated as max(last arrival, previous finish[, first arrival + max_wait "
            "for a batch under max_batch])")
        raw = fit_stack(log, lambda k: fitted_ms(v, k), name=name or Path(out).stem,
                        source=source, variant=variant, model_profile=model_profile,
                        server=server, skip_s=skip_s, timer_overshoot_ms=timer_overshoot_ms,
                        log_path=path, time_unit=time_unit, notes=notes)
    except LogError as exc:
        raise LogRefused(str(exc)) from None
    ServingStackProfile.model_validate(raw)
    write_json(Path(out), raw)
    d = raw["diagnostics"]
    click.echo(f"{path}: {d['batches']} batches; overheads {raw['overhead_ms_per_batch']:.3f} "
               f"ms/batch + {raw['overhead_ms_per_item'] * 1e3:.1f} us/item over {variant}'s "
               f"forward fit; residuals p50 {_q(raw['residuals'], 0.5):.3f}, p99 "
               f"{_q(raw['residuals'], 0.99):.3f}; fit error <= {d['max_rel_error']:.1%} over "
               f"{len(d['sizes'])} batch sizes")
    click.echo(f"wrote {out}")


def _q(v: list[float], q: float) -> float:
    import numpy as np

    return float(np.quantile(v, q))


def validate_request_log(request_log: str, profile_path: str, variant: str,
                         serving: str | None, max_batch: int, max_wait_ms: float,
                         timer_slack_ms: float | None, time_unit: str | None, warmup_s: float,
                         gap_s: float, sim_reps: int, seed: int, out: str | None,
                         plot_path: str | None, check: bool) -> None:
    """The body of ``validate-calibration --request-log`` (see simulator.serving_validate)."""
    from rich.console import Console
    from rich.table import Table

    from simulator.profiles import ProfileError, get_variant, load_profile
    from simulator.serving_logs import LogError, read_request_log
    from simulator.serving_profile import ServingProfileError, load_serving_profile
    from simulator.serving_validate import plot, replay, rows_json

    try:
        get_variant(load_profile(profile_path), variant, profile_path)
        stack = load_serving_profile(serving) if serving else None
        log = read_request_log(request_log, time_unit)
    except (ProfileError, ServingProfileError, LogError) as exc:
        raise LogRefused(str(exc)) from None
    if timer_slack_ms is None:
        over = stack.for_variant(variant).timer_overshoot_ms if stack else None
        timer_slack_ms = over if over is not None else 0.0
    rows = replay(log, profile_path, variant, serving, max_batch, max_wait_ms, timer_slack_ms,
                  warmup_s, gap_s, sim_reps, seed)
    con = Console(width=max(Console().width, 150))
    what = f"stack {Path(serving).name}" if serving else "the model profile's own overheads"
    title = (f"{Path(request_log).name} vs PeakSim ({variant}, {what}; max batch {max_batch}, "
             f"wait {max_wait_ms} ms, timer slack {timer_slack_ms:.3f} ms)")
    t = Table(title=title)
    for col in ("level", "requests", "qps", "util log / sim", "p50 log/sim", "p50 err",
                "p95 log/sim", "p95 err", "p99 log/sim", "p99 err"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(r.level, f"{r.requests:,}", f"{r.rate_qps:,.0f}",
                  f"{r.real_util:.2f} / {r.sim_util:.2f}",
                  *[x for k in ("p50", "p95", "p99") for x in
                    (f"{r.real[k]:.2f}/{r.sim[k]:.2f}", f"{r.error(k):+.1%}")])
    con.print(t)
    con.print("util log: busy fraction of the logged batches (from start_s when the log has "
              "it, else the dispatch estimate of docs/calibration.md)", style="dim")
    targets = {"p50 within 10%": all(abs(r.error("p50")) <= 0.10 for r in rows),
               "p99 within 20%": all(abs(r.error("p99")) <= 0.20 for r in rows)}
    if out or plot_path:
        png = plot_path or (out if out and out.lower().endswith(".png") else None)
        js = out if out and not out.lower().endswith(".png") else None
        if png:
            plot(rows, png, title)
            con.print(f"wrote {png}")
        if js:
            from simulator.output import write_json

            write_json(Path(js), {"request_log": request_log, "profile": profile_path,
                                  "variant": variant, "serving": serving,
                                  "max_batch": max_batch, "max_wait_ms": max_wait_ms,
                                  "timer_slack_ms": timer_slack_ms, "targets": targets,
                                  "rows": rows_json(rows)})
            con.print(f"wrote {js}")
    if check and not all(targets.values()):
        raise SystemExit(1)
