"""The ``fedsim`` command line: run, compare and list experiments.

    fedsim run CONFIG|NAME [--set key=value ...] [--engine ENGINE] [--out DIR]
    fedsim run --resume RUN_DIR
    fedsim compare RUN_DIR... [--out DIR]
    fedsim list
    fedsim --version
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from fedsim import __version__
from fedsim.config import ConfigError, load_config
from fedsim.config.load import environment_overrides
from fedsim.config.shipped import configs_dir, find_config
from fedsim.engine.profiles import EXIT_NO_NODE, ProfileUnhostable
from fedsim.run_dirs import RUN_FILE

CONFIGS_DIR = configs_dir()
EXIT_USAGE = 2


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


def version_line() -> str:
    """What ``fedsim --version`` prints: the version, the distribution that installed this
    package and where it is imported from, and a warning when other distributions install a
    package of the same name (the unrelated ``fedsim`` on PyPI does; see docs/install.md)."""
    from importlib.metadata import packages_distributions, version

    where = Path(__file__).resolve().parent
    dists = sorted(set(packages_distributions().get("fedsim", [])))
    installed = ", ".join(dists) if dists else "not installed: a source folder"
    line = f"fedsim {__version__} ({installed}) at {where}"
    if len(dists) > 1:
        shown = ", ".join(f"{name} {version(name)}" for name in dists)
        line += (f"\nwarning: the distributions {shown} each install a package named "
                 "'fedsim' into this environment, over each other's files; uninstall them "
                 "and reinstall fedsim-flower alone (docs/install.md)")
    return line


class VersionAction(argparse.Action):
    """``--version``: print :func:`version_line` and exit (computed only when asked)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(version_line())
        parser.exit()


def cmd_run(args: argparse.Namespace) -> int:
    from fedsim.launch import carry_out, prepare_run

    if args.resume:
        run_dir, cfg, engine = resume_target(args)
    else:
        if not args.config:
            raise ConfigError("CONFIG", None, "an experiment file (or --resume RUN_DIR)")
        cfg = load_config(find_config(args.config), [*environment_overrides(), *args.set])
        engine = args.engine
        run_dir = prepare_run(cfg, engine, args.out)
    args.engine = engine
    try:
        carry_out(cfg, engine, run_dir)
    except KeyboardInterrupt:
        return 130
    print(run_dir)
    return _contribution_exit(run_dir)


def _contribution_exit(run_dir: Path) -> int:
    """0, or ``EXIT_NO_CONTRIBUTION`` with its message when no client ever contributed."""
    from fedsim.results.contributions import EXIT_NO_CONTRIBUTION, no_contribution_message

    if (message := no_contribution_message(run_dir)) is None:
        return 0
    print(f"fedsim: error: {message}", file=sys.stderr)
    return EXIT_NO_CONTRIBUTION


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
    parser.add_argument("--version", action=VersionAction,
                        help="print the version and where fedsim is installed, and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a federated experiment from a TOML config")
    run.add_argument("config", nargs="?", help="experiment file (configs/fedlion.toml) or the "
                     "name of a shipped config (quickstart; fedsim list shows them)")
    run.add_argument("--resume", metavar="RUN_DIR",
                     help="continue an interrupted run from its last checkpoint")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a setting, e.g. --set train.rounds=50 (repeatable; "
                     "FEDSIM_SET in the environment adds space-separated ones first)")
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

    add_deploy_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``fedsim``'s exit code: 0 done, 2 bad input (argparse's usage errors included: they
    have printed their one line naming the argument; ``--help`` returns 0), 4 no client
    contributed to the run (``fedsim.results.contributions``)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"fedsim: config error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except ProfileUnhostable as err:  # a cluster node lost mid-run, nowhere to go
        print(f"fedsim: stopped: {err}", file=sys.stderr)
        return EXIT_NO_NODE


if __name__ == "__main__":
    sys.exit(main())
