"""Shared test setup: Flower and Ray write under a private home, never phone home."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

_HOME = tempfile.mkdtemp(prefix="fedsim-tests-flwr-")
os.environ.setdefault("FLWR_HOME", _HOME)
os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
os.environ["FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("MPLCONFIGDIR", tempfile.mkdtemp(prefix="fedsim-tests-mpl-"))
os.environ.setdefault("HF_DATASETS_OFFLINE", "0")
torch.set_num_threads(1)
if not os.environ.get("FEDSIM_TEST_GPU"):
    # train.device = auto would put the in-process clients of this process on a GPU while
    # Ray's CPU-only actors stay on the CPU; the suite compares engines bit for bit, so this
    # process sees no CUDA unless asked (FEDSIM_TEST_GPU=1 runs tests/gpu, which need it).
    # Hiding GPUs with CUDA_VISIBLE_DEVICES instead would stop Ray's logical GPUs.
    torch.cuda.is_available = lambda: False


@pytest.fixture
def quickstart_path() -> str:
    return os.path.join(os.path.dirname(__file__), "..", "configs", "quickstart.toml")
