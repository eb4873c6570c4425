"""Results folders: a new one per run, never an existing folder that holds results."""

from __future__ import annotations

import time
from pathlib import Path

from fedsim.config.errors import ConfigError

RUN_FILE = "run.json"  # written by `fedsim run`: how the run was started (engine)


def new_run_dir(out: str | None, parent: str, name: str) -> Path:
    """The results folder of a new run: ``out`` if new or empty, else PARENT/NAME-TIMESTAMP."""
    if out:
        run_dir = Path(out)
        if run_dir.exists() and any(run_dir.iterdir()):
            raise ConfigError("--out", out, "a new or empty folder (it holds another run's "
                              "results; choose another --out)")
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = Path(parent) / f"{name}-{stamp}"
        suffix = 1
        while run_dir.exists():
            suffix += 1
            run_dir = Path(parent) / f"{name}-{stamp}-{suffix}"
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir
