"""Starting and carrying out one experiment: the path that ``fedsim run`` and ``fedsim.run`` share.

:func:`prepare_run` checks what can be checked before anything starts and makes the run's new
results folder (resolved config and engine saved in it); :func:`carry_out` runs it on an engine
with the progress lines and the closing summary on stderr. A resumed run skips the first step.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fedsim.config import ConfigError, ExperimentConfig, save_config
from fedsim.results.writer import CONFIG_FILE, SUMMARY_FILE
from fedsim.run_dirs import RUN_FILE, discard_unstarted, new_run_dir


def quiet_logs() -> None:
    """Keep Flower's per-round INFO lines out of the progress bar."""
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    for name in ("flwr", "ray"):
        logging.getLogger(name).setLevel(logging.WARNING)


def check_engine(engine: object) -> str:
    """``engine`` if it names an engine, else ConfigError listing them."""
    from fedsim.engine import ENGINES

    if not isinstance(engine, str) or engine not in ENGINES:
        raise ConfigError("engine", engine, "one of " + ", ".join(ENGINES))
    return engine


def check_local_device(cfg: ExperimentConfig, engine: str) -> None:
    """``eval.device = cuda`` (the central evaluation runs here on every engine), or
    ``train.device = cuda`` on an engine whose clients all run on this machine, which has no
    CUDA: stop before anything starts instead of failing every client (a cluster joined with
    ``engine.ray_address`` may have GPUs this machine lacks, so its clients' device is not
    checked)."""
    wanted = [("eval.device", cfg.eval.device)]
    if not (engine == "ray" and cfg.engine.ray_address):
        wanted.insert(0, ("train.device", cfg.train.device))
    wanted = [(field, device) for field, device in wanted if device.startswith("cuda")]
    if not wanted:
        return
    import torch

    if not torch.cuda.is_available():
        field, device = wanted[0]
        raise ConfigError(field, device,
                          "'auto' or 'cpu': torch sees no CUDA device on this machine")


def prepare_run(cfg: ExperimentConfig, engine: str, out: str | Path | None) -> Path:
    """Check the task's data and the devices, then make the new results folder (``out`` if
    new or empty, else OUTPUT_DIR/NAME-TIMESTAMP) holding the resolved config and the engine.
    Raises ConfigError, with nothing created, when the run cannot start."""
    from fedsim.tasks.task import preflight

    check_engine(engine)
    preflight(cfg.task, cfg.seed)
    check_local_device(cfg, engine)
    run_dir = new_run_dir(str(out) if out is not None else None, cfg.output.dir, cfg.name)
    save_config(cfg, run_dir / CONFIG_FILE)
    (run_dir / RUN_FILE).write_text(json.dumps(
        {"engine": engine, "vectorize": cfg.engine.vectorize if engine == "ray" else "off"})
        + "\n")
    return run_dir


def carry_out(cfg: ExperimentConfig, engine: str, run_dir: Path, *, progress: bool = True,
              new_run: bool = True) -> None:
    """Run the experiment whose results folder ``run_dir`` was prepared, on ``engine``.

    With ``progress`` it says on stderr what runs where, shows one progress bar (a line per
    round when stderr is not a terminal) and closes with the time taken and the final accuracy.
    A KeyboardInterrupt propagates after saying where the finished rounds are and how to resume.
    A ``new_run`` whose engine fails before its first round leaves no results folder behind.
    """
    from fedsim.engine import run_engine
    from fedsim.progress import RoundProgress

    started = time.monotonic()
    say = _printer(progress)
    say(f"fedsim: {cfg.name}: {cfg.strategy_name} on {cfg.task.dataset} "
        f"({cfg.task.num_clients} clients, {cfg.train.rounds} rounds, engine {engine})"
        f"\nresults: {run_dir}")
    quiet_logs()
    bar = RoundProgress(run_dir, cfg.train.rounds).start() if progress else None
    try:
        run_engine(engine, cfg, (run_dir / CONFIG_FILE).resolve(), run_dir)
    except KeyboardInterrupt:
        if bar is not None:
            bar.stop()
        print(f"fedsim: interrupted; the rounds finished so far are in {run_dir}; continue "
              f"with: fedsim run --resume {run_dir}", file=sys.stderr)
        raise
    except Exception:
        if new_run:
            discard_unstarted(run_dir)
        raise
    finally:
        if bar is not None:
            bar.stop()
    _report(run_dir, time.monotonic() - started, say)


