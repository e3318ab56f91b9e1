"""The report's per-stage breakdown of a cascade: stacked mean latency per stage (segments =
the stages' means, the end-to-end mean marked), cost per stage, a timeline per stage (a line per
unit of a fork stage) and the stage table, for a run and for a comparison (means over
replications per variant); single-stage results get none of it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

import analysis.report as report_mod
from analysis.report import build_report, write_report
from simulator.cli import main

STAGES = ["recall", "rank"]
UNITS = ["recall/emb", "recall/i2i", "rank"]
NETWORK_MS = 2.0

BASE = """name = "tiny_cascade"
[simulation]
duration_s = 60
warmup_s = 10
seed = 7
timeseries_interval_s = 5
[workload]
arrival = { process = "poisson", rate_qps = 40.0 }
[service]
time = { distribution = "exponential", mean_ms = 10.0 }
[sla]
slo_ms = 500
[[cluster.pools]]
name = "e"
nodes = 2
[[cluster.pools]]
name = "i"
nodes = 2
[[cluster.pools]]
name = "b"
nodes = 3
"""

CASCADE = BASE + f"""
[[stages]]
name = "recall"
expands = true
network_ms = {NETWORK_MS}
channels = [{{ name = "emb", pools = ["e"], candidates_out = 200 }},
            {{ name = "i2i", pools = ["i"], candidates_out = 100 }}]
[[stages]]
name = "rank"
pools = ["b"]
service = {{ time = {{ distribution = "exponential", mean_ms = 20.0 }} }}
"""

VARIANTS = ["--variant", "low:workload.arrival.rate_qps=30",
            "--variant", "high:workload.arrival.rate_qps=60"]


def _cli(*args: str) -> None:
    res = CliRunner().invoke(main, list(args))
    assert res.exit_code == 0, res.output


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cascade_report")
    (root / "cascade.toml").write_text(CASCADE)
    (root / "single.toml").write_text(BASE)
    out = {k: root / k for k in ("run", "compare", "single_run", "single_compare")}
    _cli("run", str(root / "cascade.toml"), "--out", str(out["run"]))
    _cli("compare", str(root / "cascade.toml"), *VARIANTS, "--replications", "2",
         "--workers", "1", "--out", str(out["compare"]))
    _cli("run", str(root / "single.toml"), "--out", str(out["single_run"]))
    _cli("compare", str(root / "single.toml"), *VARIANTS, "--replications", "2",
         "--workers", "1", "--out", str(out["single_compare"]))
    return out


def _segments(fig: Figure) -> dict[str, list[Rectangle]]:
    """The stacked bars' patches by stage (gid ``stage:NAME``), in drawing order."""
    out: dict[str, list[Rectangle]] = {}
    for p in fig.axes[0].patches:
        gid = p.get_gid() or ""
        if isinstance(p, Rectangle) and gid.startswith("stage:"):
            out.setdefault(gid.split(":", 1)[1], []).append(p)
    return out


def _check_stacked(fig: Figure, means: dict[str, list[float]], e2e: list[float]) -> None:
    """Horizontal segments, one bar per row: widths = the stage means, each segment starting
    where the previous ends, the network hops last; the end-to-end means marked."""
    segs = _segments(fig)
    assert list(segs) == [*STAGES, "network hops"]
    n = len(e2e)
    left = np.zeros(n)
    for name in STAGES:
        assert np.allclose([p.get_x() for p in segs[name]], left)
        widths = np.array([p.get_width() for p in segs[name]])
        assert np.allclose(widths, means[name])
        left += widths
    assert np.allclose([p.get_width() for p in segs["network hops"]], NETWORK_MS)
    marks = next(c for c in fig.axes[0].collections if c.get_gid() == "e2e")
    assert np.allclose(marks.get_offsets()[:, 0], e2e)
    # the stages and the hop add up to about the end-to-end mean
    assert np.allclose(left + NETWORK_MS, e2e, rtol=0.1)


