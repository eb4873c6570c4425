"""fedsim's own apps on a TLS + SuperNode-auth deployment on 127.0.0.1 (the issue's test).

Two registered SuperNodes and one unregistered (refused) run two rounds of z-SignFedAvg
(FedAvg if z-SignFedAvg is not registered) on digits through ``fedsim deploy run``; the
results folder is written, the metered uplink agrees with the SuperLink's inbound counter,
and nothing is left running. A second test kills one SuperNode during the last round.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from conftest import Tracker, descendants_alive

from fedsim.deploy import commands, flwr_cli
from fedsim.deploy.errors import DeployError
from fedsim.deploy.experiment import DEPLOYMENT_FILE
from fedsim.deploy.home import write_connection
from fedsim.deploy.nodes import SuperLinkSpec, SuperNodeSpec, start_superlink, start_supernode
from fedsim.deploy.probe import free_port
from fedsim.deploy.processes import kill_group
from strategies.registry import strategy_names

STRATEGY = "zsignfedavg" if "zsignfedavg" in strategy_names() else "fedavg"
QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart.toml"


def _deployment(tmp_path: Path, certs: Path, tracker: Tracker):
    link = SuperLinkSpec(home=tmp_path / "superlink", port=free_port(), certs=certs)
    tracker.add(start_superlink(link))
    cli = write_connection(tmp_path / "cli", link.address, certs / "ca.crt", False).parent
    nodes = []
    for i, name in enumerate(("node1", "node2")):
        flwr_cli.register_supernode(certs / f"{name}.pub", cli)
        nodes.append(tracker.add(start_supernode(SuperNodeSpec(
            home=tmp_path / name, superlink=link.address, root_certificates=certs / "ca.crt",
            private_key=certs / name, port=free_port(),
            node_config={"partition-id": i, "num-partitions": 2, "dataset": "digits"}))))
    return link, cli, nodes


def _run_args(link: SuperLinkSpec, certs: Path, out: Path, *sets: str) -> list[str]:
    overrides = ("task.num_clients=2", "train.clients_per_round=2", "train.rounds=2",
                 f"strategy.name={STRATEGY}", "output.plots=false", *sets)
    args = ["deploy", "run", str(QUICKSTART), "--superlink", link.address,
            "--root-certificates", str(certs / "ca.crt"), "--out", str(out), "--quiet",
            "--timeout", "240"]
    for item in overrides:
        args += ["--set", item]
    return args


def _rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_two_rounds_tls_auth_meter_matches_superlink(tmp_path: Path, certs: Path,
                                                     tracker: Tracker) -> None:
    t0 = time.monotonic()
    link, _, _ = _deployment(tmp_path, certs, tracker)
    with pytest.raises(DeployError, match="not registered"):
        start_supernode(SuperNodeSpec(
            home=tmp_path / "intruder", superlink=link.address,
            root_certificates=certs / "ca.crt", private_key=certs / "intruder",
            port=free_port(), node_config={"partition-id": 0, "num-partitions": 2}))
    out = tmp_path / "results"
    code = commands.main(_run_args(link, certs, out, "eval.federated_every=2"))
    tracker.snapshot()
    assert code == 0
    for name in ("config.toml", "metrics.jsonl", "summary.json", DEPLOYMENT_FILE):
        assert (out / name).exists(), name
    rows = _rows(out)
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert [r["train_failures"] for r in rows[1:]] == [0, 0]
    report = json.loads((out / DEPLOYMENT_FILE).read_text())
    check = report["inbound_check"]
    print(f"\nstrategy {STRATEGY}; {time.monotonic() - t0:.1f} s\n"
          f"{json.dumps(report, indent=1)}")
    assert report["superlink"]["status"] == "finished:completed"
    assert check["agrees"], check
    if "meter_matches_wire" in report:
        assert report["meter_matches_wire"]
    tracker.stop_all()
    assert not descendants_alive(tracker.pids)


@pytest.mark.slow
def test_supernode_killed_mid_run_round_completes_with_survivor(
        tmp_path: Path, certs: Path, tracker: Tracker) -> None:
    t0 = time.monotonic()
    link, _, nodes = _deployment(tmp_path, certs, tracker)
    out = tmp_path / "results"
    result: dict[str, int] = {}
    runner = threading.Thread(target=lambda: result.update(
        code=commands.main(_run_args(link, certs, out, "eval.federated_every=0"))))
    runner.start()
    killed_at = None
    while runner.is_alive():
        tracker.snapshot()
        if killed_at is None and any(r["round"] == 1 for r in _rows(out)):
            kill_group(nodes[1].popen)  # a crash: no goodbye to the SuperLink
            killed_at = time.monotonic() - t0
        time.sleep(0.2)
    runner.join()
    assert killed_at is not None, "the run ended before round 1 was written"
    assert result["code"] == 0
    rows = _rows(out)
    print(f"\nkilled node2 at {killed_at:.1f} s; done at {time.monotonic() - t0:.1f} s\n"
          f"{json.dumps(rows[1:], indent=1)}")
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert rows[1]["train_failures"] == 0 and rows[1]["train_replies"] == 2
    assert rows[2]["train_failures"] == 1 and rows[2]["train_replies"] == 1
    assert (out / "summary.json").exists()
    report = json.loads((out / DEPLOYMENT_FILE).read_text())
    assert report["inbound_check"]["agrees"], report["inbound_check"]
    tracker.stop_all()
    assert not descendants_alive(tracker.pids)
