"""In-memory labelled examples as NumPy arrays (images are N x C x H x W float32)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ArrayDataset:
    """Features ``x`` (float32, N x C x H x W) and integer labels ``y`` (int64, N)."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, idx: np.ndarray) -> ArrayDataset:
        return ArrayDataset(self.x[idx], self.y[idx])

    def split(self, test_fraction: float, seed: int) -> tuple[ArrayDataset, ArrayDataset]:
        """Shuffle with ``seed`` and split into (train, test) of :func:`local_test_rows` rows."""
        n = len(self)
        perm = np.random.default_rng(seed).permutation(n)
        n_test = local_test_rows(n, test_fraction)
        return self.subset(perm[n_test:]), self.subset(perm[:n_test])


def local_test_rows(n: int, test_fraction: float) -> int:
    """Rows of an ``n``-row partition that go to its local test split: ``round(n * fraction)``,
    but never all of them (one row at least stays for training)."""
    n_test = int(round(n * test_fraction))
    return n - 1 if n_test >= n and n > 0 else n_test
