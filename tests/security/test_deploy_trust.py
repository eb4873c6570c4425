"""Finding 1 of #24 on a loopback deployment (TLS + SuperNode auth, everything on 127.0.0.x).

- an unregistered SuperNode is refused;
- the Control API answers the SuperLink's own machine only: registering a key or submitting a
  run through a relay whose connection to the SuperLink comes from 127.0.0.2 (standing in for
  another machine) is refused with HTTP 403, and nothing is registered or started;
- a SuperNode executes only fedsim's own app: a foreign app (its ClientApp would write a
  marker file) submitted by the operator gets Flower's FAB-verification error reply and its
  code never runs; the same app runs once the node's operator trusts its hash.
Every process is started through the tracker and stopped by pid.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomli_w

from fedsim.deploy import flwr_cli
from fedsim.deploy.errors import DeployError
from fedsim.deploy.home import write_connection
from fedsim.deploy.nodes import SuperLinkSpec, SuperNodeSpec, start_superlink, start_supernode
from fedsim.deploy.probe import free_port

pytestmark = pytest.mark.slow


def _deploy_fixtures():  # noqa: ANN202
    """tests/deploy/conftest.py (its ``certs`` fixture and process tracker), loaded by path."""
    if "deploy_fixtures" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "deploy_fixtures", Path(__file__).parents[1] / "deploy" / "conftest.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["deploy_fixtures"] = module
        spec.loader.exec_module(module)
    return sys.modules["deploy_fixtures"]


Tracker, descendants_alive = _deploy_fixtures().Tracker, _deploy_fixtures().descendants_alive
certs = _deploy_fixtures().certs

FOREIGN_PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "foreign"
version = "1.0.0"
dependencies = []

[tool.flwr.app]
publisher = "intruder"

[tool.flwr.app.components]
serverapp = "foreign_app:server"
clientapp = "foreign_app:client"

[tool.flwr.app.config]
marker = ""
report = ""
"""

FOREIGN_APP = '''\
import json, time
from pathlib import Path
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

client = ClientApp()
server = ServerApp()


@client.train()
def train(msg, context):
    Path(context.run_config["marker"]).write_text("the foreign ClientApp ran")
    return Message(RecordDict({"m": ConfigRecord({"ok": 1})}), reply_to=msg)


@server.main()
def main(grid, context):
    nodes = []
    while not nodes:
        nodes = list(grid.get_node_ids())
        time.sleep(0.5)
    msgs = [Message(RecordDict({"c": ConfigRecord({"x": 1})}), dst_node_id=n,
                    message_type="train") for n in nodes]
    replies = list(grid.send_and_receive(msgs, timeout=120))
    report = [{"error": r.error.code if r.has_error() else None,
               "reason": r.error.reason if r.has_error() else None} for r in replies]
    Path(context.run_config["report"]).write_text(json.dumps(report))
'''


@dataclass
class Deployment:
    root: Path
    certs: Path
    link: SuperLinkSpec
    cli: Path
    tracker: Tracker


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("trust")
    tracker = Tracker()
    try:
        link = SuperLinkSpec(home=root / "superlink", port=free_port(), certs=certs)
        tracker.add(start_superlink(link))
        cli = write_connection(root / "cli", link.address, certs / "ca.crt", False).parent
        flwr_cli.register_supernode(certs / "node1.pub", cli)
        tracker.add(start_supernode(SuperNodeSpec(
            home=root / "node1", superlink=link.address, root_certificates=certs / "ca.crt",
            private_key=certs / "node1", port=free_port(),
            node_config={"partition-id": 0, "num-partitions": 1})))
        yield Deployment(root, certs, link, cli, tracker)
    finally:
        tracker.stop_all()


