"""Start a SuperLink or a SuperNode and wait until it is really up, or explain why not.

A SuperLink is up when its one HTTP(S) port answers (TLS handshake included); a SuperNode is
up when the SuperLink has activated it (Flower logs ``SuperNode ID: ...``). An early exit is
translated from Flower's log into one line with a hint: a taken port, missing certificates,
an unregistered key (exit code 305), an unreachable SuperLink.
"""

from __future__ import annotations

import ipaddress
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from fedsim.deploy.app_policy import TRUSTED_HASHES_ENV
from fedsim.deploy.control_gate import CONTROL_FROM_ENV, allowed_peers
from fedsim.deploy.errors import DeployError
from fedsim.deploy.probe import check_superlink, port_is_free, require_file, split_address
from fedsim.deploy.processes import FlowerProcess, launch

SUPERNODE_UP = "SuperNode ID:"
CERT_HINT = "create them with `fedsim deploy certs --out DIR --name HOST` and pass --certs DIR"


@dataclass
class SuperLinkSpec:
    """How to start a SuperLink. ``certs``: folder with ca.crt, server.pem, server.key."""

    home: Path
    host: str = "127.0.0.1"
    port: int = 9092
    certs: Path | None = None
    insecure: bool = False
    auth: bool = True
    database: Path | None = None
    control_from: list[str] = field(default_factory=list)  # beyond loopback; "any": everyone

    @property
    def address(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else \
            ("::1" if self.host == "::" else self.host)
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def env(self) -> dict[str, str]:
        """The control gate's allowed peers (:mod:`fedsim.deploy.control_gate`)."""
        try:
            peers = allowed_peers(self.control_from, self.host)
        except ValueError as err:
            raise DeployError(str(err), "e.g. --control-from 10.0.0.7") from None
        return {CONTROL_FROM_ENV: ",".join(peers)}

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "fedsim.deploy.control_gate", "--host", self.host,
               "--port", str(self.port), "--disable-runtime-dependency-installation"]
        if self.insecure and not is_loopback(self.host):
            raise DeployError(f"--insecure is refused on {self.host}: without TLS anyone on "
                              "the network can read and forge every message",
                              "use TLS (fedsim deploy certs; --certs DIR), or bind "
                              "--host 127.0.0.1 for a one-machine test")
        if not self.auth and not is_loopback(self.host):
            raise DeployError(f"--no-auth is refused on {self.host}: any machine holding "
                              "ca.crt could join as a SuperNode",
                              "register the SuperNodes' keys (fedsim deploy register), or "
                              "bind --host 127.0.0.1 for a one-machine test")
        if self.insecure:
            cmd.append("--insecure")
        else:
            if self.certs is None:
                raise DeployError("TLS needs certificates and none were given",
                                  CERT_HINT + " (or --insecure, for a trusted network only)")
            ca = require_file(self.certs / "ca.crt", "CA certificate", CERT_HINT)
            cert = require_file(self.certs / "server.pem", "server certificate", CERT_HINT)
            key = require_file(self.certs / "server.key", "server key", CERT_HINT)
            cmd += ["--ssl-ca-certfile", str(ca), "--ssl-certfile", str(cert),
                    "--ssl-keyfile", str(key)]
        if self.auth:
            if self.insecure:
                raise DeployError("SuperNode authentication needs TLS",
                                  "drop --insecure, or add --no-auth")
            cmd.append("--enable-supernode-auth")
        if self.database is not None:
            cmd += ["--database", str(self.database)]
        return cmd


@dataclass
class SuperNodeSpec:
    """How to start a SuperNode: where its SuperLink is, its key, its data and profile."""

    home: Path
    superlink: str
    node_config: dict[str, str | int | float] = field(default_factory=dict)
    root_certificates: Path | None = None
    private_key: Path | None = None
    insecure: bool = False
    host: str = "127.0.0.1"
    port: int = 9094
    max_wait_time: float | None = None
    trusted_app_hashes: list[str] = field(default_factory=list)  # besides fedsim's own app

    def env(self) -> dict[str, str]:
        """The app policy's extra trusted FAB hashes (:mod:`fedsim.deploy.app_policy`)."""
        for value in self.trusted_app_hashes:
            if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
                raise DeployError(f"--trust-app-hash {value!r} is not a SHA-256 hex digest",
                                  "64 hexadecimal characters, e.g. from `sha256sum app.fab`")
        return {TRUSTED_HASHES_ENV: ",".join(self.trusted_app_hashes)}

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "fedsim.deploy.app_policy", "--superlink", self.superlink,
               "--host", self.host, "--port", str(self.port)]
        if self.insecure and not is_loopback(split_address(self.superlink)[0]):
            raise DeployError(f"--insecure is refused for a SuperLink at {self.superlink}: "
                              "without TLS the connection can be read and forged",
                              "pass --root-certificates ca.crt (TLS), or run everything on "
                              "127.0.0.1 for a one-machine test")
        if self.insecure:
            cmd.append("--insecure")
        else:
            ca = require_file(self.root_certificates, "root certificate",
                              "pass --root-certificates with the deployment's ca.crt "
                              "(or --insecure if the SuperLink runs with --insecure)")
            cmd += ["--root-certificates", str(ca)]
        if self.private_key is not None:
            key = require_file(self.private_key, "SuperNode private key",
                               "create a key pair with `fedsim deploy keys --out DIR NAME`")
            cmd += ["--auth-supernode-private-key", str(key)]
        if self.node_config:
            cmd += ["--node-config", format_node_config(self.node_config)]
        if self.max_wait_time is not None:
            cmd += ["--max-wait-time", str(self.max_wait_time)]
        return cmd


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address or a dialled host) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def format_node_config(config: dict[str, str | int | float]) -> str:
    """``{"partition-id": 0, "dataset": "digits"}`` -> ``partition-id=0 dataset="digits"``."""
    parts = []
    for key, value in config.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            text = str(value).lower() if isinstance(value, bool) else str(value)
            value = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(f"{key}={value}")
    return " ".join(parts)


