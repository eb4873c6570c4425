"""One trial of a sweep, run exactly as ``fedsim run`` runs it, on the ``inprocess`` engine.

Why ``inprocess``: a trial already is a Ray Tune actor holding one CPU of the sweep's Ray
instance. fedsim's ``ray`` engine inside it would either start a second Ray on the same cores
or, joined to the sweep's Ray, place its own client actors beside the trials: every trial
would then use more cores than Tune reserved for it, and ``--concurrent`` trials would
oversubscribe the machine. On ``inprocess`` a trial's clients run one after another in the
trial's own process, so one CPU per trial is exactly what it uses. (The engines give the same
results for the same seed: see docs/engines.md.)

This module is the only place that knows how a run is started: it goes through
``fedsim.launch.run_command``, the code path of ``fedsim run``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from fedsim.checkpoint import CHECKPOINT_FILE
from fedsim.results.writer import CONFIG_FILE, SUMMARY_FILE
from fedsim.sweep.trials import Trial, trial_dir

TRIAL_ENGINE = "inprocess"
ATTEMPTS_FILE = "attempts.jsonl"  # in the sweep folder: one line per trial start


def _fedsim_run(config: str | None, overrides: list[str], out: Path | None,
                resume: Path | None) -> int:
    """``fedsim run`` with these arguments (its shared code path, ``run_command``)."""
    from fedsim.launch import run_command

    return run_command(config, overrides, TRIAL_ENGINE, str(out) if out else None, resume)


def checkpoint_round(folder: Path) -> int | None:
    """The round of the trial's last checkpoint (None: no resumable checkpoint)."""
    if not ((folder / CHECKPOINT_FILE).exists() and (folder / CONFIG_FILE).exists()):
        return None
    from fedsim.checkpoint import load_checkpoint

    ckpt = load_checkpoint(folder)
    return ckpt.round if ckpt is not None else None


def run_trial(sweep_dir: Path, trial: Trial) -> int:
    """Run (or continue from its checkpoint) one trial; its results land in its own folder.

    A finished trial (summary.json) is left as it is; a started one without a checkpoint
    starts again from an empty folder.
    """
    folder = trial_dir(sweep_dir, trial)
    if (folder / SUMMARY_FILE).exists():
        return 0
    resumed = checkpoint_round(folder)
    _log_attempt(sweep_dir, trial, resumed)
    if resumed is not None:
        return _fedsim_run(None, [], None, folder)
    if folder.exists():
        shutil.rmtree(folder)
    return _fedsim_run(str(Path(sweep_dir) / trial.config), trial.overrides(), folder, None)


def _log_attempt(sweep_dir: Path, trial: Trial, resumed: int | None) -> None:
    line = json.dumps({"trial": trial.index, "resumed_after_round": resumed,
                       "time": time.time(), "pid": os.getpid()}) + "\n"
    with open(Path(sweep_dir) / ATTEMPTS_FILE, "a", encoding="utf-8") as f:
        f.write(line)


def read_attempts(sweep_dir: Path) -> list[dict]:
    path = Path(sweep_dir) / ATTEMPTS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