def _printer(enabled: bool) -> Callable[[str], None]:
    """A function printing a line on stderr, or doing nothing when not ``enabled``."""
    def say(text: str) -> None:
        if enabled:
            print(text, file=sys.stderr)
    return say


def _report(run_dir: Path, seconds: float, say: Callable[[str], None]) -> None:
    """The closing lines: time in and around the federation, final accuracy, task metrics."""
    summary_path = run_dir / SUMMARY_FILE
    if not summary_path.exists():
        return
    s = json.loads(summary_path.read_text())
    acc = s.get("final_accuracy")
    reached = (f"; final accuracy {acc:.4f}; rounds to {s['target_accuracy']:.0%}: "
               f"{s.get('rounds_to_target')}" if acc is not None else "")
    rounds_s = s.get("wall_seconds") or 0.0
    say(f"fedsim: done in {seconds:.1f} s ({rounds_s:.1f} s in the federation, the rest "
        f"starting and stopping the engine){reached}")
    if s.get("final_task_metrics"):
        shown = ", ".join(f"{k} {v:.4g}" for k, v in s["final_task_metrics"].items())
        say(f"fedsim: final {shown}")


def resume_target(resume: str | Path, config: str | None, overrides: list[str],
                  engine: str) -> tuple[Path, ExperimentConfig, str]:
    """The results folder, resolved config and engine of the run ``--resume`` names."""
    from fedsim.checkpoint import load_checkpoint
    from fedsim.config import load_config

    run_dir = Path(resume)
    if not (run_dir / CONFIG_FILE).exists():
        raise ConfigError("--resume", str(run_dir), "a fedsim results folder (with config.toml)")
    if load_checkpoint(run_dir) is None:  # ConfigError for an old or foreign file
        raise ConfigError("--resume", str(run_dir), "a run with a checkpoint (it stopped before "
                          "its first checkpoint, or output.checkpoint_every = 0): start it again")
    if overrides or config:
        raise ConfigError("--resume", str(run_dir), "given alone: a resumed run keeps its "
                          "config (no CONFIG or --set)")
    cfg = load_config(run_dir / CONFIG_FILE)
    run_file = run_dir / RUN_FILE
    engine = json.loads(run_file.read_text())["engine"] if run_file.exists() else engine
    return run_dir, cfg, engine


def run_command(config: str | None, overrides: list[str], engine: str, out: str | None,
                resume: str | Path | None) -> int:
    """``fedsim run``: a new run of ``config`` with ``--set`` ``overrides`` (after the
    ``FEDSIM_SET`` ones), or the continuation of the run folder ``resume``; prints the results
    folder and returns the exit code (130 on Ctrl-C, ``EXIT_NO_CONTRIBUTION`` when no client
    ever contributed). Sweeps start their trials through it too."""
    from fedsim.config import load_config
    from fedsim.config.load import environment_overrides
    from fedsim.config.shipped import find_config

    if resume:
        run_dir, cfg, engine = resume_target(resume, config, overrides, engine)
    else:
        if not config:
            raise ConfigError("CONFIG", None, "an experiment file (or --resume RUN_DIR)")
        cfg = load_config(find_config(config), [*environment_overrides(), *overrides])
        run_dir = prepare_run(cfg, engine, out)
    try:
        carry_out(cfg, engine, run_dir, new_run=not resume)
    except KeyboardInterrupt:
        return 130
    print(run_dir)
    return contribution_exit(run_dir)


def contribution_exit(run_dir: Path) -> int:
    """0, or ``EXIT_NO_CONTRIBUTION`` with its message when no client ever contributed."""
    from fedsim.results.contributions import EXIT_NO_CONTRIBUTION, no_contribution_message

    if (message := no_contribution_message(run_dir)) is None:
        return 0
    print(f"fedsim: error: {message}", file=sys.stderr)
    return EXIT_NO_CONTRIBUTION