def _explain_superlink_exit(proc: FlowerProcess, spec: SuperLinkSpec) -> DeployError:
    out = proc.output()
    if "address already in use" in out.lower() or "errno 98" in out.lower():
        return DeployError(f"port {spec.port} on {spec.host} is already in use",
                           "stop what uses it or pick another --port")
    if "certificate" in out.lower() or "ssl" in out.lower():
        return DeployError("the SuperLink rejected its TLS files: " + _last_error(out),
                           CERT_HINT)
    return DeployError(f"the SuperLink exited with code {proc.returncode()}: "
                       + _last_error(out), f"full log: {proc.log_path}")


def _last_error(out: str) -> str:
    lines = [ln.strip() for ln in out.splitlines() if ln.strip() and not ln.startswith("#")]
    for ln in reversed(lines):
        if "error" in ln.lower() or "exception" in ln.lower():
            return ln[-300:]
    return lines[-1][-300:] if lines else "no output"


def start_superlink(spec: SuperLinkSpec, ca_cert: Path | None = None, echo: bool = False,
                    timeout: float = 60.0) -> FlowerProcess:
    """Start ``flower-superlink`` per ``spec`` and return once its port answers."""
    cmd = spec.command()
    if not port_is_free(spec.host, spec.port):
        raise DeployError(f"port {spec.port} on {spec.host} is already in use",
                          "stop what uses it (another SuperLink?) or pick another --port")
    proc = launch("superlink", cmd, spec.home, echo=echo, extra_env=spec.env())
    ca = ca_cert or (spec.certs / "ca.crt" if spec.certs else None)
    deadline = time.monotonic() + timeout
    last: DeployError | None = None
    while time.monotonic() < deadline:
        if not proc.alive():
            time.sleep(0.3)
            err = _explain_superlink_exit(proc, spec)
            proc.stop()
            raise err
        try:
            check_superlink(spec.address, ca, spec.insecure, timeout=2.0)
            return proc
        except DeployError as err:
            last = err
            time.sleep(0.3)
    proc.stop()
    raise DeployError(f"the SuperLink did not come up within {timeout:.0f} s ({last})",
                      f"see {proc.log_path}")


def start_supernode(spec: SuperNodeSpec, echo: bool = False, timeout: float = 60.0,
                    check: bool = True) -> FlowerProcess:
    """Start ``flower-supernode`` per ``spec``; return once the SuperLink activated it.

    Raises a DeployError (and leaves nothing running) for an unreachable SuperLink, a
    certificate that does not match, an unregistered key, or no activation in ``timeout``.
    """
    cmd = spec.command()
    if check:
        check_superlink(spec.superlink, spec.root_certificates, spec.insecure)
    if not port_is_free(spec.host, spec.port):
        raise DeployError(f"port {spec.port} on {spec.host} (the SuperNode's local API) is "
                          "already in use", "give each SuperNode on a machine its own --port")
    proc = launch("supernode", cmd, spec.home, echo=echo, extra_env=spec.env())
    if proc.wait_for_line(lambda ln: SUPERNODE_UP in ln, timeout):
        return proc
    out = proc.output()
    proc.stop()
    if "code: 2004" in out or "Exit Code: 305" in out or "Failed to activate" in out:
        key = spec.private_key or "its key"
        raise DeployError(f"the SuperLink refused this SuperNode: {key} is not registered "
                          "(Flower exit code 305)",
                          "register the public key on the SuperLink side with "
                          "`fedsim deploy register KEY.pub --superlink ADDR ...`, then retry")
    if "Exit Code:" in out:
        raise DeployError("the SuperNode stopped: " + _last_error(out),
                          f"full log: {proc.log_path}")
    raise DeployError(f"the SuperNode was not activated within {timeout:.0f} s: "
                      + _last_error(out), f"full log: {proc.log_path}")
