"""Engine ``ray`` (the default): the ServerApp in this process over a :class:`RayGrid`.

Starts a local Ray (or joins ``engine.ray_address``), builds one actor pool per device profile,
runs the ServerApp, and always shuts the actors and Ray down again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import logging
import os
import re
import sys
import sysconfig
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray

from fedsim.config.schema import EngineConfig, ExperimentConfig
from fedsim.engine.profiles import assign_profiles, build_profiles
from fedsim.engine.ray_grid import RAY_INLINE_BYTES

if TYPE_CHECKING:
    from fedsim.engine.ray_grid import RayGrid

log = logging.getLogger(__name__)

CLIENT_APP = "clients.client_app:app"
REPO_ROOT = str(Path(__file__).resolve().parents[2])
LOCAL_INLINE_BYTES = 1 << 20
"""The limit fedsim sets on a Ray it starts: a small model's global arrays and an actor's folded
reply then travel inside the call, which saves a round trip through the object store each way
(about 6 ms between two rounds of the engine benchmark, README)."""
LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
FORWARDED_ENV = ("FLWR_HOME", "FLWR_TELEMETRY_ENABLED",
                 "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "HF_DATASETS_OFFLINE",
                 "HF_HOME", "MPLBACKEND")


def worker_env() -> dict[str, str]:
    """Environment of the actors: the app importable, and a module beside the config too (the
    current folder, for dotted references such as ``mylab.fedprox:SPEC``), Flower quiet, one
    torch thread each."""
    path = os.pathsep.join(p for p in (REPO_ROOT, os.getcwd(), os.environ.get("PYTHONPATH", ""))
                           if p)
    env = {"PYTHONPATH": path, "OMP_NUM_THREADS": "1", "FLWR_TELEMETRY_ENABLED": "0"}
    env.update({k: os.environ[k] for k in FORWARDED_ENV if k in os.environ})
    return env


PROJECT_PACKAGES = ("fedsim", "clients", "strategies")
"""The project's top-level packages: what every node of a joined cluster gets (py_modules)."""
SHIPPED_EXCLUDES = ["__pycache__", "*.pyc"]
_DOTTED_REF = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


def plugin_refs(cfg: Any) -> list[str]:
    """Every ``"package.module:Name"`` string in the experiment config (user plugins)."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if dataclasses.is_dataclass(value):
            value = dataclasses.asdict(value)
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
        elif isinstance(value, str) and _DOTTED_REF.fullmatch(value):
            found.append(value)

    walk(cfg)
    return found


def _local_source(module: str) -> Path | None:
    """The file or package folder of top-level ``module`` when it is the user's own source
    (not the standard library or an installed package), else None."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
        return None
    origin = Path(spec.origin).resolve()
    installed = {Path(sysconfig.get_paths()[k]).resolve() for k in ("stdlib", "purelib",
                                                                    "platlib")}
    if any(origin.is_relative_to(root) for root in installed) or "site-packages" in origin.parts:
        return None
    return origin.parent if origin.name == "__init__.py" else origin


