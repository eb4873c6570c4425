"""The Synthetic(alpha, beta) family (FedProx section 5.1): the generator's equations, its
per-device determinism without materialising the population, and runs that learn on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedsim.config import ConfigError, config_from_dict
from fedsim.config.schema import TaskConfig
from fedsim.results.writer import read_metrics
from fedsim.tasks.datasets import DATASETS, data_source
from fedsim.tasks.synthetic import FEATURES, SyntheticSource

from helpers import run_cli, summary


def _source(clients: int = 100, seed: int = 0, **kwargs) -> SyntheticSource:
    return SyntheticSource(TaskConfig(dataset="synthetic", partitioner="natural",
                                      num_clients=clients), seed, **kwargs)


def test_labels_are_the_argmax_of_the_devices_linear_model() -> None:
    source = _source(alpha=0.5, beta=0.5)
    for device in (0, 3):
        w, b, v = source.device_model(device)
        assert w.shape == (10, FEATURES) and b.shape == (10,) and v.shape == (FEATURES,)
        data = source.client_data(device)
        assert data.x.dtype == np.float32 and data.y.dtype == np.int64
        for x, y in zip(data.x.astype(np.float64), data.y, strict=True):
            logits = [sum(w[c, j] * x[j] for j in range(FEATURES)) + b[c] for c in range(10)]
            soft = np.exp(np.array(logits) - max(logits))
            soft /= soft.sum()
            top2 = np.sort(soft)[-2:]
            if top2[1] - top2[0] > 1e-4:  # x is stored as float32: skip near-ties
                assert y == int(np.argmax(soft))


def test_features_have_the_decaying_diagonal_covariance() -> None:
    """x ~ N(v_k, Sigma), Sigma_jj = j^-1.2: variance ratios var_j / var_1 on ~10k rows of
    the IID variant (v = 0), and about the device's mean v_k on one non-IID device."""
    source = _source(clients=250, iid=True)
    x = np.concatenate([source.client_data(d).x for d in range(250)]).astype(np.float64)
    assert len(x) > 8000
    ratio = x.var(axis=0) / x.var(axis=0)[0]
    expected = np.arange(1, FEATURES + 1) ** -1.2
    np.testing.assert_allclose(ratio, expected, rtol=0.1)
    assert np.abs(x.mean(axis=0)).max() < 0.05  # v = 0
    w, b, v = _source(alpha=1.0, beta=1.0).device_model(5)
    rows = _source(alpha=1.0, beta=1.0).client_data(5).x
    # the first feature has variance 1, so the row mean is v_0 within a few standard errors
    assert abs(rows[:, 0].mean() - v[0]) < 4 / np.sqrt(len(rows))


def test_alpha_and_beta_are_standard_deviations_of_the_device_means() -> None:
    """u_k ~ N(0, alpha) is the mean of W_k's entries; B_k ~ N(0, beta) that of v_k."""
    source = _source(clients=400, alpha=2.0, beta=0.5)
    models = [source.device_model(d) for d in range(400)]
    u = np.array([w.mean() for w, _, _ in models])
    big_b = np.array([v.mean() for _, _, v in models])
    assert 1.8 < u.std() < 2.2 and 0.4 < big_b.std() < 0.6
    zero = [_source(alpha=0.0, beta=0.0).device_model(d) for d in range(200)]
    assert np.array([w.mean() for w, _, _ in zero]).std() < 0.1  # only the N(0, 1) draws


def test_same_seed_and_device_give_the_same_bytes_and_others_differ() -> None:
    a, b = _source().client_data(7), _source().client_data(7)
    assert a.x.tobytes() == b.x.tobytes() and a.y.tobytes() == b.y.tobytes()
    other = _source().client_data(8)
    assert other.x.shape != a.x.shape or other.x.tobytes() != a.x.tobytes()
    reseeded = _source(seed=1).client_data(7)
    assert reseeded.x.shape != a.x.shape or reseeded.x.tobytes() != a.x.tobytes()


def test_partition_size_is_cheap_and_matches_the_data() -> None:
    source = _source(clients=10_000)
    sizes = [source.partition_size(pid) for pid in range(10_000)]  # no rows generated
    assert min(sizes) >= 20 and max(sizes) <= 200 and 40 < np.mean(sizes) < 60
    for pid in (0, 1, 2, 4_321, 9_999):
        assert len(source.client_data(pid)) == sizes[pid]
    with pytest.raises(ValueError, match="task.num_clients = 10000"):
        source.client_data(10_000)  # the first held-out device


