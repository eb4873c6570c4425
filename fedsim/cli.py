"""The ``fedsim`` command line: run, compare and list experiments.

    fedsim run CONFIG|NAME [--set key=value ...] [--engine ENGINE] [--out DIR]
    fedsim run --resume RUN_DIR
    fedsim compare RUN_DIR... [--out DIR]
    fedsim list
    fedsim --version
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fedsim import DISTRIBUTION, __version__
from fedsim.config import ConfigError
from fedsim.config.shipped import configs_dir
from fedsim.engine.errors import EngineError
from fedsim.engine.profiles import EXIT_NO_NODE, ProfileUnhostable

CONFIGS_DIR = configs_dir()
EXIT_USAGE = 2


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
                 f"and reinstall {DISTRIBUTION} alone (docs/install.md)")
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
    from fedsim.launch import run_command

    return run_command(args.config, args.set, args.engine, args.out, args.resume)


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
    from fedsim.engine import ENGINES
    from fedsim.listing import list_params, list_registries

    if getattr(args, "params", None):
        print(list_params(args.params))
        return 0
    print(list_registries())
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
    lst = sub.add_parser("list", help="strategies, models, datasets, task kinds, codecs (with "
                         "where each name comes from), engines and ready-made configs")
    lst.add_argument("--params", metavar="NAME",
                     help="a strategy's or task kind's settings with defaults, ranges and docs")
    lst.set_defaults(func=cmd_list)
    from fedsim.deploy.commands import add_deploy_parser
    from fedsim.simulate_cli import add_simulate_parser
    from fedsim.sweep.commands import add_sweep_parser

    add_deploy_parser(sub)
    add_simulate_parser(sub)
    add_sweep_parser(sub)
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
    except EngineError as err:
        print(f"fedsim: {err}", file=sys.stderr)
        return 1
    except ProfileUnhostable as err:  # a cluster node lost mid-run, nowhere to go
        print(f"fedsim: stopped: {err}", file=sys.stderr)
        return EXIT_NO_NODE


if __name__ == "__main__":
    sys.exit(main())
