"""Read an experiment file, apply ``--set`` overrides, validate everything, and save the result."""

from __future__ import annotations

import copy
import os
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from fedsim.config.build import build_dataclass, to_dict
from fedsim.config.checks import check_consistency
from fedsim.config.errors import ConfigError
from fedsim.config.schema import ExperimentConfig


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse one ``section.key=value`` override; the value is read as TOML, else as a string."""
    if "=" not in text:
        raise ConfigError("--set", text, "expected KEY=VALUE, for example train.rounds=50")
    key, raw = text.split("=", 1)
    key, raw = key.strip(), raw.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError("--set", text, "expected KEY=VALUE with a dotted key such as task.alpha")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with every ``--set`` override applied."""
    data = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for i, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(".".join(path[: i + 1]), child, "is a value, not a section")
            node = child
        node[path[-1]] = value
    return data


ENV_OVERRIDES = "FEDSIM_SET"


def environment_overrides() -> list[str]:
    """``KEY=VALUE`` overrides from the ``FEDSIM_SET`` environment variable (space-separated),
    applied by ``fedsim run`` before its own ``--set`` options: small settings for smoke tests
    and CI, e.g. ``FEDSIM_SET="train.rounds=2 eval.federated_every=0"``."""
    items = os.environ.get(ENV_OVERRIDES, "").split()
    for item in items:
        if "=" not in item:
            raise ConfigError(ENV_OVERRIDES, item, "space-separated KEY=VALUE items")
    return items


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file, turning file and syntax problems into ConfigError."""
    if not path.exists():
        raise ConfigError("config", str(path), "file not found")
    if path.is_dir():
        raise ConfigError("config", str(path), "is a folder; expected a .toml file")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("config", str(path), f"not valid TOML ({err})") from None
    except UnicodeDecodeError:
        raise ConfigError("config", str(path), "not a text file") from None


def config_from_dict(data: dict[str, Any]) -> ExperimentConfig:
    """Validate a plain dict and build the experiment config (field checks + consistency)."""
    data = copy.deepcopy(data)
    strategy = data.get("strategy", {"name": "fedavg"})
    if isinstance(strategy, str):
        data["strategy"] = {"name": strategy}
    cfg = build_dataclass(ExperimentConfig, data)
    cfg.strategy = resolve_strategy_params(cfg.strategy)
    check_consistency(cfg)
    cfg.engine.profiles = resolve_device_profiles(cfg)
    return cfg


def resolve_strategy_params(strategy: dict[str, Any]) -> dict[str, Any]:
    """Validate ``[strategy]`` with the named strategy's parameter class and fill its defaults."""
    from fedsim.registry import RegistryError
    from strategies.registry import STRATEGIES, strategy_names

    name = strategy.get("name", "fedavg")
    allowed = ("one of " + ", ".join(strategy_names()) + ", flwr:<a Flower strategy class>, "
               "or a 'package.module:Name' reference (a StrategySpec or a Flower strategy)")
    if not isinstance(name, str) or name not in STRATEGIES:
        raise ConfigError("strategy.name", name, allowed)
    try:
        spec = STRATEGIES.get(name)
    except RegistryError as err:
        detail = str(err) if err.allowed in str(err) else f"{err}; expected {err.allowed}"
        raise ConfigError("strategy.name", name, detail) from None
    params = {k: v for k, v in strategy.items() if k != "name"}
    built = build_dataclass(spec.params_cls, params, "strategy.")
    spec.check(built)
    return {"name": name, **to_dict(built)}


def resolve_device_profiles(cfg: ExperimentConfig) -> list:
    """Validate ``[[engine.profiles]]`` (field by field, then their partition assignment)."""
    from fedsim.engine.profiles import assign_profiles, build_profiles

    profiles = build_profiles(cfg.engine.profiles)
    assign_profiles(profiles, cfg.task.num_clients, cfg.seed)
    return profiles


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load, override and validate an experiment file."""
    data = read_toml(Path(path))
    data = apply_overrides(data, overrides or [])
    return config_from_dict(data)


def save_config(cfg: ExperimentConfig, path: Path) -> None:
    """Write the resolved config as TOML (every default made explicit)."""
    path.write_text(tomli_w.dumps(to_dict(cfg)))
