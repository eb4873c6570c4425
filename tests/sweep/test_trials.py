"""The trial list: grid parsing, cross product, seeds, sampled settings, bad input refused."""

from __future__ import annotations

import pytest

from fedsim.config import ConfigError, load_config
from fedsim.sweep.search import parse_search, sample_settings
from fedsim.sweep.trials import build_trials, grid_points, parse_grid

from .sweep_helpers import QUICKSTART


def test_grid_cross_product_last_key_fastest() -> None:
    grid = parse_grid(["train.lr=0.05,0.1", "task.alpha=0.1,0.5,1"])
    points = grid_points(grid)
    assert len(points) == 6
    assert points[0] == {"train.lr": "0.05", "task.alpha": "0.1"}
    assert points[1] == {"train.lr": "0.05", "task.alpha": "0.5"}
    assert points[5] == {"train.lr": "0.1", "task.alpha": "1"}


def test_trials_are_configs_times_points_times_seeds() -> None:
    points = grid_points(parse_grid(["train.lr=0.05,0.1"]))
    trials = build_trials([("configs/00-a.toml", "a"), ("configs/01-b.toml", "b")], points,
                          [0, 1, 2])
    assert len(trials) == 12
    assert [t.index for t in trials] == list(range(12))
    assert len({t.folder for t in trials}) == 12
    assert trials[4].config_name == "a" and trials[4].settings == {"train.lr": "0.1"}
    assert trials[4].seed == 1
    assert trials[4].overrides() == ["train.lr=0.1", "seed=1"]
    # the seeds of one setting share its label (what the tables group by)
    assert {t.setting_label for t in trials[3:6]} == {"a train.lr=0.1"}
    # the overrides resolve exactly as fedsim run --set does
    cfg = load_config(QUICKSTART, trials[4].overrides())
    assert cfg.train.lr == 0.1 and cfg.seed == 1


@pytest.mark.parametrize("text", ["train.lr", "seed=1,2", "=1,2", "train.lr="])
def test_bad_grid_refused_naming_the_option(text: str) -> None:
    with pytest.raises(ConfigError, match="--grid"):
        parse_grid([text])


def test_repeated_grid_key_refused() -> None:
    with pytest.raises(ConfigError, match="each key once"):
        parse_grid(["train.lr=0.1", "train.lr=0.2"])


def test_samples_are_reproducible_and_inside_the_range() -> None:
    first = sample_settings(["train.lr=loguniform:1e-3:1", "train.local_epochs=randint:1:4"],
                            16, seed=3)
    assert first == sample_settings(["train.lr=loguniform:1e-3:1",
                                     "train.local_epochs=randint:1:4"], 16, seed=3)
    assert first != sample_settings(["train.lr=loguniform:1e-3:1",
                                     "train.local_epochs=randint:1:4"], 16, seed=4)
    lrs = [s["train.lr"] for s in first]
    assert all(1e-3 <= lr <= 1 for lr in lrs)
    assert min(lrs) < 0.03 < max(lrs)  # log-uniform: both decades show up in 16 draws
    assert {s["train.local_epochs"] for s in first} <= {1, 2, 3}


@pytest.mark.parametrize("text", ["train.lr", "train.lr=normal:0:1", "train.lr=loguniform:0:1",
                                  "train.lr=uniform:1:0", "train.lr=uniform:a:b",
                                  "train.lr=uniform:1"])
def test_bad_search_refused_naming_the_option(text: str) -> None:
    with pytest.raises(ConfigError, match="--search"):
        parse_search(text)
