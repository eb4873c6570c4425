"""A failing client becomes a counted error reply; the round goes on with the others."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsim.results.writer import read_metrics
from strategies import local_sgd

from helpers import run_cli


def test_client_exception_is_counted_not_fatal(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    real_train = local_sgd.LocalSGD.train

    def flaky(self, local):
        if local.partition_id in (2, 5):
            raise RuntimeError("simulated device failure")
        return real_train(self, local)

    monkeypatch.setattr(local_sgd.LocalSGD, "train", flaky)
    code, run_dir = run_cli(tmp_path / "r", "train.rounds=3")
    assert code == 0
    rows = read_metrics(run_dir)[1:]
    assert [r["train_failures"] for r in rows] == [2, 2, 2]
    assert [r["train_replies"] for r in rows] == [8, 8, 8]
    assert rows[-1]["central_accuracy"] > 0.6
