"""Typed, documented config fields with their constraints (one declaration per setting).

A field is a dataclass field whose metadata holds a one-line doc and the constraint that the
validator enforces: ``choices`` for enumerations, ``low``/``high`` bounds (``low_open`` for a
strict lower bound) for numbers.
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
) -> Any:
    """Declare one config field with its default, a one-line doc and its allowed values."""
    meta = {"doc": doc, "choices": choices, "low": low, "high": high, "low_open": low_open}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def describe_allowed(field: dataclasses.Field, expected: type) -> str:
    """Human-readable description of what a field accepts."""
    meta = field.metadata
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
