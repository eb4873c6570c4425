"""Turn plain dicts (from TOML or --set) into typed config dataclasses, checking every field."""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from typing import Any, TypeVar

from fedsim.config.errors import ConfigError
from fedsim.config.fields import check_registered, describe_allowed

T = TypeVar("T")


def _unknown_key_message(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown setting{hint}; known settings: {', '.join(sorted(known))}"


def check_value(path: str, value: Any, expected: type, f: dataclasses.Field) -> Any:
    """Check one value against its declared type and constraints; return it normalised."""
    allowed = "a string" if f.metadata.get("registry") else describe_allowed(f, expected)
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, value, f"expected {allowed}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(path, value, f"expected a finite number, {allowed}")
    elif expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ConfigError(path, value, f"expected {allowed}")
    elif expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, value, f"expected {allowed}")
    elif expected is str and not isinstance(value, str):
        raise ConfigError(path, value, f"expected {allowed}")
    meta = f.metadata
    if meta.get("registry"):
        check_registered(path, value, meta["registry"])
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ConfigError(path, value, allowed)
    low, high = meta.get("low"), meta.get("high")
    if low is not None and (value < low or (meta.get("low_open") and value == low)):
        raise ConfigError(path, value, allowed)
    if high is not None and value > high:
        raise ConfigError(path, value, allowed)
    return value


def check_list(path: str, value: Any, item_type: type, f: dataclasses.Field) -> list[Any]:
    """Check a non-empty list whose items each satisfy the field's constraints."""
    if not isinstance(value, list) or not value:
        each = describe_allowed(f, item_type)
        raise ConfigError(path, value, f"expected a non-empty list, each {each}")
    return [check_value(f"{path}[{i}]", item, item_type, f) for i, item in enumerate(value)]


def build_dataclass(cls: type[T], data: Any, prefix: str = "") -> T:
    """Build ``cls`` from ``data``, raising ConfigError that names the first bad field."""
    where = prefix.rstrip(".") or "config"
    if not isinstance(data, dict):
        raise ConfigError(where, data, "expected a table of settings")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise ConfigError(f"{prefix}{key}", data[key], _unknown_key_message(key, list(fields)))
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in data:
            continue
        expected = hints[name]
        value = data[name]
        if dataclasses.is_dataclass(expected):
            kwargs[name] = build_dataclass(expected, value, f"{prefix}{name}.")
        elif typing.get_origin(expected) is list:
            kwargs[name] = check_list(f"{prefix}{name}", value, typing.get_args(expected)[0], f)
        elif expected is list:
            if not isinstance(value, list):
                raise ConfigError(f"{prefix}{name}", value, "expected a list")
            kwargs[name] = list(value)
        elif typing.get_origin(expected) is dict:
            if not isinstance(value, dict):
                raise ConfigError(f"{prefix}{name}", value, "expected a table of settings")
            kwargs[name] = dict(value)
        else:
            kwargs[name] = check_value(f"{prefix}{name}", value, expected, f)
    return cls(**kwargs)


def to_dict(obj: Any) -> dict[str, Any]:
    """A config dataclass as plain nested dicts (for TOML/JSON)."""
    return dataclasses.asdict(obj)
