"""A round closes (central evaluation, its metrics row) once its model is ready; an engine that
overlaps that with the next round's training writes the very same rows, in order, and a round
that fails still leaves every earlier row."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fedsim.engine.inprocess import InProcessGrid
from fedsim.federation import OnceLater
from fedsim.results.writer import read_metrics

from helpers import metrics_without_times, run_cli

ROUNDS = ("train.rounds=4", "train.clients_per_round=5")


def test_once_later_runs_each_work_exactly_once() -> None:
    ran: list[str] = []
    later = OnceLater()
    later.run()  # nothing held: nothing happens
    later.set(lambda: ran.append("a"))
    assert later.waiting and ran == []
    later.set(lambda: ran.append("b"))  # a new work first runs the one it replaces
    assert ran == ["a"]
    later.run()
    later.run()
    assert ran == ["a", "b"] and not later.waiting


class OverlappingGrid(InProcessGrid):
    """The in-process grid, made to run the held work in the middle of the next phase (after
    its first message, as the Ray grid does after its first batch) and, if asked, to fail."""

    fail_at_phase: int | None = None
    evaluation_threads = 1  # as the Ray grid's while its actors share this machine
    ran_inside: list[int] = []  # noqa: RUF012 - reset by each test

    def run_while_waiting(self, work: Callable[[], None]) -> None:
        self._work = work

    def send_and_receive(self, messages, *, timeout=None):
        messages = list(messages)
        self.phase = getattr(self, "phase", 0) + 1
        if self.phase == self.fail_at_phase:
            raise RuntimeError("simulated engine failure")
        replies = list(super().send_and_receive(messages[:1]))
        work, self._work = getattr(self, "_work", None), None
        if work is not None:
            self.ran_inside.append(self.phase)
            work()
        return replies + list(super().send_and_receive(messages[1:]))


def test_overlapped_closing_writes_the_same_rows_in_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, plain = run_cli(tmp_path / "plain", *ROUNDS)
    assert code == 0
    OverlappingGrid.ran_inside = []
    monkeypatch.setattr("fedsim.engine.inprocess.InProcessGrid", OverlappingGrid)
    code, overlapped = run_cli(tmp_path / "overlapped", *ROUNDS)
    assert code == 0
    # phase 1 finds the clients; rounds 1..3 close inside rounds 2..4, the last one at once
    assert OverlappingGrid.ran_inside == [3, 4, 5]
    assert metrics_without_times(overlapped) == metrics_without_times(plain)
    rows = read_metrics(overlapped)
    assert [r["round"] for r in rows] == [0, 1, 2, 3, 4]
    assert all(r["round_seconds"] > 0 for r in rows[1:])
    walls = [r["wall_seconds"] for r in rows]
    assert walls == sorted(walls)


def test_every_central_evaluation_runs_on_the_engines_thread_count(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Overlapped or not (round 0, the rounds closed while the next trains, the last one), so
    that kernels whose bits depend on the thread count give the same metrics every time."""
    import torch

    from fedsim.tasks.classification import _AccuracyEvaluator

    threads: list[int] = []
    real = _AccuracyEvaluator.__call__

    def spy(self, arrays, server_round):
        threads.append(torch.get_num_threads())
        return real(self, arrays, server_round)

    monkeypatch.setattr(_AccuracyEvaluator, "__call__", spy)
    monkeypatch.setattr("fedsim.engine.inprocess.InProcessGrid", OverlappingGrid)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        code, _ = run_cli(tmp_path / "r", *ROUNDS)
        assert torch.get_num_threads() == 2  # and given back after each evaluation
    finally:
        torch.set_num_threads(before)
    assert code == 0 and threads == [1] * 5


def test_a_failing_round_keeps_the_rows_before_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    OverlappingGrid.ran_inside = []
    monkeypatch.setattr(OverlappingGrid, "fail_at_phase", 4)  # round 3's training
    monkeypatch.setattr("fedsim.engine.inprocess.InProcessGrid", OverlappingGrid)
    with pytest.raises(RuntimeError, match="simulated engine failure"):
        run_cli(tmp_path / "r", *ROUNDS)
    rows = read_metrics(tmp_path / "r")
    # round 2 was still waiting for its closing when round 3 failed: it is written anyway
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert all("central_accuracy" in r for r in rows)


@pytest.mark.parametrize("requested", ["auto", "cpu"])
def test_the_central_evaluation_runs_where_eval_device_says(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, requested: str) -> None:
    """The round loop resolves ``eval.device`` in the server process (auto: CUDA where torch
    sees one there) and the evaluator keeps its model on that device for every evaluation."""
    import torch

    import fedsim.federation as federation
    from fedsim.tasks.classification import _AccuracyEvaluator

    asked: list[tuple[str, str]] = []
    placed: list[str] = []

    def resolve(value: str, field: str) -> torch.device:
        asked.append((value, field))
        return torch.device("cpu")

    real = _AccuracyEvaluator.__call__

    def spy(self, arrays, server_round):
        placed.append(str(next(self.model.parameters()).device))
        assert self.x.device == self.y.device == next(self.model.parameters()).device
        return real(self, arrays, server_round)

    monkeypatch.setattr(federation, "resolve_device", resolve)
    monkeypatch.setattr(_AccuracyEvaluator, "__call__", spy)
    code, _ = run_cli(tmp_path / "r", *ROUNDS, f"eval.device={requested}")
    assert code == 0
    assert asked == [(requested, "eval.device")]
    assert placed == ["cpu"] * 5
