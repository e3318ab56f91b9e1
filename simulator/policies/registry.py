"""A registry of policies by kind and name (as Vidur registers each extension point).

Users add their own policy with ``@register("router", "my_router")`` and then name it in a
scenario (``policy.routing.name = "my_router"``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

KINDS = ("router", "batcher", "autoscaler")
_REGISTRY: dict[str, dict[str, Callable[..., Any]]] = {k: {} for k in KINDS}


def register(kind: str, name: str) -> Callable[[T], T]:
    """Class decorator: make ``name`` usable in scenarios for policies of ``kind``."""
    if kind not in _REGISTRY:
        raise ValueError(f"unknown policy kind '{kind}'; allowed: {', '.join(KINDS)}")

    def deco(cls: T) -> T:
        _REGISTRY[kind][name] = cls  # type: ignore[assignment]
        return cls

    return deco


def unregister(kind: str, name: str) -> None:
    """Remove a registered policy (e.g. a test's deliberately broken one); no-op if absent."""
    _REGISTRY.get(kind, {}).pop(name, None)


def allowed_names(kind: str) -> list[str]:
    """Registered names of one kind, sorted (built-ins are registered on package import)."""
    import simulator.policies  # noqa: F401  (ensure built-ins are registered)

    return sorted(_REGISTRY[kind])


def create(kind: str, name: str, **params: Any) -> Any:
    """Instantiate the policy registered as ``name``; a clear error lists allowed names."""
    try:
        factory = _REGISTRY[kind][name]
    except KeyError:
        raise ValueError(
            f"unknown {kind} '{name}'; allowed: {', '.join(allowed_names(kind))}"
        ) from None
    return factory(**params)
