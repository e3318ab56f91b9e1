"""User text is text, names cannot choose paths, options are checked before any run, and a
missing optional dependency is named (issue 15, items 7-9)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from click.testing import CliRunner

from simulator.cli import main
from simulator.output import default_out_dir, safe_name
from tests.conftest import mmc_dict


def _toml(tmp_path: Path, **extra: Any) -> Path:
    p = tmp_path / "s.toml"
    p.write_text(tomli_w.dumps(mmc_dict(duration_s=200, warmup_s=20, **extra)))
    return p


def test_an_output_path_with_markup_is_printed_as_is(tmp_path: Path) -> None:
    src = _toml(tmp_path)
    out = tmp_path / "m[/x]" / "run[bold]"
    r = CliRunner().invoke(main, ["run", str(src), "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    assert f"results: {out}" in r.output.replace("\n", "")
    assert (out / "summary.json").is_file()


def test_error_hints_keep_their_brackets(tmp_path: Path) -> None:
    d = mmc_dict()
    del d["service"]
    p = tmp_path / "s.toml"
    p.write_text(tomli_w.dumps(d))
    r = CliRunner().invoke(main, ["validate", str(p)])
    assert r.exit_code == 2
    assert "[service]" in r.output  # was eaten as console markup


@pytest.mark.parametrize("name", ["../../x", "/etc/passwd", "a/b", "..", " ", "café[/b]"])
def test_scenario_names_cannot_choose_a_path(name: str, tmp_path: Path) -> None:
    root = tmp_path / "results"
    out = default_out_dir(name, root)
    assert out.parent == root and out.resolve().is_relative_to(root.resolve())
    assert "/" not in out.name and not out.name.startswith(".")
    assert safe_name("black_friday") == "black_friday"


def test_run_with_a_hostile_name_writes_under_results(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    src = _toml(tmp_path, name="../../escape")
    r = CliRunner().invoke(main, ["run", str(src), "--quiet"])
    assert r.exit_code == 0, r.output
    written = list((tmp_path / "results").glob("*/summary.json"))
    assert len(written) == 1 and not (tmp_path.parent / "escape").exists()


@pytest.mark.parametrize("args, words", [
    (["compare", "--variant", "a:", "--variant", "b:", "--replications", "-3"], "-3"),
    (["compare", "--variant", "a:", "--variant", "a:cluster.pools.gpu.nodes=9",
      "--replications", "2"], "more than once"),
    (["sweep", "--grid", "cluster.pools.gpu.nodes=8,9", "--replications", "0"], "0"),
    (["sweep", "--grid", "cluster.pools.gpu.nodes=8", "--metric", "p99"], "p99"),
    (["plan", "--vary", "cluster.pools.gpu.nodes:8..9", "--constraint", "violation<=0.1"],
     "violation"),
    (["plan", "--vary", "cluster.pools.gpu.nodes:8..9", "--constraint", "p99_ms<=100",
      "--objective", "costs"], "costs"),
    (["plan", "--vary", "cluster.pools.gpu.nodes:8..9", "--constraint", "p99_ms<=100",
      "--min-replications", "1"], "1"),
])
def test_bad_experiment_options_are_refused_before_any_run(tmp_path: Path, args: list[str],
                                                           words: str) -> None:
    src = _toml(tmp_path)
    cmd, rest = args[0], args[1:]
    r = CliRunner().invoke(main, [cmd, str(src), *rest, "--workers", "1",
                                  "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output
    assert words in r.output and "Traceback" not in r.output
    assert not isinstance(r.exception, KeyError)
    assert not (tmp_path / "o" / "runs.parquet").exists()


def test_calibrate_without_torch_says_how_to_install(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    for args in (["calibrate", "--quick", "--out", str(tmp_path / "p.json")],
                 ["validate-calibration"]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code != 0
        assert "peaksim[calibration]" in r.output, r.output
        assert not isinstance(r.exception, ModuleNotFoundError)
