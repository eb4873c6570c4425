"""Where a client's privacy noise comes from: a secret of the node, or the experiment seed.

z-SignFedAvg's ``sign(v + σξ)`` hides a client's update only while the server cannot draw the
same ``ξ``. The experiment seed, the client's partition id and the round are all known to the
server, so noise seeded from them alone can be subtracted by a curious server. Two modes, chosen
by the node, never by the server (the setup document cannot change it):

- ``secret``: the noise seed mixes in 256 random bits (``os.urandom``) that the node creates on
  its first message of a run and keeps in its ``context.state`` (Flower keeps a SuperNode's
  state on that SuperNode; it never travels to the SuperLink). Different on every run and node.
  The default of every node started by ``fedsim deploy supernode``.
- ``reproducible``: ``round_seed(seed, partition id, round, 1)``; bit-for-bit repeatable runs.
  The default of every simulation engine, whose nodes live in the server's own process (the
  server holds their state anyway, so a secret there would protect nothing); a SuperNode gets
  it only from its operator (``fedsim deploy supernode --reproducible-client-noise``).

The mode is the node config entry ``client-noise`` (absent: ``reproducible``).
"""

from __future__ import annotations

import os

import numpy as np
from flwr.app import ConfigRecord, Context

from clients.runtime import round_seed

NOISE_MODE_KEY = "client-noise"
NOISE_MODES = ("secret", "reproducible")
SECRET_RECORD = "fedsim-noise-secret"
SECRET_BYTES = 32


def noise_mode(node_config: dict) -> str:
    """The node's ``client-noise`` mode, checked (``reproducible`` when unset)."""
    mode = str(node_config.get(NOISE_MODE_KEY, "reproducible"))
    if mode not in NOISE_MODES:
        raise ValueError(f"node config {NOISE_MODE_KEY}={mode!r} is not allowed; use one of "
                         f"{', '.join(NOISE_MODES)}")
    return mode


def node_secret(context: Context) -> bytes:
    """The node's noise secret, created from OS randomness on first use and kept in
    ``context.state`` (it never leaves the node)."""
    record = context.state.get(SECRET_RECORD)
    if isinstance(record, ConfigRecord) and isinstance(record.get("secret"), bytes) \
            and len(record["secret"]) == SECRET_BYTES:
        return record["secret"]
    secret = os.urandom(SECRET_BYTES)
    context.state[SECRET_RECORD] = ConfigRecord({"secret": secret})
    return secret


def client_noise_seed(context: Context, seed: int, partition_id: int,
                      server_round: int) -> int:
    """The 63-bit seed of this client's noise generator in ``server_round``."""
    if noise_mode(context.node_config) == "reproducible":
        return round_seed(seed, partition_id, server_round, 1)
    entropy = int.from_bytes(node_secret(context), "big")
    state = np.random.SeedSequence(entropy, spawn_key=(partition_id, server_round, 1))
    words = state.generate_state(2)
    return int((int(words[0]) << 31) ^ int(words[1])) & ((1 << 63) - 1)
