"""Bad scenarios fail with one clear message naming the file and the field."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import tomli_w
from hypothesis import given
from hypothesis import strategies as st

from simulator import ScenarioError, load_scenario, run, scenario_from_dict
from simulator.scenario import parse_value
from tests.conftest import mmc_dict

MMC_TOML = """\
name = "mmc-check"
[simulation]
duration_s = 20000
warmup_s = 2000
seed = 7
[workload]
arrival = { process = "poisson", rate_qps = 7.2 }
[service]
time = { distribution = "exponential", mean_ms = 1000 }
[[cluster.pools]]
name = "gpu"
nodes = 8
[policy]
dispatch = "central"
batching = { name = "none" }
[sla]
slo_ms = 3000
"""


def _write(tmp_path: Path, raw: dict | str) -> Path:
    p = tmp_path / "scenario.toml"
    p.write_text(raw if isinstance(raw, str) else tomli_w.dumps(raw))
    return p


def test_issue_minimal_file_loads_as_written(tmp_path: Path) -> None:
    sc = load_scenario(_write(tmp_path, MMC_TOML))
    assert sc.cluster.pools[0].nodes == 8
    assert sc.workload.arrival.rate_qps == 7.2


@pytest.mark.parametrize(
    ("mutate", "field", "hint"),
    [
        (lambda d: d["simulation"].update(duraton_s=5), "simulation.duraton_s", "allowed fields"),
        (lambda d: d["simulation"].update(duration_s="long"), "simulation.duration_s",
         "valid number"),
        (lambda d: d["workload"]["arrival"].update(rate_qps=-3), "workload.arrival.rate_qps",
         "greater than 0"),
        (lambda d: d["service"]["time"].update(distribution="weibull"),
         "service.time.distribution", "'exponential'"),
        (lambda d: d["cluster"]["pools"][0].update(nodes=0), "cluster.pools.gpu.nodes",
         "greater than or equal to 1"),
        (lambda d: d["cluster"].update(pools=[]), "cluster.pools", "at least 1"),
        (lambda d: d.update(service={"profile": "nope/missing.json", "variant": "int8"}),
         "service.profile", "not found"),
        (lambda d: d["policy"].update(routing={"name": "fastest"}), "policy.routing.name",
         "allowed: join_shortest_queue"),
        (lambda d: d["policy"].update(dispatch="push"), "policy.dispatch", "'central'"),
        (lambda d: d.pop("sla"), "sla", "required"),
    ],
)
def test_bad_field_is_named(tmp_path: Path, mutate, field: str, hint: str) -> None:
    raw = mmc_dict()
    mutate(raw)
    p = _write(tmp_path, raw)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(p)
    msg = str(exc.value)
    assert str(p) in msg
    assert f"'{field}" in msg
    assert hint in msg


def test_wrong_variant_lists_allowed(tmp_path: Path, root: Path) -> None:
    raw = mmc_dict()
    raw["service"] = {"profile": str(root / "scenarios/profiles/placeholder.json"),
                      "variant": "fp64"}
    with pytest.raises(ScenarioError, match=r"allowed: fp32, int8"):
        load_scenario(_write(tmp_path, raw))


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(_write(tmp_path, "name = [unclosed"))
    with pytest.raises(ScenarioError, match="not found"):
        load_scenario(tmp_path / "absent.toml")


def test_set_overrides_reach_list_items_by_name_and_index(tmp_path: Path) -> None:
    p = _write(tmp_path, MMC_TOML)
    assert load_scenario(p, ["cluster.pools.gpu.nodes=9"]).cluster.pools[0].nodes == 9
    assert load_scenario(p, ["cluster.pools.0.nodes=3"]).cluster.pools[0].nodes == 3
    sc = load_scenario(p, ["policy.batching={ name = 'dynamic', max_batch = 8 }"])
    assert sc.policy.batching.max_batch == 8
    with pytest.raises(ScenarioError, match=r"no list item named or numbered 'cpu'"):
        load_scenario(p, ["cluster.pools.cpu.nodes=3"])
    with pytest.raises(ScenarioError, match=r"cluster\.pools\.gpu\.nodes"):
        load_scenario(p, ["cluster.pools.gpu.nodes=many"])


def test_bad_trace_column_is_a_clean_error(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text("ts\n0.1\n0.2\n")
    raw = mmc_dict(duration_s=10, warmup_s=0)
    raw["workload"]["arrival"] = {"process": "trace",
                                  "trace": {"path": str(csv), "column": "time"}}
    with pytest.raises(ScenarioError, match="column 'time' not found"):
        run(load_scenario(_write(tmp_path, raw)))


# ---------------------------------------------------------------- random malformed scenarios
_BAD_VALUES = st.sampled_from(["abc", -1, -0.5, 0, [], {}, True, 1e308, "nan", None])


def _paths(d: object, prefix: tuple = ()) -> list[tuple]:
    out = []
    if isinstance(d, dict):
        for k, v in d.items():
            out.append((*prefix, k))
            out += _paths(v, (*prefix, k))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out += _paths(v, (*prefix, i))
    return out


@given(data=st.data())
def test_random_malformed_scenarios_fail_cleanly(tmp_path_factory, data) -> None:
    raw = copy.deepcopy(mmc_dict())
    paths = _paths(raw)
    path = data.draw(st.sampled_from(paths))
    action = data.draw(st.sampled_from(["delete", "replace", "add_unknown"]))
    parent = raw
    for k in path[:-1]:
        parent = parent[k]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "replace":
        value = data.draw(_BAD_VALUES)
        if value is None:
            del parent[last]
        else:
            parent[last] = value
    else:
        target = parent[last] if isinstance(parent[last], dict) else parent
        target["zz_unknown"] = 1
    p = tmp_path_factory.mktemp("bad") / "s.toml"
    p.write_text(tomli_w.dumps(raw))
    try:
        sc = load_scenario(p)
    except ScenarioError as exc:
        msg = str(exc)
        assert msg.startswith(str(p)), msg
        assert "field '" in msg or "not valid TOML" in msg
        return
    # some replacements are still valid (e.g. seed = 0): they must then run cleanly
    if action == "add_unknown":
        pytest.fail(f"unknown field accepted at {path}")
    sc.simulation.duration_s = min(sc.simulation.duration_s, 50.0)
    sc.simulation.warmup_s = 0.0
    run(sc)


def test_parse_value_types() -> None:
    assert parse_value("3") == 3
    assert parse_value("2.5") == 2.5
    assert parse_value("true") is True
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value("round_robin") == "round_robin"


@pytest.mark.parametrize(
    ("policy", "pool", "fields"),
    [
        ({"dispatch": "central", "routing": {"name": "power_of_two", "d": 3}}, {},
         ("policy.routing", "policy.dispatch")),
        ({"dispatch": "per_node", "pool_preference": "fastest"}, {},
         ("policy.pool_preference", "policy.dispatch")),
        ({}, {"weight": 2.0}, ("cluster.pools.gpu.weight", "policy.pool_preference")),
        ({"degradation": {"enabled": True, "mode": "variant"}}, {},
         ("fallback_variant",)),
        ({"degradation": {"enabled": True, "mode": "cache", "fallback_variant": "int8"}}, {},
         ("fallback_variant", "mode 'variant'")),
        ({"degradation": {"enabled": True, "mode": "variant", "fallback_variant": "int8"}}, {},
         ("policy.degradation.mode", "analytic service")),
        ({"batching": {"name": "none", "max_batch": 4}}, {},
         ("policy.batching", "batcher 'none': unknown parameter 'max_batch'")),
        ({"autoscaling": {"name": "hpa", "tagret": 0.5}}, {},
         ("policy.autoscaling", "unknown parameter 'tagret'", "allowed: metric, target")),
    ],
)
def test_settings_a_mode_does_not_use_are_refused(policy: dict, pool: dict,
                                                   fields: tuple[str, ...]) -> None:
    """A setting is honoured in every mode or refused at validation, naming the settings
    (these used to validate and then be ignored, or fail only when run)."""
    raw = mmc_dict()
    raw["policy"].update(policy)
    raw["cluster"]["pools"][0].update(pool)
    with pytest.raises(ScenarioError) as exc:
        scenario_from_dict(raw)
    for f in fields:
        assert f in str(exc.value)


def test_a_fallback_variant_missing_from_the_profile_is_refused(root: Path) -> None:
    raw = mmc_dict(service={"profile": str(root / "scenarios/profiles/cpu-x86.json"),
                            "variant": "fp32"})
    raw["service"].pop("time", None)
    raw["policy"]["degradation"] = {"enabled": True, "mode": "variant",
                                    "fallback_variant": "nope"}
    with pytest.raises(ScenarioError, match=r"policy\.degradation\.fallback_variant.*nope"):
        scenario_from_dict(raw)
