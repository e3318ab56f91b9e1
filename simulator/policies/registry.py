"""A registry of policies by kind and name, each with its parameter model (as Vidur registers
each extension point with one config class).

Users add their own policy with ``@register("router", "my_router")`` and name it in a scenario
(``policy.routing = { name = "my_router", ... }``). Each policy declares its parameters as a
pydantic model, its ``Params`` class attribute; without one, the model is derived from the
constructor's keyword parameters (their annotations and defaults; a ``**kwargs`` accepts any
extra parameter). A policy receives only its own parameters: unknown ones are refused with the
allowed list (:func:`validate_params`), before anything runs.

Policies come from the built-ins, from plugin modules (``policy.plugins`` in a scenario,
``--plugin`` on the command line: :func:`load_plugins`) and from installed packages that
declare an entry point in the group ``peaksim.policies`` (loaded on first use).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import socket
import sys
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from simulator.input_copies import local_copy

T = TypeVar("T")

KINDS = ("router", "batcher", "autoscaler")
ENTRY_POINT_GROUP = "peaksim.policies"
_REGISTRY: dict[str, dict[str, Callable[..., Any]]] = {k: {} for k in KINDS}
_PARAMS: dict[tuple[str, str], type[BaseModel]] = {}
_loaded_entry_points = False
_plugins: dict[str, str] = {}  # plugin spec -> module name, once imported


class PluginError(ImportError):
    """A plugin module could not be imported (the message names the module and the worker)."""


class PolicyParams(BaseModel):
    """Base of the policies' parameter models: unknown parameters are refused."""

    model_config = ConfigDict(extra="forbid")


def register(kind: str, name: str) -> Callable[[T], T]:
    """Class decorator: make ``name`` usable in scenarios for policies of ``kind``."""
    if kind not in _REGISTRY:
        raise ValueError(f"unknown policy kind '{kind}'; allowed: {', '.join(KINDS)}")

    def deco(cls: T) -> T:
        _REGISTRY[kind][name] = cls  # type: ignore[assignment]
        _PARAMS.pop((kind, name), None)
        return cls

    return deco


def unregister(kind: str, name: str) -> None:
    """Remove a registered policy (e.g. a test's deliberately broken one); no-op if absent."""
    _REGISTRY.get(kind, {}).pop(name, None)
    _PARAMS.pop((kind, name), None)


def _ensure_loaded() -> None:
    import simulator.policies  # noqa: F401  (the built-ins register on import)

    global _loaded_entry_points
    if _loaded_entry_points:
        return
    _loaded_entry_points = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # an installed package's broken plugin must name itself
            raise PluginError(f"policy entry point '{ep.name}' ({ep.value}, group "
                              f"{ENTRY_POINT_GROUP}) failed to load on {worker_name()}: "
                              f"{type(exc).__name__}: {exc}") from exc


def allowed_names(kind: str) -> list[str]:
    """Registered names of one kind, sorted (built-ins, plugins and entry points)."""
    _ensure_loaded()
    return sorted(_REGISTRY[kind])


def policy_class(kind: str, name: str) -> Callable[..., Any]:
    """The class registered as ``name``; a clear error lists the allowed names."""
    _ensure_loaded()
    try:
        return _REGISTRY[kind][name]
    except KeyError:
        raise ValueError(
            f"unknown {kind} '{name}'; allowed: {', '.join(allowed_names(kind))}"
        ) from None


def params_model(kind: str, name: str) -> type[BaseModel]:
    """The parameter model of a registered policy (declared ``Params``, else derived)."""
    key = (kind, name)
    if key not in _PARAMS:
        cls = policy_class(kind, name)
        declared = getattr(cls, "Params", None)
        if isinstance(declared, type) and issubclass(declared, BaseModel):
            _PARAMS[key] = declared
        else:
            _PARAMS[key] = _derive(cls, f"{kind}_{name}")
    return _PARAMS[key]


def _derive(cls: Callable[..., Any], model_name: str) -> type[BaseModel]:
    """A parameter model from a constructor's keyword parameters."""
    fields: dict[str, Any] = {}
    extra = "forbid"
    init = cls.__init__ if isinstance(cls, type) else cls
    try:
        sig = inspect.signature(init)
        hints = _hints(init)
    except (TypeError, ValueError):
        return create_model(model_name, __config__=ConfigDict(extra="allow"))
    for pname, p in sig.parameters.items():
        if pname == "self" or p.kind is p.VAR_POSITIONAL:
            continue
        if p.kind is p.VAR_KEYWORD:
            extra = "allow"
            continue
        ann = hints.get(pname, Any)
        default = ... if p.default is p.empty else p.default
        fields[pname] = (ann, default)
    return create_model(model_name, __config__=ConfigDict(extra=extra,  # type: ignore[call-overload]
                                                          arbitrary_types_allowed=True),
                        **fields)


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations: accept any value
        return {}


