"""Policy plugins everywhere: a scenario's ``policy.plugins``, ``--plugin`` on every command, the
``peaksim.policies`` entry point group; imported in every worker (process pool, Dask); an import
failure names the module and the worker."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.metadata import requires
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from simulator import ScenarioError, load_scenario, run
from simulator.cli import main
from simulator.executors import DaskExecutor, PoolExecutor
from simulator.experiment import compare, sweep
from tests.conftest import ROOT, mmc_dict

PLUGIN = '''
from simulator.policies.registry import PolicyParams, register
from simulator.policies.routing import _random_ready


class Params(PolicyParams):
    pick: int = 0


@register("router", "{name}")
class FirstReady:
    """The lowest-numbered ready node, or node `pick` when it is ready."""

    Params = Params

    def __init__(self, pick: int = 0) -> None:
        self.pick = pick

    def choose(self, nodes, rng, now_s):
        if nodes.ready[self.pick]:
            return self.pick
        return int(nodes.ready.argmax())
'''


def _plugin(d: Path, name: str) -> Path:
    p = d / f"{name}.py"
    p.write_text(PLUGIN.format(name=name))
    return p


def _scenario(d: Path, router: str, plugins: list[str] | None = None) -> Path:
    raw = mmc_dict(c=2, lam=1.0, mean_ms=200.0, duration_s=300, warmup_s=0)
    raw["policy"].update(dispatch="per_node", routing={"name": router, "pick": 1})
    if plugins is not None:
        raw["policy"]["plugins"] = plugins
    import tomli_w

    p = d / "scenario.toml"
    p.write_text(tomli_w.dumps(raw))
    return p


def _nodes_used(res: Any) -> set[int]:
    return set(res.records["node"].unique())


def test_scenario_plugin_is_found_from_any_directory(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A .py plugin is named relative to the scenario's folder; the run works from elsewhere
    and the router receives its own parameter (pick = 1: every request to node 1)."""
    d = tmp_path / "proj"
    d.mkdir()
    _plugin(d, "plug_scn")
    sc_path = _scenario(d, "plug_scn", ["plug_scn.py"])
    monkeypatch.chdir(tmp_path)
    res = run(load_scenario(sc_path), records="all")
    assert _nodes_used(res) == {1}


def test_unknown_router_names_the_allowed_ones_without_the_plugin(tmp_path: Path) -> None:
    sc_path = _scenario(tmp_path, "plug_absent")
    with pytest.raises(ScenarioError, match=r"policy\.routing\.name.*unknown router "
                                            r"'plug_absent'; allowed: join_shortest_queue"):
        load_scenario(sc_path)


def test_plugin_option_on_every_command_with_process_workers(tmp_path: Path) -> None:
    """--plugin on run, validate, compare, sweep and plan; compare, sweep and plan run on two
    worker processes, which import the plugin themselves (they failed with 'unknown router')."""
    plug = _plugin(tmp_path, "plug_cli")
    sc = _scenario(tmp_path, "plug_cli")
    out = tmp_path / "out"
    cli = CliRunner()
    for args in (
        ["validate", str(sc)],
        ["run", str(sc), "--out", str(out / "run"), "--quiet", "--records", "all"],
        ["compare", str(sc), "--variant", "a", "--variant", "b:cluster.pools.gpu.nodes=3",
         "--replications", "2", "--workers", "2", "--out", str(out / "cmp")],
        ["sweep", str(sc), "--grid", "cluster.pools.gpu.nodes=2,3", "--workers", "2",
         "--out", str(out / "sweep")],
        ["plan", str(sc), "--vary", "cluster.pools.gpu.nodes:2..3",
         "--constraint", "violation_rate<=0.5", "--min-replications", "2",
         "--max-replications", "2", "--workers", "2"],
    ):
        r = cli.invoke(main, [*args, "--plugin", str(plug)])
        assert r.exit_code == 0, (args[0], r.output, r.exception)
    import pandas as pd

    rec = pd.read_parquet(out / "run" / "records.parquet")
    assert set(rec["node"].unique()) == {1}
    # without --plugin (a fresh process), the same command is refused with a clear message
    r2 = subprocess.run([sys.executable, "-m", "simulator.cli", "validate", str(sc)],
                        capture_output=True, text=True, timeout=120)
    assert r2.returncode == 2 and "unknown router 'plug_cli'" in r2.stderr, r2.stderr


@pytest.mark.filterwarnings("ignore::simulator.experiment.ExperimentWarning")
def test_dask_workers_import_the_plugin(tmp_path: Path) -> None:
    plug = _plugin(tmp_path, "plug_dask")
    sc = _scenario(tmp_path, "plug_dask")
    with DaskExecutor("local", 2) as ex:
        res = compare(sc, ["a", "b:cluster.pools.gpu.nodes=3"], replications=2, executor=ex,
                      plugins=[str(plug)])
    assert len(res.runs) == 4


