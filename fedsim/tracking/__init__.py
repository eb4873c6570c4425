"""Experiment trackers fed with every round's metrics row: ``[output] loggers``.

- ``tensorboard``: event files in RESULTS/tensorboard (``fedsim.tracking.tensorboard_logger``);
- ``mlflow``: one MLflow run per fedsim run (``fedsim.tracking.mlflow_logger``).

Both are optional extras (``pip install 'fedsim[tracking]'``). The results writer calls
``open_trackers`` once and then ``log_round`` / ``finish`` / ``close``; with no logger
configured nothing is imported.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from fedsim.tracking.base import RoundTracker, Trackers, require

__all__ = ["RoundTracker", "Trackers", "open_trackers", "require"]


def open_trackers(run_dir: Path) -> Trackers:
    """The trackers that the run's config.toml asks for (none if it has no config.toml)."""
    path = Path(run_dir) / "config.toml"
    if not path.exists():
        return Trackers([])
    config: dict[str, Any] = tomllib.loads(path.read_text())
    names = config.get("output", {}).get("loggers", [])
    trackers: list[RoundTracker] = []
    for name in names:
        if name == "tensorboard":
            from fedsim.tracking.tensorboard_logger import TensorBoardTracker

            trackers.append(TensorBoardTracker(run_dir))
        elif name == "mlflow":
            from fedsim.tracking.mlflow_logger import MlflowTracker

            trackers.append(MlflowTracker(run_dir, config))
    return Trackers(trackers)
