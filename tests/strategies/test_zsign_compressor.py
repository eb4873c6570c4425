"""z-SignFedAvg's compressor (arXiv 2302.02589): unbiased for z = inf when |v| <= sigma,
small-signal gain sqrt(2/pi) for z = 2, ceil(d/8)-byte payloads, client-local noise, and the
server's aggregation modes."""

from __future__ import annotations

import math

import numpy as np
import torch
from flwr.app import ArrayRecord
from strategy_fixtures import NodeGrid, local_round, reply_to, setup_config, tiny_data, tiny_model

from fedsim.comm.noise import density_at_zero, server_step
from strategies.vector import Layout, model_vector
from strategies.zsignfedavg import ZSignClient, ZSignStrategy, aggregate_signs, noisy_sign

N = 200_000  # Monte-Carlo draws per value


def test_uniform_noise_rescaled_sign_is_unbiased_within_three_standard_errors() -> None:
    sigma = 0.5
    for i, v in enumerate((-0.5, -0.3, -0.05, 0.0, 0.1, 0.25, 0.49)):
        draws = sigma * noisy_sign(torch.full((N,), v), sigma, "inf", seed=100 + i).double()
        se = draws.std().item() / math.sqrt(N) + 1e-12
        assert abs(draws.mean().item() - v) <= 3 * se + 1e-9, (v, draws.mean().item(), se)


def test_gaussian_small_signal_gain_is_sqrt_two_over_pi() -> None:
    sigma, v = 1.0, 0.05
    draws = sigma * noisy_sign(torch.full((4 * N,), v), sigma, "2", seed=5).double()
    se = draws.std().item() / math.sqrt(draws.numel())
    expected = math.sqrt(2 / math.pi) * v
    assert abs(draws.mean().item() - expected) <= 3 * se
    assert abs(2 * density_at_zero(2) - math.sqrt(2 / math.pi)) < 1e-12
    # the recommended step eta = sigma * eta_eff / (2 p_z(0)) undoes the gain
    assert abs(server_step(sigma, 2, 1.0) * math.sqrt(2 / math.pi) - sigma) < 1e-12


def test_any_z_by_gamma_construction_has_the_small_signal_gain() -> None:
    sigma, v, z = 1.0, 0.05, 3.0
    draws = noisy_sign(torch.full((4 * N,), v), sigma, str(z), seed=9).double()
    se = draws.std().item() / math.sqrt(draws.numel())
    assert abs(draws.mean().item() - 2 * density_at_zero(z) * v / sigma) <= 3 * se


def test_packed_sign_payload_is_ceil_d_over_8_bytes_and_noise_is_client_local() -> None:
    for features, classes in ((6, 3), (7, 5)):  # d = 21 and 40
        model = tiny_model(features=features, classes=classes)
        d = model_vector(model).numel()
        data = tiny_data(features=features, classes=classes)
        update = ZSignClient(z="inf", sigma=0.1).train(local_round(model, data, 2, 0.1))
        bits = update.arrays["bits"].numpy()
        assert bits.dtype == np.uint8 and bits.nbytes == math.ceil(d / 8)

    def signs(seed: int) -> np.ndarray:
        update = ZSignClient(z="2", sigma=1.0).train(
            local_round(tiny_model(), tiny_data(), 2, 0.1, noise_seed=seed))
        return update.arrays["bits"].numpy()

    assert np.array_equal(signs(1), signs(1))  # reproducible from the client's own seed
    assert not np.array_equal(signs(1), signs(2))  # and different per client seed


def test_aggregation_modes() -> None:
    s = [np.array([1, 1, -1, -1.0]), np.array([1, -1, -1, 1.0]), np.array([1, -1, 1, -1.0])]
    np.testing.assert_allclose(aggregate_signs(s, "mean"), [1, -1 / 3, -1 / 3, -1 / 3])
    np.testing.assert_allclose(aggregate_signs(s, "majority"), [1, -1, -1, -1])
    # groups [0, 1] and [2]: votes [1, 0, -1, 0] and [1, -1, 1, -1], averaged
    np.testing.assert_allclose(aggregate_signs(s, "groups", 2), [1, -0.5, 0, -0.5])


def test_server_step_with_uniform_noise_is_fedavg_in_expectation() -> None:
    """With z = inf, sigma >= |Delta| and the mean of signs, E[x_new] = x - server_lr * mean
    Delta: check the average of many rounds' steps against the FedAvg step."""
    lr, steps, sigma = 0.1, 2, 0.5
    finals, steps_taken = [], []
    global_model = tiny_model()
    arrays = ArrayRecord(global_model.state_dict())
    x0 = Layout.of(arrays).flatten(arrays)
    for rep in range(120):
        strategy = ZSignStrategy(z="inf", sigma=sigma, server_lr=1.0, fraction_train=1.0,
                                 min_train_nodes=2, min_available_nodes=2)
        messages = list(strategy.configure_train(1, arrays, setup_config(lr, steps),
                                                 NodeGrid([21, 22])))
        replies, finals = [], []
        for i, msg in enumerate(messages):
            model = tiny_model()
            update = ZSignClient(z="inf", sigma=sigma).train(
                local_round(model, tiny_data(seed=i), steps, lr, noise_seed=1000 * rep + i))
            finals.append(model_vector(model).numpy().astype(np.float64))
            replies.append(reply_to(msg, update))
        new_arrays, _ = strategy.aggregate_train(1, replies)
        steps_taken.append(Layout.of(new_arrays).flatten(new_arrays) - x0)
    fedavg_step = np.mean(finals, axis=0) - x0
    assert np.abs(fedavg_step).max() <= sigma
    taken = np.asarray(steps_taken)
    se = taken.std(axis=0) / math.sqrt(len(taken))
    assert np.all(np.abs(taken.mean(axis=0) - fedavg_step) <= 4 * se + 1e-9)
