"""Results folders: a new one per run, inside the results root, never another run's folder.

A run's folder is claimed, not merely found: :func:`new_run_dir` creates it (it never existed)
under ``output.dir`` from a validated ``name``, or takes the new or empty ``--out``;
:func:`claim_run_dir` is how a ServerApp given a folder path (a deployment's ``results-dir``)
makes sure no other run has used it. A start that fails before its first round leaves no
half-written folder (:func:`discard_unstarted`). Only ``--resume`` continues an existing one.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

from fedsim.config.errors import ConfigError

RUN_FILE = "run.json"  # written by `fedsim run`: how the run was started (engine)
START_FILES = frozenset({"config.toml", RUN_FILE})  # what a start writes before any round
RESULT_FILES = ("metrics.jsonl", "summary.json", "checkpoint.npz", "checkpoint.pkl",
                "client_problems.jsonl")  # a folder holding one of these holds a run
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
NAME_RULE = ("1 to 100 letters, digits, '.', '_', '+' or '-', starting with a letter or digit "
             "(no path separators, no '..'): it names a folder inside output.dir")

_created: set[Path] = set()  # folders this process created (discard_unstarted removes them)


def check_run_name(name: Any) -> str:
    """``name`` if it can name a results folder inside the results root, else a ConfigError."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise ConfigError("name", name, NAME_RULE)
    return name


def new_run_dir(out: str | None, parent: str, name: str) -> Path:
    """The results folder of a new run: ``out`` if new or empty, else a folder
    PARENT/NAME-TIMESTAMP that this call creates (so it cannot be another run's)."""
    check_run_name(name)
    if out:
        run_dir = Path(out)
        if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
            raise ConfigError("--out", out, "a new or empty folder (it holds another run's "
                              "results; choose another --out)")
        if not run_dir.exists():
            run_dir.mkdir(parents=True)
            _created.add(run_dir.resolve())
        return run_dir
    root = Path(parent)
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for suffix in range(1, 10_000):
        run_dir = root / (f"{name}-{stamp}" if suffix == 1 else f"{name}-{stamp}-{suffix}")
        try:
            run_dir.mkdir()  # atomic: two runs started in the same second get two folders
        except FileExistsError:
            continue
        _created.add(run_dir.resolve())
        return run_dir
    raise ConfigError("name", name, f"a name with fewer runs started this second in {root}")


def holds_a_run(run_dir: Path) -> str | None:
    """The first file of ``run_dir`` that shows a run used it (None if there is none)."""
    for fname in (RUN_FILE, *RESULT_FILES):
        if (Path(run_dir) / fname).exists():
            return fname
    return None


def claim_run_dir(run_dir: Path, run_info: dict[str, Any]) -> None:
    """Make ``run_dir`` (created if missing) this run's folder by writing ``run.json`` into
    it, exclusively: a folder another run used (its ``run.json`` or results) is refused with a
    ConfigError naming ``results-dir``, so no run overwrites, resumes or relabels another."""
    run_dir = Path(run_dir)
    used = holds_a_run(run_dir)
    if used is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            with open(run_dir / RUN_FILE, "x", encoding="utf-8") as f:
                f.write(json.dumps(run_info) + "\n")
            return
        except FileExistsError:
            used = RUN_FILE
    raise ConfigError("results-dir", str(run_dir), f"a new results folder (this one holds "
                      f"{used} of another run; a run never reuses another run's folder)")


def discard_unstarted(run_dir: Path) -> bool:
    """After a failed start: remove ``run_dir`` if it holds nothing but what the start wrote
    (``config.toml``, ``run.json``); a folder with any result or log stays. True if removed."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or any(p.name not in START_FILES for p in run_dir.iterdir()):
        return False
    for p in run_dir.iterdir():
        p.unlink()
    if run_dir.resolve() in _created:
        shutil.rmtree(run_dir, ignore_errors=True)
        _created.discard(run_dir.resolve())
    return True
