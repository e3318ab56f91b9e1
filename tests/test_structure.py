"""The code's shape, checked: no import cycles; pure policies; the engine's parts meet only
through their interfaces (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("simulator", "analysis")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            rel = p.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = p
    return out


def _imports(path: Path, mods: dict[str, Path]) -> set[str]:
    """Project modules imported at module level (type-checking imports included: a type
    dependency is a dependency; imports inside functions are not)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from pkg import mod` needs pkg.mod; `from pkg import name` needs pkg
                names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods
                         else node.module for a in node.names]
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                for h in getattr(node, "handlers", []):
                    visit(h.body)
                visit(node.orelse)
                continue
            else:
                continue
            for n in names:
                while n and n not in mods:
                    n = n.rpartition(".")[0]
                if n:
                    found.add(n)

    visit(tree.body)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(p, mods) - {m} for m, p in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            strong(v)
    return out


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_policies_are_pure() -> None:
    """Policies import neither SimPy nor the engine."""
    g = _graph()
    for m, deps in g.items():
        if m.startswith("simulator.policies"):
            bad = {d for d in deps if d.startswith("simulator.engine")}
            assert not bad, f"{m} imports {bad}"
            path = _modules()[m]
            assert "import simpy" not in path.read_text(), f"{m} imports SimPy"


def test_engine_parts_meet_through_interfaces() -> None:
    """Only the Simulation assembles the parts: the fleet, server, observer and dispatchers
    do not import each other's modules (beyond the dispatcher interface and the server's
    batch types); nothing outside the engine imports its parts but the record."""
    g = _graph()
    parts = {"fleet", "server", "observer", "central", "push"}
    allowed = {
        "simulator.engine.central": {"server", "dispatch"},
        "simulator.engine.push": {"server", "dispatch", "degradation"},
        "simulator.engine.observer": {"server", "dispatch"},
        "simulator.engine.dispatch": {"server"},
        "simulator.engine.fleet": set(),
        "simulator.engine.server": set(),
    }
    for m, ok in allowed.items():
        used = {d.rsplit(".", 1)[-1] for d in g[m] if d.startswith("simulator.engine.")}
        assert used & (parts | {"dispatch", "degradation"}) <= ok, (m, used)
    for m, deps in g.items():
        if m.startswith("simulator.engine") or m in ("simulator.api",):
            continue
        inner = {d for d in deps if d.startswith("simulator.engine.")
                 and d.rsplit(".", 1)[-1] not in ("record", "recorder", "requests")}
        assert not inner, f"{m} reaches into the engine: {inner}"
