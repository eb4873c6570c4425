"""Zero-order feedback with shared seeds (strategies/zo_seeds.py): the uplink is q + 1 loss
values, and the server's step is the two-point estimate built from them."""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import Array, ArrayRecord
from strategy_fixtures import NodeGrid, local_round, reply_to, setup_config, tiny_data, tiny_model

from fedsim.tasks.training import cross_entropy
from strategies.client_half import ClientUpdate
from strategies.vector import Layout, load_vector, model_vector
from strategies.zo_seeds import LOSSES_KEY, SEED_KEY, ZOSeedsClient, ZOSeedsStrategy, directions


def test_server_step_is_the_weighted_two_point_estimate_of_the_clients_values() -> None:
    q, mu, lr, nodes = 5, 0.01, 0.3, [11, 12]
    strategy = ZOSeedsStrategy(q, mu, lr, clip=0.0, fraction_train=1.0, min_train_nodes=2,
                               min_available_nodes=2)
    arrays = ArrayRecord(tiny_model().state_dict())
    layout = Layout.of(arrays)
    messages = list(strategy.configure_train(1, arrays, setup_config(0.1, 1), NodeGrid(nodes)))
    seed = int(messages[0].content["config"][SEED_KEY])
    assert seed == int(messages[1].content["config"][SEED_KEY])  # shared directions
    updates, values = [], []
    for i, m in enumerate(messages):
        model = tiny_model()
        update = ZOSeedsClient(q, mu).train(local_round(model, tiny_data(seed=i), 1, 0.1,
                                                        content=m.content))
        losses = update.arrays[LOSSES_KEY].numpy()
        assert losses.shape == (q + 1,) and losses.dtype == np.float32  # all that goes up
        # the values are the client's loss at x and x + mu u_j on one batch
        check = tiny_model()
        batches = local_round(check, tiny_data(seed=i), 1, 0.1).batches
        xb, yb = batches.next()
        u = directions(seed, q, layout.size)
        x = model_vector(check)
        load_vector(check, x + mu * u[2])
        with torch.no_grad():
            assert losses[3] == np.float32(cross_entropy(check, xb, yb, batches.torch_gen))
        updates.append(update)
        values.append(losses.astype(np.float64))
    weights = np.array([10.0, 30.0])
    replies = [reply_to(m, up, examples=int(w))
               for m, up, w in zip(messages, updates, weights, strict=True)]
    new_arrays, _ = strategy.aggregate_train(1, replies)
    slopes = np.stack([(v[1:] - v[0]) / mu for v in values])
    dbar = weights @ slopes / weights.sum()
    g = dbar @ directions(seed, q, layout.size).double().numpy() / q
    np.testing.assert_allclose(layout.flatten(new_arrays), layout.flatten(arrays) - lr * g,
                               rtol=1e-6, atol=1e-9)


def test_malformed_loss_vectors_are_rejected_not_aggregated() -> None:
    strategy = ZOSeedsStrategy(3, 0.01, 0.1, clip=1.0, fraction_train=1.0, min_train_nodes=3,
                               min_available_nodes=3)
    arrays = ArrayRecord(tiny_model().state_dict())
    messages = list(strategy.configure_train(1, arrays, setup_config(0.1, 1),
                                             NodeGrid([1, 2, 3])))
    good = np.zeros(4, np.float32)
    payloads = [good, np.zeros(5, np.float32), np.array([0, np.nan, 0, 0], np.float32)]
    replies = [reply_to(m, ClientUpdate(ArrayRecord({LOSSES_KEY: Array(p)})))
               for m, p in zip(messages, payloads, strict=True)]
    strategy.aggregate_train(1, replies)
    assert strategy.round_report["train_replies"] == 1
    assert strategy.round_report["train_rejected"] == 2
