"""The progress bar's reader of metrics.jsonl: only new, complete lines, and a restart when the
file shrinks (a resumed run truncates it)."""

from __future__ import annotations

import json
from pathlib import Path

from fedsim.results.writer import METRICS_FILE, MetricsTail


def test_tail_returns_each_complete_line_once(tmp_path: Path) -> None:
    path = tmp_path / METRICS_FILE
    tail = MetricsTail(tmp_path)
    assert tail.new_rows() == []  # no file yet
    path.write_text(json.dumps({"round": 0}) + "\n" + '{"round": 1, "acc')
    assert tail.new_rows() == [{"round": 0}]
    with open(path, "a") as f:
        f.write('": 0.5}\n' + json.dumps({"round": 2}) + "\n")
    assert tail.new_rows() == [{"round": 1, "acc": 0.5}, {"round": 2}]
    assert tail.new_rows() == []


def test_tail_starts_over_when_the_file_shrinks(tmp_path: Path) -> None:
    path = tmp_path / METRICS_FILE
    path.write_text("".join(json.dumps({"round": r, "pad": "x" * 50}) + "\n" for r in range(4)))
    tail = MetricsTail(tmp_path)
    assert [r["round"] for r in tail.new_rows()] == [0, 1, 2, 3]
    path.write_text(json.dumps({"round": 0}) + "\n")
    assert tail.new_rows() == [{"round": 0}]
