"""One MLflow run per fedsim run: the config flattened as parameters, every round's metrics
at step = round, the summary figures at the end (MLflow's own ``MlflowClient``).

The experiment is ``output.mlflow_experiment`` (``fedsim sweep`` sets the sweep's name, so a
sweep's runs are grouped), else the run's name; the store is ``output.mlflow_uri``, else the
file store ``mlruns/`` in the current folder (any MLflow URI works, e.g. ``sqlite:///mlflow.db``
or a tracking server). The MLflow run id is kept in
RESULTS/mlflow_run.json, so a resumed fedsim run goes on logging into the same MLflow run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fedsim.tracking.base import require

RUN_ID_FILE = "mlflow_run.json"
MAX_PARAM_CHARS = 500  # long values (lists of profiles) are cut for MLflow's parameter limit


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"train": {"lr": 0.1}}`` as ``{"train.lr": "0.1"}``."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)[:MAX_PARAM_CHARS]
    return flat


def default_uri() -> str:
    return (Path.cwd() / "mlruns").resolve().as_uri()


class MlflowTracker:
    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        require("mlflow")
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        self._metric, self.run_dir = Metric, Path(run_dir)
        output = config.get("output", {})
        uri = output.get("mlflow_uri") or default_uri()
        if uri.startswith("file:"):
            # MLflow 3 keeps its file store in maintenance mode and asks for this opt-in; a
            # file store takes concurrent sweep trials without a database's locks
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=uri)
        saved = self.run_dir / RUN_ID_FILE
        if saved.exists():  # a resumed run
            self.run_id = json.loads(saved.read_text())["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return
        name = output.get("mlflow_experiment") or config.get("name", "fedsim")
        found = self.client.get_experiment_by_name(name)
        experiment = found.experiment_id if found else self.client.create_experiment(name)
        run = self.client.create_run(experiment, run_name=self.run_dir.name,
                                     tags={"fedsim.results": str(self.run_dir.resolve())})
        self.run_id = run.info.run_id
        self.client.log_batch(self.run_id, params=[
            Param(k, v) for k, v in sorted(flatten(config).items())])
        saved.write_text(json.dumps({"run_id": self.run_id, "experiment": name}) + "\n")

    def log_round(self, step: int, metrics: dict[str, float]) -> None:
        import time

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            self._metric(k, v, now, step) for k, v in metrics.items()])

    def finish(self, summary: dict[str, Any]) -> None:
        import time

        now = int(time.time() * 1000)
        figures = {f"summary.{k}": float(v) for k, v in summary.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.client.log_batch(self.run_id, metrics=[
            self._metric(k, v, now, 0) for k, v in figures.items()])
        self.client.set_terminated(self.run_id, "FINISHED")

    def close(self) -> None:
        pass
