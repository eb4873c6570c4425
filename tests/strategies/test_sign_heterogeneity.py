"""As in the z-SignFedAvg paper (arXiv 2302.02589): on one-class-per-client digits, SignSGD
with sigma = 0 (majority vote) stalls while z-SignFedAvg with sigma > 0 learns."""

from __future__ import annotations

from pathlib import Path

from strategy_fixtures import run_config

from fedsim.results.writer import read_metrics

ONE_CLASS = ("task.model=logreg", "task.partitioner=pathological", "task.classes_per_client=1",
             "task.num_clients=10",
             "train.clients_per_round=10", "train.rounds=15", "train.local_steps=5",
             "train.lr=0.1", "eval.central_every=5", "eval.federated_every=0",
             "output.plots=false")


def _accuracies(run_dir: Path) -> list[float]:
    return [r["central_accuracy"] for r in read_metrics(run_dir) if "central_accuracy" in r]


def test_signsgd_fails_and_z_signfedavg_learns_on_one_class_per_client(tmp_path: Path) -> None:
    sign = _accuracies(run_config(tmp_path / "signsgd", "signsgd.toml", *ONE_CLASS,
                                  "strategy.server_lr=0.01"))
    noisy = _accuracies(run_config(tmp_path / "zsign", "zsignfedavg.toml", *ONE_CLASS,
                                   "strategy.z=inf", "strategy.sigma=0.2",
                                   "strategy.server_lr=3.0", "strategy.aggregation=mean"))
    assert max(sign) < 0.2  # stuck at chance: the vote is the same every round
    assert noisy[-1] > 0.35 and noisy[-1] > noisy[0] + 0.2
