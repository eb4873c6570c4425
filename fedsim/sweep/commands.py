"""``fedsim sweep``: the command line of sweeps.

    fedsim sweep CONFIG [CONFIG ...] [--grid KEY=V1,V2,...]... [--seeds N] [--concurrent M]
                 [--search KEY=DIST:LOW:HIGH --samples K] [--asha METRIC:MODE] [--out DIR]
    fedsim sweep --resume SWEEP_DIR

A CONFIG may carry its own overrides, ``PATH@KEY=VALUE[@KEY=VALUE...]`` (e.g. two variants of
one file: ``configs/fedlion.toml@name=fedlion-bf16@strategy.momentum_dtype=bf16``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from fedsim.config import ConfigError, load_config, save_config
from fedsim.config.shipped import find_config
from fedsim.run_dirs import new_run_dir
from fedsim.sweep.manifest import SweepManifest, trial_status
from fedsim.sweep.search import sample_settings
from fedsim.sweep.trials import build_trials, grid_points, parse_grid

EXIT_INTERRUPTED = 130
CONFIGS_FOLDER = "configs"  # the sweep's copies of its resolved configs
METRIC_MODES = ("max", "min")


def add_sweep_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``fedsim sweep`` on the main parser's subcommands."""
    p = sub.add_parser("sweep", help="settings x seeds as Ray Tune trials; mean ± std tables",
                       description="Run configs x settings x seeds as Ray Tune trials, each "
                       "an ordinary fedsim run, and tabulate mean ± std over the seeds "
                       "(docs/sweeps.md).", epilog=__doc__.split("\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("configs", nargs="*", metavar="CONFIG",
                   help="experiment file(s), each optionally PATH@KEY=VALUE@...")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="values of one setting; several --grid make a cross product")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="seeds 0..N-1 of every setting (default 1)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting of every config, as in fedsim run")
    p.add_argument("--search", action="append", default=[], metavar="KEY=DIST:A:B",
                   help="sample a setting: uniform:LOW:HIGH, loguniform:LOW:HIGH, "
                   "randint:LOW:HIGH, choice:A:B:...")
    p.add_argument("--samples", type=int, default=0, metavar="K",
                   help="settings drawn for --search (each run with every seed)")
    p.add_argument("--asha", metavar="METRIC:MODE",
                   help="stop hopeless trials early (Tune's ASHA on rounds), e.g. "
                   "central_accuracy:max")
    p.add_argument("--grace-period", type=int, default=2, metavar="ROUNDS",
                   help="ASHA: rounds every trial runs before it can be stopped (default 2)")
    p.add_argument("--reduction-factor", type=float, default=2.0, metavar="ETA",
                   help="ASHA: 1/ETA of the trials go on at each rung (default 2)")
    p.add_argument("--concurrent", type=int, metavar="M",
                   help="trials at once, one CPU each (default: the number of cores)")
    p.add_argument("--name", help="sweep name (default: sweep-NAME of the first config)")
    p.add_argument("--out", help="sweep folder (default: OUTPUT_DIR/SWEEP-TIMESTAMP)")
    p.add_argument("--resume", metavar="SWEEP_DIR",
                   help="continue a stopped sweep: finished trials stay, started ones resume")
    p.set_defaults(func=cmd_sweep)


def _positive(name: str, value: int | None, allowed: str = "an integer >= 1") -> None:
    if value is not None and value < 1:
        raise ConfigError(name, value, allowed)


def parse_asha(args: argparse.Namespace, max_t: int) -> dict[str, Any] | None:
    if not args.asha:
        return None
    metric, _, mode = args.asha.rpartition(":")
    if not metric or mode not in METRIC_MODES:
        raise ConfigError("--asha", args.asha, "METRIC:MODE with MODE max or min, e.g. "
                          "central_accuracy:max")
    _positive("--grace-period", args.grace_period)
    if args.reduction_factor <= 1:
        raise ConfigError("--reduction-factor", args.reduction_factor, "a number > 1")
    return {"metric": metric, "mode": mode, "grace_period": args.grace_period,
            "reduction_factor": args.reduction_factor, "max_t": max_t}


def default_concurrency(requested: int | None, ray_address: str) -> int:
    """One trial per core by default; more than the cores would oversubscribe this machine."""
    cores = os.cpu_count() or 1
    _positive("--concurrent", requested)
    if requested and requested > cores and not ray_address:
        raise ConfigError("--concurrent", requested, f"at most {cores}, the cores of this "
                          "machine (each trial holds one)")
    return requested or cores


