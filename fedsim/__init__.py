"""fedsim: a federated-learning platform for communication-efficient training (Flower + Ray).

From Python::

    import fedsim

    result = fedsim.run("quickstart", engine="inprocess", train={"rounds": 5})
    result.summary["final_accuracy"]

The public names below load on first use, so ``import fedsim`` itself imports no torch, Ray or
Flower. Reference: docs/python-api.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The one place the version is written: pyproject.toml reads it from here (setuptools' dynamic
# version), the wheel's metadata carries it, and `fedsim --version` prints it.
__version__ = "0.1.0"
DISTRIBUTION = "fedsim-flower"  # the name on PyPI (``fedsim`` there is another project)

# public name -> module that defines it (add a line here to export another name lazily)
_LAZY = {
    "run": "fedsim.api",
    "load": "fedsim.api",
    "simulate": "fedsim.simulation",
    "register_strategy": "fedsim.plugins",
    "register_model": "fedsim.plugins",
    "register_dataset": "fedsim.plugins",
    "register_partitioner": "fedsim.plugins",
    "register_task_kind": "fedsim.plugins",
    "register_codec": "fedsim.plugins",
    "RunResult": "fedsim.result",
    "ConfigError": "fedsim.config.errors",
    "ExperimentConfig": "fedsim.config.schema",
}

__all__ = ["ConfigError", "ExperimentConfig", "RunResult", "__version__", "load",
           "register_codec", "register_dataset", "register_model", "register_partitioner",
           "register_strategy", "register_task_kind", "run", "simulate"]

if TYPE_CHECKING:  # what type checkers and IDEs see; nothing is imported at run time
    from fedsim.api import load, run
    from fedsim.config.errors import ConfigError
    from fedsim.config.schema import ExperimentConfig
    from fedsim.plugins import (
        register_codec,
        register_dataset,
        register_model,
        register_partitioner,
        register_strategy,
        register_task_kind,
    )
    from fedsim.result import RunResult
    from fedsim.simulation import simulate


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fedsim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