def test_a_plugin_that_fails_to_import_names_module_and_worker(tmp_path: Path) -> None:
    bad = tmp_path / "plug_broken.py"
    bad.write_text("raise RuntimeError('boom in plugin')\n")
    sc = _scenario(tmp_path, "plug_cli", ["plug_broken.py"])
    with pytest.raises(ScenarioError) as exc:
        load_scenario(sc)
    msg = str(exc.value)
    assert "policy.plugins" in msg and "plug_broken.py" in msg and "boom in plugin" in msg
    assert "pid" in msg  # the worker that failed


def test_a_worker_that_cannot_import_a_plugin_says_so(tmp_path: Path) -> None:
    """The plugin exists where the experiment starts but not where the worker runs (as on a
    remote Dask worker): the worker's error names the module and itself."""
    d = tmp_path / "here"
    d.mkdir()
    plug = _plugin(d, "plug_gone")
    sc = _scenario(d, "plug_gone", [str(plug)])
    from simulator.experiment import load_base

    base = load_base(sc)
    plug.unlink()  # gone before the worker starts
    from simulator.executors import RunTask, run_task

    with PoolExecutor(1) as pool, pytest.raises(ScenarioError) as exc:
        list(pool.imap_unordered(run_task, [RunTask(base.raw, base.source, base.base_dir,
                                                    (), 1, {})]))
    assert "plug_gone.py" in str(exc.value) and "pid" in str(exc.value)


def test_policy_defined_in_main_is_refused_for_worker_processes(tmp_path: Path) -> None:
    """A policy registered from a script (``__main__``) runs with --workers 1; with worker
    processes the experiment stops at once and says how to fix it."""
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from simulator.policies.registry import register
        from simulator.experiment import compare
        from simulator.scenario import ScenarioError
        from tests.conftest import mmc_dict

        @register("router", "main_router")
        class MainRouter:
            def choose(self, nodes, rng, now_s):
                return int(nodes.ready.argmax())

        raw = mmc_dict(c=2, lam=1.0, mean_ms=200.0, duration_s=200, warmup_s=0)
        raw["policy"].update(dispatch="per_node", routing={{"name": "main_router"}})
        res = compare(raw, ["a", "b:cluster.pools.gpu.nodes=3"], replications=2, workers=1)
        print("serial", len(res.runs))
        try:
            compare(raw, ["a", "b:cluster.pools.gpu.nodes=3"], replications=2, workers=2)
        except ScenarioError as exc:
            print("refused", exc)
    """)
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True,
                         text=True, cwd=tmp_path, timeout=300)
    assert "serial 4" in out.stdout, out.stderr
    assert "refused" in out.stdout and "router 'main_router'" in out.stdout
    assert "--workers 1" in out.stdout and "policy.plugins" in out.stdout


def test_entry_point_group_registers_installed_policies(tmp_path: Path) -> None:
    """An installed package declaring ``[project.entry-points."peaksim.policies"]`` is loaded
    on first use: its router is usable by name with no import anywhere."""
    (tmp_path / "ep_policies.py").write_text(PLUGIN.format(name="ep_router"))
    dist = tmp_path / "ep_policies-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-policies\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[peaksim.policies]\nrouters = ep_policies\n")
    code = ("from simulator.policies import allowed_names; "
            "print('ep_router' in allowed_names('router'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"},
                         timeout=120)
    assert out.stdout.strip() == "True", out.stderr


def test_sweep_with_a_module_plugin_on_a_process_pool(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A dotted module name works too, from a working directory the console script does not
    put on its path; process workers import it by name."""
    _plugin(tmp_path, "plug_mod")
    monkeypatch.chdir(tmp_path)
    raw = mmc_dict(c=2, lam=1.0, mean_ms=200.0, duration_s=200, warmup_s=0)
    raw["policy"].update(dispatch="per_node", routing={"name": "plug_mod"},
                         plugins=["plug_mod"])
    with PoolExecutor(2) as pool:
        df = sweep(raw, {"cluster.pools.gpu.nodes": [2, 3]}, 1, executor=pool)
    assert len(df) == 2


def test_testing_tools_need_no_extras() -> None:
    """simulator.testing uses hypothesis and pytest: the package depends on them (not only
    through the dev extra), so it works after a plain install."""
    reqs = [r for r in requires("peaksim") or [] if "extra ==" not in r]
    names = {r.split(">")[0].split("=")[0].split("<")[0].strip().lower() for r in reqs}
    assert {"hypothesis", "pytest"} <= names
