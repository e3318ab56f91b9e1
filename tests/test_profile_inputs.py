"""Profiles refuse what cannot be simulated, naming the field (issue 15, item 5, part):
NaN or infinite numbers, a fit that falls as the batch grows; profile project refuses
profiles it cannot project instead of a KeyError."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from simulator.cli import main
from simulator.profiles import ProfileError, load_profile

SHIPPED = Path(__file__).resolve().parents[1] / "scenarios" / "profiles"


def _write(tmp_path: Path, name: str, prof: dict[str, Any]) -> Path:
    p = tmp_path / f"{name}.json"
    p.write_text(json.dumps(prof))  # NaN and Infinity written as JSON allows Python to read
    return p


@pytest.mark.parametrize("where, value", [
    (("fit", "y_ms", 1), float("nan")), (("overhead_ms_per_batch",), float("inf")),
    (("overhead_ms_per_item",), float("nan")), (("latency_ms", "median", 0), float("inf")),
    (("load_time_s",), float("inf")),
])
def test_non_finite_numbers_are_refused(tmp_path: Path, where: tuple[Any, ...],
                                        value: float) -> None:
    prof = json.loads((SHIPPED / "cpu-x86.json").read_text())
    bad = copy.deepcopy(prof)
    node = bad["variants"]["fp32"]
    for k in where[:-1]:
        node = node[k]
    node[where[-1]] = value
    with pytest.raises(ProfileError, match="finite") as err:
        load_profile(_write(tmp_path, "nan", bad))
    assert "variants.fp32." + str(where[0]) in str(err.value)


def test_a_falling_fit_is_refused(tmp_path: Path) -> None:
    prof = json.loads((SHIPPED / "cpu-x86.json").read_text())
    fit = prof["variants"]["fp32"]["fit"]
    fit["y_ms"] = sorted(fit["y_ms"], reverse=True)
    with pytest.raises(ProfileError, match="must not decrease") as err:
        load_profile(_write(tmp_path, "falling", prof))
    assert "variants.fp32.fit" in str(err.value)


def test_every_shipped_profile_still_loads() -> None:
    for p in SHIPPED.glob("*.json"):
        assert load_profile(p).variants


@pytest.mark.parametrize("name", ["placeholder", "gpu-a10g"])
def test_profile_project_refuses_what_it_cannot_project(name: str, tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["profile", "project", str(SHIPPED / f"{name}.json"),
                                  "--gpu", "a10g", "--out", str(tmp_path / "p.json")])
    assert r.exit_code == 2, r.output
    assert "measured on a CPU" in r.output and not isinstance(r.exception, KeyError)
    assert not (tmp_path / "p.json").exists()
