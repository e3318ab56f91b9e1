"""Guard rails on calibration profiles (issue 16, item 5): batches past the measured range warn
(validate, run, the summary) and are refused under --strict; test profiles (calibrate --quick)
warn on every run; ``profile show`` says items, explains the fit error and shows overheads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from simulator.cli import main

ROOT = Path(__file__).resolve().parents[1]
CPU = ROOT / "scenarios" / "profiles" / "cpu-x86.json"


def _profile(tmp: Path, sizes: list[int] | None = None, purpose: str | None = None,
             name: str = "small.json") -> Path:
    """cpu-x86 (fp32 and int8) cut to ``sizes`` (items), with ``purpose`` when given."""
    raw = json.loads(CPU.read_text())
    raw["variants"] = {k: raw["variants"][k] for k in ("fp32", "int8")}
    if sizes is not None:
        for v in raw["variants"].values():
            idx = [v["batch_sizes"].index(s) for s in sizes]
            v["batch_sizes"] = sizes
            v["latency_ms"] = {k: [vals[i] for i in idx]
                               for k, vals in v["latency_ms"].items()}
            v["fit"]["x"] = [float(s) for s in sizes]
            v["fit"]["y_ms"] = [v["fit"]["y_ms"][i] for i in idx]
    raw.pop("purpose", None)
    if purpose is not None:
        raw["purpose"] = purpose
    out = tmp / name
    out.write_text(json.dumps(raw))
    return out


def _scenario(tmp: Path, profile: Path, max_batch_items: int | None = 64,
              size_max: int = 64, variant: str = "fp32") -> Path:
    items = f", max_batch_items = {max_batch_items}" if max_batch_items else ""
    text = f"""
