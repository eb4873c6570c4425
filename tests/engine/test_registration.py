"""The fedsim engine is registered and is the default of `fedsim run`."""

from __future__ import annotations

from fedsim.cli import build_parser
from fedsim.engine import DEFAULT_ENGINE, ENGINES


def test_ray_is_the_default_engine_and_flower_stays_available() -> None:
    assert DEFAULT_ENGINE == "ray" and {"ray", "inprocess", "flower"} <= set(ENGINES)
    args = build_parser().parse_args(["run", "configs/quickstart.toml"])
    assert args.engine == "ray"
    args = build_parser().parse_args(["run", "configs/quickstart.toml", "--engine", "flower"])
    assert args.engine == "flower"


def test_engine_modules_import_without_starting_ray() -> None:
    import ray

    import fedsim.engine.pool  # noqa: F401
    import fedsim.engine.ray_grid  # noqa: F401

    assert not ray.is_initialized()
