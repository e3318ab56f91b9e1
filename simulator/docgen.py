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


def _num(x: Any) -> str:
    """A bound as written in the reference: 100,000, 0.001, 1e+09."""
    if isinstance(x, int) and abs(x) < 10**7:
        return f"{x:,}"
    if isinstance(x, int):
        return f"{x:.3g}" if x < 2**62 else f"2^{round(x.bit_length() - 1)}"
    return f"{x:g}"


def _bounds_of(metadata: list[Any]) -> tuple[str, str]:
    """(lower, upper) bound text from constraints (annotated_types Gt/Ge/Lt/Le): the
    tightest of each side when several apply (a type's > 0 and a field's >= 0.001)."""
    lows: list[tuple[float, int, str]] = []
    highs: list[tuple[float, int, str]] = []
    for m in metadata:
        for attr, sign, strict, out in (("gt", ">", 1, lows), ("ge", ">=", 0, lows),
                                        ("lt", "<", 1, highs), ("le", "<=", 0, highs)):
            v = getattr(m, attr, None)
            if v is not None:
                out.append((v, strict, f"{sign} {_num(v)}"))
    lo = max(lows, key=lambda x: (x[0], x[1]))[2] if lows else ""
    hi = min(highs, key=lambda x: (x[0], -x[1]))[2] if highs else ""
    return lo, hi


def _range(f: Any) -> str:
    """The allowed range of a field (its own bounds and those of the number type it wraps),
    e.g. '> 0, <= 1e+08'; every float is finite (no NaN, no infinity)."""
    metas = list(f.metadata)
    ann = f.annotation
    for _ in range(4):  # X | None, list[X], Annotated[X, ...]
        origin = typing.get_origin(ann)
        if origin in (typing.Union, types.UnionType):
            ann = next(a for a in typing.get_args(ann) if a is not type(None))
        elif origin is list:
            ann = typing.get_args(ann)[0]
        elif origin is typing.Annotated:
            args = typing.get_args(ann)
            for extra in args[1:]:
                metas += list(getattr(extra, "metadata", [extra]))
            ann = args[0]
        else:
            break
    return ", ".join(x for x in _bounds_of(metas) if x)


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
        "arrays of tables (`[[cluster.pools]]`). A number's allowed range follows its type;",
        "every float is finite (NaN and infinities are refused). Bounds keep a run finishable;",
        "before a run starts, `peaksim validate` and `peaksim run` also estimate its run time",
        "and memory from all the values together and refuse a run that cannot finish",
        "(`simulator/preflight.py`).",
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
        rng = _range(f)
        kind = _type_name(f.annotation) + (f" ({rng})" if rng else "")
        lines.append(f"| `{name}` | {kind} | {default} | {desc} |")
    lines.append("")
    return lines


if __name__ == "__main__":
    print(render())
