"""What a tracker receives (each round's scalar metrics, at step = round) and the check that
its package is installed."""

from __future__ import annotations

import importlib.util
from typing import Any, Protocol

from fedsim.config.errors import ConfigError

EXTRA = "pip install 'fedsim[tracking]'"
# logger name -> the package it needs
PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}


def require(name: str, field: str = "output.loggers") -> None:
    """Refuse a logger whose package is missing, naming the extra that installs it."""
    package = PACKAGES[name]
    if importlib.util.find_spec(package) is None:
        raise ConfigError(field, name, f"a logger whose package is installed ({package} is "
                          f"not): {EXTRA}")


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of a metrics row: accuracy, loss, uplink/downlink bytes, bits per
    parameter, virtual time, ... (per-client lists and the round itself left out)."""
    return {k: float(v) for k, v in record.items()
            if k != "round" and isinstance(v, (int, float)) and not isinstance(v, bool)}


class RoundTracker(Protocol):
    def log_round(self, step: int, metrics: dict[str, float]) -> None: ...

    def finish(self, summary: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class Trackers:
    """Every configured tracker, called in turn."""

    def __init__(self, trackers: list[RoundTracker]) -> None:
        self.trackers = trackers

    def log_round(self, record: dict[str, Any]) -> None:
        if self.trackers and "round" in record:
            metrics = scalars(record)
            for tracker in self.trackers:
                tracker.log_round(int(record["round"]), metrics)

    def finish(self, summary: dict[str, Any]) -> None:
        for tracker in self.trackers:
            tracker.finish(summary)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()
