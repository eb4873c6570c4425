"""A wheel built from the repository, installed into a fresh virtual environment outside the
checkout, runs ``fedsim run quickstart`` from any folder.

To stay fast the new environment borrows the heavy dependencies (torch, Flower, Ray) of the
environment running the tests through a ``.pth`` file, with fedsim's own files left out, so
what it imports as ``fedsim`` can only come from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import fedsim

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BUILD_INPUTS = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE", "configs",
                "fedsim", "strategies", "clients")
OWN = ("fedsim", "strategies", "clients")  # top-level names the wheel provides
DIST = "fedsim-flower"


def _ours(name: str) -> bool:
    """Whether a site-packages entry belongs to an installation of fedsim itself."""
    low = name.lower()
    return low in OWN or low.startswith(("fedsim", "__editable__.fedsim", "__editable___fedsim"))


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, f"{argv} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the build inputs (the checkout gets no build/ or
    egg-info, which would be seen as an installed distribution)."""
    src = tmp_path_factory.mktemp("src")
    for name in BUILD_INPUTS:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, src / name)
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", str(out), str(src)])
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel installed and the test environment's
    dependencies visible (every entry of its site-packages except fedsim's own)."""
    root = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", str(root)])
    deps = root / "shared-deps"
    deps.mkdir()
    shared = Path(sysconfig.get_paths()["purelib"])
    for entry in shared.iterdir():
        if not _ours(entry.name) and not entry.name.endswith(".pth"):
            (deps / entry.name).symlink_to(entry)
    site = Path(_run([str(root / "bin" / "python"), "-c",
                      "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "shared-deps.pth").write_text(f"{deps}\n")
    _run([sys.executable, "-m", "pip", "--python", str(root / "bin" / "python"), "install",
          "-q", "--no-deps", str(wheel)])
    return root


def _clean_env(tmp: Path) -> dict[str, str]:
    """The environment of a user's shell: nothing pointing at the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(FLWR_HOME=str(tmp / "flwr-home"), FLWR_TELEMETRY_ENABLED="0", MPLBACKEND="Agg",
               FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1")
    return env


def test_wheel_carries_package_configs_and_license(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = f"fedsim_flower-{fedsim.__version__}.dist-info"
        metadata = zf.read(f"{info}/METADATA").decode()
        assert zf.read(f"{info}/licenses/LICENSE") == (REPO / "LICENSE").read_bytes()
        for config in (REPO / "configs").glob("*.toml"):
            assert zf.read(f"fedsim/configs/{config.name}") == config.read_bytes()
    assert f"Name: {DIST}\n" in metadata
    assert f"Version: {fedsim.__version__}\n" in metadata
    assert "License-Expression: Apache-2.0\n" in metadata
    assert {"fedsim/__main__.py", "fedsim/api.py", "strategies/registry.py",
            "clients/client_app.py"} <= names
    assert not any(name.startswith(("configs/", "tests/")) for name in names)


def test_installed_wheel_runs_quickstart_by_name_from_any_folder(venv: Path,
                                                                 tmp_path: Path) -> None:
    env = _clean_env(tmp_path)
    bin_dir = venv / "bin"
    where = _run([str(bin_dir / "python"), "-c", "import fedsim; print(fedsim.__file__)"],
                 cwd=tmp_path, env=env).stdout.strip()
    assert Path(where).resolve().is_relative_to(venv.resolve()), where

    version = _run([str(bin_dir / "fedsim"), "--version"], cwd=tmp_path, env=env).stdout
    assert version.startswith(f"fedsim {fedsim.__version__} ({DIST}) at {venv}"), version
    assert "warning" not in version

    done = _run([str(bin_dir / "fedsim"), "run", "quickstart", "--engine", "inprocess",
                 "--set", "train.rounds=2"], cwd=tmp_path, env=env)
    run_dir = tmp_path / done.stdout.strip().splitlines()[-1]
    assert run_dir.resolve().is_relative_to(tmp_path.resolve() / "results")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["round"] for row in rows] == [0, 1, 2]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["final_accuracy"] > 0.5  # ten digit classes: chance is 0.1

    listed = _run([str(bin_dir / "python"), "-m", "fedsim", "list"], cwd=tmp_path, env=env)
    assert "quickstart" in listed.stdout
