"""Typed, documented config fields with their constraints (one declaration per setting).

A field is a dataclass field whose metadata holds a one-line doc and the constraint that the
validator enforces: ``choices`` for enumerations, ``low``/``high`` bounds (``low_open`` for a
strict lower bound) for numbers, ``registry`` for names of an extension point: the dotted
reference of a :class:`fedsim.registry.Registry` (``"fedsim.tasks.models:MODELS"``) whose names,
or a ``"package.module:Name"`` reference that resolves there, are allowed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any


def setting(
    default: Any,
    doc: str,
    *,
    choices: Sequence[Any] | None = None,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    registry: str | None = None,
) -> Any:
    """Declare one config field with its default, a one-line doc and its allowed values."""
    meta = {"doc": doc, "choices": choices, "low": low, "high": high, "low_open": low_open,
            "registry": registry}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def describe_allowed(field: dataclasses.Field, expected: type) -> str:
    """Human-readable description of what a field accepts."""
    meta = field.metadata
    if meta.get("registry"):
        return registered_names(meta["registry"])
    if meta.get("choices") is not None:
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    kind = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            dict: "a table", list: "a list"}.get(expected, expected.__name__)
    low, high = meta.get("low"), meta.get("high")
    if low is not None and high is not None:
        op = "<" if meta.get("low_open") else "<="
        return f"{kind} with {low} {op} value <= {high}"
    if low is not None:
        return f"{kind} {'>' if meta.get('low_open') else '>='} {low}"
    if high is not None:
        return f"{kind} <= {high}"
    return kind


def registered_names(registry_ref: str) -> str:
    """What a registry-backed field accepts: its names, or a dotted reference."""
    from fedsim.registry import import_dotted

    names = import_dotted(registry_ref).names()
    return ("one of " + ", ".join(repr(n) for n in names)
            + ", or a 'package.module:Name' reference")


def check_registered(path: str, value: str, registry_ref: str) -> None:
    """Raise ConfigError unless ``value`` names (or references) a usable entry of the registry
    ``registry_ref``; loading it here surfaces a broken plugin before the run starts."""
    from fedsim.config.errors import ConfigError
    from fedsim.registry import RegistryError, import_dotted

    registry = import_dotted(registry_ref)
    if value not in registry:
        raise ConfigError(path, value, registered_names(registry_ref))
    try:
        registry.get(value)
    except RegistryError as err:
        detail = str(err) if err.allowed in str(err) else f"{err}; expected {err.allowed}"
        raise ConfigError(path, value, detail) from None
