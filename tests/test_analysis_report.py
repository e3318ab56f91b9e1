"""The HTML report parses, embeds every figure, carries the run's numbers and its provenance;
``peaksim report`` writes PNG + SVG + report.html for run, compare and sweep directories."""

from __future__ import annotations

import base64
import functools
import html
import json
import re
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from matplotlib.figure import Figure
from matplotlib.text import Text

import simulator
from analysis import stats
from analysis.report import FILE_NOTE, build_report, write_report
from analysis.results import load_compare, load_run
from analysis.tables import fmt_num
from simulator.cli import main
from simulator.output import write_json, write_parquet
from tests.conftest import ROOT
from tests.test_analysis_data import (
    CONTRACT_VARIANTS,
    PROVENANCE,
    SEEDS,
    VARIANTS,
    compare_dir,
    contract_compare_dir,
    contract_runs,
    contract_scenario,
    contract_sweep_dir,
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
                         {"timeline", "timeline_peak", "latency_cdf", "latency_tail",
                          "cost_breakdown", "calibration"})
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
    assert fmt_num(float("inf")) == "n/a"  # the half-width of a single replication
    assert fmt_num("3") == "3"  # text stays text


def test_compare_report_has_per_policy_intervals_and_seeds() -> None:
    rep = build_report(compare_dir())
    assert set(rep.figures) == {"policy_comparison", "cost_breakdown", "latency_cdf",
                                "latency_tail", "calibration"}
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


# ----------------------------------------------------------------------------- issue 14
# Directories in the new contract (built by hand); each test fails on the code before it.
DOUBLED = re.compile(r"(?i)(?:^|[\s(_.])(ms|usd|qps|h|s)\)?\s+\(?\1(?![\w/])")


def figure_texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


@functools.cache
def contract_compare() -> Path:
    return contract_compare_dir(Path(tempfile.mkdtemp(prefix="peaksim-contract-")) / "cmp")


def test_compare_report_has_timelines_provenance_and_classes() -> None:
    rep = build_report(contract_compare())
    assert {"compare_timeline", "compare_timeline_peak", "policy_comparison",
            "cost_breakdown", "calibration"} <= set(rep.figures)
    page = Page(rep.html)
    text = page.text
    prov = PROVENANCE
    for v in (prov["peaksim_version"], prov["python"], prov["created_utc"],
              prov["scenario"]["path"], prov["scenario"]["sha256"], "simulation.duration_s=7200",
              "cd" * 32, "traces/tmall.parquet", "101, 102, 103", "method=fixed",
              "warmup_s=600.0", prov["seeding"]):
        assert str(v) in text, v
    for variant, ov in CONTRACT_VARIANTS.items():  # each variant's own overrides
        assert f"overrides of variant {variant}" in text
        for o in ov:
            assert o in text
    assert "overrides none" not in text and FILE_NOTE not in text
    # the command, escaped, in a <pre>
    assert "<pre id='command'>" in rep.html and html.escape(prov["command"]) in rep.html
    assert "<cmp&1>" not in rep.html and prov["command"] in text
    # the scenario as run per variant, one <details> each, not the file on disk
    assert rep.html.count("<details") == len(CONTRACT_VARIANTS)
    assert set(rep.scenarios) == set(CONTRACT_VARIANTS)
    assert rep.scenarios["scheduled"]["scenario"]["cluster"]["pools"][0]["nodes"] == 3
    assert rep.scenarios["hpa"]["overrides"] == [*prov["overrides"], *CONTRACT_VARIANTS["hpa"]]
    # per policy: each class's SLO and violation rate with its CI (analysis.stats)
    title = next(t for t in rep.tables if t.startswith("Per policy"))
    table = rep.tables[title].set_index("variant")
    runs = contract_runs()
    for name in CONTRACT_VARIANTS:
        mine = runs[runs["variant"] == name]
        ci = stats.t_ci(mine["classes.home_feed.sla.violation_rate"])
        row = table.loc[name]
        assert row["home_feed: SLO (ms)"] == 100.0 and row["search: SLO (ms)"] == 250.0
        assert row["home_feed: SLA violation rate (0-1) mean"] == pytest.approx(ci.mean)
        assert row["home_feed: SLA violation rate (0-1) +-95% CI"] == pytest.approx(
            ci.half_width)
        per_day = mine["cost_usd.total"].mean() * 24 / (6600 / 3600)
        assert row["total cost (USD per day, scaled) mean"] == pytest.approx(per_day)
    # costs name their basis: the simulated window, and per day
    assert "USD per simulated window (22:10-00:00+1d, 1.83 h)" in title
    assert "per day = cost per window / 1.83 h x 24 h" in title
    # the timeline is drawn from timeseries.parquet with each class's SLO
    fig = rep.figures["compare_timeline"][0]
    assert {"home_feed SLO 100 ms", "search SLO 250 ms"} <= set(figure_texts(fig))


def test_compare_report_of_an_older_directory_labels_the_file_on_disk(tmp_path: Path) -> None:
    write_parquet(tmp_path / "runs.parquet", contract_runs())
    toml = ROOT / "scenarios" / "mmc_check.toml"
    write_json(tmp_path / "compare.json", {"scenario": str(toml), "baseline": "static-4",
                                           "variants": CONTRACT_VARIANTS})
    rep = build_report(tmp_path)
    page = Page(rep.html)
    assert rep.scenario_note == FILE_NOTE and FILE_NOTE in page.text
    assert "overrides none" not in page.text
    assert "not recorded with these results" in page.text
    assert CONTRACT_VARIANTS["scheduled"][1] in page.text  # compare.json's variants
    assert "compare_timeline" not in rep.figures  # no timeseries.parquet: still a report


def test_compare_report_shows_per_variant_overrides_without_a_provenance_block(
        tmp_path: Path) -> None:
    root = contract_compare_dir(tmp_path / "cmp", timeseries=False)
    doc = json.loads((root / "compare.json").read_text())
    del doc["provenance"]
    write_json(root / "compare.json", doc)
    page = Page(build_report(root).html)
    for variant, ov in CONTRACT_VARIANTS.items():
        assert f"overrides of variant {variant}" in page.text
        assert all(o in page.text for o in ov)
    assert "overrides none" not in page.text


def test_sweep_report_uses_the_scenario_as_run_of_sweep_json(tmp_path: Path) -> None:
    rep = build_report(contract_sweep_dir(tmp_path / "sw"))
    assert {"pareto", "calibration"} <= set(rep.figures)
    assert "cpu-x86: measured" in rep.provenance["calibration profiles"]
    assert rep.scenario_note == "as run (recorded in sweep.json)"
    assert rep.command == ("peaksim sweep scenarios/singles_mini.toml "
                           "--grid cluster.pools.cpu.nodes=2,4")
    assert "Reproduce" in Page(rep.html).text


def test_plan_without_a_recorded_scenario_does_not_claim_no_profile() -> None:
    rep = build_report(sweep_dir())
    assert rep.provenance["calibration profiles"].startswith("unknown")


@pytest.mark.parametrize("which", ["run", "compare", "contract", "sweep"])
def test_no_doubled_units_and_the_scenario_in_every_title(which: str, tmp_path: Path) -> None:
    path = {"run": run_dir, "compare": compare_dir, "contract": contract_compare,
            "sweep": lambda: contract_sweep_dir(tmp_path / "sw")}[which]()
    rep = build_report(path)
    name = {"run": "mini_peak", "compare": "mini_peak"}.get(which, "singles_mini")
    bad = [m.group(0) for m in DOUBLED.finditer(Page(rep.html).text)]
    assert not bad, bad
    for fig_name, (fig, _) in rep.figures.items():
        bad = [t for t in figure_texts(fig) if DOUBLED.search(t)]
        assert not bad, (fig_name, bad)
        assert fig.get_suptitle().startswith((f"{name}: ", f"Scenario {name}")), fig_name


def test_doubled_unit_pattern() -> None:
    for bad in ("p99_ms ms", "latency (ms) ms", "USD USD", "cost_usd usd", "wait ms (ms)"):
        assert DOUBLED.search(bad), bad
    for good in ("p99 latency (ms)", "SLO 100 ms", "USD per day", "ms per batch"):
        assert not DOUBLED.search(good), good


def test_run_report_timeline_has_each_class_slo_and_the_warmup() -> None:
    rep = build_report(run_dir(), render=False)
    p99 = rep.figures["timeline"][0].axes[3]
    got = {ln.get_gid(): ln.get_ydata()[0] for ln in p99.get_lines()
           if str(ln.get_gid()).startswith("slo")}
    assert got == {"slo:feed": 50.0, "slo:ads": 40.0}
    assert any(p.get_gid() == "warmup" for p in p99.patches)
    assert "latency_tail" in rep.figures
    headline = rep.tables["Headline figures"].set_index("metric")["value"]
    assert headline["cost basis"] == "USD per simulated window (23:30-23:34, 0.0611 h)"


def test_plan_report_uses_the_scenario_as_run_of_plan_json(tmp_path: Path) -> None:
    plan = json.loads((sweep_dir() / "plan.json").read_text())
    sc = contract_scenario()
    write_json(tmp_path / "plan.json", {**plan, "scenario_as_run": sc,
                                        "constraints": ["violation_rate<=0.01"],
                                        "provenance": {"command": "peaksim plan x.toml"}})
    rep = build_report(tmp_path)
    assert rep.scenario_note == "as run (recorded in plan.json)"
    assert rep.scenario is not None and rep.scenario["scenario"]["name"] == "singles_mini"
    assert "calibration" in rep.figures and rep.command == "peaksim plan x.toml"
    ax = rep.figures["pareto"][0].axes[0]
    assert any(ln.get_gid() == "constraint:violation_rate<=0.01" for ln in ax.get_lines())
