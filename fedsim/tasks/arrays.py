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
        """Shuffle with ``seed`` and split into (train, test); test gets round(n * fraction)."""
        n = len(self)
        perm = np.random.default_rng(seed).permutation(n)
        n_test = int(round(n * test_fraction))
        if n_test >= n and n > 0:
            n_test = n - 1
        return self.subset(perm[n_test:]), self.subset(perm[:n_test])