def prepare_sweep(args: argparse.Namespace) -> tuple[Path, SweepManifest, str]:
    """Resolve the configs, copy them into a new sweep folder, list the trials (manifest)."""
    if not args.configs:
        raise ConfigError("CONFIG", None, "at least one experiment file (or --resume SWEEP_DIR)")
    _positive("--seeds", args.seeds)
    if bool(args.search) != bool(args.samples):
        raise ConfigError("--samples" if args.search else "--search", args.samples or None,
                          "--search and --samples K together")
    grid = parse_grid(args.grid)
    resolved = []
    for text in args.configs:
        path, *variant = text.split("@")
        cfg = load_config(find_config(path), [*args.set, *variant])
        resolved.append(cfg)
    names = [cfg.name for cfg in resolved]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError("CONFIG", name, "configs with distinct names (give one its own "
                              "with PATH@name=NEW)")
    name = args.name or f"sweep-{names[0]}"
    copies = [(f"{CONFIGS_FOLDER}/{i:02d}-{cfg.name}.toml", cfg.name)
              for i, cfg in enumerate(resolved)]
    points = grid_points(grid)
    if args.search:
        samples = sample_settings(args.search, args.samples, seed=resolved[0].seed)
        points = [{**p, **s} for p in points for s in samples]
    trials = build_trials(copies, points, list(range(args.seeds)))
    sources = {rel: text.split("@") for (rel, _), text in zip(copies, args.configs, strict=True)}
    for trial in trials:
        if trial.seed == 0:  # every setting's keys and values checked before anything starts
            path, *variant = sources[trial.config]
            load_config(find_config(path), [*args.set, *variant, *trial.overrides()])
    keys = list(grid) + [text.split("=", 1)[0].strip() for text in args.search]
    manifest = SweepManifest(
        name=name, trials=trials, grid_keys=keys,
        concurrent=default_concurrency(args.concurrent, resolved[0].engine.ray_address),
        asha=parse_asha(args, max(cfg.train.rounds for cfg in resolved)))
    sweep_dir = new_run_dir(args.out, resolved[0].output.dir, name).resolve()
    (sweep_dir / CONFIGS_FOLDER).mkdir()
    for (rel, _), cfg in zip(copies, resolved, strict=True):
        if "mlflow" in cfg.output.loggers:  # every trial of the sweep in one MLflow store
            cfg.output.mlflow_uri = cfg.output.mlflow_uri or (Path.cwd() / "mlruns").as_uri()
            cfg.output.mlflow_experiment = cfg.output.mlflow_experiment or name
        save_config(cfg, sweep_dir / rel)
    manifest.save(sweep_dir)
    return sweep_dir, manifest, resolved[0].engine.ray_address


def resume_sweep(args: argparse.Namespace) -> tuple[Path, SweepManifest, str]:
    if args.configs or args.grid or args.search or args.set:
        raise ConfigError("--resume", args.resume, "given alone: a resumed sweep keeps its "
                          "trials (no CONFIG, --grid, --search or --set)")
    sweep_dir = Path(args.resume).resolve()
    manifest = SweepManifest.load(sweep_dir)
    if args.concurrent:
        manifest.concurrent = default_concurrency(args.concurrent, "")
    first = load_config(sweep_dir / manifest.trials[0].config)
    return sweep_dir, manifest, first.engine.ray_address


def cmd_sweep(args: argparse.Namespace) -> int:
    from fedsim.launch import quiet_logs
    from fedsim.sweep.table import write_tables
    from fedsim.sweep.tune_runner import dump_errors, run_trials, sweep_ray

    started = time.monotonic()
    sweep_dir, manifest, address = resume_sweep(args) if args.resume else prepare_sweep(args)
    done = {"finished", "stopped"}
    pending = [t.index for t in manifest.trials if trial_status(sweep_dir, t) not in done]
    print(f"fedsim sweep: {manifest.name}: {len(manifest.trials)} trials, {len(pending)} to "
          f"run, {manifest.concurrent} at once\nsweep: {sweep_dir}", file=sys.stderr)
    quiet_logs()
    errors: list[str] = []
    if pending:
        with sweep_ray(address, manifest.concurrent):
            errors = run_trials(sweep_dir, manifest, pending)
    dump_errors(sweep_dir, errors)
    print(write_tables(sweep_dir, manifest, time.monotonic() - started, len(pending)))
    left = [t.index for t in manifest.trials if trial_status(sweep_dir, t) not in done]
    for line in errors:
        print(f"fedsim sweep: {line}", file=sys.stderr)
    if left:
        print(f"fedsim sweep: {len(left)} trials not finished; continue with: fedsim sweep "
              f"--resume {sweep_dir}", file=sys.stderr)
        return 1 if errors else EXIT_INTERRUPTED
    print(sweep_dir)
    return 0
