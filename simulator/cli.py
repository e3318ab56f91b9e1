"""The ``peaksim`` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.text import Text

from simulator.policies.registry import PluginError
from simulator.profiles import ProfileError
from simulator.run_dir import RunDirError
from simulator.scenario import ScenarioError

console = Console()
err_console = Console(stderr=True)


class _CleanErrors(click.Group):
    """Turn scenario and profile errors into one clear message and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ScenarioError, ProfileError, PluginError, RunDirError) as exc:
            # the message holds user text and hints such as "[service]": never markup
            err_console.print(Text.assemble(("error: ", "bold red"), str(exc)),
                              highlight=False, soft_wrap=True)
            sys.exit(2)


@click.group(cls=_CleanErrors)
@click.version_option(package_name="peaksim")
@click.pass_context
def main(ctx: click.Context) -> None:
    """PeakSim: capacity planning for recommendation inference on promotion days."""
    _stop_on_sigterm(ctx)


def _stop_on_sigterm(ctx: click.Context) -> None:
    """While a command runs, SIGTERM ends it the way Ctrl-C does: the exception unwinds
    through the run (its temporary files are removed) and the experiment runner (its worker
    processes are terminated), then the process exits with status 143. The previous handler
    is restored when the command ends."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    ctx.call_on_close(lambda: signal.signal(signal.SIGTERM, previous))


_set_option = click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE",
    help="Override a scenario field (dotted; list items by name, e.g. cluster.pools.gpu.nodes=9)."
)
plugin_option = click.option(
    "--plugin", "plugins", multiple=True, metavar="MODULE",
    help="Import a module that registers policies (dotted name or .py file; repeatable). It "
         "joins the scenario's policy.plugins, so every worker imports it too.")

strict_option = click.option(
    "--strict", is_flag=True,
    help="Refuse (exit 2) instead of warning when a profile is stretched: batches more than "
         "twice its largest measured size, or a test profile (calibrate --quick).")


def load_with_plugins(scenario: Path, sets: tuple[str, ...], plugins: tuple[str, ...]) -> Any:
    """The scenario with ``--set`` overrides and ``--plugin`` modules in policy.plugins."""
    from simulator.experiment import add_plugins
    from simulator.scenario import load_scenario, scenario_from_dict

    if not plugins:
        return load_scenario(scenario, list(sets))
    import tomllib

    from simulator.scenario import parse_overrides

    raw = tomllib.loads(scenario.read_text()) if scenario.is_file() else None
    if raw is None:
        return load_scenario(scenario, list(sets))  # (names the missing file)
    add_plugins(raw, plugins)
    return scenario_from_dict(raw, str(scenario), parse_overrides(list(sets)), scenario.parent)


def print_warnings(sc: Any) -> None:
    """The scenario's warnings (:func:`simulator.scenario.scenario_warnings`) on stderr, as
    plain text (a peak's name is never read as markup)."""
    from simulator.scenario import scenario_warnings

    for msg in scenario_warnings(sc):
        err_console.print(Text.assemble(("warning: ", "bold yellow"), msg), highlight=False,
                          soft_wrap=True)


@main.command("run")
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory (default results/<scenario>-<timestamp>/).")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=None,
              help="Override simulation.seed.")
@_set_option
@click.option("--records", default=None, metavar="all|none|auto|sample:P",
              help="Per-request records (default: simulation.records).")
@click.option("--quiet", is_flag=True, help="Print only the output directory.")
@click.option("--overwrite", is_flag=True,
              help="Replace the results of another run in --out (PeakSim's files only).")
@plugin_option
@strict_option
def run_cmd(scenario: Path, out: Path | None, seed: int | None, sets: tuple[str, ...],
            records: str | None, quiet: bool, overwrite: bool,
            plugins: tuple[str, ...], strict: bool = False) -> None:
    """Run one simulation of SCENARIO (a TOML file) and write its results.

    --out must be empty, or hold a finished run of the same command (replaced), or
    --overwrite is given; a second live run into the same folder is refused."""
    from simulator.api import run
    from simulator.output import default_out_dir, write_json, write_parquet
    from simulator.provenance import input_files, resolved_dump
    from simulator.run_dir import claim
    from simulator.summary import format_summary

    sc = load_with_plugins(scenario, sets, plugins)
    if records is not None:
        from simulator.scenario import apply_override, scenario_from_dict

        raw = sc.model_dump()
        apply_override(raw, "simulation.records", records)
        sc = scenario_from_dict(raw, str(scenario), base_dir=scenario.parent)
    if strict:
        from simulator.profile_guards import strict_check

        strict_check(sc)
    print_warnings(sc)
    out_dir = out or default_out_dir(sc.name)
    command = {"source": str(scenario), "overrides": list(sets), "seed": seed,
               "records": records}
    with claim(out_dir, command, overwrite):  # checked before simulating
        res = run(sc, seed=seed, records_path=out_dir / "records.parquet")
        write_parquet(out_dir / "timeseries.parquet", res.timeseries)
        for key, frame in res.extras.items():
            write_parquet(out_dir / f"{key}.parquet", frame)
        # the scenario as run, its input paths resolved, and each input file's SHA-256
        write_json(out_dir / "scenario.json", {**command, "scenario": resolved_dump(sc),
                                               "inputs": input_files(sc)})
        write_json(out_dir / "summary.json", res.summary)
    if not quiet:
        console.print(format_summary(res.summary))
    cap_warning = res.summary["overload"].get("cap_warning")
    formed = (res.summary.get("profile_guards") or {}).get("formed_note")
    for w in filter(None, [cap_warning, formed]):  # the run says so, --quiet or not
        err_console.print(Text.assemble(("warning: ", "bold yellow"), w),
                          highlight=False, soft_wrap=True)
    console.print(f"results: {out_dir}", markup=False, highlight=False)


@main.command("validate")
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@_set_option
@plugin_option
@strict_option
def validate_cmd(scenario: Path, sets: tuple[str, ...], plugins: tuple[str, ...],
                 strict: bool = False) -> None:
    """Check SCENARIO without running it; print the fully resolved scenario (warnings, such
    as a peak inside the warm-up, go to stderr)."""
    import json

    sc = load_with_plugins(scenario, sets, plugins)
    if strict:
        from simulator.profile_guards import strict_check

        strict_check(sc)
    console.print_json(json.dumps(sc.model_dump(mode="json")))
    print_warnings(sc)
    console.print(Text.assemble(("ok", "green"), f": {scenario}"), highlight=False)


def _register_optional() -> None:
    """Commands that live in other packages (calibration imports torch only when run)."""
    from simulator import experiment_cli as exp

    for cmd in (exp.compare_cmd, exp.sweep_cmd, exp.plan_cmd):
        main.add_command(cmd)
    from simulator.serving_cli import calibrate_serving  # torch-free

    main.add_command(calibrate_serving)
    try:
        from analysis.report_cli import report
    except ImportError:
        pass
    else:
        main.add_command(report)
    try:
        from simulator.calibration import cli as cal
    except ImportError:
        return
    for name in ("calibrate", "calibrate_instances", "profile", "validate_calibration"):
        cmd = getattr(cal, name, None)
        if isinstance(cmd, click.Command):
            main.add_command(cmd)


_register_optional()

if __name__ == "__main__":
    main()
