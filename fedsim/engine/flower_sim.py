"""Engine ``flower``: Flower's own simulation engine through ``flwr run``.

The run gets a private FLWR_HOME and private ports, a generated Flower app folder that names
fedsim's ServerApp and ClientApp, and runtime dependency installation off. Afterwards every
process started for it (local SuperLink, SuperExec, simulation, Ray) is stopped. A run that
did not finish (``flwr run`` exits 0 when the run it submitted failed) raises EngineError.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from fedsim.config.schema import ExperimentConfig
from fedsim.engine.errors import EngineError
from fedsim.engine.processes import free_port, stop_flower_home
from fedsim.engine.profiles import build_profiles
from fedsim.results.writer import SUMMARY_FILE


def app_pyproject(name: str, serverapp: str, config_keys: tuple[str, ...]) -> str:
    """A minimal Flower app pyproject naming fedsim's apps (the code is imported from the
    installed packages: runtime dependency installation is off)."""
    config = "".join(f'{key} = ""\n' for key in config_keys)
    return f"""\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "{name}"
version = "1.0.0"
dependencies = []

[tool.flwr.app]
publisher = "fedsim"

[tool.flwr.app.components]
serverapp = "{serverapp}"
clientapp = "clients.client_app:app"

[tool.flwr.app.config]
{config}"""


APP_PYPROJECT = app_pyproject("fedsim-app", "fedsim.server_app:app", ("config-path",))


def flower_env(flwr_home: Path) -> dict[str, str]:
    """Environment for Flower processes: private home and ports, no telemetry or installs."""
    # Flower's simulation starts its own local Ray: an exported RAY_ADDRESS would make it
    # join that cluster with local resources and fail (fedsim's switch is engine.ray_address)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # and its Ray listens on the loopback interface only (fedsim.engine.ray_engine.loopback_only)
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    bin_dir = str(Path(sys.executable).parent)
    env.update({
        "FLWR_HOME": str(flwr_home),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(free_port()),
        "FLWR_LOCAL_CONTROL_API_PORT": str(free_port()),
        "PATH": bin_dir + os.pathsep + env.get("PATH", ""),
        # fedsim, and the current folder for dotted references to a module beside the config
        "PYTHONPATH": os.pathsep.join(p for p in (str(Path(__file__).resolve().parents[2]),
                                                  os.getcwd(), env.get("PYTHONPATH", "")) if p),
    })
    return env


def federation_config(cfg: ExperimentConfig) -> str:
    """``--federation-config`` of the run: one SuperNode per client, and ClientApp actors with
    the config's device profile's resources. Flower's simulation has one resource spec for
    all clients, so with several profiles the first one's is used, with a warning. ``flwr
    run`` takes whole CPUs per client only, so a profile's ``num_cpus`` is met by giving the
    local Ray ``cores / num_cpus`` logical CPUs at 1 a client: the same number of actors
    (docs/design-notes.md#client-resources-in-the-simulation). ``engine.num_gpus`` sets Ray's
    logical GPUs (0: detected)."""
    profiles = build_profiles(cfg.engine.profiles)
    if len(profiles) > 1:
        logging.getLogger(__name__).warning(
            "engine flower: Flower's simulation gives every client the same resources; using "
            "profile %r's (num_cpus %g, num_gpus %g) for all. The ray engine honours each "
            "profile.", profiles[0].name, profiles[0].num_cpus, profiles[0].num_gpus)
    profile = profiles[0]
    cores = cfg.engine.num_cpus or os.cpu_count() or 1
    parts = [f"num-supernodes={cfg.task.num_clients}", "client-resources-num-cpus=1",
             f"client-resources-num-gpus={float(profile.num_gpus)!r}",
             f"init-args-num-cpus={max(1, math.floor(cores / profile.num_cpus + 1e-9))}"]
    if cfg.engine.num_gpus:
        parts.append(f"init-args-num-gpus={float(cfg.engine.num_gpus)!r}")
    return " ".join(parts)


def _last_error(log_path: Path) -> str:
    """``: LINE`` with the last line of the log that reports an error (or nothing)."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [ln.strip() for ln in lines if "error" in ln.lower() and ln.strip()]
    return f": {errors[-1][:300]}" if errors else ""


def run_flower(cfg: ExperimentConfig, config_path: Path, run_dir: Path) -> None:
    """Run the experiment with ``flwr run`` on Flower's simulation engine (Ray backend)."""
    work = Path(tempfile.mkdtemp(prefix="fedsim-flwr-"))
    flwr_home = work / "home"
    app_dir = work / "app"
    app_dir.mkdir(parents=True)
    (app_dir / "pyproject.toml").write_text(APP_PYPROJECT)
    env = flower_env(flwr_home)
    federation = federation_config(cfg)
    cmd = [str(Path(sys.executable).parent / "flwr"), "run", str(app_dir), "--stream",
           "--federation-config", federation, "-c", f'config-path="{config_path}"']
    log_path = run_dir / "flower.log"
    try:
        with open(log_path, "w") as log_file:
            proc = subprocess.run(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                  cwd=work, check=False)
        if proc.returncode != 0 or not (run_dir / SUMMARY_FILE).exists():
            # `flwr run --stream` exits 0 when the run it submitted failed: the run's own
            # summary is the proof that it finished
            ended = "did not finish" if proc.returncode == 0 else "failed"
            raise EngineError(f"engine flower: `flwr run` exited with code {proc.returncode} "
                              f"and the run {ended}{_last_error(log_path)}; see {log_path}")
    finally:
        stop_flower_home(str(flwr_home))
        shutil.rmtree(work, ignore_errors=True)
