"""Baselines (each module cites its paper): EF-SignSGD keeps its residual in the client's
state and loses nothing but delay; FedDA and FAFED move the state the FedLion code moves; every
registered strategy has a config and runs a round end to end with metered bytes."""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import ArrayRecord, RecordDict
from strategy_fixtures import (
    CONFIGS,
    NodeGrid,
    local_round,
    reply_to,
    setup_config,
    tiny_data,
    tiny_model,
)

from fedsim.comm.sign_codec import ScaledSignCodec
from strategies.ef_signsgd import RESIDUAL_KEY, EFSignClient
from strategies.fafed import M_KEY, STEP_KEY, V_KEY, FAFEDClient, FAFEDStrategy
from strategies.fedda import MOMENTUM_KEY, FedDAClient, FedDAStrategy
from strategies.registry import strategy_names
from strategies.vector import Layout, load_vector, model_vector, record_vector


def test_ef_signsgd_residual_lives_in_client_state_and_nothing_is_lost() -> None:
    state = RecordDict()
    model = tiny_model()
    x0 = model_vector(model)
    sent_total = torch.zeros_like(x0)
    true_total = torch.zeros_like(x0)
    for rnd in range(3):
        x = model_vector(model)
        update = EFSignClient().train(local_round(model, tiny_data(seed=rnd), 2, 0.1,
                                                  state=state))
        true_total += x - model_vector(model)
        arrays = {k: a.numpy() for k, a in update.arrays.items()}
        assert arrays["bits"].nbytes == (x.numel() + 7) // 8 + 4  # 1 bit + one fp32 scale
        sent_total += torch.from_numpy(ScaledSignCodec().decode(arrays, x.numel()))
        load_vector(model, x)  # the next round starts from the same global model here
    residual = record_vector(state.array_records[RESIDUAL_KEY])
    # error feedback: everything computed was either sent or is still in the residual
    torch.testing.assert_close(sent_total + residual, true_total, atol=1e-5, rtol=0)
    assert residual.abs().sum() > 0


def test_fedda_uploads_momentum_and_its_sum_and_steps_with_eta_gamma() -> None:
    lr, steps, nodes = 0.05, 4, [41, 42]
    strategy = FedDAStrategy(server_lr=2.0, fraction_train=1.0, min_train_nodes=2,
                             min_available_nodes=2)
    arrays = ArrayRecord(tiny_model().state_dict())
    layout = Layout.of(arrays)
    messages = list(strategy.configure_train(1, arrays, setup_config(lr, steps),
                                             NodeGrid(nodes)))
    updates = [FedDAClient(beta=0.9).train(local_round(tiny_model(), tiny_data(seed=i), steps,
                                                       lr, content=m.content))
               for i, m in enumerate(messages)]
    p = [u.arrays["values"].numpy() for u in updates]
    mu = [u.extra[MOMENTUM_KEY]["values"].numpy() for u in updates]
    new_arrays, _ = strategy.aggregate_train(1, [reply_to(m, u) for m, u in
                                                 zip(messages, updates, strict=True)])
    expected = layout.flatten(arrays) - 2.0 * lr * np.mean(p, axis=0, dtype=np.float64)
    np.testing.assert_allclose(layout.flatten(new_arrays), expected, atol=1e-6)
    np.testing.assert_allclose(strategy.m, np.mean(mu, axis=0), atol=1e-7)


def test_fafed_averages_model_moments_and_step() -> None:
    lr, steps, nodes = 0.01, 3, [51, 52]
    strategy = FAFEDStrategy(fraction_train=1.0, min_train_nodes=2, min_available_nodes=2)
    arrays = ArrayRecord(tiny_model().state_dict())
    layout = Layout.of(arrays)
    for rnd in (1, 2):
        messages = list(strategy.configure_train(rnd, arrays, setup_config(lr, steps),
                                                 NodeGrid(nodes)))
        assert int(messages[0].content[STEP_KEY]["t"]) == (rnd - 1) * steps
        finals, updates = [], []
        for i, m in enumerate(messages):
            model = tiny_model()
            model.load_state_dict(arrays.to_torch_state_dict())
            updates.append(FAFEDClient().train(local_round(model, tiny_data(seed=i), steps, lr,
                                                           content=m.content)))
            finals.append(model_vector(model).numpy())
        arrays, _ = strategy.aggregate_train(rnd, [reply_to(m, u) for m, u in
                                                   zip(messages, updates, strict=True)])
        np.testing.assert_allclose(layout.flatten(arrays), np.mean(finals, axis=0), atol=1e-6)
        v = np.mean([u.extra[V_KEY]["values"].numpy() for u in updates], axis=0)
        np.testing.assert_allclose(strategy.v, v, rtol=1e-6)
        assert strategy.m.shape == v.shape and M_KEY in messages[0].content
    assert strategy.t == 2 * steps


def test_every_strategy_has_a_config_on_dirichlet_digits() -> None:
    import tomllib

    for name in strategy_names():
        cfg = tomllib.loads((CONFIGS / f"{name}.toml").read_text())
        assert cfg["strategy"]["name"] == name
        assert cfg["task"]["dataset"] == "digits" and cfg["task"]["alpha"] == 0.3
        assert 20 <= cfg["task"]["num_clients"] <= 50
