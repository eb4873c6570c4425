"""Engine ``flower``: Flower's own simulation engine through ``flwr run`` (reference §6.2).

The run gets a private FLWR_HOME and private ports, a generated Flower app folder that names
fedsim's ServerApp and ClientApp, and runtime dependency installation off. Afterwards every
process started for it (local SuperLink, SuperExec, simulation, Ray) is stopped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from fedsim.config.schema import ExperimentConfig
from fedsim.engine.processes import free_port, stop_flower_home


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
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env.update({
        "FLWR_HOME": str(flwr_home),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(free_port()),
        "FLWR_LOCAL_CONTROL_API_PORT": str(free_port()),
        "PATH": bin_dir + os.pathsep + env.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join(p for p in (str(Path(__file__).resolve().parents[2]),
                                                  env.get("PYTHONPATH", "")) if p),
    })
    return env


def run_flower(cfg: ExperimentConfig, config_path: Path, run_dir: Path) -> None:
    """Run the experiment with ``flwr run`` on Flower's simulation engine (Ray backend)."""
    work = Path(tempfile.mkdtemp(prefix="fedsim-flwr-"))
    flwr_home = work / "home"
    app_dir = work / "app"
    app_dir.mkdir(parents=True)
    (app_dir / "pyproject.toml").write_text(APP_PYPROJECT)
    env = flower_env(flwr_home)
    federation = (f"num-supernodes={cfg.task.num_clients} client-resources-num-cpus=1 "
                  f"init-args-num-cpus={os.cpu_count() or 1}")
    cmd = [str(Path(sys.executable).parent / "flwr"), "run", str(app_dir), "--stream",
           "--federation-config", federation, "-c", f'config-path="{config_path}"']
    log_path = run_dir / "flower.log"
    try:
        with open(log_path, "w") as log_file:
            proc = subprocess.run(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                  cwd=work, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"`flwr run` exited with code {proc.returncode}; "
                               f"see {log_path}")
    finally:
        stop_flower_home(str(flwr_home))
        shutil.rmtree(work, ignore_errors=True)
