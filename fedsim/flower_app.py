"""A Flower app folder as ``flwr run`` reads it, and running it under Flower's own simulation.

:func:`read_flower_app` reads ``pyproject.toml``: ``[tool.flwr.app.components]`` (serverapp,
clientapp), ``[tool.flwr.app.config]`` (the run config's defaults) and the default
federation's ``options.num-supernodes``. :func:`run_config_overrides` checks ``k=v`` overrides
as ``flwr run -c`` does (the key must exist; values are TOML). :func:`run_under_flower` runs
the app with ``flwr run`` on a copy of its folder (``flwr run`` rewrites a pyproject that
names federations), with a private FLWR_HOME, its ServerApp wrapped in a metering grid.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from fedsim.config.errors import ConfigError

PYPROJECT = "pyproject.toml"
FLOWER_DEFAULT_SUPERNODES = 2  # what `flwr run` simulates when the app names no number


@dataclass(frozen=True)
class FlowerApp:
    """What ``flwr run`` would read from a Flower app folder."""

    path: Path
    name: str
    serverapp: str
    clientapp: str
    config: dict[str, Any] = field(default_factory=dict)
    num_supernodes: int | None = None


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config tables as Flower flattens them (``a.b = 1``)."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def read_flower_app(path: str | Path) -> FlowerApp:
    """Read the Flower app in folder ``path`` (ConfigError naming the missing piece)."""
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError("PATH_TO_FLOWER_APP", str(path), "a folder holding a Flower app")
    pyproject = folder / PYPROJECT
    if not pyproject.exists():
        raise ConfigError("PATH_TO_FLOWER_APP", str(path), f"a Flower app folder with a "
                          f"{PYPROJECT} ([tool.flwr.app.components] serverapp and clientapp)")
    try:
        data = tomllib.loads(pyproject.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(str(pyproject), "(unreadable)", f"valid TOML ({err})") from err
    app = data.get("tool", {}).get("flwr", {}).get("app", {})
    components = app.get("components", {})
    for key in ("serverapp", "clientapp"):
        ref = components.get(key)
        if not isinstance(ref, str) or ":" not in ref:
            raise ConfigError(f"{pyproject} [tool.flwr.app.components] {key}", ref,
                              "a reference 'package.module:attribute' to the app's "
                              f"{'ServerApp' if key == 'serverapp' else 'ClientApp'}")
    config = app.get("config", {})
    if not isinstance(config, dict):
        raise ConfigError(f"{pyproject} [tool.flwr.app.config]", config, "a table")
    return FlowerApp(folder.resolve(), str(data.get("project", {}).get("name") or folder.name),
                     components["serverapp"], components["clientapp"], _flatten(config),
                     _num_supernodes(data, pyproject))


def _num_supernodes(data: dict[str, Any], pyproject: Path) -> int | None:
    """``options.num-supernodes`` of the default federation, if the app names one."""
    federations = data.get("tool", {}).get("flwr", {}).get("federations", {})
    default = federations.get("default")
    options = federations.get(default, {}).get("options", {}) if isinstance(default, str) \
        else {}
    value = options.get("num-supernodes")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{pyproject} [tool.flwr.federations.{default}] "
                          "options.num-supernodes", value, "a positive integer")
    return value


def run_config_overrides(app: FlowerApp, items: list[str]) -> dict[str, Any]:
    """The app's run config with ``key=value`` overrides applied (values in TOML syntax; a
    bare word is a string). ConfigError names the key when it is not in the app's config, the
    item has no ``=``, or the value's type differs from the default's."""
    config = dict(app.config)
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError("--run-config", item, "KEY=VALUE, e.g. num-server-rounds=5")
        if key not in app.config:
            known = ", ".join(sorted(app.config)) or "none"
            raise ConfigError("--run-config", item, f"a key of the app's "
                              f"[tool.flwr.app.config] (known: {known})")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        default = app.config[key]
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value,
                                                                                     bool):
            value = float(value)
        if type(value) is not type(default):
            kind = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"
                    }.get(type(default).__name__, type(default).__name__)
            article = "an" if kind[0] in "aeiou" else "a"
            raise ConfigError(f"--run-config {key}", raw, f"{article} {kind} like the app's "
                              f"default {default!r}")
        config[key] = value
    return config


def load_profiles_file(path: str | Path, num_clients: int, seed: int) -> list[dict[str, Any]]:
    """The ``[[profiles]]`` tables of a device-profiles TOML file, validated as
    ``[[engine.profiles]]`` are, for ``num_clients`` clients (ConfigError naming the file and
    the field)."""
    from fedsim.config.schema import DeviceProfile
    from fedsim.engine.profiles import assign_profiles, build_profiles

    file = Path(path)
    if not file.is_file():
        raise ConfigError("--profiles", str(path), "a TOML file of [[profiles]] tables")
    try:
        data = tomllib.loads(file.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("--profiles", str(path), f"valid TOML ({err})") from err
    unknown = sorted(set(data) - {"profiles"})
    keys = ", ".join(DeviceProfile.__dataclass_fields__)
    if unknown or not isinstance(data.get("profiles"), list) or not data["profiles"]:
        raise ConfigError(f"{file}", ", ".join(unknown) or "(no [[profiles]])",
                          "one or more [[profiles]] tables and nothing else (keys: "
                          f"{keys})")
    try:
        assign_profiles(build_profiles(data["profiles"]), num_clients, seed)
    except ConfigError as err:
        raise ConfigError(f"{file}: {err.field.removeprefix('engine.')}", err.value,
                          err.allowed) from err
    return data["profiles"]


METERED_SERVER = "fedsim_metered_server"
METERED_SERVER_CODE = """\
\"\"\"Generated by fedsim: the app's ServerApp over a MeteredGrid writing {run_dir}.\"\"\"
from pathlib import Path

