"""fedsim's own apps on a TLS + SuperNode-auth deployment on 127.0.0.1 (the issue's test).

One SuperLink and two registered SuperNodes serve both runs; a third, unregistered SuperNode
is refused. Run 1: two rounds of z-SignFedAvg (FedAvg if z-SignFedAvg is not registered) on
digits through ``fedsim deploy run``: the results folder is written and the metered uplink
agrees with the SuperLink's inbound counter. Run 2: the same, with one SuperNode killed
during round 2: the round completes with the survivor and the failure is counted. Finally
nothing the tests started is left running.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Tracker, descendants_alive

from fedsim.deploy import commands, flwr_cli
from fedsim.deploy.errors import DeployError
from fedsim.deploy.experiment import DEPLOYMENT_FILE
from fedsim.deploy.home import write_connection
from fedsim.deploy.nodes import SuperLinkSpec, SuperNodeSpec, start_superlink, start_supernode
from fedsim.deploy.probe import free_port
from fedsim.deploy.processes import FlowerProcess, kill_group
from strategies.registry import strategy_names

STRATEGY = "zsignfedavg" if "zsignfedavg" in strategy_names() else "fedavg"
QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart.toml"
pytestmark = pytest.mark.slow


@dataclass
class Deployment:
    root: Path
    certs: Path
    link: SuperLinkSpec
    cli: Path
    nodes: list[FlowerProcess]
    tracker: Tracker


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("deploy")
    tracker = Tracker()
    try:
        link = SuperLinkSpec(home=root / "superlink", port=free_port(), certs=certs)
        tracker.add(start_superlink(link))
        cli = write_connection(root / "cli", link.address, certs / "ca.crt", False).parent
        nodes = []
        for i, name in enumerate(("node1", "node2")):
            flwr_cli.register_supernode(certs / f"{name}.pub", cli)
            nodes.append(tracker.add(start_supernode(SuperNodeSpec(
                home=root / name, superlink=link.address, root_certificates=certs / "ca.crt",
                private_key=certs / name, port=free_port(),
                node_config={"partition-id": i, "num-partitions": 2, "dataset": "digits"}))))
        yield Deployment(root, certs, link, cli, nodes, tracker)
    finally:
        tracker.stop_all()


def _run_args(d: Deployment, out: Path, *sets: str) -> list[str]:
    overrides = ("task.num_clients=2", "train.clients_per_round=2", "train.rounds=2",
                 f"strategy.name={STRATEGY}", "output.plots=false", *sets)
    args = ["deploy", "run", str(QUICKSTART), "--superlink", d.link.address,
            "--root-certificates", str(d.certs / "ca.crt"), "--out", str(out), "--quiet",
            "--timeout", "300"]
    for item in overrides:
        args += ["--set", item]
    return args


def _rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _no_app_processes(d: Deployment, grace: float = 15.0) -> list[str]:
    deadline = time.monotonic() + grace
    while (left := d.tracker.app_processes()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def test_unregistered_supernode_is_refused(deployment: Deployment) -> None:
    d = deployment
    t0 = time.monotonic()
    with pytest.raises(DeployError, match="intruder is not registered"):
        start_supernode(SuperNodeSpec(
            home=d.root / "intruder", superlink=d.link.address,
            root_certificates=d.certs / "ca.crt", private_key=d.certs / "intruder",
            port=free_port(), node_config={"partition-id": 0, "num-partitions": 2}))
    assert time.monotonic() - t0 < 60
    online = [n for n in flwr_cli.list_supernodes(d.cli) if n["status"] == "online"]
    assert len(online) == 2


def test_two_rounds_meter_matches_superlink(deployment: Deployment) -> None:
    d = deployment
    t0 = time.monotonic()
    out = d.root / "run1"
    code = commands.main(_run_args(d, out, "eval.federated_every=2"))
    d.tracker.snapshot()
    assert code == 0
    for name in ("config.toml", "metrics.jsonl", "summary.json", DEPLOYMENT_FILE):
        assert (out / name).exists(), name
    rows = _rows(out)
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert [r["train_failures"] for r in rows[1:]] == [0, 0]
    assert [r["train_replies"] for r in rows[1:]] == [2, 2]
    report = json.loads((out / DEPLOYMENT_FILE).read_text())
    check = report["inbound_check"]
    print(f"\nstrategy {STRATEGY}; run 1 took {time.monotonic() - t0:.1f} s\n"
          f"{json.dumps(report, indent=1)}")
    assert report["superlink"]["status"] == "finished:completed"
    assert check["agrees"], check
    assert abs(check["prediction_error_relative"]) <= 0.01, check  # tree + exact envelopes
    assert check["replies"] == 2 + 4 + 2  # partition query, 2 x train, 1 x evaluate
    if "meter_matches_wire" in report:
        assert report["meter_matches_wire"]
    assert not _no_app_processes(d)


def test_supernode_killed_mid_run_round_completes_with_survivor(
        deployment: Deployment) -> None:
    d = deployment
    t0 = time.monotonic()
    out = d.root / "run2"
    result: dict[str, int] = {}
    runner = threading.Thread(target=lambda: result.update(
        code=commands.main(_run_args(d, out, "eval.federated_every=0"))))
    runner.start()
    killed_at = None
    while runner.is_alive():
        d.tracker.snapshot()
        if killed_at is None and any(r["round"] == 1 for r in _rows(out)):
            kill_group(d.nodes[1].popen)  # a crash: no goodbye to the SuperLink
            killed_at = time.monotonic() - t0
        time.sleep(0.2)
    runner.join()
    assert killed_at is not None, "the run ended before round 1 was written"
    assert result["code"] == 0
    rows = _rows(out)
    print(f"\nkilled node2 at {killed_at:.1f} s; run 2 took {time.monotonic() - t0:.1f} s\n"
          f"{json.dumps(rows[1:], indent=1)}")
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert rows[1]["train_failures"] == 0 and rows[1]["train_replies"] == 2
    assert rows[2]["train_failures"] == 1 and rows[2]["train_replies"] == 1
    assert (out / "summary.json").exists()
    report = json.loads((out / DEPLOYMENT_FILE).read_text())
    assert report["wire"]["unavailable_replies"] == {"train": 1}
    if "meter_matches_wire" in report:  # the meter is wired into fedsim's ServerApp
        assert report["meter_matches_wire"], report
    check = report["inbound_check"]
    print(json.dumps(check, indent=1))
    assert check["agrees"], check
    assert abs(check["prediction_error_relative"]) <= 0.01, check
    assert not _no_app_processes(d)


def test_nothing_left_running(deployment: Deployment) -> None:
    d = deployment
    d.tracker.stop_all()
    assert not descendants_alive(d.tracker.pids)
