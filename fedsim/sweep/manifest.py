"""The sweep's own state, ``manifest.json`` in the sweep folder: the trial list with its
settings and seeds, and how the sweep runs them. A resume reads only this and the trial
folders (finished: summary.json; stopped early by ASHA: stopped.json), never Tune's state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsim.config.errors import ConfigError
from fedsim.results.writer import SUMMARY_FILE, write_json_atomic
from fedsim.sweep.trials import Trial, trial_dir

MANIFEST_FILE = "manifest.json"
STOPPED_FILE = "stopped.json"  # written by the sweep when ASHA stopped the trial
VERSION = 1


@dataclass
class SweepManifest:
    """What a sweep runs: its trials and the options that must survive a resume."""

    name: str
    trials: list[Trial]
    grid_keys: list[str] = field(default_factory=list)
    concurrent: int = 1
    asha: dict[str, Any] | None = None  # metric, mode, grace_period, reduction_factor, max_t

    def save(self, sweep_dir: Path) -> None:
        write_json_atomic(Path(sweep_dir) / MANIFEST_FILE, {
            "version": VERSION, "name": self.name, "grid_keys": self.grid_keys,
            "concurrent": self.concurrent, "asha": self.asha,
            "trials": [t.to_json() for t in self.trials]})

    @classmethod
    def load(cls, sweep_dir: Path) -> SweepManifest:
        path = Path(sweep_dir) / MANIFEST_FILE
        if not path.exists():
            raise ConfigError("--resume", str(sweep_dir), f"a sweep folder (with {MANIFEST_FILE})")
        try:
            data = json.loads(path.read_text())
            return cls(name=data["name"], trials=[Trial.from_json(t) for t in data["trials"]],
                       grid_keys=list(data.get("grid_keys", [])),
                       concurrent=int(data.get("concurrent", 1)), asha=data.get("asha"))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ConfigError("--resume", str(path), f"a fedsim sweep manifest ({err})") from None

    def trial(self, index: int) -> Trial:
        return self.trials[index]


def trial_status(sweep_dir: Path, trial: Trial) -> str:
    """finished, stopped (early, by ASHA), started (a folder, not done) or pending."""
    folder = trial_dir(sweep_dir, trial)
    if (folder / SUMMARY_FILE).exists():
        return "finished"
    if (folder / STOPPED_FILE).exists():
        return "stopped"
    return "started" if folder.exists() else "pending"