def test_central_test_is_the_devices_after_the_clients() -> None:
    source = _source(clients=200)  # central_test_fraction 0.2: 40 devices
    assert source.test_devices() == range(200, 240)
    test = source.central_test()
    parts = [source.device_data(d) for d in range(200, 240)]
    assert test.x.tobytes() == np.concatenate([p.x for p in parts]).tobytes()
    assert np.array_equal(test.y, np.concatenate([p.y for p in parts]))
    assert _source(clients=10).test_devices() == range(10, 30)  # at least 20 devices
    assert len(_source(clients=10_000).test_devices()) == 500  # at most 500


def test_the_iid_variant_shares_one_model() -> None:
    source = _source(iid=True)
    (w0, b0, v0), (w9, b9, v9) = source.device_model(0), source.device_model(9)
    assert np.array_equal(w0, w9) and np.array_equal(b0, b9)
    assert not v0.any() and not v9.any()
    niid = _source(alpha=0.0, beta=0.0)
    assert not np.array_equal(niid.device_model(0)[0], niid.device_model(9)[0])


def test_registered_variants() -> None:
    task = TaskConfig(dataset="synthetic", partitioner="natural")
    expected = {"synthetic": (1.0, 1.0, False), "synthetic-0.5": (0.5, 0.5, False),
                "synthetic-0": (0.0, 0.0, False), "synthetic-iid": (0.0, 0.0, True)}
    for name, (alpha, beta, iid) in expected.items():
        source = DATASETS.get(name)(task, 0)
        assert (source.input_shape, source.num_classes) == ((60,), 10)
        assert source.iid == iid and (iid or (source.alpha, source.beta) == (alpha, beta))
    with pytest.raises(ValueError, match="alpha = -1"):
        _source(alpha=-1)


@pytest.mark.parametrize(
    ("task", "field", "fragments"),
    [
        ({"dataset": "synthetic"}, "task.partitioner", ("'dirichlet'", "'natural' for synthetic",
                                                         "device")),
        ({"dataset": "synthetic-iid", "partitioner": "iid"}, "task.partitioner",
         ("'iid'", "'natural'")),
        ({"partitioner": "natural"}, "task.partitioner", ("digits", "synthetic")),
        ({"dataset": "synthetic", "partitioner": "natural", "model": "cnn"}, "task.model",
         ("(60,)", "10 classes")),
    ],
)
def test_settings_that_make_no_sense_are_refused(task: dict, field: str,
                                                 fragments: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict({"task": task})
    assert info.value.field == field
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize("model", ["logreg", "mlp"])
def test_models_fit_the_synthetic_inputs(model: str) -> None:
    cfg = config_from_dict({"task": {"dataset": "synthetic", "partitioner": "natural",
                                     "model": model}})
    assert data_source(cfg.task, cfg.seed).input_shape == (60,)


def test_a_run_learns_on_synthetic_iid_and_on_heterogeneous_devices(tmp_path: Path) -> None:
    """Synthetic IID: the central test (held-out devices) well above chance (10 %).
    Synthetic(1, 1): every device has its own labelling model, so only the clients' local
    test splits (federated evaluation) can show learning."""
    common = ("task.partitioner=natural", "task.num_clients=30", "train.clients_per_round=10",
              "train.rounds=8", "train.lr=0.3")
    code, out = run_cli(tmp_path / "iid", "task.dataset=synthetic-iid", "task.model=logreg",
                        *common)
    assert code == 0
    assert summary(out)["final_accuracy"] > 0.35
    code, out = run_cli(tmp_path / "niid", "task.dataset=synthetic", "task.model=mlp",
                        "eval.federated_every=4", *common)
    assert code == 0
    federated = [row["federated_accuracy"] for row in read_metrics(out)
                 if "federated_accuracy" in row]
    assert federated and federated[-1] > 0.4


def test_client_processes_keep_no_synthetic_partitions() -> None:
    """A client process regenerates a device's rows at each call (the same bytes) instead of
    keeping them: its memory stays flat however many of 10,000 clients it serves. Pooled
    data (digits) is still kept."""
    from clients import runtime
    from clients.setup import ClientSetup

    synthetic = ClientSetup.from_experiment(config_from_dict(
        {"task": {"dataset": "synthetic", "partitioner": "natural", "num_clients": 10_000}}))
    kept = len(runtime._DATA)
    first = runtime.local_data(synthetic, 9_876)
    again = runtime.local_data(synthetic, 9_876)
    assert len(runtime._DATA) == kept
    assert first[0] is not again[0] and first[0].x.tobytes() == again[0].x.tobytes()
    assert len(first[0]) + len(first[1]) == data_source(synthetic.task, 0).partition_size(9_876)
    digits = ClientSetup.from_experiment(config_from_dict({}))
    assert runtime.local_data(digits, 2)[0] is runtime.local_data(digits, 2)[0]
