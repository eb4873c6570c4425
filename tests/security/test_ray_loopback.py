"""Finding 8: a local run keeps Ray's ports on the loopback interface, without dashboard; an
exported RAY_ADDRESS never crashes a local run; an engine that fails never exits 0."""

from __future__ import annotations

import ipaddress
import logging
import subprocess
from pathlib import Path

import psutil
import pytest
import ray

from fedsim.cli import main
from fedsim.config.schema import EngineConfig
from fedsim.engine import flower_sim
from fedsim.engine.ray_engine import ray_session

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = str(ROOT / "configs" / "quickstart.toml")


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def _listening(procs: list[psutil.Process]) -> list[tuple[str, str, int]]:
    found = []
    for p in procs:
        try:
            found += [(p.name(), c.laddr.ip, c.laddr.port)
                      for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        except psutil.Error:  # a worker that exited meanwhile
            continue
    return found


@pytest.mark.slow
def test_local_ray_listens_on_loopback_only_and_has_no_dashboard() -> None:
    assert not ray.is_initialized()
    with ray_session(EngineConfig(num_cpus=1)):
        @ray.remote(num_cpus=1)
        def ping() -> int:
            return 1

        assert ray.get(ping.remote()) == 1  # a worker process is up too
        me = psutil.Process()
        sockets = _listening([me, *me.children(recursive=True)])
        names = {name for name, _, _ in sockets}
        assert any("gcs" in n for n in names) and any("raylet" in n for n in names), sockets
        exposed = [s for s in sockets if not _loopback(s[1])]
        assert exposed == [], f"Ray listens beyond loopback: {exposed}"
        assert 8265 not in {port for _, _, port in sockets}  # no dashboard
    assert not ray.is_initialized()


@pytest.mark.slow
def test_exported_ray_address_is_ignored_by_a_local_ray_run(tmp_path, monkeypatch,
                                                              caplog) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # nothing listens there
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="fedsim.engine.ray_engine"):
        code = main(["run", QUICKSTART, "--out", str(out), "--engine", "ray",
                     "--set", "train.rounds=1", "--set", "task.num_clients=2",
                     "--set", "train.clients_per_round=2", "--set", "engine.num_cpus=1",
                     "--set", "output.plots=false"])
    assert code == 0
    assert (out / "summary.json").exists()
    assert "RAY_ADDRESS=127.0.0.1:1 is ignored" in caplog.text


def test_flower_engine_never_passes_ray_address_on(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    env = flower_sim.flower_env(tmp_path)
    assert "RAY_ADDRESS" not in env
    assert env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"  # Flower's Ray on loopback too


def test_flower_engine_run_that_did_not_finish_exits_non_zero(tmp_path, monkeypatch,
                                                               capsys) -> None:
    """``flwr run --stream`` exits 0 when its run failed: fedsim must not."""
    def flwr_run_failed_quietly(cmd, stdout=None, **kwargs):
        stdout.write("ERROR : ServerApp raised an exception\n")
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(flower_sim.subprocess, "run", flwr_run_failed_quietly)
    monkeypatch.setattr(flower_sim, "stop_flower_home", lambda home: None)
    out = tmp_path / "run"
    code = main(["run", QUICKSTART, "--out", str(out), "--engine", "flower"])
    assert code == 1
    err = capsys.readouterr().err
    assert "did not finish" in err and "ServerApp raised an exception" in err
    assert "flower.log" in err and (out / "flower.log").exists()