from flwr.serverapp import ServerApp

from fedsim.engine.metered_grid import MeteredGrid
from fedsim.engine.strategy_log import StrategyLog
from fedsim.simulation import load_component

app = ServerApp()


@app.main()
def main(grid, context):
    user_app = load_component({serverapp!r}, "serverapp", ServerApp)
    metered = MeteredGrid(grid, Path({run_dir!r}), {name!r})
    log = StrategyLog(metered.add_central)
    try:
        with log:
            user_app(metered, context)
    finally:
        metered.finish(plots=False, extra={{"strategy_seconds": log.seconds,
                                            "engine_grid": type(grid).__name__}})
"""


@dataclass(frozen=True)
class FlowerTiming:
    """How a run under ``flwr run`` went: its results folder (written by a MeteredGrid around
    the app's ServerApp inside Flower's simulation) and the wall clock."""

    run_dir: Path
    wall_seconds: float  # the whole `flwr run`, SuperLink and Ray start included
    log: str


def _toml_value(value: Any) -> str:
    return tomli_w.dumps({"v": value}).partition("=")[2].strip()


def run_under_flower(app: FlowerApp, num_supernodes: int, run_config: dict[str, Any],
                     run_dir: Path, timeout: float = 1800.0,
                     num_cpus: int | None = None) -> FlowerTiming:
    """Run ``app`` with ``flwr run`` on Flower's simulation engine (Ray backend): one CPU per
    ClientApp actor, as many actors as cores (or ``num_cpus``). Its ServerApp runs over a
    :class:`~fedsim.engine.metered_grid.MeteredGrid` that writes the results folder
    ``run_dir`` (rows with bytes and round seconds, as under ``fedsim simulate``). Stops every
    process it started."""
    import os

    from fedsim.engine.flower_sim import flower_env
    from fedsim.engine.processes import stop_flower_home

    work = Path(tempfile.mkdtemp(prefix="fedsim-flwr-app-"))
    copy = work / "app"
    shutil.copytree(app.path, copy, ignore=shutil.ignore_patterns(
        "__pycache__", ".git", "*.egg-info", ".venv", "results"))
    data = tomllib.loads((copy / PYPROJECT).read_text())
    flwr = data.setdefault("tool", {}).setdefault("flwr", {})
    flwr.pop("federations", None)  # flwr run would rewrite it
    flwr["app"]["components"]["serverapp"] = f"{METERED_SERVER}:app"
    (copy / f"{METERED_SERVER}.py").write_text(METERED_SERVER_CODE.format(
        serverapp=app.serverapp, run_dir=str(Path(run_dir).resolve()), name=app.name))
    (copy / PYPROJECT).write_text(tomli_w.dumps(data))
    home = work / "home"
    env = flower_env(home)
    cores = num_cpus or os.cpu_count() or 1
    cmd = [str(Path(sys.executable).parent / "flwr"), "run", str(copy), "--stream",
           "--federation-config", f"num-supernodes={num_supernodes} "
           f"client-resources-num-cpus=1 init-args-num-cpus={cores}"]
    for key, value in run_config.items():
        if app.config.get(key) != value:
            cmd += ["-c", f"{key}={_toml_value(value)}"]
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True,
                              timeout=timeout, check=False)
        wall = time.monotonic() - started
        log = proc.stdout + proc.stderr
        if proc.returncode != 0 or not (Path(run_dir) / "summary.json").exists():
            tail = "\n".join(log.splitlines()[-20:])
            raise RuntimeError(f"`flwr run` of {app.path} failed (exit {proc.returncode}):\n"
                               f"{tail}")
    finally:
        stop_flower_home(str(home))
        shutil.rmtree(work, ignore_errors=True)
    return FlowerTiming(Path(run_dir), wall, log)
