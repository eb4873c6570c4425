"""Per-process Flower homes and the ``flwr`` CLI's connection file.

Every Flower process fedsim starts gets its own ``FLWR_HOME`` (installed apps, state, the
CLI's ``config.toml``), telemetry off and runtime dependency installation off; the fedsim
packages are put on ``PYTHONPATH`` so the ``flwr-serverapp``/``flwr-clientapp`` processes
Flower spawns import the same code.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CONNECTION = "fedsim"


def flower_bin(name: str) -> str:
    """Path of a Flower executable next to this Python (the venv's bin)."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


def flower_env(flwr_home: Path, extra_pythonpath: list[str] | None = None) -> dict[str, str]:
    """Environment for one Flower process with ``FLWR_HOME=flwr_home``."""
    env = dict(os.environ)
    paths = [str(REPO_ROOT), *(extra_pythonpath or []), env.get("PYTHONPATH", "")]
    env.update({
        "FLWR_HOME": str(Path(flwr_home).resolve()),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "PYTHONUNBUFFERED": "1",
        "PATH": str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join(dict.fromkeys(p for p in paths if p)),
    })
    return env


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_connection(flwr_home: Path, address: str, root_certificates: Path | None,
                     insecure: bool, name: str = CONNECTION) -> Path:
    """Write ``$FLWR_HOME/config.toml`` with one default connection ``name`` to ``address``."""
    flwr_home = Path(flwr_home)
    flwr_home.mkdir(parents=True, exist_ok=True)
    lines = ["[superlink]", f"default = {_toml_str(name)}", "",
             f"[superlink.{name}]", f"address = {_toml_str(address)}"]
    if insecure:
        lines.append("insecure = true")
    elif root_certificates is not None:
        lines.append(f"root-certificates = {_toml_str(str(Path(root_certificates).resolve()))}")
    path = flwr_home / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path
