"""``fedsim deploy run``: one experiment config, run on a real SuperLink and its SuperNodes.

The config is validated here, then shipped inside the run config, so the SuperLink's machine
needs nothing but fedsim installed. The ServerApp (:mod:`fedsim.deploy.server_app`) writes the
usual results folder at ``--out`` on the SuperLink's machine. Afterwards the SuperLink's own
traffic counters (``flwr ls``) are read and written beside the results as ``deployment.json``
with the cross-check against the metered bytes.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from fedsim.deploy import flwr_cli
from fedsim.deploy.errors import DeployError
from fedsim.deploy.home import flower_bin, write_connection
from fedsim.deploy.probe import check_superlink
from fedsim.deploy.processes import launch
from fedsim.deploy.wire import WIRE_FILE, cross_check
from fedsim.engine.flower_sim import app_pyproject

DEPLOYMENT_FILE = "deployment.json"
SERVER_LOG = "server.log"
APP_PYPROJECT = app_pyproject("fedsim-deploy", "fedsim.deploy.server_app:app",
                              ("config-path", "config-toml", "results-dir"))


@dataclass(frozen=True)
class Connection:
    """Where the SuperLink is and how to trust it."""

    address: str
    root_certificates: Path | None = None
    insecure: bool = False

    def check(self) -> None:
        check_superlink(self.address, self.root_certificates, self.insecure)

    def home(self, path: Path) -> Path:
        write_connection(path, self.address, self.root_certificates, self.insecure)
        return path


def _metered(run_dir: Path) -> dict[str, Any]:
    """Totals of the meter's per-round fields in metrics.jsonl (empty if it wrote none)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    keys = ("uplink_bytes", "uplink_replies", "downlink_bytes", "downlink_messages",
            "train_failures", "train_replies")
    return {k: sum(int(r.get(k) or 0) for r in rows) for k in keys
            if any(k in r for r in rows)}


def write_report(run_dir: Path, traffic: flwr_cli.Traffic) -> dict[str, Any]:
    """Write ``deployment.json``: SuperLink counters, metered bytes and their cross-check."""
    report: dict[str, Any] = {"superlink": traffic.to_dict(), "meter": _metered(run_dir)}
    wire_path = run_dir / WIRE_FILE
    if wire_path.exists():
        wire = json.loads(wire_path.read_text())
        report["wire"] = wire
        report["inbound_check"] = cross_check(wire["uplink_tree_bytes"],
                                              wire["uplink_messages"], traffic.inbound_bytes,
                                              wire.get("uplink_envelope_bytes"))
        down, n_down = wire["downlink_tree_bytes"], wire["downlink_messages"]
        report["outbound_info"] = {  # no documented bound: envelopes and pull responses vary
            "metered_downlink_tree_bytes": down, "instructions": n_down,
            "superlink_outbound_bytes": traffic.outbound_bytes,
            "overhead_per_message": ((traffic.outbound_bytes - down) / n_down
                                     if n_down else None)}
        train = wire["uplink"].get("train", {})
        if "uplink_bytes" in report["meter"]:
            # the error replies the SuperLink makes up for a vanished node never crossed the
            # network: the meter counts them as replies with no bytes, as the wire does
            made_up = wire.get("unavailable_reply_tree_bytes", {}).get("train", 0)
            report["meter_train_uplink_bytes"] = report["meter"]["uplink_bytes"]
            report["wire_train_uplink_tree_bytes"] = train.get("tree_bytes", 0)
            report["superlink_made_up_reply_bytes"] = made_up
            report["meter_matches_wire"] = (report["meter"]["uplink_bytes"]
                                            == train.get("tree_bytes", 0))
    (run_dir / DEPLOYMENT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


def run_experiment(config_toml: str, run_dir: Path, connection: Connection,
                   timeout: float = 3600.0, echo: bool = True) -> dict[str, Any]:
    """Submit the resolved config to the SuperLink, wait, and write ``deployment.json``."""
    connection.check()
    run_dir = Path(run_dir).resolve()
    work = Path(tempfile.mkdtemp(prefix="fedsim-deploy-run-"))
    log_proc = None
    run_id = None
    home = connection.home(work / "home")
    try:
        app_dir = work / "app"
        app_dir.mkdir()
        (app_dir / "pyproject.toml").write_text(APP_PYPROJECT)
        overrides = work / "run-config.toml"
        overrides.write_text(tomli_w.dumps({"config-toml": config_toml,
                                            "results-dir": str(run_dir)}))
        run_id = flwr_cli.submit_run(app_dir, home, overrides)
        if echo:
            print(f"fedsim: run {run_id} submitted to {connection.address}", file=sys.stderr)
        log_proc = launch("flwr-log", [flower_bin("flwr"), "log", str(run_id), "--stream"],
                          home, log_path=run_dir / SERVER_LOG, echo=echo)
        traffic = flwr_cli.wait_finished(home, run_id, timeout)
    except KeyboardInterrupt:
        if run_id is not None:
            flwr_cli.stop_run(home, run_id)
        raise
    finally:
        if log_proc is not None:
            deadline = time.monotonic() + 10
            while log_proc.alive() and time.monotonic() < deadline:
                time.sleep(0.2)
            log_proc.stop(grace=3)
        shutil.rmtree(work, ignore_errors=True)
    report = write_report(run_dir, traffic)
    if traffic.status != "finished:completed":
        tail = [ln for ln in (run_dir / SERVER_LOG).read_text().splitlines()
                if ln.strip()][-1:] if (run_dir / SERVER_LOG).exists() else []
        raise DeployError(f"run {run_id} ended {traffic.status}"
                          + (f": {tail[0].strip()}" if tail else ""),
                          f"see {run_dir / SERVER_LOG}")
    return report


