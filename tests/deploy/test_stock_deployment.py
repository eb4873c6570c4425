"""A TLS + SuperNode-auth deployment on 127.0.0.1 running a stock Flower app (FedAvg)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import Tracker, descendants_alive

from fedsim.deploy import flwr_cli
from fedsim.deploy.errors import DeployError
from fedsim.deploy.home import write_connection
from fedsim.deploy.nodes import SuperLinkSpec, SuperNodeSpec, start_superlink, start_supernode
from fedsim.deploy.probe import free_port
from fedsim.deploy.wire import cross_check


@pytest.mark.slow
def test_stock_app_tls_auth_two_rounds(tmp_path: Path, certs: Path, stock_app: Path,
                                       tracker: Tracker) -> None:
    t0 = time.monotonic()
    link = SuperLinkSpec(home=tmp_path / "superlink", port=free_port(), certs=certs)
    tracker.add(start_superlink(link))
    cli = tmp_path / "cli"
    write_connection(cli, link.address, certs / "ca.crt", insecure=False)
    for name in ("node1", "node2"):
        flwr_cli.register_supernode(certs / f"{name}.pub", cli)
    for i, name in enumerate(("node1", "node2")):
        tracker.add(start_supernode(SuperNodeSpec(
            home=tmp_path / name, superlink=link.address, root_certificates=certs / "ca.crt",
            private_key=certs / name, port=free_port(),
            node_config={"partition-id": i, "num-partitions": 2})))
    with pytest.raises(DeployError, match="not registered"):
        start_supernode(SuperNodeSpec(
            home=tmp_path / "intruder", superlink=link.address,
            root_certificates=certs / "ca.crt", private_key=certs / "intruder",
            port=free_port(), node_config={"partition-id": 0, "num-partitions": 2}))
    out = tmp_path / "out"
    overrides = tmp_path / "run.toml"
    overrides.write_text(f'out-dir = "{out}"\nnum-server-rounds = 2\n')
    run_id = flwr_cli.submit_run(stock_app, cli, overrides)
    traffic = flwr_cli.wait_finished(cli, run_id, timeout=150)
    tracker.snapshot()
    assert traffic.status == "finished:completed", flwr_cli.run_log(cli, run_id)[-3000:]
    wire = json.loads((out / "wire.json").read_text())
    result = json.loads((out / "result.json").read_text())
    assert set(result["evaluate"]) == {"1", "2"}
    replies = wire["uplink_messages"]
    assert replies == 8  # 2 rounds x (train + evaluate) x 2 nodes
    check = cross_check(wire["uplink_tree_bytes"], replies, traffic.inbound_bytes)
    print(f"\nwire: {json.dumps(wire)}\nsuperlink: {traffic.to_dict()}\ncheck: {check}\n"
          f"elapsed {time.monotonic() - t0:.1f} s")
    assert check["agrees"], check
    assert traffic.outbound_bytes >= wire["downlink_tree_bytes"]
    tracker.stop_all()
    assert not descendants_alive(tracker.pids)