class Relay:
    """A TCP relay on 127.0.0.1 whose connections to the SuperLink come from ``source``."""

    def __init__(self, upstream: tuple[str, int], source: str) -> None:
        self.upstream, self.source = upstream, source
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            up = socket.create_connection(self.upstream, source_address=(self.source, 0))
            for a, b in ((conn, up), (up, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        self.sock.close()


def _foreign_app(root: Path) -> Path:
    app = root / "foreign"
    app.mkdir(exist_ok=True)
    (app / "pyproject.toml").write_text(FOREIGN_PYPROJECT)
    (app / "foreign_app.py").write_text(FOREIGN_APP)
    return app


def _submit_foreign(d: Deployment, cli: Path, tag: str) -> tuple[int, Path, Path]:
    marker, report = d.root / f"marker-{tag}", d.root / f"report-{tag}.json"
    overrides = d.root / f"foreign-{tag}.toml"
    overrides.write_text(tomli_w.dumps({"marker": str(marker), "report": str(report)}))
    return flwr_cli.submit_run(_foreign_app(d.root), cli, overrides), marker, report


def _wait_report(d: Deployment, run_id: int, report: Path) -> list[dict]:
    flwr_cli.wait_finished(d.cli, run_id, timeout=240)
    assert report.exists(), flwr_cli.run_log(d.cli, run_id)[-2000:]
    return json.loads(report.read_text())


def test_unregistered_supernode_is_refused(deployment: Deployment) -> None:
    d = deployment
    with pytest.raises(DeployError, match="intruder is not registered"):
        start_supernode(SuperNodeSpec(
            home=d.root / "intruder", superlink=d.link.address,
            root_certificates=d.certs / "ca.crt", private_key=d.certs / "intruder",
            port=free_port(), node_config={"partition-id": 0, "num-partitions": 1}),
            timeout=60)
    online = [n for n in flwr_cli.list_supernodes(d.cli) if n["status"] == "online"]
    assert len(online) == 1


def test_control_api_refuses_other_addresses(deployment: Deployment) -> None:
    d = deployment
    relay = Relay(("127.0.0.1", d.link.port), "127.0.0.2")
    try:
        remote = write_connection(d.root / "remote-cli", relay.address, d.certs / "ca.crt",
                                  False).parent
        runs_before = flwr_cli.flwr(["ls"], d.cli).get("runs", [])
        nodes_before = flwr_cli.list_supernodes(d.cli)
        with pytest.raises(DeployError) as refused:
            flwr_cli.register_supernode(d.certs / "node2.pub", remote)
        print(f"\nregister from 127.0.0.2: {refused.value}")
        with pytest.raises(DeployError) as refused:
            _submit_foreign(d, remote, "remote")
        print(f"run from 127.0.0.2: {refused.value}")
        with pytest.raises(DeployError):
            flwr_cli.flwr(["ls"], remote)
        assert flwr_cli.flwr(["ls"], d.cli).get("runs", []) == runs_before
        assert len(flwr_cli.list_supernodes(d.cli)) == len(nodes_before)
        assert not (d.root / "marker-remote").exists()
    finally:
        relay.close()
    # the same relay from 127.0.0.1 (this machine) passes: the refusal was the address
    relay = Relay(("127.0.0.1", d.link.port), "127.0.0.1")
    try:
        local = write_connection(d.root / "local-cli", relay.address, d.certs / "ca.crt",
                                 False).parent
        assert flwr_cli.flwr(["ls"], local).get("runs", []) == runs_before
    finally:
        relay.close()


def test_supernode_executes_only_trusted_apps(deployment: Deployment) -> None:
    d = deployment
    run_id, marker, report = _submit_foreign(d, d.cli, "refused")
    replies = _wait_report(d, run_id, report)
    print(f"\nforeign app on a fedsim SuperNode: {replies}")
    assert len(replies) == 1 and replies[0]["error"] is not None
    assert not marker.exists()
    # the node's operator trusts this app's hash: the same app now runs (the test can fail)
    fab_hash = flwr_cli.flwr(["ls", "--run-id", str(run_id)], d.cli)["runs"][0]["fab-hash"]
    flwr_cli.register_supernode(d.certs / "node2.pub", d.cli)
    node2 = d.tracker.add(start_supernode(SuperNodeSpec(
        home=d.root / "node2", superlink=d.link.address, root_certificates=d.certs / "ca.crt",
        private_key=d.certs / "node2", port=free_port(), trusted_app_hashes=[fab_hash],
        node_config={"partition-id": 0, "num-partitions": 1})))
    d.tracker.procs[1].stop()  # node1 (fedsim apps only) leaves; node2 alone gets the run
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and sum(
            n["status"] == "online" for n in flwr_cli.list_supernodes(d.cli)) != 1:
        time.sleep(1)
    run_id, marker, report = _submit_foreign(d, d.cli, "trusted")
    replies = _wait_report(d, run_id, report)
    assert replies and all(r["error"] is None for r in replies), replies
    assert marker.read_text() == "the foreign ClientApp ran"
    node2.stop()


def test_nothing_left_running(deployment: Deployment) -> None:
    deployment.tracker.stop_all()
    assert not descendants_alive(deployment.tracker.pids)
