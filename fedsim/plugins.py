"""The decorators a notebook or script uses to add names to fedsim's registries.

    import fedsim

    @fedsim.register_model("tiny")
    def tiny(input_shape, num_classes): ...

    fedsim.run("quickstart", task={"model": "tiny"}, engine="inprocess")

Each is the ``register`` of one registry (``fedsim/registry.py``): with an object it registers
it, without one it returns a decorator. The names live in this process and in the Ray actors
the ``ray`` engine starts; entry points and dotted references reach every process
(docs/extending.md). The registries are imported on first use, so ``import fedsim`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_REGISTRIES = {
    "strategy": ("strategies.registry", "STRATEGIES"),
    "model": ("fedsim.tasks.models", "MODELS"),
    "dataset": ("fedsim.tasks.datasets", "DATASETS"),
    "partitioner": ("fedsim.tasks.partitioning", "PARTITIONERS"),
    "task_kind": ("fedsim.tasks.kind", "TASK_KINDS"),
    "codec": ("fedsim.comm.codec", "CODECS"),
}


def registry(kind: str) -> Any:
    """The registry of one extension point: strategy, model, dataset, partitioner, task_kind
    or codec."""
    if kind not in _REGISTRIES:
        raise ValueError(f"unknown extension point {kind!r}; known: {', '.join(_REGISTRIES)}")
    module, name = _REGISTRIES[kind]
    return getattr(importlib.import_module(module), name)


def register_strategy(name: str, obj: Any = None, *, replace: bool = False) -> Any:
    """Register a ``StrategySpec`` (or a Flower ``Strategy`` subclass) as ``name``."""
    return registry("strategy").register(name, obj, replace=replace)


def register_model(name: str, obj: Any = None, *, replace: bool = False) -> Any:
    """Register a model factory ``(input_shape, num_classes) -> nn.Module`` as ``name``."""
    return registry("model").register(name, obj, replace=replace)


def register_dataset(name: str, obj: Any = None, *, replace: bool = False) -> Any:
    """Register a data-source factory ``(task, seed) -> DataSource`` as ``name``."""
    return registry("dataset").register(name, obj, replace=replace)


def register_partitioner(name: str, obj: Any = None, *, replace: bool = False) -> Any:
    """Register a partitioner factory as ``name``."""
    return registry("partitioner").register(name, obj, replace=replace)


def register_task_kind(name: str, obj: Any = None, *, replace: bool = False) -> Any:
    """Register a ``TaskKind`` subclass as ``name``."""
    return registry("task_kind").register(name, obj, replace=replace)


def register_codec(name: str, obj: Any = None, *, replace: bool = False) -> Any:
    """Register a codec factory (or a ``CodecFamily``) as ``name``."""
    return registry("codec").register(name, obj, replace=replace)
