"""FedLion (arXiv 2402.09941, Algorithm 1): the client's Delta is an integer in [-E, E] and the
server step equals averaging the client models; the momentum may travel in bf16/fp16."""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import ArrayRecord, RecordDict
from strategy_fixtures import NodeGrid, local_round, reply_to, setup_config, tiny_data, tiny_model

from fedsim.comm.int_codec import IntCodec, bits_for_bound
from strategies.fedlion import MOMENTUM_KEY, FedLionClient, FedLionStrategy
from strategies.vector import Layout, model_vector, vector_record


def _delta(update, steps: int, d: int) -> np.ndarray:
    arrays = {k: a.numpy() for k, a in update.arrays.items()}
    return IntCodec(bound=steps).decode(arrays, d)


def test_delta_is_integer_in_range_and_matches_the_local_model() -> None:
    steps, lr = 7, 0.05
    model = tiny_model()
    x = model_vector(model)
    content = RecordDict({MOMENTUM_KEY: vector_record(torch.full_like(x, 0.01))})
    update = FedLionClient().train(local_round(model, tiny_data(), steps, lr, content=content))
    delta = _delta(update, steps, x.numel())
    assert np.array_equal(delta, np.rint(delta))
    assert np.abs(delta).max() <= steps and np.abs(delta).max() >= 1
    # y = x - gamma * Delta is the client's final model
    np.testing.assert_allclose(model_vector(model).numpy(), x.numpy() - lr * delta, atol=1e-6)
    # k = ceil(log2(2E+1)) = 4 bits per coordinate
    assert update.arrays["packed"].numpy().nbytes == (bits_for_bound(steps) * x.numel() + 7) // 8
    assert update.extra[MOMENTUM_KEY]["values"].numpy().dtype == np.float32


def test_server_step_equals_averaging_the_client_models() -> None:
    steps, lr = 5, 0.02
    strategy = FedLionStrategy(fraction_train=1.0, min_train_nodes=3, min_available_nodes=3)
    strategy.bind_nodes({11: 0, 12: 1, 13: 2}, seed=0)
    global_model = tiny_model()
    arrays = ArrayRecord(global_model.state_dict())
    messages = list(strategy.configure_train(1, arrays, setup_config(lr, steps),
                                             NodeGrid([11, 12, 13])))
    assert MOMENTUM_KEY in messages[0].content  # (x, m) downlink
    finals, momenta, replies = [], [], []
    for i, msg in enumerate(messages):
        model = tiny_model()  # same initial parameters as the global model
        update = FedLionClient().train(local_round(model, tiny_data(seed=i), steps, lr,
                                                   content=msg.content))
        finals.append(model_vector(model).numpy().astype(np.float64))
        momenta.append(update.extra[MOMENTUM_KEY]["values"].numpy())
        replies.append(reply_to(msg, update, examples=10 * (i + 1)))  # sizes are ignored
    new_arrays, metrics = strategy.aggregate_train(1, replies)
    assert strategy.round_report["train_rejected"] == 0
    new_x = Layout.of(new_arrays).flatten(new_arrays)
    np.testing.assert_allclose(new_x, np.mean(finals, axis=0), atol=1e-6)
    np.testing.assert_allclose(strategy.m, np.mean(momenta, axis=0), atol=1e-7)
    assert metrics is not None and "train-loss" in metrics


def test_half_precision_momentum_halves_its_payload() -> None:
    steps, lr = 3, 0.01
    for fmt, nbytes in (("bf16", 2), ("fp16", 2), ("fp32", 4)):
        model = tiny_model()
        d = model_vector(model).numel()
        update = FedLionClient(momentum_dtype=fmt).train(
            local_round(model, tiny_data(), steps, lr))
        assert update.extra[MOMENTUM_KEY]["values"].numpy().nbytes == nbytes * d
