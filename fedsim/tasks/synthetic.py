"""Synthetic(alpha, beta): FedProx's synthetic federated classification data, one device per
client, each device generated on demand from ``(seed, partition_id)``.

Li et al., "Federated Optimization in Heterogeneous Networks" (MLSys 2020, section 5.1), as its
generator ``data/synthetic_*/generate_synthetic.py`` in the FedProx repository writes it (the
same generator LEAF ships as its synthetic dataset). For device k:

    u_k ~ N(0, alpha),  B_k ~ N(0, beta)                    (normal with standard deviation
    W_k in R^{10x60}, b_k in R^10, entries ~ N(u_k, 1)       alpha, beta, as the generator's
    v_k in R^60, entries ~ N(B_k, 1)                         ``np.random.normal(0, alpha)``)
    x ~ N(v_k, Sigma),  Sigma diagonal, Sigma_jj = j^-1.2 (j = 1..60)
    y = argmax softmax(W_k x + b_k) = argmax (W_k x + b_k)

alpha controls how much the devices' labelling models differ, beta how much their inputs do.
The IID variant (the paper's "Synthetic IID") draws one W, b with entries ~ N(0, 1) shared by
every device and v_k = 0. Devices hold 20..200 examples, lognormal (LEAF's power law, scaled
down): round(exp(N(ln 40, 0.6))) clipped to [20, 200], mean about 48.

Registered names: ``synthetic`` = Synthetic(1, 1), ``synthetic-0.5`` = Synthetic(0.5, 0.5),
``synthetic-0`` = Synthetic(0, 0), ``synthetic-iid``. Every device is one client (the natural
split: ``task.partitioner = "natural"``). Nothing materialises the population: a device's size,
model and examples come from their own seeded streams, so ``partition_size`` draws one number
and ``client_data`` only that device's rows. The central test set is the devices after the
clients, ``num_clients .. num_clients + m - 1`` with m = round(num_clients *
central_test_fraction) clipped to [20, 500]: devices the federation never trains on.
"""

from __future__ import annotations

import functools

import numpy as np

from fedsim.config.schema import TaskConfig
from fedsim.tasks.arrays import ArrayDataset
from fedsim.tasks.datasets import DataSource

FEATURES = 60
CLASSES = 10
MIN_SAMPLES, MAX_SAMPLES = 20, 200
SIZE_LOG_MEAN, SIZE_LOG_STD = float(np.log(40.0)), 0.6
MIN_TEST_DEVICES, MAX_TEST_DEVICES = 20, 500

_DOMAIN = 0x5F17  # separates these streams from any other seeded use of (seed, pid)
_SIZE, _MODEL, _EXAMPLES, _SHARED = range(4)


def feature_variances() -> np.ndarray:
    """The diagonal of Sigma: j^-1.2 for features j = 1..60."""
    return np.arange(1, FEATURES + 1, dtype=np.float64) ** -1.2


class SyntheticSource(DataSource):
    """Synthetic(alpha, beta) or, with ``iid``, Synthetic IID, for ``task.num_clients``
    devices (see the module docstring)."""

    natural_split = "device"
    keep_partitions = False  # a device's rows take ~0.15 ms to generate: kept, 10,000 of
    # them would grow every actor's memory for the whole run
    input_shape = (FEATURES,)
    num_classes = CLASSES

    def __init__(self, task: TaskConfig, seed: int, alpha: float = 1.0, beta: float = 1.0,
                 iid: bool = False) -> None:
        for name, value in (("alpha", alpha), ("beta", beta)):
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"Synthetic {name} = {value!r}: a finite number >= 0")
        if seed < 0:
            raise ValueError(f"Synthetic data seed = {seed}: an integer >= 0")
        self.task, self.seed = task, int(seed)
        self.alpha, self.beta, self.iid = float(alpha), float(beta), bool(iid)

    def _rng(self, stream: int, device: int = 0) -> np.random.Generator:
        return np.random.default_rng([_DOMAIN, self.seed, stream, device])

    def _device_size(self, device: int) -> int:
        draw = self._rng(_SIZE, device).lognormal(SIZE_LOG_MEAN, SIZE_LOG_STD)
        return int(np.clip(round(draw), MIN_SAMPLES, MAX_SAMPLES))

    def device_model(self, device: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Device ``device``'s labelling model and input mean: (W 10x60, b 10, v 60)."""
        if self.iid:
            shared = self._rng(_SHARED)
            w = shared.normal(0.0, 1.0, (CLASSES, FEATURES))
            b = shared.normal(0.0, 1.0, CLASSES)
            return w, b, np.zeros(FEATURES)
        rng = self._rng(_MODEL, device)
        u, big_b = rng.normal(0.0, self.alpha), rng.normal(0.0, self.beta)
        w = rng.normal(u, 1.0, (CLASSES, FEATURES))
        b = rng.normal(u, 1.0, CLASSES)
        v = rng.normal(big_b, 1.0, FEATURES)
        return w, b, v

    def device_data(self, device: int) -> ArrayDataset:
        """Every example of device ``device`` (any id >= 0: clients and held-out devices)."""
        w, b, v = self.device_model(device)
        z = self._rng(_EXAMPLES, device).standard_normal((self._device_size(device), FEATURES))
        x = v + z * np.sqrt(feature_variances())
        y = np.argmax(x @ w.T + b, axis=1)
        return ArrayDataset(x.astype(np.float32), y.astype(np.int64))

    def _check_client(self, partition_id: int) -> None:
        if not 0 <= partition_id < self.task.num_clients:
            raise ValueError(f"partition_id = {partition_id}: a client of 0 .. "
                             f"{self.task.num_clients - 1} (task.num_clients = "
                             f"{self.task.num_clients}); later devices are the central test set")

    def client_data(self, partition_id: int) -> ArrayDataset:
        self._check_client(partition_id)
        return self.device_data(partition_id)

    def partition_size(self, partition_id: int) -> int:
        self._check_client(partition_id)
        return self._device_size(partition_id)

    def test_devices(self) -> range:
        """The held-out devices whose examples form the central test set."""
        m = round(self.task.num_clients * self.task.central_test_fraction)
        m = int(np.clip(m, MIN_TEST_DEVICES, MAX_TEST_DEVICES))
        return range(self.task.num_clients, self.task.num_clients + m)

    @functools.cached_property
    def _central(self) -> ArrayDataset:
        parts = [self.device_data(d) for d in self.test_devices()]
        return ArrayDataset(np.concatenate([p.x for p in parts]),
                            np.concatenate([p.y for p in parts]))

    def central_test(self) -> ArrayDataset:
        return self._central


def synthetic(task: TaskConfig, seed: int) -> SyntheticSource:
    """Synthetic(1, 1) (FedProx): the most heterogeneous devices, 60 features, 10 classes."""
    return SyntheticSource(task, seed, alpha=1.0, beta=1.0)


def synthetic_half(task: TaskConfig, seed: int) -> SyntheticSource:
    """Synthetic(0.5, 0.5) (FedProx): moderately heterogeneous devices."""
    return SyntheticSource(task, seed, alpha=0.5, beta=0.5)


def synthetic_zero(task: TaskConfig, seed: int) -> SyntheticSource:
    """Synthetic(0, 0) (FedProx): devices' models differ only by their N(0, 1) draws."""
    return SyntheticSource(task, seed, alpha=0.0, beta=0.0)


def synthetic_iid(task: TaskConfig, seed: int) -> SyntheticSource:
    """Synthetic IID (FedProx): one shared W, b and v = 0 for every device."""
    return SyntheticSource(task, seed, iid=True)
