"""The SuperLink's Control and Runtime APIs answer only its own machine (finding 1 of #24).

Flower 1.41 serves the Fleet API (SuperNodes), the Control API (``flwr run``, ``flwr supernode
register``, ``flwr stop``) and the Runtime API (ServerApp, SuperExec) on one HTTPS port, and
without Flower's enterprise account plugin the Control API takes any caller that completes TLS,
i.e. anyone holding the public ``ca.crt``. ``fedsim deploy superlink`` therefore starts
``flower-superlink`` through this module, which adds one middleware to the SuperLink's FastAPI
app through Flower's own extension hook (``flwr.superlink.extensions.get_middleware``): a
request under ``/v1/control/`` or ``/v1/runtime/`` from a peer address that is not allowed gets
HTTP 403 before Flower reads it. Allowed by default: the loopback addresses ``127.0.0.1`` and
``::1`` and the SuperLink's own addresses (its bind address, or with ``--host 0.0.0.0`` every
address of its interfaces), so runs are submitted and SuperNodes registered from the
SuperLink's machine only. ``--control-from IP`` adds an
address; ``--control-from any`` lets everyone through (with a warning).

Usage (what ``fedsim deploy superlink`` runs): ``python -m fedsim.deploy.control_gate
FLOWER-SUPERLINK-ARGS``; the allowed addresses come in ``FEDSIM_CONTROL_FROM`` (comma list).
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys

CONTROL_FROM_ENV = "FEDSIM_CONTROL_FROM"
GATED_PREFIXES = ("/v1/control/", "/v1/runtime/")
LOOPBACK = ("127.0.0.1", "::1")
ANY = "any"


def allowed_peers(extra: list[str], bind_host: str) -> list[str]:
    """The peer addresses the gate lets through: loopback, the bind address, ``extra``."""
    peers = list(LOOPBACK)
    if bind_host in ("0.0.0.0", "::", ""):  # every interface: every address of this machine
        peers += machine_addresses()
    elif bind_host != "localhost":
        peers.append(bind_host)
    for item in extra:
        if item == ANY:
            return [ANY]
        try:
            peers.append(str(ipaddress.ip_address(item)))
        except ValueError:
            raise ValueError(f"--control-from {item!r} is not an IP address (or 'any')") \
                from None
    return list(dict.fromkeys(peers))


def machine_addresses() -> list[str]:
    """The IP addresses of this machine's network interfaces (a process here dialling the
    SuperLink's public name arrives from one of them)."""
    import socket

    import psutil

    return [a.address.split("%")[0] for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family in (socket.AF_INET, socket.AF_INET6)]


def peer_allowed(peer: str | None, allowed: list[str]) -> bool:
    """Whether a request from ``peer`` may use the Control/Runtime APIs."""
    if ANY in allowed:
        return True
    if peer is None:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address) in allowed


def gate_middleware(allowed: list[str]):  # noqa: ANN201
    """A Starlette middleware that refuses gated paths from peers not in ``allowed``."""
    from starlette.middleware import Middleware
    from starlette.responses import Response

    class ControlGate:
        def __init__(self, app) -> None:  # noqa: ANN001
            self.app = app

        async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
            if scope["type"] == "http" and scope["path"].startswith(GATED_PREFIXES):
                client = scope.get("client")
                peer = client[0] if client else None
                if not peer_allowed(peer, allowed):
                    body = json.dumps({"detail": f"fedsim: the SuperLink's Control API "
                                                 f"answers only {', '.join(allowed)}; "
                                                 f"{peer} is refused"}).encode()
                    await Response(body, status_code=403,
                                   media_type="application/json")(scope, receive, send)
                    return
            await self.app(scope, receive, send)

    return Middleware(ControlGate)


def install(allowed: list[str]) -> None:
    """Add the gate to Flower's SuperLink extension middleware (outermost, runs first)."""
    from flwr.superlink import extensions

    flower_middleware = extensions.get_middleware

    def get_middleware() -> tuple:
        return (gate_middleware(allowed), *flower_middleware())

    extensions.get_middleware = get_middleware


def main() -> int:
    from flwr.superlink.cli import flower_superlink

    allowed = [p for p in os.environ.get(CONTROL_FROM_ENV, ",".join(LOOPBACK)).split(",") if p]
    install(allowed)
    sys.argv[0] = "flower-superlink"
    return flower_superlink() or 0


if __name__ == "__main__":
    sys.exit(main())
