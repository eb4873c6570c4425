"""The foreground ``fedsim deploy superlink|supernode`` commands: ready, status, SIGTERM stops
everything they started; ``fedsim deploy stop --home`` cleans up by FLWR_HOME."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from fedsim.deploy.probe import check_superlink, free_port
from fedsim.deploy.processes import processes_under_home

REPO = Path(__file__).resolve().parents[2]


def _fedsim(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "fedsim.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _wait(predicate, timeout: float) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


def _terminate(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
def test_foreground_commands_and_sigterm(tmp_path: Path) -> None:
    port = free_port()
    link_home, node_home = tmp_path / "link", tmp_path / "node"
    address = f"127.0.0.1:{port}"
    link = _fedsim("deploy", "superlink", "--insecure", "--no-auth", "--port", str(port),
                   "--home", str(link_home), "--quiet")
    node = None
    try:
        def up() -> bool:
            try:
                check_superlink(address, None, insecure=True)
                return True
            except Exception:
                return False

        assert _wait(up, 60), link.stdout.read() if link.poll() is not None else "not up"
        node = _fedsim("deploy", "supernode", "--superlink", address, "--insecure",
                       "--partition-id", "0", "--num-partitions", "1", "--port",
                       str(free_port()), "--home", str(node_home), "--quiet")
        status = subprocess.run(
            [sys.executable, "-m", "fedsim.cli", "deploy", "status", "--superlink", address,
             "--insecure"], env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True, text=True, timeout=120)
        assert status.returncode == 0, status.stderr
        assert _wait(lambda: any(
            n["status"] == "online" for n in json.loads(subprocess.run(
                [sys.executable, "-m", "fedsim.cli", "deploy", "status", "--superlink",
                 address, "--insecure"], env={**os.environ, "PYTHONPATH": str(REPO)},
                capture_output=True, text=True, timeout=60).stdout)["supernodes"]), 60)
        assert processes_under_home(node_home) and processes_under_home(link_home)
        assert _terminate(node) == 0
        assert _wait(lambda: not processes_under_home(node_home), 15)
        assert _terminate(link) == 0
        assert _wait(lambda: not processes_under_home(link_home), 15)
    finally:
        for proc in (node, link):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        for home in (node_home, link_home):
            for p in processes_under_home(home):
                p.kill()
        psutil.wait_procs(processes_under_home(link_home), timeout=5)
