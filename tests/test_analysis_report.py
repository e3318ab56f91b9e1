"""The HTML report parses, embeds every figure, carries the run's numbers and its provenance;
``peaksim report`` writes PNG + SVG + report.html for run, compare and sweep directories."""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

import simulator
from analysis.report import build_report, write_report
from analysis.results import load_compare, load_run
from analysis.tables import fmt_num
from simulator.cli import main
from tests.test_analysis_data import (
    SEEDS,
    VARIANTS,
    compare_dir,
    elastic_run_dir,
    run_dir,
    sweep_dir,
)


class Page(HTMLParser):
    """Collects the images, figure ids and visible text of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.images: dict[str, bytes] = {}
        self.figures: list[str] = []
        self.tables = 0
        self.chunks: list[str] = []
        self.feed(text)
        self.close()
        self.text = " ".join(self.chunks)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            src = a.get("src") or ""
            assert src.startswith("data:image/png;base64,")
            self.images[str(a.get("alt"))] = base64.b64decode(src.split(",", 1)[1])
        elif tag == "figure":
            self.figures.append(str(a.get("id")))
        elif tag == "table":
            self.tables += 1

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)


def check_written(out: Path, html_path: Path, names: set[str]) -> Page:
    page = Page(html_path.read_text(encoding="utf-8"))
    assert set(page.images) == names
    assert page.figures == [f"fig-{n}" for n in page.images]
    for name, png in page.images.items():
        assert png.startswith(b"\x89PNG")
        assert (out / f"{name}.png").read_bytes() == png
        assert (out / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    return page


def test_run_report_embeds_figures_numbers_scenario_and_provenance(tmp_path: Path) -> None:
    html_path = write_report(run_dir(), tmp_path)
    run = load_run(run_dir())
    s = run.summary
    page = check_written(tmp_path, html_path,
                         {"timeline", "timeline_peak", "latency_cdf", "cost_breakdown",
                          "calibration"})
    for v in (s["requests"]["arrived"], s["requests"]["completed"], s["latency_ms"]["p50"],
              s["latency_ms"]["p99"], s["sla"]["violations"], s["sla"]["violation_rate"],
              s["cost_usd"]["total"], s["cost_usd"]["compute"], s["utilization"]):
        assert fmt_num(v) in page.text, v
    assert simulator.__version__ in page.text
    assert "cpu-x86" in page.text and "measured" in page.text
    assert "2026-11-28" in page.text  # the profile's measurement date
    assert '"start_hour": 23.5' in page.text  # the scenario as run
    assert page.tables >= 3


def test_fmt_num_shows_numbers_as_in_reports() -> None:
    assert fmt_num(12345) == "12,345"
    assert fmt_num(1234.5678) == "1,234.57"
    assert fmt_num(0.001234567) == "0.001235"
    assert fmt_num(float("nan")) == "n/a" and fmt_num(None) == "n/a"


def test_compare_report_has_per_policy_intervals_and_seeds() -> None:
    rep = build_report(compare_dir())
    assert set(rep.figures) == {"policy_comparison", "cost_breakdown", "latency_cdf",
                                "calibration"}
    page = Page(rep.html)
    assert set(page.images) == set(rep.figures)
    runs = load_compare(compare_dir()).runs
    for name in VARIANTS:
        mean = runs.loc[runs["variant"] == name, "cost_usd.total"].mean()
        assert fmt_num(mean) in page.text
    assert ", ".join(str(s) for s in SEEDS) in page.text
    assert "Paired differences against the baseline (95% CI)" in page.text
    assert "more expensive" in page.text and "runs are short (test fixture)" in page.text
    assert '"start_hour": 23.5' in page.text  # from a member run's scenario.json


def test_sweep_report_has_pareto_and_plan(tmp_path: Path) -> None:
    html_path = write_report(sweep_dir(), tmp_path, formats=("png", "svg"))
    page = check_written(tmp_path, html_path, {"pareto"})
    assert "Plan: chosen configuration" in page.text
    assert "cluster.pools.cpu.nodes" in page.text


def test_elastic_run_report_builds(tmp_path: Path) -> None:
    rep = build_report(elastic_run_dir(), render=False)
    fig = rep.figures["timeline"][0]
    assert any(str(c.get_gid()).startswith("event:") for c in fig.axes[0].collections)


def test_cli_report_writes_files_and_zooms(tmp_path: Path) -> None:
    out = tmp_path / "rep"
    res = CliRunner().invoke(main, ["report", str(run_dir()), "--out", str(out),
                                    "--window", "23:31-23:33", "--formats", "png"])
    assert res.exit_code == 0, res.output
    assert f"report: {out / 'report.html'}" in res.output
    assert (out / "timeline_peak.png").is_file() and not (out / "timeline.svg").exists()
    page = Page((out / "report.html").read_text())
    assert "timeline_peak" in page.images


@pytest.mark.parametrize("args", [["--window", "nonsense"], ["--formats", "gif"]])
def test_cli_report_rejects_bad_options(args: list[str]) -> None:
    res = CliRunner().invoke(main, ["report", str(run_dir()), *args])
    assert res.exit_code == 2


def test_cli_report_on_a_non_results_directory_is_a_clear_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert res.exit_code == 2
    assert "not a PeakSim results directory" in res.output
