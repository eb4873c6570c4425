"""A stock Flower app (examples/flower-app) on the fedsim engine: ``fedsim simulate`` and
``fedsim.simulate``, metered by ``MeteredGrid``, against Flower's own simulation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

from fedsim.cli import main
from fedsim.flower_app import read_flower_app, run_config_overrides, run_under_flower
from fedsim.simulation import simulate

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flower-app"
sys.path.insert(0, str(EXAMPLE))

from digitsapp.task import new_model  # noqa: E402

TWO_PROFILES = [{"name": "phone", "share": 0.5, "speed": 0.5, "uplink_mbps": 2.0},
                {"name": "laptop", "share": 0.5}]
PROFILES_TOML = """\
[[profiles]]
name = "phone"
share = 0.5
speed = 0.5
uplink_mbps = 2.0

[[profiles]]
name = "laptop"
share = 0.5
"""


def flower_bytes(msg) -> int:
    """Flower's own count of a message's size (docs/design-notes.md#message-size-on-the-wire)."""
    return sum(len(o.deflate()) for o in get_all_nested_objects(msg).values())


SIZES: dict[str, list[list[int]]] = {}
METRICS: list[list[tuple[float, float]]] = []


class SizingFedAvg(FedAvg):
    """FedAvg that records each reply's serialized size (Flower's count) and train metrics."""

    def aggregate_train(self, server_round, replies):
        replies = list(replies)
        SIZES.setdefault("train", []).append([flower_bytes(r) for r in replies])
        METRICS.append([(float(r.content["metrics"]["train_loss"]),
                         float(r.content["metrics"]["num-examples"])) for r in replies])
        return super().aggregate_train(server_round, replies)

    def aggregate_evaluate(self, server_round, replies):
        replies = list(replies)
        SIZES.setdefault("evaluate", []).append([flower_bytes(r) for r in replies])
        return super().aggregate_evaluate(server_round, replies)


sizing_app = ServerApp()


@sizing_app.main()
def sizing_main(grid: Grid, context: Context) -> None:
    strategy = SizingFedAvg(min_available_nodes=2)
    strategy.start(grid=grid, initial_arrays=ArrayRecord(new_model(0).state_dict()),
                   num_rounds=int(context.run_config["num-server-rounds"]),
                   train_config=ConfigRecord({"lr": 0.1}))


def app_config(**changes) -> dict:
    return {**read_flower_app(EXAMPLE).config, **changes}


def run_sizing(tmp_path: Path, engine: str, **kw):
    SIZES.clear()
    METRICS.clear()
    result = simulate(sizing_app, "digitsapp.client_app:app", 3, engine=engine,
                      run_config=app_config(**{"num-server-rounds": 2}),
                      out=tmp_path / engine, progress=False, **kw)
    return result, {k: [list(v) for v in rounds] for k, rounds in SIZES.items()}, \
        list(METRICS)


def test_inprocess_rows_hold_measured_bytes_and_weighted_metrics(tmp_path: Path) -> None:
    result, sizes, metrics = run_sizing(tmp_path, "inprocess")
    rows = result.metrics
    assert [r["round"] for r in rows] == [0, 1, 2]
    for row, train, evaluate, replies in zip(rows[1:], sizes["train"], sizes["evaluate"],
                                             metrics, strict=True):
        assert row["uplink_bytes"] == sum(train) > 3 * 4 * 2410  # 3 fp32 models and headers
        assert row["evaluate_uplink_bytes"] == sum(evaluate) > 0
        assert sorted(row["uplink_bytes_by_client"]) == ["0", "1", "2"]
        assert sum(row["uplink_bytes_by_client"].values()) == row["uplink_bytes"]
        mean = sum(loss * n for loss, n in replies) / sum(n for _, n in replies)
        assert row["train_loss"] == pytest.approx(mean, rel=1e-12)
        assert 0.0 <= row["federated_acc"] <= 1.0 and row["train_failures"] == 0
    assert result.summary["total_uplink_bytes"] == sum(map(sum, sizes["train"]))
    assert result.summary["rounds"] == 2


@pytest.mark.slow
def test_ray_meters_what_the_replies_weigh_and_matches_inprocess(tmp_path: Path) -> None:
    ray_result, ray_sizes, _ = run_sizing(tmp_path, "ray", profiles=TWO_PROFILES,
                                          engine_options={"num_cpus": 2})
    in_result, in_sizes, _ = run_sizing(tmp_path, "inprocess")
    for row, train in zip(ray_result.metrics[1:], ray_sizes["train"], strict=True):
        assert row["uplink_bytes"] == sum(train) > 0  # measured in the actors, Flower's count
        assert row["simulated_seconds"] > 0  # the virtual clock closed each round
    assert ray_sizes == in_sizes
    for ray_row, in_row in zip(ray_result.metrics, in_result.metrics, strict=True):
        shared = (set(ray_row) & set(in_row)) - {k for k in in_row if "seconds" in k}
        assert {k: ray_row[k] for k in shared} == {k: in_row[k] for k in shared}
    actors = json.loads((ray_result.run_dir / "actors.json").read_text())
    assert {a["profile"] for a in actors} == {"phone", "laptop"}


@pytest.mark.slow
def test_fedsim_simulate_and_flwr_run_end_at_the_same_model(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(PROFILES_TOML)
    ours, theirs = tmp_path / "fedsim.npz", tmp_path / "flower.npz"
    code = main(["simulate", str(EXAMPLE), "--profiles", str(profiles), "--out",
                 str(tmp_path / "run"), "--no-progress", "--run-config", "num-server-rounds=2",
                 "--run-config", f'save-path="{ours}"'])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "uplink:" in out and "downlink:" in out and "s per round" in out
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert summary["total_uplink_bytes"] == sum(r["uplink_bytes"] for r in rows[1:]) > 0
    assert rows[-1]["central_accuracy"] > rows[0]["central_accuracy"] + 0.2

    app = read_flower_app(EXAMPLE)
    config = run_config_overrides(app, ["num-server-rounds=2", f'save-path="{theirs}"'])
    flower = run_under_flower(app, 4, config, tmp_path / "flower-run", num_cpus=2)
    ours_arrays, theirs_arrays = np.load(ours), np.load(theirs)
    assert sorted(ours_arrays) == sorted(theirs_arrays)
    for key in ours_arrays:
        np.testing.assert_allclose(ours_arrays[key], theirs_arrays[key], rtol=1e-5, atol=1e-6)
    flower_rows = [json.loads(line) for line in (flower.run_dir / "metrics.jsonl").open()]
    assert [r["round"] for r in flower_rows] == [0, 1, 2]
    assert flower_rows[-1]["central_loss"] == pytest.approx(rows[-1]["central_loss"], rel=1e-5)


# -- clear errors ---------------------------------------------------------------------------

def _error(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_folder_without_pyproject(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    err = _error(["simulate", str(tmp_path)], capsys)
    assert "PATH_TO_FLOWER_APP" in err and "pyproject.toml" in err


def test_zero_supernodes(capsys: pytest.CaptureFixture) -> None:
    err = _error(["simulate", str(EXAMPLE), "--num-supernodes", "0"], capsys)
    assert "--num-supernodes = 0" in err and "positive integer" in err


def test_missing_component(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.flwr.app.components]\nserverapp = "a.server_app:app"\n')
    err = _error(["simulate", str(tmp_path)], capsys)
    assert "clientapp" in err and "ClientApp" in err


@pytest.mark.parametrize(("item", "words"), [
    ("rounds=3", ["rounds=3", "known:", "num-server-rounds"]),
    ("num-server-rounds", ["KEY=VALUE"]),
    ("num-server-rounds=three", ["num-server-rounds", "'three'", "an integer", "default 3"]),
    ("lr=fast", ["lr", "a number"]),
])
def test_bad_run_config(item: str, words: list[str], capsys: pytest.CaptureFixture) -> None:
    err = _error(["simulate", str(EXAMPLE), "--run-config", item], capsys)
    assert "--run-config" in err and all(w in err for w in words), err


@pytest.mark.parametrize(("text", "words"), [
    ('[[profiles]]\nname = "a"\nspeed = 0\n', ["profiles[0].speed", "0"]),
    ('[[profiles]]\nname = "a"\nsped = 2\n', ["profiles[0].sped"]),
    ('[[profiles]]\nname = "a"\nshare = 0.5\n', ["share", "sum to 1"]),
    ('[engine]\nnum_cpus = 2\n', ["engine", "[[profiles]]"]),
])
def test_bad_profiles_file(tmp_path: Path, text: str, words: list[str],
                           capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text(text)
    err = _error(["simulate", str(EXAMPLE), "--profiles", str(path)], capsys)
    assert str(path) in err and all(w in err for w in words), err


def test_python_call_rejects_bad_arguments(tmp_path: Path) -> None:
    from fedsim.config.errors import ConfigError

    with pytest.raises(ConfigError, match="engine = 'flower'"):
        simulate(sizing_app, "digitsapp.client_app:app", 2, engine="flower")
    with pytest.raises(ConfigError, match="num_clients = 0"):
        simulate(sizing_app, "digitsapp.client_app:app", 0)
    with pytest.raises(ConfigError, match="client_app = 'digitsapp.nowhere:app'"):
        simulate(sizing_app, "digitsapp.nowhere:app", 2, out=tmp_path / "x")
    with pytest.raises(ConfigError, match=r"engine.profiles\[0\].share"):
        simulate(sizing_app, "digitsapp.client_app:app", 2, profiles=[{"share": 0.5}])
    assert not (tmp_path / "x").exists()  # nothing started, no results folder
