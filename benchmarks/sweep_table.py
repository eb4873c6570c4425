"""The digits strategy table over seeds, with tuned learning rates: ``fedsim sweep`` against the
same runs made one after another with ``fedsim run``.

    python benchmarks/sweep_table.py [--seeds 5] [--samples 8] [--out DIR]
                                     [--skip-search] [--skip-sequential] [--lr NAME=LR ...]

Three steps, each a plain fedsim command run as a subprocess and timed from outside:

1. **Learning-rate search** for FedAvg, FedLion and z-SignFedAvg: per strategy, ``--samples``
   client learning rates drawn log-uniformly from [1e-3, 1] (``train.lr``), one seed each, once
   with ASHA (``--asha central_accuracy:max``, grace period 5 rounds, reduction factor 2) and
   once without; the two sweeps of a strategy run back to back (alternating which goes first)
   so that a change in the machine's load hits both. The best rate of a strategy is the
   sample with the highest final accuracy among the trials the ASHA sweep let finish; the
   script also prints the best of the full search (ASHA may stop a rate that starts slowly
   and ends best: the price of its saving).
2. **The table**: the README's eleven digits runs (docs/strategies.md) over ``--seeds`` seeds
   with the tuned rates (FedLion's rate also for its bf16/fp16 momentum variants), as ONE
   ``fedsim sweep`` (Ray Tune trials on the inprocess engine, one per core at a time).
3. **Sequential**: the same configs × seeds, one ``fedsim run`` after another with each
   config's own engine (as a user without sweeps runs them); the final accuracies must equal
   the sweep's trial for trial (fedsim's engines give the same results for the same seed).

Prints the search times (with and without ASHA, and the saving), the tuned rates, the table
(sweep.md), the sweep's and the sequential wall times and their ratio.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
SEARCHED = ("fedavg", "fedlion", "zsignfedavg")
SEARCH_SPACE = "train.lr=loguniform:1e-3:1"
ASHA = ("--asha", "central_accuracy:max", "--grace-period", "5", "--reduction-factor", "2")
# The README's digits table (docs/strategies.md): (name, config file, extra overrides).
TABLE: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("fedavg", "fedavg", ()),
    ("fedadam", "fedadam", ()),
    ("fedlion", "fedlion", ()),
    ("fedlion-bf16", "fedlion", ("name=fedlion-bf16", 'strategy.momentum_dtype="bf16"')),
    ("fedlion-fp16", "fedlion", ("name=fedlion-fp16", 'strategy.momentum_dtype="fp16"')),
    ("zsignfedavg", "zsignfedavg", ()),
    ("signsgd", "signsgd", ()),
    ("sto_signsgd", "sto_signsgd", ()),
    ("ef_signsgd", "ef_signsgd", ()),
    ("fedda", "fedda", ()),
    ("fafed", "fafed", ()),
)


def fedsim(*args: str, log: Path) -> float:
    """Run ``python -m fedsim ARGS`` to completion (output to ``log``); its wall seconds."""
    start = time.perf_counter()
    with open(log, "a", encoding="utf-8") as out:
        rc = subprocess.call([sys.executable, "-m", "fedsim", *args], stdout=out,
                             stderr=subprocess.STDOUT, cwd=REPO)
    if rc != 0:
        raise SystemExit(f"fedsim {' '.join(args)} failed with exit code {rc}; see {log}")
    return time.perf_counter() - start


def read_csv(sweep_dir: Path) -> list[dict[str, str]]:
    with open(sweep_dir / "sweep.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def best_lr(sweep_dir: Path) -> tuple[float, float]:
    """(lr, final accuracy) of the finished trial with the highest final accuracy."""
    rows = [r for r in read_csv(sweep_dir) if r["status"] == "finished" and r["final_accuracy"]]
    best = max(rows, key=lambda r: float(r["final_accuracy"]))
    return float(best["train.lr"]), float(best["final_accuracy"])


def search(out: Path, samples: int, log: Path) -> dict[str, float]:
    """Step 1: per strategy, the search with and without ASHA; the tuned rates."""
    tuned, saved = {}, []
    print(f"## Learning-rate search: {samples} samples of {SEARCH_SPACE}, 1 seed\n")
    print("| strategy | without ASHA s | with ASHA s | saved | trials stopped | best lr "
          "(ASHA) | final acc | best lr (full) | final acc |")
    print("|---|---|---|---|---|---|---|---|---|")
    for i, name in enumerate(SEARCHED):
        config = str(CONFIGS / f"{name}.toml")
        base = [config, "--search", SEARCH_SPACE, "--samples", str(samples), "--seeds", "1"]
        full_dir, asha_dir = out / f"search-full-{name}", out / f"search-asha-{name}"
        order = [("full", full_dir), ("asha", asha_dir)]
        seconds = {}
        for kind, folder in order if i % 2 == 0 else order[::-1]:
            extra = ASHA if kind == "asha" else ()
            seconds[kind] = fedsim("sweep", *base, *extra, "--out", str(folder), log=log)
        stopped = sum(r["status"] == "stopped" for r in read_csv(asha_dir))
        lr_asha, acc_asha = best_lr(asha_dir)
        lr_full, acc_full = best_lr(full_dir)
        tuned[name] = lr_asha
        saved.append(1 - seconds["asha"] / seconds["full"])
        print(f"| {name} | {seconds['full']:.1f} | {seconds['asha']:.1f} | {saved[-1]:.0%} | "
              f"{stopped}/{samples} | {lr_asha:.4g} | {acc_asha:.4f} | {lr_full:.4g} | "
              f"{acc_full:.4f} |", flush=True)
    print()
    return tuned


def table_runs(tuned: dict[str, float]) -> list[tuple[str, str, tuple[str, ...]]]:
    """The table's (name, config path, overrides), the tuned rates applied."""
    runs = []
    for name, config, extra in TABLE:
        lr = (f"train.lr={tuned[config]!r}",) if config in tuned else ()
        runs.append((name, str(CONFIGS / f"{config}.toml"), extra + lr))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--out", type=Path, help="work folder (default: a new temporary one)")
    parser.add_argument("--skip-search", action="store_true",
                        help="use the configs' own rates (or --lr) instead of searching")
    parser.add_argument("--skip-sequential", action="store_true")
    parser.add_argument("--lr", action="append", default=[], metavar="NAME=LR",
                        help="a strategy's rate when the search is skipped")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="fedsim-sweep-table-"))
    out.mkdir(parents=True, exist_ok=True)
    log = out / "commands.log"
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    print(f"work folder {out} (command output in {log.name})\n", flush=True)

    tuned = {k: float(v) for k, v in (item.split("=", 1) for item in args.lr)}
    if not args.skip_search:
        tuned = search(out, args.samples, log)
    runs = table_runs(tuned)
    print("tuned rates:", json.dumps(tuned), "\n", flush=True)

    sweep_dir = out / "table"
    specs = [path + "".join(f"@{o}" for o in extra) for _, path, extra in runs]
    sweep_s = fedsim("sweep", *specs, "--seeds", str(args.seeds), "--name", "digits-table",
                     "--out", str(sweep_dir), log=log)
    print(f"## The table: {len(runs)} configs x {args.seeds} seeds = "
          f"{len(runs) * args.seeds} runs as one fedsim sweep: {sweep_s:.1f} s\n")
    print((sweep_dir / "sweep.md").read_text(), flush=True)
    if args.skip_sequential:
        return

    swept = {(r["config"], int(r["seed"])): r["final_accuracy"] for r in read_csv(sweep_dir)}
    seq_s, equal, total = 0.0, 0, 0
    for name, path, extra in runs:
        for seed in range(args.seeds):
            folder = out / "sequential" / f"{name}-seed{seed}"
            sets = [a for o in (*extra, f"seed={seed}") for a in ("--set", o)]
            seq_s += fedsim("run", path, *sets, "--out", str(folder), log=log)
            final = json.loads((folder / "summary.json").read_text())["final_accuracy"]
            total += 1
            equal += repr(final) == swept.get((name, seed))
    print(f"## Sweep against sequential fedsim run\n\n"
          f"- one fedsim sweep, {total} runs: {sweep_s:.1f} s\n"
          f"- the same {total} runs one after another with fedsim run: {seq_s:.1f} s\n"
          f"- sequential / sweep: {seq_s / sweep_s:.2f}x\n"
          f"- final accuracy equal to the sweep's, trial for trial: {equal}/{total}")


if __name__ == "__main__":
    main()
