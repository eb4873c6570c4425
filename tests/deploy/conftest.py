"""Fixtures for deployment tests: credentials, and Flower processes that are always stopped."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from fedsim.deploy import credentials
from fedsim.deploy.processes import FlowerProcess

FLOWER_NAMES = ("flower-superlink", "flower-supernode", "flower-superexec", "flwr-serverapp",
                "flwr-clientapp")

sys.path.insert(0, str(Path(__file__).parent))


def descendants_alive(pids: set[int]) -> list[str]:
    """Command lines of Flower processes among ``pids`` that are still running."""
    alive = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(" ".join(proc.cmdline())[:120])
        except psutil.Error:
            continue
    return alive


class Tracker:
    """Remembers every Flower process a test started, with its descendants."""

    def __init__(self) -> None:
        self.procs: list[FlowerProcess] = []
        self.pids: set[int] = set()

    def add(self, proc: FlowerProcess) -> FlowerProcess:
        self.procs.append(proc)
        self.snapshot()
        return proc

    def app_processes(self) -> list[str]:
        """Running ServerApp/ClientApp processes under the tracked processes."""
        self.snapshot()
        return [c for c in descendants_alive(self.pids)
                if "flwr-serverapp" in c or "flwr-clientapp" in c]

    def snapshot(self) -> None:
        for proc in self.procs:
            try:
                parent = psutil.Process(proc.pid)
                self.pids.add(parent.pid)
                self.pids.update(c.pid for c in parent.children(recursive=True))
            except psutil.Error:
                continue

    def stop_all(self) -> None:
        self.snapshot()
        for proc in reversed(self.procs):
            proc.stop(grace=10.0)


@pytest.fixture
def tracker() -> Iterator[Tracker]:
    t = Tracker()
    try:
        yield t
    finally:
        t.stop_all()


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for localhost/127.0.0.1 and three SuperNode key pairs."""
    out = tmp_path_factory.mktemp("certs")
    credentials.create_ca(out)
    credentials.create_server_certificate(out, ["localhost", "127.0.0.1"])
    for name in ("node1", "node2", "intruder"):
        credentials.create_node_keys(out, name)
    return out