def validate_params(kind: str, name: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """``params`` checked against the policy's model: the validated parameters (defaults
    filled in). Raises ValueError naming the policy, the parameter and the allowed ones."""
    model = params_model(kind, name)
    try:
        m = model.model_validate(dict(params or {}))
    except ValidationError as exc:
        raise ValueError(describe_errors(kind, name, model, exc)) from None
    out = m.model_dump()
    if m.model_extra:
        out.update(m.model_extra)
    return out


def describe_errors(kind: str, name: str, model: type[BaseModel], exc: ValidationError) -> str:
    """One line per problem: '<kind> '<name>': ...' with the allowed parameters."""
    allowed = ", ".join(model.model_fields) or "none"
    lines = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            lines.append(f"{kind} '{name}': unknown parameter '{loc}'; allowed: {allowed}")
        elif err["type"] == "missing":
            lines.append(f"{kind} '{name}': parameter '{loc}' is required")
        elif loc:
            lines.append(f"{kind} '{name}': {loc}: {msg} (got {err.get('input')!r})")
        else:
            lines.append(f"{kind} '{name}': {msg}")
    return "; ".join(lines)


def parse_params(kind: str, name: str, model: type[T], params: Mapping[str, Any]) -> T:
    """A built-in policy's constructor: its parameters validated by its own model."""
    try:
        return model.model_validate(dict(params))  # type: ignore[attr-defined, no-any-return]
    except ValidationError as exc:
        raise ValueError(describe_errors(kind, name, model, exc)) from None  # type: ignore[arg-type]


def create(kind: str, name: str, params: Mapping[str, Any] | None = None, /,
           **kw: Any) -> Any:
    """Instantiate the policy registered as ``name`` with its own parameters only (``params``
    and keyword arguments merged), validated against its model first."""
    cls = policy_class(kind, name)
    return cls(**validate_params(kind, name, {**(params or {}), **kw}))


# ----------------------------------------------------------------------------- plugins
def _import_dotted(name: str, base_dir: Path | None) -> None:
    """Import a dotted module; if its top package is not on the path, look for it in
    ``base_dir`` and the working directory too (a console script's path holds neither)."""
    try:
        importlib.import_module(name)
        return
    except ModuleNotFoundError as exc:
        top = name.split(".")[0]
        if exc.name not in (top, name):
            raise
        for d in (base_dir, Path.cwd()):
            if d is not None and str(d.resolve()) not in sys.path and (
                    (d / top).is_dir() or (d / f"{top}.py").is_file()):
                sys.path.append(str(d.resolve()))
                importlib.import_module(name)
                return
        raise


def policy_modules(specs: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(kind, name, defining module) of registered policies ``(kind, name)`` that are not
    PeakSim's built-ins."""
    out = []
    for kind, name in specs:
        mod = getattr(policy_class(kind, name), "__module__", "") or ""
        if not mod.startswith("simulator."):
            out.append((kind, name, mod))
    return out


def worker_name() -> str:
    """This process, as error messages name it: host and process id."""
    return f"{socket.gethostname()} (pid {os.getpid()})"


def load_plugins(specs: list[str] | tuple[str, ...], base_dir: Path | None = None) -> None:
    """Import plugin modules that register policies: dotted module names (importable here)
    or paths to ``.py`` files (relative to ``base_dir``, else the working directory).
    A module already imported is not imported again. Raises :class:`PluginError` naming the
    module and this worker."""
    for spec in specs:
        if spec in _plugins:
            continue
        try:
            if spec.endswith(".py") or os.sep in spec or "/" in spec:
                path = Path(spec)
                if not path.is_absolute() and base_dir is not None:
                    path = base_dir / path
                path = local_copy(path)  # a copy sent to this worker with the task
                if not path.is_file():
                    raise FileNotFoundError(f"no such file: {path}")
                key = zlib.crc32(str(path.resolve()).encode())
                mod_name = f"peaksim_plugin_{path.stem}_{key:08x}"
                if mod_name not in sys.modules:
                    s = importlib.util.spec_from_file_location(mod_name, path)
                    assert s is not None and s.loader is not None
                    module = importlib.util.module_from_spec(s)
                    sys.modules[mod_name] = module
                    try:
                        s.loader.exec_module(module)
                    except BaseException:
                        sys.modules.pop(mod_name, None)
                        raise
            else:
                mod_name = spec
                _import_dotted(spec, base_dir)
        except Exception as exc:
            raise PluginError(f"plugin module '{spec}' could not be imported on "
                              f"{worker_name()}: {type(exc).__name__}: {exc}") from exc
        _plugins[spec] = mod_name
