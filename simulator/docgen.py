"""Generate docs/scenario-reference.md from the scenario model (one row per field).

    .venv/bin/python -m simulator.docgen > docs/scenario-reference.md

A test checks the committed file is up to date, so the reference never drifts from the code.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from simulator.policies.registry import KINDS, allowed_names, params_model, policy_class
from simulator.scenario import Scenario, unwrap_annotation

_TABLE_OF_KIND = {"router": "policy.routing", "batcher": "policy.batching",
                  "autoscaler": "policy.autoscaling (and cluster.pools[].autoscaler)"}


def _type_name(ann: Any) -> str:
    origin = typing.get_origin(ann)
    if origin is typing.Literal:
        return " \\| ".join(f'`"{a}"`' for a in typing.get_args(ann))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(ann) if a is not type(None))
    if origin is typing.Annotated:
        return _type_name(typing.get_args(ann)[0])
    if origin is list:
        return f"list of {_type_name(typing.get_args(ann)[0])}"
    if origin is dict:
        return "table"
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "table"
    return getattr(ann, "__name__", str(ann))


def _models(model: type[BaseModel], prefix: str, out: list[tuple[str, type[BaseModel]]]) -> None:
    out.append((prefix, model))
    for name, f in model.model_fields.items():
        ann = unwrap_annotation(f.annotation)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            listy = typing.get_origin(f.annotation) is list
            _models(ann, f"{prefix}.{name}" + ("[]" if listy else "") if prefix else name, out)


def render() -> str:
    """The reference as Markdown."""
    lines = [
        "# Scenario reference",
        "",
        "Generated from `simulator/scenario.py` by `python -m simulator.docgen`; do not edit.",
        "Units are in the names: `_s` seconds, `_ms` milliseconds, `_qps` requests per second,",
        "`_usd` US dollars, `_w` watts, `_gb` gigabytes. `--set KEY=VALUE` reaches every field;",
        "list items by `name` or index (`cluster.pools.gpu.nodes=9`). Tables marked `[]` are",
        "arrays of tables (`[[cluster.pools]]`).",
        "",
    ]
    models: list[tuple[str, type[BaseModel]]] = []
    _models(Scenario, "", models)
    seen: set[str] = set()
    for prefix, model in models:
        if prefix in seen:
            continue
        seen.add(prefix)
        lines += [f"## `{prefix or '(top level)'}`", ""]
        doc = (model.__doc__ or "").strip()
        if model.model_config.get("extra") == "allow" and doc:
            lines += [doc.splitlines()[0], ""]
        lines += _field_table(model)
    lines += [
        "# Policy parameters",
        "",
        "A policy table names the policy and gives its own parameters, flat:",
        "`routing = { name = \"power_of_two\", d = 3 }`. Each policy receives only its own",
        "parameters; an unknown one is refused with the allowed list. The built-in policies",
        "follow; policies from plugins (`policy.plugins`, `--plugin`, the `peaksim.policies`",
        "entry point group) declare theirs the same way (a pydantic `Params` model).",
        "",
    ]
    for kind in KINDS:
        for name in allowed_names(kind):
            cls = policy_class(kind, name)
            if not getattr(cls, "__module__", "").startswith("simulator."):
                continue  # a plugin's policy
            doc = (cls.__doc__ or "").strip().splitlines()
            lines += [f"## {kind} `{name}` ({_TABLE_OF_KIND[kind]})", ""]
            if doc:
                lines += [doc[0], ""]
            model = params_model(kind, name)
            lines += _field_table(model) if model.model_fields else ["No parameters.", ""]
    return "\n".join(lines)


def _field_table(model: type[BaseModel]) -> list[str]:
    lines = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for name, f in model.model_fields.items():
        if f.is_required():
            default = "required"
        elif f.default_factory is not None:
            default = "(table)" if "Cfg" in str(f.annotation) else f"`{f.default_factory()!r}`"
        elif f.default is PydanticUndefined:
            default = ""
        else:
            default = f"`{f.default!r}`"
        desc = (f.description or "").replace("|", "\\|")
        lines.append(f"| `{name}` | {_type_name(f.annotation)} | {default} | {desc} |")
    lines.append("")
    return lines


if __name__ == "__main__":
    print(render())
