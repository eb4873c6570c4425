"""The deployment guide's commands (docs/deployment.md), as printed, on one machine (#24, 10).

Relative paths and the README's order: certs, keys, superlink, register (``keys/site-a.pub``,
a relative path), two supernodes (each in its own folder holding the copied ``ca.crt`` and
private key, as on a client machine), and ``deploy run configs/quickstart.toml --set
task.num_clients=2`` (``train.clients_per_round`` follows with a notice). Loopback instead of
``superlink.example.org``/``0.0.0.0``, free ports, and two extra ``--set``s that keep the run
short (one round, no plots) are the only changes.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedsim.deploy.probe import free_port
from fedsim.deploy.processes import FlowerProcess, launch, stop_home

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _fedsim(args: str, cwd: Path, home: Path, role: str) -> FlowerProcess:
    return launch(role, [sys.executable, "-m", "fedsim.cli", *args.split()], home,
                  log_path=home / f"{role}.out", cwd=cwd)


def _done(proc: FlowerProcess, timeout: float = 600) -> tuple[int, str]:
    proc.popen.wait(timeout=timeout)
    proc.wait_for_line(lambda _: False, 0.5)  # drain the reader
    return proc.returncode(), proc.output()


@pytest.fixture
def started() -> Iterator[list[tuple[FlowerProcess, Path]]]:
    procs: list[tuple[FlowerProcess, Path]] = []
    try:
        yield procs
    finally:
        for proc, default_home in reversed(procs):
            proc.stop(grace=15)
            stop_home(default_home)  # anything the foreground command left behind


def test_readme_deploy_sequence(tmp_path: Path, started: list) -> None:
    lab = tmp_path / "superlink-machine"
    (lab / "configs").mkdir(parents=True)
    shutil.copy(REPO / "configs" / "quickstart.toml", lab / "configs")
    logs = tmp_path / "logs"
    port = free_port()
    link = f"localhost:{port}"

    code, out = _done(_fedsim("deploy certs --out certs --name localhost --name 127.0.0.1",
                              lab, logs, "certs"))
    assert code == 0, out
    code, out = _done(_fedsim("deploy keys --out keys site-a site-b", lab, logs, "keys"))
    assert code == 0, out

    superlink = _fedsim(f"deploy superlink --certs certs --host 127.0.0.1 --port {port}",
                        lab, logs, "superlink")
    started.append((superlink, lab / ".fedsim-deploy" / f"superlink-{port}"))
    assert superlink.wait_for_line(lambda ln: "SuperLink up" in ln, 120), superlink.output()

    code, out = _done(_fedsim(f"deploy register keys/site-a.pub keys/site-b.pub --superlink "
                              f"{link} --root-certificates certs/ca.crt", lab, logs, "reg"))
    assert code == 0, out
    assert "keys/site-a.pub: registered as SuperNode" in out, out

    for pid, site in enumerate(("site-a", "site-b")):
        machine = tmp_path / site
        machine.mkdir()
        shutil.copy(lab / "certs" / "ca.crt", machine)
        shutil.copy(lab / "keys" / site, machine)
        node_port = free_port()
        node = _fedsim(f"deploy supernode --superlink {link} --root-certificates ca.crt "
                       f"--key {site} --partition-id {pid} --num-partitions 2 --dataset digits "
                       f"--profile laptop --port {node_port}", machine, logs, site)
        started.append((node, machine / ".fedsim-deploy" / f"supernode-{node_port}"))
        assert node.wait_for_line(lambda ln: "SuperNode connected" in ln, 120), node.output()

    code, out = _done(_fedsim(
        f"deploy run configs/quickstart.toml --set task.num_clients=2 --superlink {link} "
        f"--root-certificates certs/ca.crt --out results/quickstart-deploy "
        f"--set train.rounds=1 --set output.plots=false --quiet", lab, logs, "run"))
    assert code == 0, out
    assert "using train.clients_per_round = 2" in out
    run_dir = lab / "results" / "quickstart-deploy"
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x]
    assert [r["round"] for r in rows] == [0, 1]
    assert rows[1]["train_replies"] == 2 and rows[1]["train_failures"] == 0
    assert (run_dir / "deployment.json").exists()
