"""Engines carry the ServerApp's messages to the ClientApps; the apps never know which one.

- ``ray`` (default): fedsim's own Grid over resident Ray actor pools, one per device profile,
  with the virtual clock (``fedsim.engine.ray_grid``);
- ``inprocess``: the ClientApp called in this process (no Ray; small runs and tests);
- ``flower``: Flower's own simulation engine through ``flwr run``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flwr.app import Context, RecordDict
from flwr.serverapp import Grid

from fedsim.config.schema import ExperimentConfig

ENGINES = ("ray", "inprocess", "flower")
DEFAULT_ENGINE = "ray"


def serve(server_app: Any, grid: Grid, run_config: dict) -> None:
    """Run ``server_app`` (a Flower ``ServerApp``) to its end over ``grid``, with the Context a
    SuperLink gives the ServerApp (``run_config`` as its run config)."""
    from fedsim.engine.base import SUPERLINK_NODE_ID
    from fedsim.engine.threads import blas_threads

    context = Context(run_id=grid.run.run_id, node_id=SUPERLINK_NODE_ID, node_config={},
                      state=RecordDict(), run_config=dict(run_config))
    with blas_threads(getattr(grid, "driver_blas_threads", None)):  # a wrapper forwards it
        server_app(grid, context)


def run_inprocess(cfg: ExperimentConfig, config_path: Path, run_dir: Path) -> None:
    """Run the ServerApp in this process over an :class:`InProcessGrid`."""
    from clients.client_app import app as client_app
    from fedsim.engine.inprocess import InProcessGrid
    from fedsim.server_app import app as server_app

    run_config = {"config-path": str(config_path)}
    grid = InProcessGrid(client_app, cfg.task.num_clients, run_config, seed=cfg.seed)
    serve(server_app, grid, run_config)


def run_engine(name: str, cfg: ExperimentConfig, config_path: Path, run_dir: Path) -> None:
    """Run the experiment whose resolved config is at ``config_path`` on engine ``name``."""
    if name == "ray":
        from fedsim.engine.ray_engine import run_ray

        run_ray(cfg, config_path, run_dir)
    elif name == "inprocess":
        run_inprocess(cfg, config_path, run_dir)
    elif name == "flower":
        from fedsim.engine.flower_sim import run_flower

        refuse_session_plugins(cfg, name)
        run_flower(cfg, config_path, run_dir)
    else:
        raise ValueError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")


def refuse_session_plugins(cfg: ExperimentConfig, engine: str) -> None:
    """Raise ConfigError when the config uses a name registered by decorator in this process:
    engine ``engine`` runs server and clients in processes of its own, which never see it."""
    from fedsim.config.errors import ConfigError
    from fedsim.registry import session_registrations

    used = {"fedsim.strategies": ("strategy.name", cfg.strategy_name),
            "fedsim.tasks": ("task.kind", cfg.task.kind),
            "fedsim.datasets": ("task.dataset", cfg.task.dataset),
            "fedsim.models": ("task.model", cfg.task.model),
            "fedsim.partitioners": ("task.partitioner", cfg.task.partitioner)}
    for group, names in session_registrations().items():
        field, value = used.get(group, ("", None))
        if value in names:
            raise ConfigError(field, value, f"a dotted reference ('package.module:Name') or an "
                              f"entry point on engine {engine!r}: {value!r} was registered by "
                              "decorator in this process only, and Flower's simulation runs "
                              "the apps in processes of its own (docs/extending.md)")
