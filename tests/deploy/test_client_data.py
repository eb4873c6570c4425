"""A SuperNode's own data file (``--data-path``) is checked against the experiment's task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedsim.deploy.client_data import ClientDataError, load_client_data


def _digits_like(n: int, features: int = 64, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, features), dtype=np.float32), rng.integers(0, classes, n)


def test_flat_features_are_reshaped_and_split(tmp_path: Path) -> None:
    x, y = _digits_like(50)
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    train, test = load_client_data(tmp_path / "mine.npz", "digits", 0.2, seed=1)
    assert train.x.shape == (40, 1, 8, 8) and test.x.shape == (10, 1, 8, 8)
    assert train.x.dtype == np.float32 and train.y.dtype == np.int64


def test_explicit_test_split(tmp_path: Path) -> None:
    x, y = _digits_like(30)
    np.savez(tmp_path / "mine.npz", x=x[:20], y=y[:20], x_test=x[20:], y_test=y[20:])
    train, test = load_client_data(tmp_path / "mine.npz", "digits", 0.2, seed=1)
    assert len(train) == 20 and len(test) == 10


@pytest.mark.parametrize(("arrays", "message"), [
    ({"x": np.zeros((5, 63), np.float32), "y": np.zeros(5, np.int64)}, "needs 64"),
    ({"x": np.zeros((5, 64), np.float32), "y": np.full(5, 10)}, "labels must be in 0..9"),
    ({"x": np.zeros((5, 64), np.float32), "y": np.zeros(4, np.int64)}, "labels"),
    ({"features": np.zeros((5, 64), np.float32)}, "needs arrays 'x' and 'y'"),
])
def test_mismatched_files_are_named(tmp_path: Path, arrays: dict, message: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ClientDataError, match=message):
        load_client_data(tmp_path / "bad.npz", "digits", 0.2, seed=0)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ClientDataError, match="does not exist"):
        load_client_data(tmp_path / "none.npz", "digits", 0.2, seed=0)


def test_client_runtime_uses_the_file(tmp_path: Path) -> None:
    from clients.runtime import local_data
    from clients.setup import ClientSetup
    from fedsim.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "quickstart.toml")
    x, y = _digits_like(25)
    np.savez(tmp_path / "site.npz", x=x, y=y)
    train, test = local_data(ClientSetup.from_experiment(cfg), 3, str(tmp_path / "site.npz"))
    assert len(train) + len(test) == 25
    assert np.allclose(np.sort(np.concatenate([train.x, test.x]).reshape(25, 64), axis=0),
                       np.sort(x, axis=0))
