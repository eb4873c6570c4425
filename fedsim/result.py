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

import numpy as np

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

    def arrays(self, checkpoint: bool = False) -> dict[str, np.ndarray]:
        """The global model saved in the folder, by parameter name, bit for bit as sent.

        A Flower app's run (``fedsim.simulate``): the last model it sent (``final_model.npz``),
        or with ``checkpoint`` the one the clients received in the last checkpointed round
        (``app_checkpoint.npz``); its ArrayRecord ``"arrays"`` (Flower's name), else its only
        one. A fedsim run: the arrays of its latest resumable checkpoint (``checkpoint.npz``,
        written at the end too). ValueError naming the file when there is none or fedsim did
        not write it (nothing is unpickled)."""
        from fedsim.app_checkpoint import APP_CHECKPOINT_FILE, FINAL_MODEL_FILE, load_app_model
        from fedsim.checkpoint import CHECKPOINT_FILE, load_checkpoint

        app_file = self.run_dir / (APP_CHECKPOINT_FILE if checkpoint else FINAL_MODEL_FILE)
        if app_file.exists():
            records = load_app_model(app_file)["arrays"]
            if "arrays" in records or len(records) == 1:
                return dict(records.get("arrays") or next(iter(records.values())))
            raise ValueError(f"{app_file} holds the ArrayRecords {sorted(records)}, none named "
                             "'arrays': read them with fedsim.app_checkpoint.load_app_model")
        ckpt = load_checkpoint(self.run_dir)
        if ckpt is None:
            raise ValueError(f"{self.run_dir} holds no saved model ({app_file.name} or "
                             f"{CHECKPOINT_FILE}; checkpoint_every = 0 saves none)")
        return dict(ckpt.arrays)

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
