"""``fedsim deploy ...``: real SuperLink/SuperNode deployments with TLS and node authentication.

    fedsim deploy certs --out DIR [--name HOST ...]          CA + SuperLink certificate
    fedsim deploy keys --out DIR NAME [NAME ...]             SuperNode key pairs
    fedsim deploy superlink --certs DIR [--host H] [--port P] [--insecure] [--no-auth]
    fedsim deploy register KEY.pub [...] --superlink ADDR --root-certificates CA
    fedsim deploy supernode --superlink ADDR --root-certificates CA --key KEY
                            --partition-id I --num-partitions N [--dataset D] [--data-path P]
                            [--profile NAME]
    fedsim deploy run CONFIG --superlink ADDR --root-certificates CA [--out DIR]
    fedsim deploy status --superlink ADDR --root-certificates CA [--run-id ID]
    fedsim deploy stop --home DIR [...] | --run-id ID --superlink ADDR ...

Every Flower process gets its own FLWR_HOME (``--home``); ``superlink`` and ``supernode`` run
in the foreground and stop everything they started on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import functools
import json
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from clients.noise_source import NOISE_MODE_KEY
from clients.setup import CLIENT_BOUNDS
from fedsim.config import ConfigError
from fedsim.deploy import credentials, flwr_cli
from fedsim.deploy.control_gate import CONTROL_FROM_ENV
from fedsim.deploy.errors import EXIT_DEPLOY_ERROR, DeployError
from fedsim.deploy.experiment import Connection, run_experiment
from fedsim.deploy.nodes import SuperLinkSpec, SuperNodeSpec, start_superlink, start_supernode
from fedsim.deploy.probe import split_address
from fedsim.deploy.processes import stop_home

DEFAULT_PORT = 9092
DEFAULT_NODE_PORT = 9094
HOMES = Path(".fedsim-deploy")


def _connection(args: argparse.Namespace) -> Connection:
    ca = None if args.insecure else Path(args.root_certificates) if args.root_certificates \
        else None
    if not args.insecure and ca is None:
        raise DeployError("no --root-certificates given",
                          "pass the deployment's ca.crt, or --insecure if the SuperLink runs "
                          "with --insecure")
    return Connection(args.superlink, ca, args.insecure)


def _cli_home() -> Path:
    return Path(tempfile.mkdtemp(prefix="fedsim-deploy-cli-"))


def _serve(proc, what: str) -> int:  # noqa: ANN001
    """Wait in the foreground; stop ``proc`` and its children on Ctrl-C or SIGTERM."""

    def _term(signum, frame):  # noqa: ANN001, ARG001
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _term)
    try:
        while proc.alive():
            time.sleep(0.5)
        print(f"fedsim: {what} exited with code {proc.returncode()}", file=sys.stderr)
        return proc.returncode() or 0
    except KeyboardInterrupt:
        print(f"fedsim: stopping {what}", file=sys.stderr)
        return 0
    finally:
        proc.stop()
        signal.signal(signal.SIGTERM, previous)


def cmd_certs(args: argparse.Namespace) -> int:
    out = Path(args.out)
    names = args.name or list(credentials.DEFAULT_NAMES)
    if not (out / credentials.CA_CERT).exists() or args.overwrite:
        credentials.create_ca(out, overwrite=args.overwrite)
    creds = credentials.create_server_certificate(out, names, overwrite=args.overwrite)
    print(f"CA:          {creds.ca_cert}   (copy to every SuperNode and flwr user)\n"
          f"certificate: {creds.server_cert}   (names: {', '.join(names)})\n"
          f"key:         {creds.server_key}   (stays on the SuperLink machine)")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    for name in args.names:
        keys = credentials.create_node_keys(Path(args.out), name, overwrite=args.overwrite)
        print(f"{name}: private {keys.private_key} (to that SuperNode only), "
              f"public {keys.public_key} (register it)")
    return 0


def cmd_superlink(args: argparse.Namespace) -> int:
    home = Path(args.home or HOMES / f"superlink-{args.port}")
    spec = SuperLinkSpec(home=home, host=args.host, port=args.port,
                         certs=Path(args.certs) if args.certs else None,
                         insecure=args.insecure, auth=not args.no_auth,
                         database=Path(args.database) if args.database else None,
                         control_from=list(args.control_from))
    peers = spec.env()[CONTROL_FROM_ENV]
    if args.insecure or args.no_auth:
        print("fedsim: WARNING: " + ("no TLS" if args.insecure else "")
              + (" and " if args.insecure and args.no_auth else "")
              + ("no SuperNode authentication" if args.no_auth else "")
              + f": allowed only because the SuperLink listens on loopback ({args.host})",
              file=sys.stderr)
    if peers == "any":
        print("fedsim: WARNING: --control-from any: every machine that reaches port "
              f"{args.port} and holds ca.crt can submit runs (their code then runs here and "
              "on every SuperNode) and register SuperNodes", file=sys.stderr)
    proc = start_superlink(spec, echo=not args.quiet)
    mode = "INSECURE (no TLS)" if args.insecure else "TLS"
    auth = "SuperNode authentication ON" if spec.auth else "any SuperNode may join"
    print(f"fedsim: SuperLink up on {args.host}:{args.port} ({mode}, {auth}; runs and "
          f"registrations only from {peers}); open TCP port {args.port} to SuperNodes; "
          f"FLWR_HOME={home.resolve()}; Ctrl-C stops it", file=sys.stderr)
    return _serve(proc, "SuperLink")


def _node_config(args: argparse.Namespace) -> dict[str, str | int]:
    """Node config of a SuperNode: its slot (partition id), data, dataset name and profile."""
    if args.partition_id is None or args.num_partitions is None:
        raise DeployError("the SuperNode needs its local data",
                          "pass --partition-id I --num-partitions N (its partition of the "
                          "experiment's dataset; N = task.num_clients), plus --data-path FILE "
                          "to use the client's own data in that slot")
    if not 0 <= args.partition_id < args.num_partitions:
        raise DeployError("--partition-id needs 0 <= id < N (--num-partitions)",
                          "e.g. --partition-id 0 --num-partitions 10")
    config: dict[str, str | int] = {"partition-id": args.partition_id,
                                    "num-partitions": args.num_partitions}
    if args.data_path:
        path = Path(args.data_path).expanduser()
        if not path.is_file():
            raise DeployError(f"--data-path {path} does not exist",
                              "give the client's .npz file (arrays x and y)")
        config["data-path"] = str(path.resolve())
    if args.dataset:
        from fedsim.tasks.datasets import DATASETS

        if args.dataset not in DATASETS:
            raise DeployError(f"--dataset {args.dataset!r} is not a dataset fedsim knows",
                              f"use one of {', '.join(DATASETS.names())}, or a "
                              "'package.module:Name' reference (the experiment's task.dataset)")
        config["dataset"] = args.dataset
    for bound in CLIENT_BOUNDS:
        value = getattr(args, bound.key.replace("-", "_"), None)
        if value is not None:
            config[bound.key] = value
    if args.profile:
        config["profile"] = args.profile
    config[NOISE_MODE_KEY] = "reproducible" if args.reproducible_client_noise else "secret"
    for item in args.node_config:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DeployError(f"--node-config {item!r} is not KEY=VALUE", 'e.g. site="lab-2"')
        config[key] = int(value) if value.lstrip("-").isdigit() else value.strip('"')
    return config


def cmd_supernode(args: argparse.Namespace) -> int:
    conn = _connection(args)
    home = Path(args.home or HOMES / f"supernode-{args.port}")
    spec = SuperNodeSpec(home=home, superlink=conn.address, node_config=_node_config(args),
                         root_certificates=conn.root_certificates,
                         private_key=Path(args.key) if args.key else None,
                         insecure=conn.insecure, host=args.host, port=args.port,
                         max_wait_time=args.max_wait_time,
                         trusted_app_hashes=list(args.trust_app_hash))
    proc = start_supernode(spec, echo=not args.quiet, timeout=args.timeout)
    print(f"fedsim: SuperNode connected to {conn.address} ({spec.node_config}); "
          f"FLWR_HOME={home.resolve()}; Ctrl-C stops it", file=sys.stderr)
    return _serve(proc, "SuperNode")


def cmd_register(args: argparse.Namespace) -> int:
    conn = _connection(args)
    conn.check()
    home = conn.home(_cli_home())
    for key in args.public_keys:
        path = Path(key)
        if not path.is_file():
            raise DeployError(f"public key {path} does not exist",
                              "create key pairs with `fedsim deploy keys --out DIR NAME`")
        node_id = flwr_cli.register_supernode(path, home, name=args.name)
        print(f"{path}: registered as SuperNode {node_id}")
    return 0


def _load_run_config(path: str, sets: list[str]):  # noqa: ANN202
    """The experiment config; a ``--set task.num_clients=N`` below the config's
    ``clients_per_round`` (or ``eval.federated_clients``) lowers them to N, with a notice,
    unless they were ``--set`` too (then the ConfigError stands)."""
    from fedsim.config import load_config

    given = {item.partition("=")[0].strip() for item in sets}
    sets = list(sets)
    for _ in range(2):
        try:
            return load_config(path, sets)
        except ConfigError as err:
            if err.field not in ("train.clients_per_round", "eval.federated_clients") or \
                    err.field in given or "task.num_clients" not in given:
                raise
            n = int(err.allowed.rsplit("=", 1)[-1])  # "at most task.num_clients = N"
            print(f"fedsim: {err.field} = {err.value} is more than task.num_clients = {n}; "
                  f"using {err.field} = {n} (--set {err.field}=K to choose)", file=sys.stderr)
            sets.append(f"{err.field}={n}")
    return load_config(path, sets)


def cmd_run(args: argparse.Namespace) -> int:
    from fedsim.config import save_config
    from fedsim.results.writer import CONFIG_FILE
    from fedsim.run_dirs import discard_unstarted, new_run_dir
    from fedsim.tasks.task import preflight

    conn = _connection(args)
    split_address(conn.address)  # a malformed address fails before the config is loaded
    cfg = _load_run_config(args.config, args.set)
    preflight(cfg.task, cfg.seed)
    conn.check()
    run_dir = new_run_dir(args.out, cfg.output.dir, cfg.name).resolve()
    save_config(cfg, run_dir / CONFIG_FILE)
    text = (run_dir / CONFIG_FILE).read_text()
    print(f"fedsim: {cfg.name}: {cfg.strategy_name} on {cfg.task.dataset} over the SuperLink "
          f"at {conn.address} (waits for {cfg.task.num_clients} SuperNodes)\n"
          f"results: {run_dir}", file=sys.stderr)
    try:
        report = run_experiment(text, run_dir, conn, timeout=args.timeout,
                                echo=not args.quiet)
    except Exception:
        discard_unstarted(run_dir)  # a submission that failed leaves no half-written folder
        raise
    except KeyboardInterrupt:
        print("fedsim: interrupted; the run was stopped", file=sys.stderr)
        return 130
    link = report["superlink"]
    check = report.get("inbound_check", {})
    print(f"fedsim: SuperLink counted {link['inbound_bytes']} B in, {link['outbound_bytes']} B "
          f"out; metered uplink {check.get('metered_uplink_tree_bytes')} B in "
          f"{check.get('replies')} replies (agrees: {check.get('agrees')})", file=sys.stderr)
    print(run_dir)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    conn = _connection(args)
    conn.check()
    home = conn.home(_cli_home())
    out = {"supernodes": flwr_cli.list_supernodes(home)}
    if args.run_id is not None:
        out["run"] = flwr_cli.run_traffic(home, args.run_id).to_dict()
    else:
        out["runs"] = flwr_cli.flwr(["ls"], home).get("runs", [])
    print(json.dumps(out, indent=2))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    if args.run_id is not None:
        conn = _connection(args)
        conn.check()
        flwr_cli.stop_run(conn.home(_cli_home()), args.run_id)
        print(f"run {args.run_id}: stop requested")
    for home in args.home:
        n = stop_home(Path(home))
        print(f"{home}: stopped {n} process(es)")
    if args.run_id is None and not args.home:
        raise DeployError("nothing to stop", "pass --home DIR (of a SuperLink/SuperNode) "
                          "or --run-id ID")
    return 0


def _add_connection(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--superlink", required=required, metavar="HOST:PORT",
                   help="the SuperLink's address as this machine reaches it")
    p.add_argument("--root-certificates", metavar="CA.crt",
                   help="the deployment's CA certificate (TLS; the default)")
    p.add_argument("--insecure", action="store_true",
                   help="no TLS (only if the SuperLink was started with --insecure)")


def add_deploy_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``deploy`` and its subcommands to the ``fedsim`` parser."""
    deploy = subparsers.add_parser("deploy", help="run on real machines: SuperLink + SuperNodes",
                                   description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = deploy.add_subparsers(dest="deploy_command", required=True)

    p = sub.add_parser("certs", help="create a CA and the SuperLink's TLS certificate")
    p.add_argument("--out", required=True, help="folder for ca.crt, server.pem, server.key")
    p.add_argument("--name", action="append", metavar="HOST",
                   help="a host name or IP address clients dial (repeatable; "
                        "default: localhost and 127.0.0.1)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_guarded(cmd_certs))

    p = sub.add_parser("keys", help="create SuperNode key pairs (EC P-384, OpenSSH)")
    p.add_argument("--out", required=True)
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_guarded(cmd_keys))

    p = sub.add_parser("superlink", help="start a SuperLink in the foreground")
    p.add_argument("--certs", help="folder from `fedsim deploy certs`")
    p.add_argument("--host", default="127.0.0.1",
                   help="bind address (0.0.0.0 to accept other machines)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="the one port to open")
    p.add_argument("--insecure", action="store_true",
                   help="no TLS (refused unless --host is a loopback address)")
    p.add_argument("--no-auth", action="store_true",
                   help="let any SuperNode join (refused unless --host is a loopback address)")
    p.add_argument("--control-from", action="append", default=[], metavar="IP",
                   help="also accept runs and registrations from this address (repeatable; "
                        "'any': from everyone, with a warning); default: this machine only")
    p.add_argument("--database", help="state file (default: in memory)")
    p.add_argument("--home", help=f"FLWR_HOME (default: {HOMES}/superlink-PORT)")
    p.add_argument("--quiet", action="store_true", help="do not echo Flower's log")
    p.set_defaults(func=_guarded(cmd_superlink))

    p = sub.add_parser("register", help="register SuperNode public keys with the SuperLink")
    p.add_argument("public_keys", nargs="+", metavar="KEY.pub")
    p.add_argument("--name", help="a name shown by `flwr supernode ls`")
    _add_connection(p)
    p.set_defaults(func=_guarded(cmd_register))

    p = sub.add_parser("supernode", help="start a SuperNode with its data in the foreground")
    _add_connection(p)
    p.add_argument("--key", help="this SuperNode's private key (from `fedsim deploy keys`)")
    p.add_argument("--partition-id", type=int, help="which partition of the dataset")
    p.add_argument("--num-partitions", type=int, help="into how many parts it is split")
    p.add_argument("--dataset", help="named dataset (must match the experiment's task)")
    p.add_argument("--data-path", help="the client's own data (.npz with x, y) in its slot")
    p.add_argument("--profile", help="device profile name")
    for bound in CLIENT_BOUNDS:
        p.add_argument(f"--{bound.key}", type=float, metavar="N",
                       help=f"refuse {bound.setting} {'above' if bound.upper else 'below'} N "
                            f"(default {bound.default:g})")
    p.add_argument("--trust-app-hash", action="append", default=[], metavar="SHA256",
                   help="also execute the Flower app (FAB) with this SHA-256 (repeatable); "
                        "default: only fedsim's own app")
    p.add_argument("--reproducible-client-noise", action="store_true",
                   help="draw the client's privacy noise from the experiment seed (repeatable, "
                        "but the server can reproduce and subtract it); default: from a "
                        "secret of this node")
    p.add_argument("--node-config", action="append", default=[], metavar="KEY=VALUE",
                   help="extra node config entries (repeatable)")
    p.add_argument("--host", default="127.0.0.1", help="local API bind address")
    p.add_argument("--port", type=int, default=DEFAULT_NODE_PORT,
                   help="local API port (one per SuperNode on a machine)")
    p.add_argument("--home", help=f"FLWR_HOME (default: {HOMES}/supernode-PORT)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds to wait for the SuperLink to accept this node")
    p.add_argument("--max-wait-time", type=float,
                   help="give up reconnecting after this many seconds (default: never)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_guarded(cmd_supernode))

    p = sub.add_parser("run", help="run an experiment config on the deployment")
    p.add_argument("config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    _add_connection(p)
    p.add_argument("--out", help="results folder (written on the SuperLink's machine)")
    p.add_argument("--timeout", type=float, default=24 * 3600.0,
                   help="stop the run after this many seconds")
    p.add_argument("--quiet", action="store_true", help="do not stream the ServerApp log")
    p.set_defaults(func=_guarded(cmd_run))

    p = sub.add_parser("status", help="SuperNodes and runs as the SuperLink sees them")
    _add_connection(p)
    p.add_argument("--run-id", type=int)
    p.set_defaults(func=_guarded(cmd_status))

    p = sub.add_parser("stop", help="stop local Flower processes by FLWR_HOME, or a run")
    p.add_argument("--home", action="append", default=[],
                   help="FLWR_HOME of a SuperLink/SuperNode started here (repeatable)")
    p.add_argument("--run-id", type=int)
    _add_connection(p, required=False)
    p.set_defaults(func=_guarded(cmd_stop))



def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``command`` with DeployErrors printed as one line (exit code 3), never a traceback."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return int(command(args))
        except DeployError as err:
            print(f"fedsim deploy: error: {err}", file=sys.stderr)
            return EXIT_DEPLOY_ERROR

    return run


def main(argv: list[str] | None = None) -> int:
    """``python -m fedsim.deploy.commands ...`` (the same as ``fedsim deploy ...``)."""
    parser = argparse.ArgumentParser(prog="fedsim")
    add_deploy_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"fedsim: config error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
