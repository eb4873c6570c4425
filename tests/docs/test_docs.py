"""The documentation cannot drift from the code: generated reference pages are current, the
config reference lists every schema field, the site builds with ``--strict``, and every
command block marked runnable in the README and the guides runs as printed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docs"))

import generate  # noqa: E402

RUNNABLE = re.compile(r"<!-- runnable -->\s*\n```bash\n(.*?)```", re.S)
SMALL = "train.rounds=2 eval.federated_every=0"
SCRATCH = {".git", "results", ".flwr_home", ".pytest_cache", ".ruff_cache", "site", "build",
           "dist", ".fedsim-deploy", ".hypothesis"}
"""Top-level folders a runnable block must not see or write into (it gets its own)."""
"""What ``FEDSIM_SET`` adds to every ``fedsim run`` of a runnable block (small settings)."""


def test_the_generated_reference_pages_are_current() -> None:
    assert generate.main(["--check"]) == 0, "run: python docs/generate.py"


def test_the_config_reference_lists_every_field_of_the_schema() -> None:
    from fedsim.config.schema import ExperimentConfig

    page = (ROOT / "docs" / "reference" / "config.md").read_text()
    listed = set(re.findall(r"^\| ([\w.]+) \|", page, re.M)) - {"key"}
    fields = {row[0] for row in generate.field_rows(ExperimentConfig, "")}
    assert fields and fields <= listed, sorted(fields - listed)
    assert "| task.alpha |" in page and "### `fedlion`" in page


def runnable_blocks() -> list[tuple[str, str]]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [(f"{page.name}#{i}", block) for page in pages
            for i, block in enumerate(RUNNABLE.findall(page.read_text()))]


def test_there_are_runnable_blocks_to_check() -> None:
    names = [name for name, _ in runnable_blocks()]
    assert any(n.startswith("README.md") for n in names), names
    assert any(n.startswith("getting-started.md") for n in names), names


@pytest.mark.slow
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    assert mkdocs, "mkdocs is missing: pip install -e '.[docs]' (make does)"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([mkdocs, "build", "--strict", "-d", str(tmp_path / "site")], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "config" / "index.html").exists()


@pytest.mark.slow
@pytest.mark.parametrize(("name", "block"), runnable_blocks(), ids=lambda v: v
                         if "#" in str(v) else "")
def test_runnable_block_runs_as_printed(tmp_path: Path, name: str, block: str) -> None:
    """In a scratch folder that sees the checkout's configs, Makefile and .venv, with small
    settings through ``FEDSIM_SET``."""
    for item in ROOT.iterdir():  # the checkout as a reader has it, minus outputs and caches
        if item.name not in SCRATCH:
            (tmp_path / item.name).symlink_to(item)
    env = {**os.environ, "FEDSIM_SET": SMALL, "FLWR_HOME": str(tmp_path / ".flwr"),
           "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{name} failed:\n{block}\n{done.stderr[-3000:]}"
