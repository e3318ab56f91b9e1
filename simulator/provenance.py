"""Provenance of an experiment: what ran, from which inputs, and the command that re-runs it.

``compare``, ``plan`` and ``sweep`` write a ``provenance`` block into their JSON result: the
PeakSim and Python versions, the scenario file and every input file it names (calibration
profiles, traces, diurnal curves, spot and loan traces, plugin files) each with its SHA-256,
the global overrides and each variant's own, the experiment seed and the seed of every
replication, the warm-up and a shell command that reproduces the experiment. Reports show it; a
report can be turned back into the command that made it.
"""

from __future__ import annotations

import functools
import hashlib
import platform
import shlex
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from simulator.scenario import Scenario

Override = tuple[str, Any]


def sha256_of(path: Path) -> str | None:
    """SHA-256 hex digest of a file's bytes; None when it cannot be read.

    Remembered per (path, size, modification time): a sweep keys every point's runs on its
    input files, and a large trace is read once, not once per point."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return _digest(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _digest(path: str, size: int, mtime_ns: int) -> str | None:
    h = hashlib.sha256()
    try:
        with Path(path).open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def _input_fields(sc: Scenario) -> list[tuple[str, str, str]]:
    """(role, dotted field, path as written) of every file a scenario names."""
    found: list[tuple[str, str, str]] = []
    if sc.service is not None and sc.service.profile:
        found.append(("profile", "service.profile", sc.service.profile))
    if sc.service is not None and sc.service.serving:
        found.append(("serving_profile", "service.serving", sc.service.serving))
    for p in sc.cluster.pools:
        if p.service is not None and p.service.profile:
            found.append(("profile", f"cluster.pools.{p.name}.service.profile",
                          p.service.profile))
        if p.service is not None and p.service.serving:
            found.append(("serving_profile", f"cluster.pools.{p.name}.service.serving",
                          p.service.serving))
        if p.spot is not None and p.spot.trace:
            found.append(("spot_trace", f"cluster.pools.{p.name}.spot.trace", p.spot.trace))
        if p.borrow is not None and p.borrow.trace:
            found.append(("borrow_trace", f"cluster.pools.{p.name}.borrow.trace",
                          p.borrow.trace))
    for st in sc.stages or []:  # a cascade's stage and channel services
        svcs = [(f"stages.{st.name}.service", st.service)]
        svcs += [(f"stages.{st.name}.channels.{c.name}.service", c.service)
                 for c in st.channels]
        for where, svc in svcs:
            if svc is not None and svc.profile:
                found.append(("profile", f"{where}.profile", svc.profile))
            if svc is not None and svc.serving:
                found.append(("serving_profile", f"{where}.serving", svc.serving))
    arr = sc.workload.arrival
    if arr.process == "trace" and arr.trace is not None:
        found.append(("trace", "workload.arrival.trace.path", arr.trace.path))
    d = sc.workload.diurnal
    if d.kind == "file" and d.path:
        found.append(("diurnal", "workload.diurnal.path", d.path))
    for spec in sc.policy.plugins:
        if spec.endswith(".py") or "/" in spec:
            found.append(("plugin", "policy.plugins", spec))
    return found


def resolved_dump(sc: Scenario) -> dict[str, Any]:
    """The scenario as JSON with every input path replaced by the absolute path it was read
    from: a saved scenario (``scenario.json``) re-runs from any directory, reading the same
    files."""
    raw = sc.model_dump(mode="json")
    pools = {p["name"]: p for p in raw["cluster"]["pools"]}
    for _role, field, text in _input_fields(sc):
        path = str(sc.resolve_path(text))
        parts = field.split(".")
        if parts[0] == "cluster":
            node = pools[parts[2]]
            for k in parts[3:-1]:
                node = node[k]
            node[parts[-1]] = path
        elif parts[0] == "stages":  # stages.<stage>[.channels.<channel>].service.<key>
            node = next(x for x in raw["stages"] if x["name"] == parts[1])
            if parts[2] == "channels":
                node = next(x for x in node["channels"] if x["name"] == parts[3])
            node["service"][parts[-1]] = path
        elif field == "policy.plugins":
            raw["policy"]["plugins"] = [path if x == text else x
                                        for x in raw["policy"]["plugins"]]
        else:
            node = raw
            for k in parts[:-1]:
                node = node[k]
            node[parts[-1]] = path
    return raw


def input_files(sc: Scenario) -> list[dict[str, Any]]:
    """Every file a validated scenario reads, as ``{role, field, path, sha256}`` (no repeats)."""
    found = _input_fields(sc)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for role, field, text in found:
        path = sc.resolve_path(text)
        key = str(path.resolve()) if path.exists() else str(path)
        if key in seen:
            continue
        seen.add(key)
        out.append({"role": role, "field": field, "path": str(path), "sha256": sha256_of(path)})
    return out


def format_override(key: str, value: Any) -> str:
    """``key=value`` as the CLI reads it back (strings quoted only when needed)."""
    if isinstance(value, str):
        from simulator.scenario import parse_value

        plain = parse_value(value) == value and value == value.strip()
        return f"{key}={value}" if plain else f"{key}={_toml(value)}"
    if isinstance(value, bool):
        return f"{key}={'true' if value else 'false'}"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{k} = {_toml(v)}" for k, v in value.items())
        return f"{key}={{ {inner} }}"
    if isinstance(value, list | tuple):
        return f"{key}=[{', '.join(_toml(v) for v in value)}]"
    return f"{key}={value}"


def _toml(v: Any) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return str(v)


def command_line(command: str, source: str, options: Sequence[tuple[str, Any]]) -> str:
    """A shell command: ``peaksim COMMAND SOURCE --opt value ...`` (each part shell-quoted).

    ``options`` are ``(flag, value)`` pairs; a value of None writes the bare flag, a value
    of False or an empty string leaves the option out.
    """
    parts = ["peaksim", command, source]
    for flag, value in options:
        if value is False or value == "" or (value is None and not flag.startswith("--")):
            continue
        parts.append(flag)
        if value is not None and value is not True:
            parts.append(str(value))
    return " ".join(shlex.quote(p) for p in parts)


def provenance(sc: Scenario, *, source: str, overrides: Sequence[Override],
               seed: int, replication_seeds: Sequence[int], command: str,
               warmup: Mapping[str, Any] | None = None,
               variant_overrides: Mapping[str, Sequence[Override]] | None = None,
               extra_inputs: Sequence[Scenario] = ()) -> dict[str, Any]:
    """The provenance block of an experiment result (see the module docstring).

    ``sc`` is the scenario as validated with the global overrides; ``extra_inputs`` are the
    scenarios of variants or points, whose input files are added (a variant may name another
    profile or trace).
    """
    import simulator

    inputs = input_files(sc)
    for other in extra_inputs:
        have = {i["path"] for i in inputs}
        inputs += [i for i in input_files(other) if i["path"] not in have]
    src = Path(source)
    out: dict[str, Any] = {
        "peaksim_version": simulator.__version__,
        "python": platform.python_version(),
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command,
        "scenario": {"path": source, "sha256": sha256_of(src) if src.is_file() else None},
        "overrides": [format_override(k, v) for k, v in overrides],
        "inputs": inputs,
        "seed": seed,
        "replication_seeds": list(replication_seeds),
        "seeding": "replication r runs with SeedSequence(seed).spawn child r, the same at "
                   "every variant or point (common random numbers)",
    }
    if variant_overrides is not None:
        out["variant_overrides"] = {name: [format_override(k, v) for k, v in ov]
                                    for name, ov in variant_overrides.items()}
    if warmup is not None:
        out["warmup"] = dict(warmup)
    return out