name = "guards"
[simulation]
duration_s = 20
warmup_s = 2
seed = 3
records = "none"
[workload]
arrival = {{ process = "poisson", rate_qps = 200 }}
[[workload.classes]]
name = "default"
share = 1.0
size = {{ distribution = "lognormal", mean = 20, sigma = 0.5, max = {size_max} }}
[service]
profile = "{profile.name}"
variant = "{variant}"
[[cluster.pools]]
name = "cpu"
nodes = 4
[policy]
batching = {{ name = "dynamic", max_batch = 8, max_wait_ms = 1.0{items} }}
[sla]
slo_ms = 100
"""
    p = tmp / "guards.toml"
    p.write_text(text)
    return p


def test_beyond_range_warns_in_validate_and_summary(tmp_path: Path) -> None:
    prof = _profile(tmp_path, [1, 8, 32])  # measured up to 32 items
    sc = _scenario(tmp_path, prof, max_batch_items=1024, size_max=1024)
    res = CliRunner().invoke(main, ["validate", str(sc)])
    assert res.exit_code == 0, res.output
    err = res.stderr
    assert "extrapolating 32x past the measured range" in err
    assert "pool 'cpu'" in err and "variant 'fp32'" in err and "1,024 items" in err
    assert "measured up to 32 items" in err

    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["run", str(sc), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "extrapolating 32x" in res.stderr
    assert "past the 32 items measured" in res.stderr  # after the run, --quiet or not
    s = json.loads((out / "summary.json").read_text())
    g = s["profile_guards"]
    assert g["largest_possible_batch_items"] == 1024
    assert g["pools"]["cpu"]["measured_max_items"] == {"fp32": 32}
    assert any("extrapolating 32x" in w for w in g["warnings"])
    # the largest batch actually formed, in items, against the measured range
    assert g["largest_formed_batch_items"] > 32
    assert "past the 32 items measured" in g["formed_note"]


def test_within_range_is_quiet(tmp_path: Path) -> None:
    prof = _profile(tmp_path, [1, 8, 32])
    sc = _scenario(tmp_path, prof, max_batch_items=64, size_max=64)  # 64 = 2 x 32: allowed
    res = CliRunner().invoke(main, ["validate", str(sc), "--strict"])
    assert res.exit_code == 0, res.output
    assert "warning" not in res.stderr
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["run", str(sc), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    g = json.loads((out / "summary.json").read_text())["profile_guards"]
    assert g["warnings"] == [] and g["largest_possible_batch_items"] == 64
    assert 0 < g["largest_formed_batch_items"] <= 64


def test_largest_batch_without_item_cap(tmp_path: Path) -> None:
    """Without max_batch_items a batch holds max_batch x the largest request."""
    prof = _profile(tmp_path, [1, 8, 32])
    sc = _scenario(tmp_path, prof, max_batch_items=None, size_max=16)  # 8 x 16 = 128 > 64
    res = CliRunner().invoke(main, ["validate", str(sc)])
    assert res.exit_code == 0
    assert "batches of 128 items" in res.stderr and "extrapolating 4x" in res.stderr


def test_degradation_fallback_variant_is_checked(tmp_path: Path) -> None:
    raw = json.loads(_profile(tmp_path, [1, 8, 32, 64]).read_text())
    int8 = raw["variants"]["int8"]  # int8 measured to 8 items only
    for k in ("median", "p99", "mean"):
        int8["latency_ms"][k] = int8["latency_ms"][k][:2]
    int8["batch_sizes"], int8["fit"]["x"] = [1, 8], [1.0, 8.0]
    int8["fit"]["y_ms"] = int8["fit"]["y_ms"][:2]
    prof = tmp_path / "mixed.json"
    prof.write_text(json.dumps(raw))
    sc = _scenario(tmp_path, prof, max_batch_items=64, size_max=64)
    ok = CliRunner().invoke(main, ["validate", str(sc)])
    assert ok.exit_code == 0 and "warning" not in ok.stderr
    res = CliRunner().invoke(main, [
        "validate", str(sc), "--set", "policy.degradation.enabled=true",
        "--set", "policy.degradation.mode=variant",
        "--set", "policy.degradation.fallback_variant=int8"])
    assert res.exit_code == 0, res.output
    assert "variant 'int8'" in res.stderr and "extrapolating 8x" in res.stderr


@pytest.mark.parametrize("command", ["validate", "run"])
def test_strict_refuses_naming_the_field(tmp_path: Path, command: str) -> None:
    prof = _profile(tmp_path, [1, 8, 32])
    sc = _scenario(tmp_path, prof, max_batch_items=1024, size_max=1024)
    args = [command, str(sc), "--strict"]
    if command == "run":
        args += ["--out", str(tmp_path / "run")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    assert "field 'service.profile'" in res.stderr
    assert "extrapolating 32x" in res.stderr and "--strict" in res.stderr
    assert not (tmp_path / "run" / "summary.json").exists()


def test_test_profile_warns_on_every_run(tmp_path: Path) -> None:
    prof = _profile(tmp_path, purpose="test")  # full range: only the purpose warns
    sc = _scenario(tmp_path, prof)
    res = CliRunner().invoke(main, ["validate", str(sc)])
    assert res.exit_code == 0
    assert "is a test profile (calibrate --quick" in res.stderr
    assert "not for capacity decisions" in res.stderr
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["run", str(sc), "--out", str(out), "--quiet"])
    assert res.exit_code == 0 and "is a test profile" in res.stderr
    g = json.loads((out / "summary.json").read_text())["profile_guards"]
    assert g["pools"]["cpu"]["purpose"] == "test"
    assert any("test profile" in w for w in g["warnings"])
    res = CliRunner().invoke(main, ["validate", str(sc), "--strict"])
    assert res.exit_code == 2 and "field 'service.profile'" in res.stderr
    # a production profile: nothing
    prod = _profile(tmp_path, purpose="production", name="prod.json")
    res = CliRunner().invoke(main, ["validate", str(_scenario(tmp_path, prod)), "--strict"])
    assert res.exit_code == 0 and "warning" not in res.stderr


def test_old_profiles_without_purpose_load() -> None:
    from simulator.profiles import load_profile

    for f in sorted((ROOT / "scenarios" / "profiles").glob("*.json")):
        prof = load_profile(f)
        assert prof.purpose in (None, "production")
    shipped = ROOT / "scenarios" / "steady_day.toml"
    res = CliRunner().invoke(main, ["validate", str(shipped), "--strict"])
    assert res.exit_code == 0, res.output


def test_purpose_is_checked(tmp_path: Path) -> None:
    from simulator.profiles import ProfileError, load_profile

    with pytest.raises(ProfileError, match="purpose"):
        load_profile(_profile(tmp_path, purpose="staging"))


def test_profile_show_items_held_out_error_and_overheads(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["profile", "show", str(_profile(tmp_path))],
                             env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    out = res.output
    assert "items" in out and "┃ batch" not in out
    assert "in-sample" in out and "held-out" in out and "leave-one-out" in out
    # fp32: in-sample 0% at every point but 8.8% held out, as stored
    assert "fit error in-sample 0.0%, held-out 8.8%" in out
    # int8's 14 us per item serving overhead is visible, with what it adds
    assert "+0.0141 ms/item (14.1 us/item)" in out
    assert "ms at 16 items" in out and "+ overheads ms" in out


def test_held_out_errors_predict_left_out_points() -> None:
    from simulator.calibration.fit import held_out_errors

    # a straight line is predicted exactly; a kink is not
    assert held_out_errors("piecewise_linear", [1, 2, 3], [1.0, 2.0, 3.0]) == [None, 0.0, None]
    e = held_out_errors("piecewise_linear", [1, 2, 3], [1.0, 3.0, 3.0])
    assert e[1] == pytest.approx(1 / 3)
    e = held_out_errors("affine", [1, 2, 3, 4], [2.0, 3.0, 4.0, 5.0])
    assert e[1] == pytest.approx(0.0, abs=1e-9) and e[2] == pytest.approx(0.0, abs=1e-9)


def test_calibrate_writes_purpose() -> None:
    import inspect

    from simulator.calibration import build

    assert inspect.signature(build.make_profile).parameters["purpose"].default == "production"
    src = (ROOT / "simulator" / "calibration" / "cli.py").read_text()
    assert 'purpose="test" if quick else "production"' in src


def test_profile_plot_draws_service_time(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "p.png"
    res = CliRunner().invoke(main, ["profile", "show", str(_profile(tmp_path)), "--plot",
                                    str(png)])
    assert res.exit_code == 0 and png.stat().st_size > 0
    from analysis.calibration_plots import calibration_latency

    fig = calibration_latency(_profile(tmp_path))
    gids = {ln.get_gid() for ax in fig.axes for ln in ax.lines}
    assert {"int8:fit", "int8:serving"} <= gids


def test_sweep_prints_guard_warnings_once(tmp_path: Path) -> None:
    prof = _profile(tmp_path, [1, 8, 32], purpose="test")
    sc = _scenario(tmp_path, prof, max_batch_items=1024, size_max=1024)
    res = CliRunner().invoke(main, ["sweep", str(sc), "--grid", "cluster.pools.cpu.nodes=3,4",
                                    "--out", str(tmp_path / "sw"), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert res.stderr.count("extrapolating 32x") == 1
    assert res.stderr.count("is a test profile") == 1


@pytest.mark.parametrize("argv", [
    ["compare", "--variant", "small:policy.batching.max_batch_items=64",
     "--variant", "big:policy.batching.max_batch_items=1024", "--replications", "2"],
    ["sweep", "--grid", "policy.batching.max_batch_items=64,1024"],
    ["plan", "--vary", "policy.batching.max_batch_items=64,1024", "--vary",
     "cluster.pools.cpu.nodes:1..8", "--constraint", "violation_rate<=0.5"],
], ids=["compare", "sweep", "plan"])
def test_strict_experiments_refuse_a_stretching_variant_before_any_run(
        tmp_path: Path, argv: list[str]) -> None:
    """The base scenario is within range; one variant / point is not: --strict refuses it,
    naming it, before any run (no run kept in --out); without --strict the same command
    only warns."""
    prof = _profile(tmp_path, [1, 8, 32])
    sc = _scenario(tmp_path, prof, max_batch_items=64, size_max=64)  # 8 x 64 capped at 64
    out = tmp_path / "exp"
    args = [argv[0], str(sc), *argv[1:], "--workers", "1", "--out", str(out)]
    res = CliRunner().invoke(main, [*args, "--strict"])
    assert res.exit_code == 2, res.output
    assert ("variant 'big'" in res.stderr or 'max_batch_items": 1024' in res.stderr), res.stderr
    assert "batches of 512 items" in res.stderr and "extrapolating 16x" in res.stderr
    assert "refused under --strict" in res.stderr
    assert not list((out / "runs").glob("*.parquet")) if (out / "runs").exists() else True
