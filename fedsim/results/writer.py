"""Writes a run's results folder as the run goes, one flushed line per round.

Layout of a results folder::

    config.toml     the resolved configuration (every default explicit)
    metrics.jsonl   one JSON object per round (round 0 = the initial model)
    summary.json    final and best accuracy, rounds and uplink to the target, totals
    *.png           plots (accuracy against round and against cumulative uplink)
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
PROBLEMS_FILE = "client_problems.jsonl"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.toml"


COLUMN_NAME = re.compile(r"[a-z0-9][a-z0-9_]{0,63}")
RESERVED_COLUMNS = frozenset({"round", "wall_seconds", "round_seconds"})


def metric_column(prefix: str, name: str) -> str | None:
    """``prefix + name`` as a metrics.jsonl column for a metric named by a client's reply
    (``-`` and ``.`` become ``_``), or None where the name is not a plain lower-case name of
    at most 64 characters: a reply cannot add odd columns or one of fedsim's own."""
    column = str(name).replace("-", "_").replace(".", "_")
    if not COLUMN_NAME.fullmatch(column):
        return None
    column = prefix + column
    return None if column in RESERVED_COLUMNS else column


def _clean(value: Any) -> Any:
    """JSON-safe value: NaN/Inf become None, numpy scalars become Python numbers."""
    if hasattr(value, "item") and not isinstance(value, (list, dict)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and a rename, so a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_clean(data), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """All round records of a run (tolerates a partially written last line)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


class MetricsTail:
    """The round records appended to a run's metrics.jsonl since the last call.

    Reads only the new bytes (re-parsing the whole file every tick would grow with the run:
    each record carries per-client lists); a partial last line waits for the next call, and a
    file that shrank (a resumed run truncates it) is read again from the start.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self._offset = 0
        self._partial = b""

    def new_rows(self) -> list[dict[str, Any]]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self._offset:
            self._offset, self._partial = 0, b""
        if size == self._offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            chunk = f.read(size - self._offset)
        self._offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        rows = []
        for line in lines:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return rows


class ResultsWriter:
    """Appends round records to metrics.jsonl and writes summary.json at the end."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._metrics = open(self.run_dir / METRICS_FILE, "a", encoding="utf-8")  # noqa: SIM115
        from fedsim.tracking import open_trackers  # [output] loggers: TensorBoard, MLflow

        self._trackers = open_trackers(self.run_dir)

    def write_round(self, record: dict[str, Any]) -> None:
        self._metrics.write(json.dumps(_clean(record), sort_keys=True) + "\n")
        self._metrics.flush()
        self._trackers.log_round(_clean(record))

    def write_problems(self, problems: list[dict[str, Any]]) -> None:
        """Append why replies were dropped (client errors, rejected payloads) to
        client_problems.jsonl, one line per reply; the file exists once a reply was dropped."""
        if problems:
            with open(self.run_dir / PROBLEMS_FILE, "a", encoding="utf-8") as f:
                f.writelines(json.dumps(p, sort_keys=True) + "\n" for p in problems)

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.run_dir / SUMMARY_FILE, summary)
        self._trackers.finish(_clean(summary))

    def close(self) -> None:
        self._metrics.close()
        self._trackers.close()