def test_run_report_has_the_stage_breakdown(dirs: dict[str, Path], tmp_path: Path) -> None:
    summary = json.loads((dirs["run"] / "summary.json").read_text())
    rep = build_report(dirs["run"])
    for name in ("stage_latency", "stage_cost", "stage_timeline"):
        assert name in rep.figures
    table = rep.tables["Stages (cascade, in order)"]
    assert list(table["stage"]) == STAGES
    st = summary["stages"]
    for col, key in (("mean latency (ms)", ("latency_ms", "mean")),
                     ("p50 latency (ms)", ("latency_ms", "p50")),
                     ("p99 latency (ms)", ("latency_ms", "p99")),
                     ("mean nodes", ("nodes", "mean")), ("skipped", ("requests", "skipped"))):
        assert np.allclose(table[col], [st[s][key[0]][key[1]] for s in STAGES])
    for col, key in (("share of e2e latency", "share_of_e2e_latency"),
                     ("utilisation", "utilization"), ("cost (USD)", "cost_usd")):
        assert np.allclose(table[col], [st[s][key] for s in STAGES])
    assert table["over-budget rate"].isna().all()  # no stage has a budget
    means = {s: [float(table.loc[table["stage"] == s, "mean latency (ms)"].iloc[0])]
             for s in STAGES}
    _check_stacked(rep.figures["stage_latency"][0], means, [summary["latency_ms"]["mean"]])
    cost = _segments(rep.figures["stage_cost"][0])
    assert {k: v[0].get_height() for k, v in cost.items()} == pytest.approx(
        {s: st[s]["cost_usd"] for s in STAGES})
    tl = rep.figures["stage_timeline"][0]
    panels = [ax for ax in tl.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in panels] == [f"stage {s}" for s in STAGES]
    assert [[ln.get_gid() for ln in ax.get_lines()] for ax in panels] == [UNITS[:2], UNITS[2:]]
    assert all(any(p.get_gid() == "warmup" for p in ax.patches) for ax in panels)
    page = write_report(dirs["run"], tmp_path).read_text()
    assert "Stages (cascade, in order)" in page and "fig-stage_timeline" in page
    assert (tmp_path / "stage_latency.png").is_file()


def test_compare_report_has_the_stage_breakdown_per_variant(dirs: dict[str, Path]) -> None:
    runs = pd.read_parquet(dirs["compare"] / "runs.parquet")
    rep = build_report(dirs["compare"])
    assert {"stage_latency", "stage_cost"} <= set(rep.figures)
    table = rep.tables["Stages per policy (cascade; means over replications)"]
    assert list(zip(table["variant"], table["stage"], strict=True)) == [
        (v, s) for v in ("low", "high") for s in STAGES]
    assert (table["replications"] == 2).all()
    by = runs.groupby("variant")
    means = {s: [by[f"stages.{s}.latency_ms.mean"].mean()[v] for v in ("low", "high")]
             for s in STAGES}
    for s in STAGES:
        assert np.allclose(table.loc[table["stage"] == s, "mean latency (ms)"], means[s])
    _check_stacked(rep.figures["stage_latency"][0], means,
                   [by["latency_ms.mean"].mean()[v] for v in ("low", "high")])
    ax = rep.figures["stage_latency"][0].axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["low", "high"]
    cost = _segments(rep.figures["stage_cost"][0])
    assert list(cost) == STAGES
    bottom = np.zeros(2)
    for s in STAGES:
        assert np.allclose([p.get_y() for p in cost[s]], bottom)
        h = np.array([p.get_height() for p in cost[s]])
        assert np.allclose(h, [by[f"stages.{s}.cost_usd"].mean()[v] for v in ("low", "high")])
        bottom += h


@pytest.mark.parametrize("which", ["single_run", "single_compare"])
def test_single_stage_reports_are_unchanged(dirs: dict[str, Path], which: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    rep = build_report(dirs[which], render=False)
    assert not any(k.startswith("stage") for k in rep.figures)
    assert not any("Stages" in k for k in rep.tables)
    monkeypatch.setattr(report_mod, "_cascade_run", lambda *a: None)
    monkeypatch.setattr(report_mod, "_cascade_compare", lambda *a: None)
    before = build_report(dirs[which], render=False)
    assert list(rep.figures) == list(before.figures)
    assert list(rep.tables) == list(before.tables)
    for k, df in rep.tables.items():
        if k != "Provenance":
            pd.testing.assert_frame_equal(df, before.tables[k])
