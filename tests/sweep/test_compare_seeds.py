"""fedsim compare groups runs that differ only in seed: mean ± std over them, band plots;
one seed per group keeps the single-run table alone."""

from __future__ import annotations

from pathlib import Path

from fedsim.cli import main

from .sweep_helpers import fake_run


def test_compare_groups_runs_that_differ_only_in_seed(tmp_path: Path, capsys) -> None:
    fake_run(tmp_path / "a0", [0.1, 0.4, 0.6], overrides=("seed=0",))
    fake_run(tmp_path / "a1", [0.1, 0.3, 0.4], overrides=("seed=1", "output.dir='elsewhere'"))
    fake_run(tmp_path / "b0", [0.1, 0.7, 0.8], overrides=("seed=0", "train.lr=0.3"))
    out = tmp_path / "cmp"
    assert main(["compare", str(tmp_path / "a0"), str(tmp_path / "a1"), str(tmp_path / "b0"),
                 "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert table.count("| quickstart") == 3 + 2  # three runs, then two groups
    grouped = table.split("Over seeds")[1]
    first, second = [line for line in grouped.splitlines() if line.startswith("| quickstart")]
    assert first.startswith("| quickstart (1) | 2 | 1/2 |")
    assert "0.500 ± 0.141 (0.400–0.600)" in first
    assert second.startswith("| quickstart (2) | 1 | 1/1 | 0.800 |")
    assert (out / "accuracy_band_vs_round.png").exists()
    assert (out / "comparison.md").read_text() == table[:-1]  # print adds a newline


def test_compare_of_one_seed_each_keeps_the_single_run_table(tmp_path: Path, capsys) -> None:
    fake_run(tmp_path / "a", [0.1, 0.4], overrides=("train.lr=0.1",))
    fake_run(tmp_path / "b", [0.1, 0.5], overrides=("train.lr=0.2",))
    out = tmp_path / "cmp"
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "Over seeds" not in table and table.count("| quickstart") == 2
    assert not (out / "accuracy_band_vs_round.png").exists()
