"""Find and stop every process a run started, by the FLWR_HOME it was given.

Flower's ``flwr run`` leaves a detached local SuperLink behind
(docs/design-notes.md#the-flwr-run-command-and-its-local-superlink),
and that SuperLink's SuperExec, simulation and Ray processes inherit its environment, so the
run's private FLWR_HOME identifies all of them.
"""

from __future__ import annotations

import contextlib
import os
import socket

import psutil


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def processes_with_env(key: str, value: str) -> list[psutil.Process]:
    """This user's processes whose environment has ``key=value``."""
    found = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me:
            continue
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(key) == value:
                found.append(proc)
    return found


def stop_processes(procs: list[psutil.Process], grace: float = 5.0) -> int:
    """SIGTERM, then SIGKILL what is still alive after ``grace`` seconds; return the count."""
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=grace)
    return len(procs)


def stop_flower_home(flwr_home: str) -> int:
    """Stop every process started with ``FLWR_HOME=flwr_home``."""
    return stop_processes(processes_with_env("FLWR_HOME", flwr_home))