def cluster_runtime_env(plugins: Iterable[str] = ()) -> dict[str, Any]:
    """The runtime environment for a joined cluster: the project's packages and the user's
    plugin modules (the top-level modules of ``plugins``' dotted references that are local
    source) shipped to every node as ``py_modules``, so a node needs only Python, torch, flwr
    and Ray installed (docs/cluster.md)."""
    modules = [Path(REPO_ROOT) / name for name in PROJECT_PACKAGES]
    for ref in plugins:
        source = _local_source(ref.partition(":")[0].split(".")[0])
        if source is not None and source not in modules:
            modules.append(source)
    env = worker_env()
    # the shipped packages come first on the actors' path (Ray puts py_modules before
    # PYTHONPATH); of the driver's own path only the user's entries stay, harmless where a
    # node lacks them
    kept = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
            if p and Path(p).resolve() != Path(REPO_ROOT)]
    env.pop("PYTHONPATH", None)
    if kept:
        env["PYTHONPATH"] = os.pathsep.join(kept)
    return {"env_vars": env, "py_modules": [str(m) for m in modules if m.exists()],
            "excludes": SHIPPED_EXCLUDES}


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Start a local Ray whose node address is 127.0.0.1, so its GCS, raylet, object manager,
    workers and agents listen on the loopback interface only (unauthenticated ports are not
    offered to the network). Ray 2.x turns ``_node_ip_address="127.0.0.1"`` into the
    machine's routable address; the node address is loopback only where Ray's own
    single-machine switch (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, the default on macOS and
    Windows) is off, which this sets for the driver and the processes it starts, and undoes."""
    from ray._private import ray_constants

    before_env = os.environ.get(LOCAL_ONLY_ENV)
    before = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOCAL_ONLY_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before
        if before_env is None:
            os.environ.pop(LOCAL_ONLY_ENV, None)
        else:
            os.environ[LOCAL_ONLY_ENV] = before_env


@contextlib.contextmanager
def ray_session(engine: EngineConfig, plugins: Iterable[str] = ()) -> Iterator[int]:
    """A local Ray on the loopback interface without dashboard, or the cluster at
    ``engine.ray_address`` (with the project and the user's ``plugins`` shipped to its
    nodes); shut down (disconnected) after. An exported ``RAY_ADDRESS`` is
    ignored (with a warning) when ``engine.ray_address`` is empty: fedsim's switch to a
    cluster is the config, so a local run stays local. Yields the size up to which task
    arguments travel inside the call."""
    if ray.is_initialized():  # someone else owns Ray (e.g. a test fixture): use it as is
        yield RAY_INLINE_BYTES
        return
    env = cluster_runtime_env(plugins) if engine.ray_address else {"env_vars": worker_env()}
    kwargs = {"runtime_env": env, "logging_level": logging.ERROR,
              "log_to_driver": True}
    with warnings.catch_warnings():
        # Ray 2.55 announces a future change of how it hides GPUs from CPU-only actors; fedsim
        # wants today's behaviour (CPU profiles' actors see no GPU), so the tip is noise here
        warnings.filterwarnings("ignore", message="Tip: In future versions of Ray",
                                category=FutureWarning)
        if engine.ray_address:
            ray.init(address=engine.ray_address, **kwargs)
            inline = RAY_INLINE_BYTES
        else:
            if os.environ.get("RAY_ADDRESS"):
                log.warning("RAY_ADDRESS=%s is ignored: this run starts its own local Ray "
                            "(set engine.ray_address to run on a cluster)",
                            os.environ["RAY_ADDRESS"])
            with loopback_only():
                ray.init(address="local", num_cpus=engine.num_cpus or os.cpu_count() or 1,
                         num_gpus=engine.num_gpus or None, include_dashboard=False,
                         _system_config={"max_direct_call_object_size": LOCAL_INLINE_BYTES},
                         **kwargs)
            inline = LOCAL_INLINE_BYTES
    try:
        yield inline
    finally:
        ray.shutdown()


def make_ray_grid(client_app_ref: str, num_clients: int, run_config: dict,
                  engine: EngineConfig, *, seed: int, inline_bytes: int,
                  partition_work: list[int] | None = None) -> RayGrid:
    """The fedsim Ray grid of ``engine`` (its profiles, clock and actor settings) running the
    ClientApp ``client_app_ref`` for ``num_clients`` nodes; call inside :func:`ray_session`.
    ConfigError names the profile field when the profiles cannot cover the clients."""
    from fedsim.engine.actor import VectorizeOptions
    from fedsim.engine.ray_grid import RayGrid

    profiles = build_profiles(engine.profiles)
    owner = assign_profiles(profiles, num_clients, seed)
    return RayGrid(client_app_ref, num_clients, run_config, seed=seed,
                   profiles=profiles, partition_profile=owner,
                   deadline_s=engine.deadline_s, compute_timer=engine.compute_timer,
                   fixed_compute_s=engine.fixed_compute_s,
                   phase_timeout_s=engine.phase_timeout_s,
                   # a cluster's actors hold no core of this machine
                   actors_share_this_machine=not engine.ray_address,
                   partition_work=partition_work, inline_bytes=inline_bytes,
                   client_state_backup=engine.client_state_backup,
                   fold_block=engine.fold_block if engine.fold_replies else 1,
                   vectorize=VectorizeOptions(engine.vectorize, engine.vectorize_memory_mb))


def run_ray(cfg: ExperimentConfig, config_path: Path, run_dir: Path) -> None:
    """Run the experiment on the fedsim Ray engine."""
    from fedsim.engine import serve
    from fedsim.server_app import app as server_app
    from fedsim.tasks.task import local_steps_per_client

    run_config = {"config-path": str(config_path)}
    # clients of unequal local work (local_epochs on unequal partitions) are spread by it
    work = local_steps_per_client(cfg.task, cfg.train, cfg.seed)
    with ray_session(cfg.engine, plugin_refs(cfg)) as inline_bytes:
        grid = make_ray_grid(CLIENT_APP, cfg.task.num_clients, run_config, cfg.engine,
                             seed=cfg.seed, inline_bytes=inline_bytes, partition_work=work)
        try:
            serve(server_app, grid, run_config)
            write_actor_report(grid, run_dir)
        finally:
            grid.shutdown()


ACTOR_REPORT = "actors.json"


def write_actor_report(grid, run_dir: Path) -> None:
    """``actors.json`` in the results folder: each actor's profile, the Ray resources and GPUs
    it was given, the device its clients trained on and the calls it served per node."""
    try:
        report = grid.describe_actors()
    except Exception as err:  # noqa: BLE001 - a report must never fail a finished run
        logging.getLogger(__name__).warning("no %s: the actors could not describe themselves "
                                            "(%s)", ACTOR_REPORT, err)
        return
    (run_dir / ACTOR_REPORT).write_text(json.dumps(report, indent=1, default=str) + "\n")
    write_node_report(report, run_dir)


NODE_REPORT = "nodes.json"


def node_summary(actors: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per Ray node (by ``ray_node_id``): its host, the actors and profiles it ran, the
    clients those actors held and the client calls they served."""
    nodes: dict[str, dict[str, Any]] = {}
    for actor in actors:
        node = nodes.setdefault(str(actor.get("ray_node_id")), {
            "hostname": actor.get("hostname"), "node_ip": actor.get("node_ip"), "actors": 0,
            "profiles": {}, "clients": 0, "calls": 0})
        node["actors"] += 1
        node["profiles"][actor["profile"]] = node["profiles"].get(actor["profile"], 0) + 1
        node["clients"] += len(actor.get("nodes", []))
        node["calls"] += sum(actor.get("served", {}).values())
    return nodes


def write_node_report(actors: list[dict[str, Any]], run_dir: Path) -> None:
    """``nodes.json`` beside ``actors.json`` (:func:`node_summary`), and one line of it in
    the run log. Actors replaced mid-run are not in it: only the final ones report."""
    nodes = node_summary(actors)
    (run_dir / NODE_REPORT).write_text(json.dumps(nodes, indent=1) + "\n")
    each = "; ".join(f"{node_id[:8]} ({n['hostname']}, {n['actors']} actors, {n['clients']} "
                     f"clients, {n['calls']} calls)" for node_id, n in nodes.items())
    print(f"fedsim: actors ran on {len(nodes)} Ray node(s): {each}", file=sys.stderr,
          flush=True)
