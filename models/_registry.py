"""The one model registry: a registry key names the factory, the conf file, the MLflow run and the table row."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from models.base import DeblurModel

_FACTORIES: dict[str, Callable[..., DeblurModel]] = {}

F = TypeVar("F", bound=Callable[..., DeblurModel])


def register_model(fn: F) -> F:
    """Register a factory under its function name (lowercase snake_case). Duplicates are an error."""
    name = fn.__name__
    if name != name.lower() or not name.isidentifier():
        raise ValueError(f"model factory name {name!r} must be a lowercase snake_case identifier")
    if name in _FACTORIES:
        raise ValueError(f"model {name!r} is registered twice ({_FACTORIES[name].__module__} and {fn.__module__})")
    _FACTORIES[name] = fn
    return fn


def create_model(name: str, **overrides: object) -> DeblurModel:
    """Build the registered model ``name``; ``overrides`` replace the factory's constructor arguments.

    Overrides whose value is ``None`` are dropped, so an unset config key never hides a factory default.
    An unknown name or an unknown override raises with the valid choices listed.
    """
    if name not in _FACTORIES:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    kwargs = {k: v for k, v in overrides.items() if v is not None}
    try:
        model = _FACTORIES[name](**kwargs)
    except TypeError as err:
        raise TypeError(f"model {name!r}: bad override(s) {sorted(kwargs)}: {err}") from err
    model.registry_name = name
    return model


def list_models() -> list[str]:
    """All registered model names, sorted."""
    return sorted(_FACTORIES)
