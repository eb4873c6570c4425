"""Plugins by entry point, by dotted reference and by decorator: a strategy, a model and a
dataset from a throwaway package run a federation, ``fedsim list`` shows where each came from,
and bad references are refused naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from plugin_pkg import TINY_MLP_PARAMS, write_config
from torch import nn

from fedsim.cli import main
from fedsim.comm.codec import CODECS, CodecFamily, get_codec
from fedsim.comm.int_codec import IntCodec
from fedsim.config import ConfigError, config_from_dict
from fedsim.registry import DECORATOR, ENTRY_POINT, RegistryError
from fedsim.tasks.datasets import DATASETS
from fedsim.tasks.models import MODELS, call_factory
from strategies.fedavg import SPEC as FEDAVG
from strategies.registry import STRATEGIES, get_strategy

from helpers import engine_independent, metrics_without_times, run_cli, summary

BUILT_INS = {
    "strategies": ["ef_signsgd", "fafed", "fedadam", "fedavg", "fedda", "fedlion", "signsgd",
                   "sto_signsgd", "zo-seeds", "zsignfedavg"],
    "models": ["cnn", "digits-cnn", "eps-mlp", "logreg", "mlp", "resnet20"],
    "datasets": ["cifar10", "digits", "fashion-mnist", "femnist", "mnist", "synthetic",
                 "synthetic-0", "synthetic-0.5", "synthetic-iid"],
}


def _run(tmp_path: Path, config: Path, engine: str = "inprocess") -> Path:
    code, out = run_cli(tmp_path / f"run-{engine}", engine=engine, config=str(config))
    assert code == 0
    return out


def test_entry_point_plugin_runs_and_learns(installed_plugin, tmp_path: Path) -> None:
    assert STRATEGIES.entry("labavg").source == ENTRY_POINT
    assert STRATEGIES.entry("labavg").origin == "labplug (labplug:SPEC)"
    cfg = write_config(tmp_path / "exp.toml", "labavg", "tiny-mlp", "flat-digits", rounds=4)
    out = _run(tmp_path, cfg)
    result = summary(out)
    assert result["num_params"] == TINY_MLP_PARAMS  # the plugin's model on 64 flat features
    assert result["strategy"] == "labavg" and result["dataset"] == "flat-digits"
    assert result["final_accuracy"] > 0.4  # it learns (chance is 0.1)


def test_dotted_references_without_installing(plugin_module, tmp_path: Path) -> None:
    assert "labavg" not in STRATEGIES.names() and "tiny-mlp" not in MODELS.names()
    cfg = write_config(tmp_path / "exp.toml", "labplug:SPEC", "labplug:tiny_mlp",
                       "labplug:flat_digits", rounds=4)
    out = _run(tmp_path, cfg)
    result = summary(out)
    assert result["num_params"] == TINY_MLP_PARAMS and result["final_accuracy"] > 0.4
    saved = (out / "config.toml").read_text()
    assert 'name = "labplug:SPEC"' in saved and 'model = "labplug:tiny_mlp"' in saved


def test_plugin_equals_builtin_when_it_does_the_same(plugin_module, tmp_path: Path) -> None:
    """labavg with lr_scale = 1 is FedAvg: the same metrics, bit for bit; 0.5 differs."""
    runs = {}
    for name, extra in (("fedavg", ""), ("labplug:SPEC", "lr_scale = 1.0"),
                        ("labplug:SPEC", "lr_scale = 0.5")):
        cfg = write_config(tmp_path / "exp.toml", name, "logreg", "digits", rounds=2,
                           extra=extra)
        code, out = run_cli(tmp_path / f"run-{len(runs)}", config=str(cfg))
        assert code == 0
        runs[len(runs)] = metrics_without_times(out)
    assert engine_independent(runs[0]) == engine_independent(runs[1])
    assert runs[0][-1]["central_loss"] != runs[2][-1]["central_loss"]


def test_user_strategy_params_are_validated_like_builtins(plugin_module) -> None:
    base = {"task": {"dataset": "digits", "model": "logreg"}}
    cfg = config_from_dict({**base, "strategy": {"name": "labplug:SPEC"}})
    assert cfg.strategy == {"name": "labplug:SPEC", "lr_scale": 1.0}
    with pytest.raises(ConfigError) as err:
        config_from_dict({**base, "strategy": {"name": "labplug:SPEC", "lr_scale": 3.0}})
    assert err.value.field == "strategy.lr_scale" and "2.0" in err.value.allowed
    with pytest.raises(ConfigError) as err:
        config_from_dict({**base, "strategy": {"name": "labplug:SPEC", "lr_scal": 1.0}})
    assert err.value.field == "strategy.lr_scal" and "lr_scale" in err.value.allowed


@pytest.mark.parametrize(("section", "key", "value", "says"), [
    ("task", "model", "nosuchpkg.nets:Net", "cannot import module 'nosuchpkg.nets'"),
    ("task", "model", "labplug:NoSuchNet", "has no attribute 'NoSuchNet'"),
    ("task", "model", "resnet99", "'logreg'"),
    ("task", "dataset", "labplug:LabAvgParams.lr_scale", "expected a callable (task, seed)"),
    ("task", "dataset", "labplug:flat_digits.nope", "has no attribute 'flat_digits.nope'"),
    ("task", "kind", "labplug:tiny_mlp", "subclass of fedsim.tasks.kind.TaskKind"),
    ("task", "partitioner", "zipf", "'dirichlet'"),
    ("strategy", "name", "labplug:tiny_mlp", "expected a strategies.registry.StrategySpec"),
    ("strategy", "name", "fedprx", "fedavg"),
])
def test_bad_names_and_references_name_the_field(plugin_module, section, key, value,
                                                 says) -> None:
    data = {"task": {"dataset": "digits", "model": "logreg"}}
    data.setdefault(section, {})[key] = value
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert err.value.field == f"{section}.{key}" and err.value.value == value
    assert says in str(err.value)


def test_a_plugin_model_that_does_not_fit_the_data_is_refused(plugin_module) -> None:
    data = {"task": {"dataset": "labplug:flat_digits", "model": "digits-cnn"}}
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert err.value.field == "task.model" and "shape (64,)" in err.value.allowed
    MODELS.register("five-out", lambda input_shape: nn.Linear(input_shape[0], 5))
    try:
        with pytest.raises(ConfigError, match="a model with 10 outputs"):
            config_from_dict({"task": {"dataset": "labplug:flat_digits", "model": "five-out"}})
    finally:
        MODELS.unregister("five-out")


def test_decorator_registrations_run_inprocess(tmp_path: Path) -> None:
    @MODELS.register("deco-net")
    def deco_net(num_classes: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))

    STRATEGIES.register("deco-avg", FEDAVG)
    try:
        assert MODELS.entry("deco-net").source == DECORATOR
        assert MODELS.entry("deco-net").origin.endswith("deco_net")
        with pytest.raises(RegistryError, match="already registered"):
            MODELS.register("deco-net", deco_net)
        out = _run(tmp_path, write_config(tmp_path / "e.toml", "deco-avg", "deco-net",
                                          "digits", rounds=2))
        assert summary(out)["num_params"] == 64 * 10 + 10
    finally:
        MODELS.unregister("deco-net")
        STRATEGIES.unregister("deco-avg")
    assert "deco-net" not in MODELS.names()


def test_decorator_names_are_refused_on_flower(tmp_path: Path, capsys) -> None:
    STRATEGIES.register("deco-avg", FEDAVG)
    try:
        cfg = write_config(tmp_path / "e.toml", "deco-avg", "logreg", "digits", rounds=1)
        code, _ = run_cli(tmp_path / "run", engine="flower", config=str(cfg))
    finally:
        STRATEGIES.unregister("deco-avg")
    err = capsys.readouterr().err
    assert code != 0 and "strategy.name = 'deco-avg'" in err
    assert "dotted reference" in err and "entry point" in err


def test_registering_rejects_what_does_not_fit() -> None:
    with pytest.raises(RegistryError, match="not usable"):
        STRATEGIES.register("not-a-spec", object())
    with pytest.raises(RegistryError, match="cannot register"):
        DATASETS.register("a:b", lambda task, seed: None)
    with pytest.raises(KeyError, match="unknown strategy"):
        get_strategy("nope")


def test_fedsim_list_shows_plugins_and_their_sources(installed_plugin, capsys) -> None:
    MODELS.register("deco-net", lambda num_classes: nn.Linear(64, num_classes))
    try:
        assert main(["list"]) == 0
    finally:
        MODELS.unregister("deco-net")
    lines = capsys.readouterr().out.splitlines()
    row = {line.split()[0]: line for line in lines if line.startswith("  ") and line.split()}
    assert "entry point" in row["labavg"] and "[entry point: labplug (labplug:SPEC)]" in \
        row["labavg"] and "scaled client lr" in row["labavg"]
    assert "[entry point: labplug (labplug:tiny_mlp)]" in row["tiny-mlp"]
    assert "[entry point: labplug (labplug:flat_digits)]" in row["flat-digits"]
    assert "decorator" in row["deco-net"]
    assert "built-in" in row["fedavg"] and "[" not in row["fedavg"]


def test_builtin_lists_are_unchanged_by_a_plugin(installed_plugin) -> None:
    for title, registry in (("strategies", STRATEGIES), ("models", MODELS),
                            ("datasets", DATASETS)):
        builtin = [e.name for e in registry.entries() if e.source == "built-in"]
        assert builtin == BUILT_INS[title]
    assert STRATEGIES.names() == sorted([*BUILT_INS["strategies"], "labavg"])


def test_fedsim_list_params_of_a_plugin_strategy(plugin_module, capsys) -> None:
    assert main(["list", "--params", "labplug:SPEC"]) == 0
    out = capsys.readouterr().out
    assert "strategy.lr_scale = 1.0  (a number with 0.0 < value <= 2.0)" in out
    assert "client lr multiplier" in out
    assert main(["list", "--params", "diffusion"]) == 0
    assert "diffusion.hidden = 256" in capsys.readouterr().out


def test_model_factories_are_called_with_the_arguments_they_name() -> None:
    torchvision = pytest.importorskip("torchvision")
    net = call_factory(torchvision.models.resnet18, (3, 32, 32), 7)  # **kwargs: num_classes
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    assert call_factory(lambda a, b: nn.Linear(a[0], b), (5,), 3).out_features == 3
    assert call_factory(lambda input_shape: nn.Linear(input_shape[0], 2), (4,), 9) \
        .in_features == 4
    with pytest.raises(TypeError, match="not a torch.nn.Module"):
        call_factory(lambda num_classes: "a string", (1,), 2)


def test_a_codec_family_plugs_in_generically() -> None:
    CODECS.register("bound", CodecFamily(lambda e: IntCodec(bound=e), "E"))
    try:
        assert get_codec("bound7").bound == 7 and get_codec("bound7").bits == 4
        with pytest.raises(ValueError, match="bound<E>"):
            get_codec("bound")
    finally:
        CODECS.unregister("bound")
    assert get_codec("int-e20").bits == 6 and get_codec("int3").bound == 3


def _shared(rows: dict[str, list[dict]]) -> list[list[dict]]:
    """The engine-independent metrics every engine reports (the ray engine adds its clock's)."""
    runs = [engine_independent(r) for r in rows.values()]
    keys = set.intersection(*(set(row) for run in runs for row in run[1:]))
    assert {"central_accuracy", "central_loss", "train_loss", "uplink_payload_bytes"} <= keys
    return [[{k: v for k, v in row.items() if k in keys} for row in run] for run in runs]


@pytest.mark.slow
def test_decorator_plugins_reach_ray_actors(installed_plugin, tmp_path: Path) -> None:
    """An entry-point strategy and dataset plus a model registered by decorator in this (test)
    module, which the actors cannot import: shipped to them by value; the same metrics as
    in-process for the same seed."""
    MODELS.register("deco-net", lambda num_classes: nn.Sequential(
        nn.Flatten(), nn.Linear(64, num_classes)))
    try:
        cfg = write_config(tmp_path / "exp.toml", "labavg", "deco-net", "flat-digits",
                           rounds=2, extra="lr_scale = 0.5")
        rows = {engine: metrics_without_times(_run(tmp_path, cfg, engine))
                for engine in ("inprocess", "ray")}
    finally:
        MODELS.unregister("deco-net")
    inprocess, ray = _shared(rows)
    assert ray == inprocess and ray[-1]["num_params"] == 650


@pytest.mark.slow
def test_entry_point_plugins_on_flower_simulation(installed_plugin, tmp_path: Path) -> None:
    """The installed plugin (strategy, model, dataset) on Flower's own simulation: the same
    metrics as in-process for the same seed."""
    cfg = write_config(tmp_path / "exp.toml", "labavg", "tiny-mlp", "flat-digits", rounds=2,
                       extra="lr_scale = 0.5")
    rows = {engine: metrics_without_times(_run(tmp_path, cfg, engine))
            for engine in ("inprocess", "flower")}
    inprocess, flower = _shared(rows)
    assert flower == inprocess and flower[-1]["num_params"] == TINY_MLP_PARAMS
