"""``fedsim.simulate``: any Flower ServerApp and ClientApp on the fedsim engine, metered.

The apps run unchanged: the ServerApp in this process over fedsim's Ray grid (one actor pool per
device profile, the virtual clock) or the in-process grid, wrapped in a
:class:`~fedsim.engine.metered_grid.MeteredGrid`, so the run gets a results folder like a fedsim
run (``metrics.jsonl`` with bytes both ways per round, ``summary.json``, plots, progress bar,
and every ``checkpoint_every`` rounds the model the clients received, :mod:`fedsim.app_checkpoint`).

    from fedsim.simulation import simulate
    result = simulate("app.server_app:app", "app.client_app:app", 10,
                      profiles=[{"name": "phone", "share": 0.5, "speed": 0.5},
                                {"name": "laptop", "share": 0.5}],
                      run_config={"num-server-rounds": 3})
    result.column("uplink_bytes")
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import random
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

from fedsim.config.build import build_dataclass
from fedsim.config.errors import ConfigError
from fedsim.config.schema import DeviceProfile, EngineConfig
from fedsim.engine.metered_grid import MeteredGrid
from fedsim.engine.profiles import assign_profiles, build_profiles
from fedsim.engine.strategy_log import StrategyLog
from fedsim.result import RunResult
from fedsim.run_dirs import RUN_FILE, new_run_dir

SIMULATE_ENGINES = ("ray", "inprocess")
RESULTS_PARENT = "results"
ROUNDS_KEY = "num-server-rounds"  # the run config key Flower's templates use for the rounds


def load_component(ref: str, what: str, kind: type) -> Any:
    """Import ``"package.module:attribute"`` and check it is a ``kind`` (ConfigError if not)."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(what, ref, "a reference 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(what, ref, f"an importable module ({err})") from err
    if not hasattr(module, attr):
        raise ConfigError(what, ref, f"an attribute of module {module_name!r}, which has none "
                          f"named {attr!r}")
    value = getattr(module, attr)
    if not isinstance(value, kind):
        raise ConfigError(what, ref, f"a flwr {kind.__name__} (it is a {type(value).__name__})")
    return value


def app_reference(app: Any, what: str) -> str:
    """The ``"module:attribute"`` by which actors import ``app`` (given as object or string)."""
    if isinstance(app, str):
        return app
    for name, module in list(sys.modules.items()):
        if name == "__main__" or module is None:
            continue
        for attr, value in list(vars(module).items()):
            if value is app:
                return f"{name}:{attr}"
    raise ConfigError(what, repr(app), "a ClientApp defined in an importable module (the Ray "
                      "engine's actors import it: not __main__ or a notebook), or its "
                      "reference 'package.module:attribute'")


def module_root(ref: str) -> str | None:
    """The folder from which the module of ``ref`` is imported (its top package's parent)."""
    module_name = ref.partition(":")[0]
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if not file:
        return None
    return str(Path(file).resolve().parents[module_name.count(".")])


