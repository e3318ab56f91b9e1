"""``peaksim report RESULTS [--out DIR]``: figures (PNG + SVG) and a self-contained HTML report.

matplotlib and pandas are imported inside the command, so ``peaksim --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click


class _ResultsProblem(click.ClickException):
    exit_code = 2


def _read_fidelity(path: Path) -> object:
    """A fidelity table from CSV, JSON (list of rows) or Parquet (see plots.fidelity_table)."""
    import json

    import pandas as pd

    from analysis.calibration_plots import fidelity_table

    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        rows = data.get("rows", data) if isinstance(data, dict) else data
        if rows and isinstance(rows[0], dict) and "real" in rows[0]:
            return fidelity_table(rows)
        return pd.DataFrame(rows)
    return pd.read_csv(path)


@click.command("report")
@click.argument("results", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory (default RESULTS/report/).")
@click.option("--window", default=None, metavar="T0-T1",
              help="Zoom the timelines (run and comparison): seconds (41400-46800) or clock "
                   "(23:30-01:00); default: around the scenario's first peak, else around the "
                   "arrival rate's peak.")
@click.option("--profile", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Calibration profile to plot (default: the scenario's).")
@click.option("--fidelity", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Fidelity table (CSV/JSON/Parquet: load, real_P_ms, sim_P_ms).")
@click.option("--formats", default="png,svg", show_default=True,
              help="Figure file formats, comma-separated.")
def report(results: Path, out: Path | None, window: str | None, profile: Path | None,
           fidelity: Path | None, formats: str) -> None:
    """Write figures and report.html for RESULTS (a run, compare or sweep directory)."""
    from analysis.report import write_report
    from analysis.results import ResultsError
    from analysis.timeline import parse_window

    fmts = tuple(f.strip().lower() for f in formats.split(",") if f.strip())
    bad = [f for f in fmts if f not in ("png", "svg", "pdf")]
    if bad:
        raise click.BadParameter(f"unknown format(s) {', '.join(bad)}; use png, svg, pdf",
                                 param_hint="--formats")
    if window is not None:
        try:
            parse_window(window)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--window") from None
    out_dir = out or results / "report"
    try:
        path = write_report(results, out_dir, formats=fmts, window=window, profile=profile,
                            fidelity=_read_fidelity(fidelity) if fidelity else None)
    except (ResultsError, ValueError) as exc:
        raise _ResultsProblem(f"{results}: {exc}") from None
    click.echo(f"figures: {out_dir}")
    click.echo(f"report: {path}")
