"""``fedsim simulate PATH_TO_FLOWER_APP``: a Flower app folder, unchanged, on the fedsim engine.

    fedsim simulate APP [--profiles FILE] [--run-config KEY=VALUE ...] [--num-supernodes N]
                        [--engine ray|inprocess] [--out DIR] [--seed S] [--compare-flower]
                        [--checkpoint-every K]

Reads the app's ``pyproject.toml`` as ``flwr run`` does, runs it with :func:`fedsim.simulate`
(results folder, byte meter, device profiles, virtual clock) and prints the metered uplink
and downlink and the seconds per round; ``--compare-flower`` then runs the same app under
Flower's simulation (``flwr run``) and prints the speed-up. ``--resume`` is refused with the
reason (:data:`fedsim.app_checkpoint.RESUME_REFUSAL`): the app's strategy state is its own.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

from fedsim.app_checkpoint import RESUME_REFUSAL
from fedsim.config.errors import ConfigError
from fedsim.flower_app import (
    FLOWER_DEFAULT_SUPERNODES,
    load_profiles_file,
    read_flower_app,
    run_config_overrides,
    run_under_flower,
)
from fedsim.result import RunResult

MB = 1e6
FLOWER_RUN = "flower-simulation"  # the --compare-flower run's folder, inside the results


def seconds_per_round(rows: list[dict[str, Any]]) -> float | None:
    """Median wall seconds of a round (training, evaluation and the ServerApp's work between
    two training phases), so that the start of the engine weighs on no figure."""
    seconds = [r["round_seconds"] for r in rows if r.get("round_seconds") is not None]
    return statistics.median(seconds) if seconds else None


def cmd_simulate(args: argparse.Namespace) -> int:
    from fedsim.simulation import simulate

    if args.resume is not None:
        raise ConfigError("--resume", args.resume, RESUME_REFUSAL)
    app = read_flower_app(args.app)
    run_config = run_config_overrides(app, args.run_config)
    n = args.num_supernodes if args.num_supernodes is not None else \
        app.num_supernodes or FLOWER_DEFAULT_SUPERNODES
    if n < 1:
        raise ConfigError("--num-supernodes", n, "a positive integer")
    profiles = load_profiles_file(args.profiles, n, args.seed) if args.profiles else None
    if profiles and args.engine != "ray":
        raise ConfigError("--profiles", args.profiles, "used with --engine ray only")
    sys.path.insert(0, str(app.path))  # the app's packages, as `flwr run` makes them
    print(f"fedsim: Flower app {app.name} ({app.serverapp}, {app.clientapp}) with {n} "
          f"supernodes on engine {args.engine}", file=sys.stderr)
    result = simulate(app.serverapp, app.clientapp, n, profiles=profiles, engine=args.engine,
                      run_config=run_config, out=args.out, seed=args.seed,
                      progress=not args.no_progress, name=app.name,
                      app_paths=[str(app.path)], checkpoint_every=args.checkpoint_every)
    s = result.summary
    per_round = seconds_per_round(result.metrics)
    print(f"results: {result.run_dir}")
    for way in ("uplink", "downlink"):
        total = s.get(f"total_{way}_bytes") or 0
        print(f"{way}: {total:,} bytes ({total / MB:.3f} MB) in training, "
              f"{s.get(f'total_evaluate_{way}_bytes') or 0:,} bytes in evaluation")
    if s.get("final_accuracy") is not None:
        print(f"final central accuracy: {s['final_accuracy']:.4f}")
    if per_round is not None:
        print(f"fedsim: {per_round:.3f} s per round (median)")
    if args.compare_flower:
        print("running the same app under Flower's simulation (flwr run) ...", file=sys.stderr)
        flower = run_under_flower(app, n, run_config, result.run_dir / FLOWER_RUN)
        flower_round = seconds_per_round(RunResult.from_dir(flower.run_dir).metrics)
        print(f"flower: {flower_round:.3f} s per round (median; results: {flower.run_dir})")
        if per_round and flower_round:
            print(f"speed-up: {flower_round / per_round:.2f}x")
    return 0


def add_simulate_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``fedsim simulate`` on the ``fedsim`` command's subparsers."""
    sim = sub.add_parser("simulate", help="run a Flower app folder on the fedsim engine "
                         "(metered, with a results folder)")
    sim.add_argument("app", metavar="PATH_TO_FLOWER_APP",
                     help="folder with the app's pyproject.toml ([tool.flwr.app])")
    sim.add_argument("--profiles", metavar="FILE",
                     help="TOML file of [[profiles]] tables (device profiles, ray engine)")
    sim.add_argument("--run-config", action="append", default=[], metavar="KEY=VALUE",
                     help="override a key of [tool.flwr.app.config] (TOML value; repeatable)")
    sim.add_argument("--num-supernodes", type=int, metavar="N",
                     help="virtual SuperNodes (default: the app's federation, else 2)")
    sim.add_argument("--engine", choices=("ray", "inprocess"), default="ray",
                     help="fedsim's Ray engine (default) or in-process")
    sim.add_argument("--out", help="results folder (default: results/APP-TIMESTAMP)")
    sim.add_argument("--seed", type=int, default=0, help="seed of node ids, device fates and "
                     "Python's random (default 0)")
    sim.add_argument("--no-progress", action="store_true", help="no progress bar; Flower's "
                     "log shown")
    sim.add_argument("--checkpoint-every", type=int, default=5, metavar="K",
                     help="save the model the clients received every K rounds, and the last "
                     "one sent at the end (0: never; default 5)")
    sim.add_argument("--resume", metavar="DIR", help="refused, with the reason: a Flower "
                     "app's strategy state lives in its own ServerApp, so it cannot resume")
    sim.add_argument("--compare-flower", action="store_true",
                     help="also run the app under Flower's simulation and print the speed-up")
    sim.set_defaults(func=cmd_simulate)
