"""The trial list of a sweep: every (config, setting, seed), each with its own results folder.

A *setting* is one point of the sweep (a config plus its grid or sampled values); its trials
differ only in ``seed``. Settings are applied as ``fedsim run --set`` overrides are.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fedsim.config.errors import ConfigError


@dataclass
class Trial:
    """One fedsim run of the sweep."""

    index: int
    config: str  # the sweep folder's copy of the resolved config (relative to the sweep)
    config_name: str  # the config's ``name`` (a setting's first column)
    settings: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    @property
    def setting_label(self) -> str:
        shown = " ".join(f"{k}={_short(v)}" for k, v in self.settings.items())
        return f"{self.config_name} {shown}".strip()

    @property
    def folder(self) -> str:
        slug = re.sub(r"[^A-Za-z0-9_.=-]+", "_", self.setting_label.replace(" ", "_"))[:80]
        return f"trials/{self.index:03d}-{slug}-seed{self.seed}"

    def overrides(self) -> list[str]:
        """The ``--set`` overrides of this trial on top of its config."""
        return [f"{k}={_toml(v)}" for k, v in self.settings.items()] + [f"seed={self.seed}"]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "folder": self.folder, "setting": self.setting_label}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trial:
        return cls(index=data["index"], config=data["config"], config_name=data["config_name"],
                   settings=dict(data["settings"]), seed=data["seed"])


def _short(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _toml(value: Any) -> str:
    """A value as ``--set`` reads it back (TOML), strings left bare as on the command line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def parse_grid(texts: list[str]) -> dict[str, list[str]]:
    """``--grid KEY=V1,V2,...`` (repeatable) as {KEY: [V1, V2, ...]}, keys in the given order."""
    grid: dict[str, list[str]] = {}
    for text in texts:
        if "=" not in text:
            raise ConfigError("--grid", text, "KEY=V1,V2,... e.g. train.lr=0.05,0.1")
        key, raw = (part.strip() for part in text.split("=", 1))
        values = [v.strip() for v in raw.split(",") if v.strip()]
        if not key or not values:
            raise ConfigError("--grid", text, "KEY=V1,V2,... with a key and at least one value")
        if key in grid:
            raise ConfigError("--grid", key, "each key once (list all its values after =)")
        if key == "seed":
            raise ConfigError("--grid", text, "a setting other than seed (use --seeds N)")
        grid[key] = values
    return grid


def grid_points(grid: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The cross product of the grid's values, the last key varying fastest."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True))
            for values in itertools.product(*(grid[k] for k in keys))]


def build_trials(configs: list[tuple[str, str]], points: list[dict[str, Any]],
                 seeds: list[int]) -> list[Trial]:
    """Every (config, point, seed) as a trial; ``configs`` holds (copy path, config name)."""
    trials = []
    for (path, name), point, seed in itertools.product(configs, points or [{}], seeds):
        trials.append(Trial(len(trials), path, name, dict(point), seed))
    return trials


def trial_dir(sweep_dir: Path, trial: Trial) -> Path:
    return Path(sweep_dir) / trial.folder
