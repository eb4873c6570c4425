"""Reachability checks run before Flower is started, so mistakes fail fast and clearly.

Flower's own tools retry a wrong address for ever (SuperNode) or fail deep inside an HTTP
client (``flwr``); one TCP connect plus one TLS handshake with the given CA tells apart
"nothing listens there", "that is not a TLS server", "the certificate is not from this CA"
and "the certificate does not name this host".
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from fedsim.deploy.errors import DeployError


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``) -> (host, port), with a clear error otherwise."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DeployError(f"SuperLink address {address!r} is not HOST:PORT",
                          "e.g. --superlink 10.0.0.5:9092 (no https:// prefix)")
    if "://" in host:
        raise DeployError(f"SuperLink address {address!r} has a URL prefix",
                          "give HOST:PORT only, e.g. 10.0.0.5:9092")
    return host.strip("[]"), int(port)


def require_file(path: str | Path | None, what: str, hint: str) -> Path:
    """``path`` as a resolved Path if it names a readable file, else a DeployError."""
    if not path:
        raise DeployError(f"no {what} given", hint)
    p = Path(path).expanduser()
    if not p.is_file():
        raise DeployError(f"{what} {p} does not exist", hint)
    try:
        p.open("rb").close()
    except OSError as err:
        raise DeployError(f"{what} {p} cannot be read ({err.strerror})", hint) from None
    return p.resolve()


def check_superlink(address: str, root_certificates: str | Path | None, insecure: bool,
                    timeout: float = 5.0) -> None:
    """Raise a DeployError unless a SuperLink answers at ``address`` as configured."""
    host, port = split_address(address)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror:
        raise DeployError(f"cannot resolve the SuperLink host {host!r}",
                          "check the spelling of --superlink, or use its IP address") from None
    except ConnectionRefusedError:
        raise DeployError(f"nothing is listening at {address}",
                          "is the SuperLink running, with --host set to an address this "
                          "machine can reach, and is the port open in the firewall?") from None
    except (TimeoutError, OSError) as err:
        reason = "timed out" if isinstance(err, TimeoutError) else (err.strerror or str(err))
        raise DeployError(f"cannot reach the SuperLink at {address} ({reason})",
                          "check the address, the route and the firewall (the SuperLink "
                          "needs its one port open to clients)") from None
    with sock:
        if insecure:
            return
        ca = require_file(root_certificates, "root certificate",
                          "pass --root-certificates CA.crt (the ca.crt of the deployment), "
                          "or --insecure if the SuperLink was started with --insecure")
        context = ssl.create_default_context(cafile=str(ca))
        try:
            with context.wrap_socket(sock, server_hostname=host) as tls:
                tls.do_handshake()
        except ssl.SSLCertVerificationError as err:
            if "hostname" in (err.verify_message or "") or "IP address" in str(err):
                raise DeployError(
                    f"the SuperLink's certificate does not name {host!r}",
                    "dial one of the names in the certificate, or re-create it with "
                    f"`fedsim deploy certs --name {host}`") from None
            raise DeployError(
                f"the SuperLink's certificate at {address} is not signed by {ca} "
                f"({err.verify_message})",
                "use the ca.crt that signed the SuperLink's server.pem") from None
        except ssl.SSLError as err:
            raise DeployError(
                f"TLS handshake with {address} failed ({err.reason or err})",
                "if the SuperLink runs with --insecure, pass --insecure here too") from None
        except (TimeoutError, OSError) as err:
            raise DeployError(f"TLS handshake with {address} failed ({err})",
                              "if the SuperLink runs with --insecure, pass --insecure "
                              "here too") from None


def port_is_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound right now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
