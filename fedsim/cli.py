"""The ``fedsim`` command line: run, compare and list experiments.

    fedsim run CONFIG [--set key=value ...] [--engine ENGINE] [--out DIR]
    fedsim run --resume RUN_DIR
    fedsim compare RUN_DIR... [--out DIR]
    fedsim list
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from fedsim.config import ConfigError, load_config, save_config
from fedsim.run_dirs import RUN_FILE, new_run_dir

CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"
EXIT_USAGE = 2


def _quiet_logs() -> None:
    """Keep Flower's per-round INFO lines out of the progress bar."""
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    for name in ("flwr", "ray"):
        logging.getLogger(name).setLevel(logging.WARNING)


def resume_target(args: argparse.Namespace) -> tuple[Path, object, str]:
    """The results folder, resolved config and engine of the run to continue."""
    from fedsim.checkpoint import CHECKPOINT_FILE
    from fedsim.results.writer import CONFIG_FILE

    run_dir = Path(args.resume)
    if not (run_dir / CONFIG_FILE).exists():
        raise ConfigError("--resume", str(run_dir), "a fedsim results folder (with config.toml)")
    if not (run_dir / CHECKPOINT_FILE).exists():
        raise ConfigError("--resume", str(run_dir), "a run with a checkpoint (it stopped before "
                          "its first checkpoint, or output.checkpoint_every = 0): start it again")
    if args.set or args.config:
        raise ConfigError("--resume", str(run_dir), "given alone: a resumed run keeps its "
                          "config (no CONFIG or --set)")
    cfg = load_config(run_dir / CONFIG_FILE)
    run_file = run_dir / RUN_FILE
    engine = json.loads(run_file.read_text())["engine"] if run_file.exists() else args.engine
    return run_dir, cfg, engine


def check_local_device(cfg, engine: str) -> None:
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


def cmd_run(args: argparse.Namespace) -> int:
    from fedsim.engine import run_engine
    from fedsim.progress import RoundProgress
    from fedsim.results.writer import CONFIG_FILE, SUMMARY_FILE
    from fedsim.tasks.task import preflight

    started = time.monotonic()
    if args.resume:
        run_dir, cfg, engine = resume_target(args)
        config_path = (run_dir / CONFIG_FILE).resolve()
    else:
        if not args.config:
            raise ConfigError("CONFIG", None, "an experiment file (or --resume RUN_DIR)")
        cfg = load_config(args.config, args.set)
        preflight(cfg.task, cfg.seed)
        engine = args.engine
        check_local_device(cfg, engine)
        run_dir = new_run_dir(args.out, cfg.output.dir, cfg.name)
        config_path = (run_dir / CONFIG_FILE).resolve()
        save_config(cfg, config_path)
        (run_dir / RUN_FILE).write_text(json.dumps({"engine": engine}) + "\n")
    args.engine = engine
    print(f"fedsim: {cfg.name}: {cfg.strategy_name} on {cfg.task.dataset} "
          f"({cfg.task.num_clients} clients, {cfg.train.rounds} rounds, engine {args.engine})"
          f"\nresults: {run_dir}", file=sys.stderr)
    _quiet_logs()
    progress = RoundProgress(run_dir, cfg.train.rounds).start()
    try:
        run_engine(args.engine, cfg, config_path, run_dir)
    except KeyboardInterrupt:
        progress.stop()
        print(f"fedsim: interrupted; the rounds finished so far are in {run_dir}; continue "
              f"with: fedsim run --resume {run_dir}", file=sys.stderr)
        return 130
    finally:
        progress.stop()
    summary_path = run_dir / SUMMARY_FILE
    if summary_path.exists():
        s = json.loads(summary_path.read_text())
        acc = s.get("final_accuracy")
        reached = (f"; final accuracy {acc:.4f}; rounds to {s['target_accuracy']:.0%}: "
                   f"{s.get('rounds_to_target')}" if acc is not None else "")
        rounds_s = s.get("wall_seconds") or 0.0
        print(f"fedsim: done in {time.monotonic() - started:.1f} s ({rounds_s:.1f} s in the "
              f"federation, the rest starting and stopping the engine){reached}",
              file=sys.stderr)
        if s.get("final_task_metrics"):
            shown = ", ".join(f"{k} {v:.4g}" for k, v in s["final_task_metrics"].items())
            print(f"fedsim: final {shown}", file=sys.stderr)
    print(run_dir)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from fedsim.results.compare import compare_runs

    run_dirs = [Path(d) for d in args.runs]
    for d in run_dirs:
        if not (d / "metrics.jsonl").exists():
            raise ConfigError("RUN_DIR", str(d), "a fedsim results folder (with metrics.jsonl)")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else Path("results") / f"compare-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    print(compare_runs(run_dirs, out))
    print(f"plots: {out}", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from fedsim.config.schema import DATASETS, MODELS, PARTITIONERS
    from fedsim.engine import ENGINES
    from strategies.registry import get_strategy, strategy_names

    print("strategies:")
    for name in strategy_names():
        print(f"  {name:<14} {get_strategy(name).summary}")
    print("datasets:    " + ", ".join(DATASETS))
    print("models:      " + ", ".join(MODELS))
    print("partitioners: " + ", ".join(PARTITIONERS))
    print("engines:     " + ", ".join(ENGINES))
    print("configs:")
    for path in sorted(CONFIGS_DIR.glob("*.toml")):
        print(f"  {path.relative_to(CONFIGS_DIR.parent)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from fedsim.engine import DEFAULT_ENGINE, ENGINES

    parser = argparse.ArgumentParser(prog="fedsim", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a federated experiment from a TOML config")
    run.add_argument("config", nargs="?", help="experiment file, e.g. configs/quickstart.toml")
    run.add_argument("--resume", metavar="RUN_DIR",
                     help="continue an interrupted run from its last checkpoint")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a setting, e.g. --set train.rounds=50 (repeatable)")
    run.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE,
                     help=f"what carries the messages (default: {DEFAULT_ENGINE})")
    run.add_argument("--out", help="results folder (default: OUTPUT_DIR/NAME-TIMESTAMP)")
    run.set_defaults(func=cmd_run)
    cmp = sub.add_parser("compare", help="overlay the plots and tabulate several runs")
    cmp.add_argument("runs", nargs="+", metavar="RUN_DIR")
    cmp.add_argument("--out", help="folder for the plots and comparison.md")
    cmp.set_defaults(func=cmd_compare)
    lst = sub.add_parser("list", help="strategies, tasks, engines and ready-made configs")
    lst.set_defaults(func=cmd_list)
    from fedsim.deploy.commands import add_deploy_parser
    from fedsim.sweep.commands import add_sweep_parser

    add_deploy_parser(sub)
    add_sweep_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``fedsim``'s exit code: 0 done, 2 bad input (argparse's usage errors included: they
    have printed their one line naming the argument; ``--help`` returns 0)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"fedsim: config error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
