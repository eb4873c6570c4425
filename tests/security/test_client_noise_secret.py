"""Finding 11: a client's z-SignFedAvg noise hides its update from a curious server.

The curious server knows everything it sent (global model, setup document with the seed, the
round) and the client's partition id, so it can rerun the client's local training exactly and
redraw noise from ``round_seed(seed, partition, round, 1)``. With a node secret
(``client-noise = "secret"``, the default of ``fedsim deploy supernode``) its reconstruction
of the uploaded sign vector agrees with the real one on about half the coordinates (the noise
dominates: sigma is much larger than the update), i.e. it learns nothing; in ``reproducible``
mode (simulation) it agrees on all of them, and two runs are bit-identical.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict

from clients.client_app import app
from clients.noise_source import SECRET_RECORD, client_noise_seed
from clients.runtime import round_seed
from clients.setup import SETUP_KEY, ClientSetup
from fedsim.comm.sign_codec import unpack_signs
from fedsim.config import load_config
from fedsim.engine.base import assign_message_id, set_server_identity
from fedsim.tasks.kind import task_kind

QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart.toml"


def _train_message(server_round: int) -> Message:
    cfg = load_config(QUICKSTART, ["strategy.name=zsignfedavg", "strategy.sigma=100.0",
                                   "train.local_steps=2"])
    set_server_identity(7)
    content = RecordDict({"arrays": task_kind(cfg).initial_arrays(), "config": ConfigRecord(
        {SETUP_KEY: ClientSetup.from_experiment(cfg).to_json(), "server-round": server_round})})
    msg = Message(content, dst_node_id=5, message_type="train")
    assign_message_id(msg)
    return msg


def _context(mode: str | None) -> Context:
    node_config = {"partition-id": 3, "num-partitions": 10}
    if mode is not None:
        node_config["client-noise"] = mode
    return Context(run_id=7, node_id=5, node_config=node_config, state=RecordDict(),
                   run_config={})


def _signs(reply: Message) -> np.ndarray:
    assert not reply.has_error(), reply.error
    arrays = {k: a.numpy() for k, a in reply.content["arrays"].items()}
    packed = np.concatenate([a.reshape(-1) for a in arrays.values() if a.dtype == np.uint8])
    return unpack_signs(packed, packed.size * 8)


def test_reproducible_mode_is_bit_identical_and_reconstructible() -> None:
    first = _signs(app(_train_message(2), _context("reproducible")))
    second = _signs(app(_train_message(2), _context(None)))  # unset: reproducible
    assert np.array_equal(first, second)
    assert first.size >= 640  # logreg on digits: 64 x 10 + 10 coordinates
    # the other round gives other noise (the seed covers the round)
    other = _signs(app(_train_message(3), _context("reproducible")))
    assert 0.35 < np.mean(first == other) < 0.65


def test_curious_server_cannot_reproduce_secret_noise() -> None:
    curious = _signs(app(_train_message(2), _context("reproducible")))  # what the server redraws
    ctx = _context("secret")
    real = _signs(app(_train_message(2), ctx))
    agree = float(np.mean(real == curious))
    print(f"\ncurious server's reconstruction agrees on {agree:.3f} of {real.size} coordinates")
    assert 0.40 < agree < 0.60, agree
    # the secret stays in the node's state and is reused: the same node, same round, same noise
    assert SECRET_RECORD in ctx.state
    again = _signs(app(_train_message(2), ctx))
    assert np.array_equal(real, again)
    # another node (a fresh state) draws another secret
    stranger = _signs(app(_train_message(2), _context("secret")))
    assert 0.40 < float(np.mean(stranger == real)) < 0.60


def test_secret_seed_is_not_the_public_seed_and_mode_is_checked() -> None:
    ctx = _context("secret")
    seeds = {client_noise_seed(ctx, 0, 3, r) for r in range(1, 6)}
    assert len(seeds) == 5
    assert round_seed(0, 3, 1, 1) not in seeds
    with pytest.raises(ValueError, match="client-noise='public'.*secret, reproducible"):
        client_noise_seed(_context("public"), 0, 3, 1)
