"""The ``flwr`` CLI against one deployment connection, with its output parsed and its
failures turned into one-line errors.

Every call runs with a private ``FLWR_HOME`` whose ``config.toml`` holds a single default
connection (:func:`fedsim.deploy.home.write_connection`), asks for ``--format json`` and is
bounded by a timeout, so a SuperLink that stops answering cannot hang the caller.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsim.deploy.errors import DeployError
from fedsim.deploy.home import flower_bin, flower_env

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CHATTER = ("Using SuperLink:", "- Recommended property", "Flower App configuration warnings")
_BOX = re.compile("[\u2500-\u257f]+")  # box-drawing characters of rich's panels


@dataclass(frozen=True)
class Traffic:
    """The SuperLink's own per-run counters (``flwr ls --format json``)."""

    run_id: int
    status: str
    inbound_bytes: int
    outbound_bytes: int
    clientapp_seconds: float
    serverapp_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "status": self.status,
                "inbound_bytes": self.inbound_bytes, "outbound_bytes": self.outbound_bytes,
                "total_bytes": self.inbound_bytes + self.outbound_bytes,
                "clientapp_seconds": self.clientapp_seconds,
                "serverapp_seconds": self.serverapp_seconds}


def _last_json(text: str) -> dict[str, Any] | None:
    text = _ANSI.sub("", text)
    start = text.find("{")
    while start != -1:
        try:
            return json.loads(text[start:])
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
    return None


def _message_text(output: str) -> str:
    """The words of ``flwr``'s last message, without colours and the box drawn around it."""
    lines = [_BOX.sub("", _ANSI.sub("", line)).strip() for line in output.splitlines()]
    words = [line for line in lines if line and not line.startswith(_CHATTER)]
    return " ".join(words[-3:]) if words else "no output"


def flwr(args: list[str], home: Path, timeout: float = 60.0,
         cwd: Path | None = None) -> dict[str, Any]:
    """Run ``flwr ARGS --format json`` with ``FLWR_HOME=home``; return its JSON answer."""
    cmd = [flower_bin("flwr"), *args, "--format", "json"]
    try:
        proc = subprocess.run(cmd, env=flower_env(home), capture_output=True, text=True,
                              timeout=timeout, cwd=str(cwd or home), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise DeployError(f"`flwr {args[0]}` got no answer within {timeout:.0f} s",
                          "is the SuperLink still running and reachable?") from None
    answer = _last_json(proc.stdout) or _last_json(proc.stderr)
    if proc.returncode != 0 or not answer or not answer.get("success", False):
        detail = (answer or {}).get("error-message") or _message_text(
            proc.stderr or proc.stdout)
        raise DeployError(f"`flwr {' '.join(args[:2])}` failed: {detail}",
                          "see `fedsim deploy status` and the SuperLink log")
    return answer


def register_supernode(public_key: Path, home: Path, name: str | None = None) -> int:
    """Register a SuperNode public key with the SuperLink; return its node id."""
    args = ["supernode", "register", str(Path(public_key).resolve())]  # flwr runs in home
    if name:
        args += ["--name", name]
    return int(flwr(args, home)["node-id"])


def list_supernodes(home: Path) -> list[dict[str, Any]]:
    """The SuperLink's SuperNodes (id, status, times)."""
    return list(flwr(["supernode", "ls"], home).get("nodes", []))


def submit_run(app_dir: Path, home: Path, run_config: Path | None = None) -> int:
    """Start a run of the Flower app in ``app_dir``; return its run id."""
    args = ["run", str(app_dir)]
    if run_config is not None:
        args += ["-c", str(run_config)]
    answer = flwr(args, home, timeout=300.0)
    if answer.get("run-id") is None:
        raise DeployError("the SuperLink did not start the run", "see the SuperLink log")
    return int(answer["run-id"])


def run_traffic(home: Path, run_id: int) -> Traffic:
    """Status and network-traffic counters of one run (``flwr ls --run-id``)."""
    runs = flwr(["ls", "--run-id", str(run_id)], home).get("runs", [])
    if not runs:
        raise DeployError(f"the SuperLink knows no run {run_id}", "check the run id")
    row = runs[0]
    traffic, compute = row.get("network-traffic", {}), row.get("compute-time", {})
    return Traffic(int(row["run-id"]), str(row.get("status", "")),
                   int(traffic.get("inbound-bytes", 0)), int(traffic.get("outbound-bytes", 0)),
                   float(compute.get("clientapp-seconds", 0.0)),
                   float(compute.get("serverapp-seconds", 0.0)))


def wait_finished(home: Path, run_id: int, timeout: float, poll: float = 2.0) -> Traffic:
    """Poll the run until its status is ``finished:*``; stop it and raise after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        info = run_traffic(home, run_id)
        if info.status.startswith("finished"):
            return info
        if time.monotonic() > deadline:
            stop_run(home, run_id)
            raise DeployError(f"run {run_id} did not finish within {timeout:.0f} s "
                              f"(status {info.status}); it was stopped",
                              "are enough SuperNodes connected? see `fedsim deploy status`")
        time.sleep(poll)


def stop_run(home: Path, run_id: int) -> None:
    """Ask the SuperLink to stop a run (errors ignored: it may have finished)."""
    with contextlib.suppress(DeployError):
        flwr(["stop", str(run_id)], home, timeout=30.0)


def run_log(home: Path, run_id: int, timeout: float = 30.0) -> str:
    """The run's ServerApp log as the SuperLink kept it (``flwr log --show``)."""
    try:
        proc = subprocess.run([flower_bin("flwr"), "log", str(run_id), "--show"],
                              env=flower_env(home), capture_output=True, text=True,
                              timeout=timeout, cwd=str(home), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return ""
    return _ANSI.sub("", proc.stdout)
