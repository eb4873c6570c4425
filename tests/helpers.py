"""Helpers for the core tests: run an experiment through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fedsim.cli import main
from fedsim.results.writer import read_metrics

QUICKSTART = str(Path(__file__).resolve().parents[1] / "configs" / "quickstart.toml")


def run_cli(out: Path, *overrides: str, engine: str = "inprocess",
            config: str = QUICKSTART) -> tuple[int, Path]:
    args = ["run", config, "--out", str(out), "--engine", engine]
    for item in overrides:
        args += ["--set", item]
    return main(args), out


def metrics_without_times(run_dir: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if not k.endswith("_seconds")}
            for row in read_metrics(run_dir)]


def summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())


def engine_independent(rows: list[dict]) -> list[dict]:
    """Drop wire-size fields: message metadata (node and run ids) encodes to a length that
    depends on the engine's ids; payload sizes, accuracy and losses must match exactly."""
    wire = ("_bytes", "bits_per_param", "compression_ratio", "_by_client")
    return [{k: v for k, v in row.items()
             if "payload" in k or not any(w in k for w in wire)} for row in rows]
