"""The poisoning table: one Byzantine client of ten against the weighted mean, the guards and
the robust aggregates (docs/robustness.md).

Digits (bundled, offline), 10 IID clients (``--partitioner``), logistic regression, FedAvg
on the inprocess engine. Partition 3 is the attacker (``faults.attackers = [3]``): in every
round its train reply claims num-examples = 2**53 and carries 3e38 in every coordinate
(finite, so it passes the NaN/Inf check). Six runs, same seed:

    clean                     no attacker, default guards
    attacked, no guards       robust.weight_bound = "off", robust.max_update_norm = 0
    attacked, guards          the defaults ([robust]: partition weight caps, norm bound 1e4)
    attacked, median          no guards, robust.aggregation = "median"
    attacked, trimmed mean    no guards, robust.aggregation = "trimmed-mean", trim 0.1
    huge weight only, guards  the weight is clamped to the partition's size, not dropped

Run:  PYTHONPATH=. python benchmarks/poisoning.py [--rounds R] [--out DIR]
Prints a markdown table of the final central accuracy of each run and its gap to the clean one.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from fedsim.cli import main

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "quickstart.toml"
ATTACK = ("faults.attackers=[3]", 'faults.attacks=["huge-weight", "huge-values"]')
NO_GUARDS = ('robust.weight_bound="off"', "robust.max_update_norm=0")
RUNS: list[tuple[str, tuple[str, ...]]] = [
    ("clean", ()),
    ("attacked, no guards (weighted mean)", ATTACK + NO_GUARDS),
    ("attacked, guards (weighted mean)", ATTACK),
    ("attacked, no guards, median", ATTACK + NO_GUARDS + ('robust.aggregation="median"',)),
    ("attacked, no guards, trimmed mean (beta 0.1)",
     ATTACK + NO_GUARDS + ('robust.aggregation="trimmed-mean"', "robust.trim_fraction=0.1")),
    ("attacked by huge weight only, guards (weighted mean)",
     ("faults.attackers=[3]", 'faults.attacks=["huge-weight"]')),
]


def run_one(out: Path, rounds: int, overrides: tuple[str, ...], partitioner: str) -> dict:
    """Run the quickstart config with ``overrides``; its summary.json."""
    args = ["run", str(CONFIG), "--out", str(out), "--engine", "inprocess",
            "--set", f"train.rounds={rounds}", "--set", "eval.federated_every=0",
            "--set", "output.plots=false", "--set", "output.checkpoint_every=0",
            "--set", f'task.partitioner="{partitioner}"']
    for item in overrides:
        args += ["--set", item]
    rc = main(args)
    if rc != 0:
        raise SystemExit(f"run {out.name} failed with exit code {rc}")
    return json.loads((out / "summary.json").read_text())


def poisoning_table(rounds: int, out: Path, partitioner: str = "iid") -> list[
        tuple[str, float, int, int]]:
    """(label, final accuracy, train replies rejected, weights clamped) of each run."""
    rows = []
    for i, (label, overrides) in enumerate(RUNS):
        summary = run_one(out / f"run{i}", rounds, overrides, partitioner)
        clamped = sum(json.loads(line).get("kind") == "clamped" for line in
                      (out / f"run{i}" / "client_problems.jsonl").read_text().splitlines()) \
            if (out / f"run{i}" / "client_problems.jsonl").exists() else 0
        rows.append((label, float(summary["final_accuracy"]), int(summary["train_rejected"]),
                     clamped))
    return rows


def markdown(rows: list[tuple[str, float, int, int]]) -> str:
    clean = rows[0][1]
    lines = ["| run | final accuracy | vs clean (points) | replies rejected | weights clamped |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {label} | {acc:.4f} | {100 * (acc - clean):+.1f} | {rej} | {clamp} |"
              for label, acc, rej, clamp in rows]
    return "\n".join(lines)


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--partitioner", default="iid", help="task.partitioner (iid, as Yin et "
                        "al. assume; dirichlet shows the median's bias under label skew)")
    parser.add_argument("--out", help="keep the five results folders here (default: a "
                        "temporary folder)")
    args = parser.parse_args()
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        rows = poisoning_table(args.rounds, out, args.partitioner)
    print(f"\n{markdown(rows)}\n\n{args.rounds} rounds each, {args.partitioner} partitions, "
          f"{time.monotonic() - start:.0f} s in all")


if __name__ == "__main__":
    main_cli()
