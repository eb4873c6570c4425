"""Start, watch and stop the Flower processes of a deployment.

Each process runs in its own session (process group) with its own ``FLWR_HOME``; its output
is copied line by line to a log file (and, in the foreground commands, to the terminal) and
the last lines are kept to explain an early exit. Stopping sends SIGTERM to the whole group,
then SIGKILL after a grace period, then stops anything else still carrying the same private
``FLWR_HOME`` (the SuperExec, ``flwr-serverapp`` and ``flwr-clientapp`` children).
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import psutil

from fedsim.deploy.home import flower_env
from fedsim.engine.processes import stop_processes


@dataclass
class FlowerProcess:
    """A running ``flower-superlink``/``flower-supernode`` (or ``flwr``) process."""

    role: str
    popen: subprocess.Popen
    flwr_home: Path
    log_path: Path
    tail: collections.deque = field(default_factory=lambda: collections.deque(maxlen=400))
    _reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def returncode(self) -> int | None:
        return self.popen.poll()

    def output(self) -> str:
        return "".join(self.tail)

    def wait_for_line(self, predicate: Callable[[str], bool], timeout: float) -> bool:
        """Wait until an output line satisfies ``predicate``; False on exit or timeout."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            lines = list(self.tail)
            if any(predicate(line) for line in lines[seen:]) or \
                    any(predicate(line) for line in lines):
                return True
            seen = max(0, len(lines) - 1)
            if not self.alive():
                time.sleep(0.2)  # let the reader drain the last lines
                return any(predicate(line) for line in self.tail)
            time.sleep(0.1)
        return False

    def stop(self, grace: float = 10.0) -> None:
        """Stop the process, its group and everything started under its FLWR_HOME."""
        stop_group(self.popen, grace)
        stop_home(self.flwr_home, grace)
        if self._reader is not None:
            self._reader.join(timeout=2.0)


def _pump(stream: TextIO, log: TextIO, tail: collections.deque, echo: TextIO | None) -> None:
    with contextlib.suppress(ValueError, OSError):
        for line in stream:
            tail.append(line)
            log.write(line)
            log.flush()
            if echo is not None:
                echo.write(line)
                echo.flush()
    with contextlib.suppress(OSError):
        log.close()


def launch(role: str, cmd: list[str], flwr_home: Path, log_path: Path | None = None,
           echo: bool = False, extra_pythonpath: list[str] | None = None,
           cwd: Path | None = None, extra_env: dict[str, str] | None = None) -> FlowerProcess:
    """Start ``cmd`` in a new session with ``FLWR_HOME=flwr_home``; copy its output."""
    flwr_home = Path(flwr_home).resolve()
    flwr_home.mkdir(parents=True, exist_ok=True)
    log_path = Path(log_path) if log_path else flwr_home / f"{role}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**flower_env(flwr_home, extra_pythonpath), **(extra_env or {})}
    popen = subprocess.Popen(cmd, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, text=True, errors="replace",
                             cwd=str(cwd or flwr_home), start_new_session=True)
    proc = FlowerProcess(role, popen, flwr_home, log_path)
    log = open(log_path, "a")  # noqa: SIM115 (closed by the reader thread)
    log.write(f"# {' '.join(cmd)}\n")
    proc._reader = threading.Thread(target=_pump, daemon=True, name=f"{role}-log",
                                    args=(popen.stdout, log, proc.tail,
                                          sys.stderr if echo else None))
    proc._reader.start()
    return proc


def stop_group(popen: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the process group of ``popen``, SIGKILL it after ``grace`` seconds."""
    pgid = None
    with contextlib.suppress(ProcessLookupError, PermissionError):
        pgid = os.getpgid(popen.pid)
    if pgid is None or pgid == os.getpgid(0):
        if popen.poll() is None:
            popen.terminate()
    else:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        popen.wait(timeout=grace)
    if pgid is not None and pgid != os.getpgid(0):
        # the leader may be gone while children of the group linger
        deadline = time.monotonic() + (grace if popen.poll() is None else 2.0)
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    elif popen.poll() is None:
        popen.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        popen.wait(timeout=grace)


def kill_group(popen: subprocess.Popen) -> None:
    """SIGKILL a process group at once (simulates a crashed machine in tests)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(os.getpgid(popen.pid), signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        popen.wait(timeout=10)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def processes_under_home(flwr_home: Path) -> list[psutil.Process]:
    """This user's processes whose environment has ``FLWR_HOME=flwr_home``."""
    home = str(Path(flwr_home).resolve())
    me = os.getpid()
    found = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me:
            continue
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("FLWR_HOME") == home:
                found.append(proc)
    return found


def stop_home(flwr_home: Path, grace: float = 10.0) -> int:
    """Stop every process started with ``FLWR_HOME=flwr_home``; return how many there were."""
    return stop_processes(processes_under_home(flwr_home), grace)
