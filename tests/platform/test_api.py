"""The Python API: fedsim.run takes what the command line takes (and dicts and configs), checks
it the same way, runs the same path and returns what the results folder holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fedsim
from fedsim.api import resolve_config
from fedsim.cli import main
from fedsim.config import ConfigError, load_config
from fedsim.config.shipped import configs_dir, find_config, shipped_names
from fedsim.results.writer import read_metrics

from helpers import QUICKSTART, metrics_without_times

REPO = Path(__file__).resolve().parents[2]
SMALL = {"task.num_clients": 4, "train.clients_per_round": 4, "train.rounds": 2}


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A current folder outside the checkout, where default results folders land."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_import_is_light_and_exports_resolve() -> None:
    code = ("import sys, fedsim; heavy = sorted({m.split('.')[0] for m in sys.modules} & "
            "{'torch', 'ray', 'flwr', 'numpy'}); print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(REPO)}).stdout
    assert out.strip() == "[]"
    assert set(fedsim.__all__) == {"__version__", *fedsim._LAZY}
    assert fedsim.run is fedsim.api.run and fedsim.load is fedsim.api.load
    assert fedsim.RunResult is fedsim.result.RunResult and fedsim.ConfigError is ConfigError
    assert {"run", "load", "RunResult"} <= set(dir(fedsim))
    with pytest.raises(AttributeError, match="no attribute 'simulat'"):
        fedsim.simulat  # noqa: B018


def test_version_is_single_sourced(capsys: pytest.CaptureFixture) -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "version" in project["dynamic"] and "version" not in project
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith(f"fedsim {fedsim.__version__} (")


def test_config_by_name_path_dict_and_object_resolve_alike(elsewhere: Path) -> None:
    reference = load_config(QUICKSTART)
    assert resolve_config("quickstart") == reference
    assert resolve_config("quickstart.toml") == reference
    assert resolve_config(Path(QUICKSTART)) == reference
    assert resolve_config(reference) == reference
    assert resolve_config({"name": "quickstart", "task": {"alpha": 0.5}, "eval": {
        "federated_every": 5}, "train": {"clients_per_round": 10, "local_epochs": 2,
                                         "batch_size": 16, "rounds": 20}}) == reference
    assert "quickstart" in shipped_names() and configs_dir() == REPO / "configs"


def test_both_override_spellings_and_the_cli_agree() -> None:
    cli = load_config(QUICKSTART, ["train.rounds=3", "strategy.name=fedlion", "task.alpha=0.1",
                                   "seed=4"])
    dotted = resolve_config("quickstart", {"train.rounds": 3, "strategy.name": "fedlion",
                                           "task.alpha": 0.1, "seed": 4})
    nested = resolve_config("quickstart", {"train": {"rounds": 3}, "strategy": {
        "name": "fedlion"}, "task": {"alpha": 0.1}, "seed": 4})
    assert dotted == nested == cli
    assert nested.train.lr == 0.1 and nested.task.num_clients == 10  # the rest is kept


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"train.roundz": 3}, "train.roundz", "did you mean 'rounds'"),
        ({"train": {"roundz": 3}}, "train.roundz", "did you mean 'rounds'"),
        ({"train": {"rounds": "many"}}, "train.rounds", "expected an integer"),
        ({"train.rounds": 0}, "train.rounds", "1 <= value"),
        ({"seed.value": 1}, "seed", "is a value, not a section"),
        ({"strategy": {"name": "nope"}}, "strategy.name", "fedavg"),
        ({"trian": {"rounds": 3}}, "trian", "did you mean 'train'"),
    ],
)
def test_bad_override_is_a_config_error_naming_the_key(elsewhere: Path, overrides: dict,
                                                       field: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        fedsim.run("quickstart", engine="inprocess", **overrides)
    assert err.value.field == field
    assert fragment in str(err.value)
    assert not (elsewhere / "results").exists(), "nothing may start for an invalid config"


def test_bad_sources_and_engines_are_config_errors(elsewhere: Path) -> None:
    with pytest.raises(ConfigError, match="shipped config: .*quickstart") as err:
        fedsim.run("quikstart")
    assert err.value.field == "config"
    with pytest.raises(ConfigError, match="file not found"):
        fedsim.run("experiments/quickstart.toml")
    with pytest.raises(ConfigError, match="a path, the name of a shipped config"):
        fedsim.run(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="one of ray, inprocess, flower"):
        fedsim.run("quickstart", engine="thread")
    with pytest.raises(ConfigError, match=r"dotted keys: \*\*\{'engine.num_cpus'"):
        fedsim.run("quickstart", engine={"num_cpus": 2})  # type: ignore[arg-type]
    assert not (elsewhere / "results").exists()


def test_a_local_file_wins_over_a_shipped_name_and_a_folder_does_not(elsewhere: Path) -> None:
    (elsewhere / "quickstart").mkdir()  # a project folder called like a shipped config
    assert find_config("quickstart") == configs_dir() / "quickstart.toml"
    (elsewhere / "quickstart.toml").write_text('name = "mine"\n')
    assert find_config("quickstart.toml") == Path("quickstart.toml")
    assert resolve_config("quickstart.toml").name == "mine"
    assert resolve_config("quickstart").name == "quickstart"


def test_run_returns_what_the_results_folder_holds(elsewhere: Path,
                                                  capfd: pytest.CaptureFixture) -> None:
    result = fedsim.run({"name": "api", "task": {"num_clients": 4},
                         "train": {"rounds": 2, "clients_per_round": 4}},
                        engine="inprocess", progress=False)
    err = capfd.readouterr().err  # progress=False: none of fedsim's lines
    assert "fedsim:" not in err and "round 1/2" not in err and "results:" not in err
    assert result.run_dir.is_absolute()
    assert result.run_dir.parent == elsewhere.resolve() / "results"
    assert result.run_dir.name.startswith("api-")
    assert result.metrics == read_metrics(result.run_dir)
    assert result.summary == json.loads((result.run_dir / "summary.json").read_text())
    assert [row["round"] for row in result.metrics] == [0, 1, 2]
    assert result.summary["final_accuracy"] == result.column("central_accuracy")[-1] > 0.5
    assert result.config["train"]["rounds"] == 2 and result.config["name"] == "api"
    assert fedsim.load(result.run_dir) == result


def test_run_by_name_matches_the_cli_and_never_reuses_a_folder(
        elsewhere: Path, capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import fedsim.run_dirs

    # both runs start "in the same second": the second still gets a folder of its own
    monkeypatch.setattr(fedsim.run_dirs.time, "strftime", lambda *_: "20260101-000000")
    first = fedsim.run("quickstart", engine="inprocess", **SMALL)
    err = capfd.readouterr().err
    assert "round 2/2" in err and "final accuracy" in err  # progress on by default
    second = fedsim.run("quickstart", engine="inprocess", task={"num_clients": 4},
                        train={"clients_per_round": 4, "rounds": 2})
    assert first.run_dir.name == "quickstart-20260101-000000"
    assert second.run_dir.name == "quickstart-20260101-000000-2"
    assert metrics_without_times(first.run_dir) == metrics_without_times(second.run_dir)
    argv = ["run", "quickstart", "--engine", "inprocess", "--out", str(elsewhere / "cli")]
    for key, value in SMALL.items():
        argv += ["--set", f"{key}={value}"]
    assert main(argv) == 0
    assert metrics_without_times(first.run_dir) == metrics_without_times(elsewhere / "cli")
    before = (first.run_dir / "metrics.jsonl").read_bytes()
    with pytest.raises(ConfigError, match="holds another run"):
        fedsim.run("quickstart", engine="inprocess", out=first.run_dir, **SMALL)
    assert (first.run_dir / "metrics.jsonl").read_bytes() == before


def test_load_refuses_a_folder_without_a_run(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a fedsim results folder"):
        fedsim.load(tmp_path)
