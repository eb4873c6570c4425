"""The driver's threads: as many as the cores the actors leave it, or a fixed number."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def driver_threads(threads: int | None) -> Iterator[None]:
    """Torch threads of this process set to ``threads`` (None: unchanged) inside the block.

    While the actors train, the driver needs no more than the cores they leave: with more, the
    OpenMP workers of its last evaluation or aggregation keep spinning and take CPU from the
    actors. Between phases the actors idle and the driver has every core again.
    """
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def blas_threads(threads: int | None) -> Iterator[None]:
    """NumPy's BLAS (OpenBLAS) limited to ``threads`` threads inside the block (None:
    unchanged).

    The driver's NumPy work is small (norms and sums of a few replies' arrays), but one BLAS
    call on a long vector (``np.dot`` in a norm) wakes OpenBLAS's worker threads, and these
    then spin for a while after every call: with a norm per reply they never sleep, and on a
    machine whose cores the actors hold they took a third of a core from them."""
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="blas"):
        yield
