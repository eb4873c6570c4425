"""What a finished run hands back to Python: its results folder, read as tables and numbers.

``fedsim.run`` (a fedsim experiment) and ``fedsim.simulate`` (any Flower ServerApp/ClientApp on
the fedsim engine) both return a :class:`RunResult`; so can any existing results folder, through
:meth:`RunResult.from_dir`.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsim.results.writer import CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, read_metrics


@dataclass(frozen=True)
class RunResult:
    """A run's results folder, with its round-by-round metrics and summary loaded.

    ``metrics`` holds one dict per line of ``metrics.jsonl`` (round 0 is the initial model);
    ``summary`` is ``summary.json`` (final and best accuracy, rounds and uplink to the target,
    byte totals), empty where the run wrote none.
    """

    run_dir: Path
    metrics: list[dict[str, Any]]
    summary: dict[str, Any]

    @classmethod
    def from_dir(cls, run_dir: str | Path) -> RunResult:
        """Read the results folder ``run_dir`` (ValueError naming it if it holds no run)."""
        path = Path(run_dir)
        if not (path / METRICS_FILE).exists():
            raise ValueError(f"{path} is not a fedsim results folder (no {METRICS_FILE})")
        summary_path = path / SUMMARY_FILE
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        return cls(path, read_metrics(path), summary)

    @property
    def config(self) -> dict[str, Any]:
        """The run's resolved configuration as saved in ``config.toml`` (every default
        explicit), as nested dicts; empty where the folder holds none."""
        path = self.run_dir / CONFIG_FILE
        return tomllib.loads(path.read_text()) if path.exists() else {}

    def column(self, key: str) -> list[Any]:
        """One metric across rounds (None in rounds that did not record it)."""
        return [row.get(key) for row in self.metrics]

    @property
    def columns(self) -> list[str]:
        """Every metric name recorded in any round, in first-seen order."""
        seen: dict[str, None] = {}
        for row in self.metrics:
            seen.update(dict.fromkeys(row))
        return list(seen)

    def to_pandas(self) -> Any:
        """The metrics as a ``pandas.DataFrame`` indexed by round (needs pandas installed)."""
        try:
            import pandas as pd
        except ImportError as err:  # pragma: no cover - depends on the user's environment
            raise ImportError("RunResult.to_pandas needs pandas: pip install pandas") from err
        return pd.DataFrame(self.metrics).set_index("round")

    def __repr__(self) -> str:
        acc = self.summary.get("final_accuracy")
        shown = f", final_accuracy={acc:.4f}" if isinstance(acc, float) else ""
        return f"RunResult({str(self.run_dir)!r}, rounds={len(self.metrics) - 1}{shown})"
