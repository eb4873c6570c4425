"""A throwaway plugin package, built under ``tmp_path``: a module plus, optionally, a
``*.dist-info`` folder with METADATA and entry_points.txt, put on ``sys.path`` (and on the
``PYTHONPATH`` that Ray actors inherit), so that ``importlib.metadata`` sees it installed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from fedsim.registry import refresh_all

PLUGIN = "labplug"
PLUGIN_SOURCE = '''
"""A lab's plugin: a strategy, a model and a dataset for fedsim."""
from dataclasses import dataclass, replace

from torch import nn

from fedsim.config.fields import setting
from fedsim.tasks.datasets import PooledSource, _digits
from strategies.fedavg import SPEC as FEDAVG
from strategies.local_sgd import LocalSGD


@dataclass
class LabAvgParams:
    """[strategy] settings of labavg."""

    lr_scale: float = setting(1.0, "client lr multiplier", low=0.0, low_open=True, high=2.0)


class ScaledSGD(LocalSGD):
    def __init__(self, scale):
        self.scale = scale

    def train(self, local):
        local = replace(local, train=replace(local.train, lr=local.train.lr * self.scale))
        return super().train(local)


SPEC = replace(FEDAVG, name="labavg", summary="FedAvg with a scaled client lr (a lab plugin)",
               params_cls=LabAvgParams,
               build_server=lambda params, sampling: FEDAVG.build_server(None, sampling),
               build_client=lambda params: ScaledSGD(float(params["lr_scale"])))


def tiny_mlp(input_shape, num_classes):
    """A 16-unit perceptron (a lab plugin)."""
    size = 1
    for s in input_shape:
        size *= s
    return nn.Sequential(nn.Flatten(), nn.Linear(size, 16), nn.ReLU(), nn.Linear(16, num_classes))


def flat_digits(task, seed):
    """The digits as 64 flat features (a lab plugin)."""
    data = _digits()
    return PooledSource(task, seed, data.x.reshape(len(data.x), 64), data.y, num_classes=10)
'''
ENTRY_POINTS = """[fedsim.strategies]
labavg = labplug:SPEC

[fedsim.models]
tiny-mlp = labplug:tiny_mlp

[fedsim.datasets]
flat-digits = labplug:flat_digits
"""
TINY_MLP_PARAMS = 64 * 16 + 16 + 16 * 10 + 10


def make_plugin(root: Path, installed: bool) -> Path:
    """Write the plugin under ``root``; with ``installed``, its dist-info too."""
    site = root / "site"
    (site / PLUGIN).mkdir(parents=True)
    (site / PLUGIN / "__init__.py").write_text(PLUGIN_SOURCE)
    if installed:
        info = site / f"{PLUGIN}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PLUGIN}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return site


def use_plugin(site: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p))
    refresh_all()
    yield site
    sys.modules.pop(PLUGIN, None)
    monkeypatch.undo()
    refresh_all()


def write_config(path: Path, strategy: str, model: str, dataset: str, rounds: int = 3,
                 extra: str = "") -> Path:
    path.write_text(f"""name = "plugin"
seed = 0
[task]
dataset = "{dataset}"
model = "{model}"
num_clients = 4
partitioner = "iid"
[strategy]
name = "{strategy}"
{extra}
[train]
rounds = {rounds}
clients_per_round = 4
local_epochs = 1
batch_size = 16
lr = 0.1
[output]
plots = false
checkpoint_every = 0
""")
    return path
