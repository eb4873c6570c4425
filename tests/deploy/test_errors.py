"""Wrong address, missing or mismatched certificate, bad input: one clear line, fast."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedsim.deploy import commands, credentials
from fedsim.deploy.errors import EXIT_DEPLOY_ERROR, DeployError
from fedsim.deploy.nodes import SuperLinkSpec, SuperNodeSpec, format_node_config
from fedsim.deploy.probe import check_superlink, free_port, split_address


@contextlib.contextmanager
def serve_tls(certs: Path) -> Iterator[str]:
    """A bare TLS server with ``certs/server.pem`` on 127.0.0.1 (stands in for a SuperLink)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs / "server.pem", certs / "server.key")
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except (TimeoutError, OSError):
                continue
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=2)
        sock.close()


@pytest.fixture
def tls_server(certs: Path) -> Iterator[str]:
    with serve_tls(certs) as address:
        yield address


def test_good_tls_server_passes(tls_server: str, certs: Path) -> None:
    check_superlink(tls_server, certs / "ca.crt", insecure=False)
    host_port = tls_server.replace("127.0.0.1", "localhost")
    check_superlink(host_port, certs / "ca.crt", insecure=False)


def test_wrong_address_is_refused_quickly(certs: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(DeployError, match="nothing is listening"):
        check_superlink(f"127.0.0.1:{free_port()}", certs / "ca.crt", insecure=False)
    with pytest.raises(DeployError, match="cannot resolve"):
        check_superlink("no-such-host.invalid:9092", certs / "ca.crt", insecure=False)
    assert time.monotonic() - t0 < 10


@pytest.mark.parametrize("address", ["127.0.0.1", "https://127.0.0.1:9092", "host:99999", ":1"])
def test_malformed_address(address: str) -> None:
    with pytest.raises(DeployError, match="SuperLink address"):
        split_address(address)


def test_certificate_from_another_ca(tls_server: str, tmp_path: Path) -> None:
    other = credentials.create_ca(tmp_path)
    with pytest.raises(DeployError, match="not signed by"):
        check_superlink(tls_server, other, insecure=False)


def test_certificate_without_the_dialled_name(tmp_path: Path) -> None:
    credentials.create_ca(tmp_path)
    credentials.create_server_certificate(tmp_path, ["superlink.example.org"])
    with serve_tls(tmp_path) as address, \
            pytest.raises(DeployError, match="does not name '127.0.0.1'"):
        check_superlink(address, tmp_path / "ca.crt", insecure=False)


def test_missing_certificate(tls_server: str, tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="does not exist"):
        check_superlink(tls_server, tmp_path / "nope.crt", insecure=False)
    with pytest.raises(DeployError, match="no root certificate"):
        check_superlink(tls_server, None, insecure=False)


def test_superlink_without_certificates(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="TLS needs certificates"):
        SuperLinkSpec(home=tmp_path).command()
    with pytest.raises(DeployError, match="server certificate .* does not exist"):
        (tmp_path / "ca.crt").write_text("x")
        SuperLinkSpec(home=tmp_path, certs=tmp_path).command()
    with pytest.raises(DeployError, match="needs TLS"):
        SuperLinkSpec(home=tmp_path, insecure=True).command()
    assert "--insecure" in SuperLinkSpec(home=tmp_path, insecure=True, auth=False).command()


def test_superlink_command_is_tls_and_auth_by_default(tmp_path: Path, certs: Path) -> None:
    cmd = SuperLinkSpec(home=tmp_path, certs=certs, host="0.0.0.0", port=9092).command()
    assert "--enable-supernode-auth" in cmd and "--insecure" not in cmd
    assert cmd[cmd.index("--ssl-certfile") + 1].endswith("server.pem")
    assert "--disable-runtime-dependency-installation" in cmd


def test_supernode_command(tmp_path: Path, certs: Path) -> None:
    spec = SuperNodeSpec(home=tmp_path, superlink="10.0.0.5:9092",
                         root_certificates=certs / "ca.crt", private_key=certs / "node1",
                         node_config={"partition-id": 3, "num-partitions": 10,
                                      "dataset": "digits", "profile": "phone"})
    cmd = spec.command()
    assert cmd[cmd.index("--node-config") + 1] == \
        'partition-id=3 num-partitions=10 dataset="digits" profile="phone"'
    with pytest.raises(DeployError, match="private key .* does not exist"):
        SuperNodeSpec(home=tmp_path, superlink="h:1", root_certificates=certs / "ca.crt",
                      private_key=tmp_path / "missing").command()


def test_node_config_quoting() -> None:
    assert format_node_config({"a": 1, "b": 0.5, "c": 'x "y"', "d": True}) == \
        'a=1 b=0.5 c="x \\"y\\"" d="true"'


def test_cli_errors_are_one_line(capsys: pytest.CaptureFixture, certs: Path,
                                 tmp_path: Path) -> None:
    port = free_port()
    cases = [
        (["deploy", "supernode", "--superlink", f"127.0.0.1:{port}", "--root-certificates",
          str(certs / "ca.crt"), "--partition-id", "0", "--num-partitions", "2",
          "--home", str(tmp_path / "n")], "nothing is listening"),
        (["deploy", "supernode", "--superlink", f"127.0.0.1:{port}", "--partition-id", "0",
          "--num-partitions", "2"], "no --root-certificates"),
        (["deploy", "supernode", "--superlink", f"127.0.0.1:{port}", "--insecure"],
         "needs its local data"),
        (["deploy", "supernode", "--superlink", f"127.0.0.1:{port}", "--insecure",
          "--partition-id", "5", "--num-partitions", "2"], "0 <= id < N"),
        (["deploy", "supernode", "--superlink", f"127.0.0.1:{port}", "--insecure",
          "--partition-id", "0", "--num-partitions", "2", "--data-path",
          str(tmp_path / "none.npz")], "does not exist"),
        (["deploy", "register", str(certs / "node1.pub"), "--superlink",
          f"127.0.0.1:{port}", "--root-certificates", str(certs / "ca.crt")],
         "nothing is listening"),
        (["deploy", "superlink", "--home", str(tmp_path / "sl"), "--port", str(port)],
         "TLS needs certificates"),
        (["deploy", "run", "configs/quickstart.toml", "--superlink", "localhost",
          "--insecure"], "not HOST:PORT"),
        (["deploy", "stop"], "nothing to stop"),
    ]
    for argv, message in cases:
        assert commands.main(argv) == EXIT_DEPLOY_ERROR, argv
        err = capsys.readouterr().err
        assert message in err, (argv, err)
        assert "Traceback" not in err
        assert len(err.strip().splitlines()) == 1, err


def test_certs_and_keys_commands(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert commands.main(["deploy", "certs", "--out", str(tmp_path), "--name", "10.1.2.3",
                          "--name", "localhost"]) == 0
    assert sorted(credentials.certificate_names(tmp_path / "server.pem")) == \
        ["10.1.2.3", "localhost"]
    assert commands.main(["deploy", "keys", "--out", str(tmp_path), "a", "b"]) == 0
    assert (tmp_path / "a").exists() and (tmp_path / "b.pub").exists()
    assert commands.main(["deploy", "keys", "--out", str(tmp_path), "a"]) == EXIT_DEPLOY_ERROR
    assert "already exists" in capsys.readouterr().err