@contextlib.contextmanager
def actor_path(folders: Sequence[str]) -> Iterator[None]:
    """``folders`` in front of PYTHONPATH while Ray starts, so its actors import the apps."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([*folders, *([saved] if saved else [])])
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def engine_settings(profiles: Sequence[dict | DeviceProfile] | None,
                    engine_options: dict[str, Any] | None, num_clients: int,
                    seed: int) -> EngineConfig:
    """The Ray engine's settings, validated (ConfigError names the field) before anything
    starts: ``engine_options`` are ``[engine]`` settings, ``profiles`` its device profiles."""
    options = dict(engine_options or {})
    if "profiles" in options:
        raise ConfigError("engine_options.profiles", options["profiles"],
                          "device profiles given as the profiles argument")
    engine = build_dataclass(EngineConfig, options, "engine.")
    if profiles is not None and (isinstance(profiles, dict | str)
                                 or not isinstance(profiles, Sequence)):
        raise ConfigError("profiles", profiles, "a list of device profiles (dicts or "
                          "DeviceProfile)")
    engine.profiles = build_profiles(list(profiles or []))
    assign_profiles(engine.profiles, num_clients, seed)
    return engine


def simulate(server_app: ServerApp | str, client_app: ClientApp | str, num_clients: int, *,
             profiles: Sequence[dict | DeviceProfile] | None = None, engine: str = "ray",
             run_config: dict[str, Any] | None = None, out: str | Path | None = None,
             seed: int = 0, progress: bool = True, name: str = "flower-app",
             engine_options: dict[str, Any] | None = None,
             app_paths: Sequence[str] = (), checkpoint_every: int = 5) -> RunResult:
    """Run a Flower ServerApp and ClientApp on the fedsim engine; return the results folder.

    Args:
        server_app: a ``flwr.serverapp.ServerApp``, or its reference ``"module:attribute"``.
        client_app: a ``flwr.clientapp.ClientApp`` or its reference (the Ray engine's actors
            import it, so an object must live in an importable module).
        num_clients: virtual SuperNodes; node ``i`` gets ``partition-id = i`` and
            ``num-partitions = num_clients`` in its ``node_config``, as in Flower's simulation.
        profiles: device profiles (``[[engine.profiles]]`` tables as dicts, or
            ``DeviceProfile``); none: one profile of 1 CPU per actor. Ray engine only.
        engine: ``"ray"`` (fedsim's Ray grid, virtual clock) or ``"inprocess"``.
        run_config: the Context's run config on the server and on every client (Flower's
            ``[tool.flwr.app.config]``); ``num-server-rounds`` sizes the progress bar.
        out: the results folder (new or empty); default ``results/NAME-TIMESTAMP``.
        seed: node ids, device fates, and Python's ``random`` (Flower's samplers draw from it).
        progress: show a per-round progress bar (and keep Flower's INFO log quiet).
        name: the run's name (results folder, summary, plots).
        engine_options: other ``[engine]`` settings of the Ray engine (``num_cpus``,
            ``deadline_s``, ``compute_timer``, ...), validated like a config's.
        app_paths: folders the actors need on their ``PYTHONPATH`` to import the apps (the
            folders of modules already imported here are found on their own).
        checkpoint_every: every k rounds save the global model as the round's training
            instructions carried it, with the rows so far (``app_checkpoint.npz``), and the
            last model sent at the end (``final_model.npz``); 0: never. Read them with
            ``RunResult.arrays``. A run cannot resume from them (``app_checkpoint``).
    """
    if engine not in SIMULATE_ENGINES:
        raise ConfigError("engine", engine, f"one of {', '.join(SIMULATE_ENGINES)}")
    if isinstance(num_clients, bool) or not isinstance(num_clients, int) or num_clients < 1:
        raise ConfigError("num_clients", num_clients, "a positive integer")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) \
            or checkpoint_every < 0:
        raise ConfigError("checkpoint_every", checkpoint_every, "an integer >= 0 (0: never)")
    run_config = dict(run_config or {})
    settings = engine_settings(profiles, engine_options, num_clients, seed)
    if engine == "inprocess" and (profiles or engine_options):
        raise ConfigError("profiles", profiles or engine_options, "none with engine "
                          "'inprocess' (device profiles and engine options need engine 'ray')")
    server = load_component(server_app, "server_app", ServerApp) \
        if isinstance(server_app, str) else server_app
    if not isinstance(server, ServerApp):
        raise ConfigError("server_app", repr(server), "a flwr ServerApp or 'module:attribute'")
    client_ref = app_reference(client_app, "client_app")
    client = load_component(client_ref, "client_app", ClientApp)
    run_dir = new_run_dir(str(out) if out else None, RESULTS_PARENT, name)
    (run_dir / RUN_FILE).write_text(json.dumps({
        "engine": engine, "app": "flower", "client_app": client_ref,
        "server_app": server_app if isinstance(server_app, str) else None,
        "num_clients": num_clients, "seed": seed, "run_config": run_config,
        "profiles": [vars(p) for p in settings.profiles] if engine == "ray" else None},
        default=str) + "\n")
    rounds = run_config.get(ROUNDS_KEY)
    watcher = None
    if progress:
        from fedsim.progress import RoundProgress

        total = int(rounds) if isinstance(rounds, int | float) and rounds > 0 else None
        watcher = RoundProgress(run_dir, total).start()
    try:
        if engine == "ray":
            folders = [*app_paths, *filter(None, [module_root(client_ref)])]
            _run_on_ray(server, client_ref, num_clients, run_config, settings,
                        seed, run_dir, name, progress, folders, checkpoint_every)
        else:
            from fedsim.engine.inprocess import InProcessGrid

            grid = InProcessGrid(client, num_clients, run_config, seed=seed)
            _run_metered(server, grid, run_config, seed, run_dir, name, progress,
                         checkpoint_every)
    finally:
        if watcher is not None:
            watcher.stop()
    return RunResult.from_dir(run_dir)


def _run_on_ray(server: ServerApp, client_ref: str, num_clients: int, run_config: dict,
                settings: EngineConfig, seed: int, run_dir: Path, name: str, quiet: bool,
                folders: list[str], checkpoint_every: int) -> dict[str, Any]:
    from fedsim.engine.ray_engine import make_ray_grid, ray_session, write_actor_report

    with actor_path(folders), ray_session(settings) as inline_bytes:
        grid = make_ray_grid(client_ref, num_clients, run_config, settings, seed=seed,
                             inline_bytes=inline_bytes)
        try:
            summary = _run_metered(server, grid, run_config, seed, run_dir, name, quiet,
                                   checkpoint_every)
            write_actor_report(grid, run_dir)
        finally:
            grid.shutdown()
    return summary


def _run_metered(server: ServerApp, grid: Any, run_config: dict, seed: int, run_dir: Path,
                 name: str, quiet: bool, checkpoint_every: int) -> dict[str, Any]:
    """Serve ``server`` over ``grid`` wrapped in a MeteredGrid; finish the results folder."""
    from fedsim.engine import serve

    metered = MeteredGrid(grid, run_dir, name, checkpoint_every=checkpoint_every)
    random.seed(seed)  # Flower's samplers draw from the global `random`
    strategy_log = StrategyLog(metered.add_central, quiet=quiet)
    done = False
    try:
        with strategy_log:
            serve(server, metered, run_config)
        done = True
    finally:
        extra = {"engine_grid": type(grid).__name__, "num_clients": len(grid.get_node_ids()),
                 "strategy_seconds": strategy_log.seconds, "completed": done}
        summary = metered.finish(plots=done, extra=extra)
    return summary
