"""Typed, frozen configuration sections built from plain mappings, with errors that name the dotted key.

:func:`build` turns a mapping (a YAML section, an OmegaConf node) into a frozen dataclass: every key must be a field
(an unknown key is an error listing the valid ones), every value must have the field's type (``int``, ``float``,
``bool``, ``str``, ``Literal[...]`` choices, tuples, unions with ``None``, nested sections), and a section's ``check``
method then tests ranges and relations. Errors are :class:`ConfigError` with the dotted key; the loader adds the file.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from benchmark.core.errors import ConfigError

T = TypeVar("T")


def require(ok: bool, key: str, message: str) -> None:
    """Raise ``ConfigError`` for ``key`` unless ``ok``."""
    if not ok:
        raise ConfigError(message, key=key)


def _choices(tp: Any) -> tuple[Any, ...]:
    return typing.get_args(tp)


def _coerce_union(value: Any, tp: Any, key: str) -> Any:
    args = typing.get_args(tp)
    if value is None and type(None) in args:
        return None
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return coerce(value, arg, key)
        except ConfigError as err:
            errors.append(err)
    if not errors:
        raise ConfigError(f"bad value {value!r}", key=key)
    literals = [c for arg in args if typing.get_origin(arg) is Literal for c in _choices(arg)]
    if literals and any(arg is bool for arg in args):  # e.g. train.resume: auto, true or false
        names = [str(c) for c in literals] + ["true", "false"]
        raise ConfigError(f"must be {', '.join(names[:-1])} or {names[-1]}, got {value!r}", key=key)
    raise errors[0]


def _coerce_scalar(value: Any, tp: type, key: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"expected true or false, got {value!r}", key=key)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"expected an integer, got {value!r}", key=key)
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"expected a number, got {value!r}", key=key)
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"expected a string, got {value!r}", key=key)
    raise TypeError(f"{key}: unsupported field type {tp!r}")  # a schema bug, not a user error


def coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` as type ``tp`` (see the module docstring), or ``ConfigError`` naming ``key``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, tp, key)
    if origin is Literal:
        if any(value == c and type(value) is type(c) for c in _choices(tp)):
            return value
        names = ", ".join(str(c) for c in _choices(tp))
        raise ConfigError(f"must be one of {names}, got {value!r}", key=key)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"expected a mapping, got {value!r}", key=key)
        return build(tp, value, key)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"expected a list, got {value!r}", key=key)
        elem, *rest = typing.get_args(tp)
        if rest and rest[0] is not Ellipsis and len(value) != len(typing.get_args(tp)):
            raise ConfigError(f"expected {len(typing.get_args(tp))} values, got {list(value)!r}", key=key)
        return tuple(coerce(v, elem, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"expected a mapping, got {value!r}", key=key)
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is not Any:
            return {k: coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
        return dict(value)
    if tp is Any:
        return value
    return _coerce_scalar(value, tp, key)


def build(cls: type[T], mapping: Mapping[str, Any], prefix: str) -> T:
    """Build the frozen dataclass ``cls`` from ``mapping``; unknown, missing or mistyped keys name ``prefix.key``.

    After construction the section's ``check(prefix)`` method, if any, validates ranges and relations.
    """

    def dotted(name: str) -> str:
        return f"{prefix}.{name}" if prefix else name

    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key; valid keys: {', '.join(sorted(fields))}", key=dotted(unknown[0]))
    kwargs = {}
    for name, f in fields.items():
        key = dotted(name)
        if name not in mapping:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError("missing", key=key)
            continue
        kwargs[name] = coerce(mapping[name], hints[name], key)
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if check is not None:
        check(prefix)
    return obj


def to_plain(obj: Any) -> Any:
    """A section as plain JSON/YAML types: dataclasses become dicts, tuples lists (the inverse of :func:`build`)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj
