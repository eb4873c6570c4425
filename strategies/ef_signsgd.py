"""EF-SignSGD: sign compression with error feedback (Karimireddy, Rebjock, Stich & Jaggi,
"Error Feedback Fixes SignSGD and other Gradient Compression Schemes", ICML 2019,
arXiv 1901.09847, Algorithm 1).

Client i keeps a residual e_i in its ``context.state`` (0 at first, kept while it is not
sampled). Per round: E local SGD steps give the step Delta_i = x - y (= gamma g for E = 1);

    p_i = Delta_i + e_i
    send  C(p_i) = (||p_i||_1 / d) * sign(p_i)        # 1 bit per coordinate + one fp32 scale
    e_i  <- p_i - C(p_i)

Server: x <- x - eta * (1/n) sum_i C(p_i) (eta = ``server_lr``, 1 by default: the average of the
compressed steps). sign(0) = +1 as in ``fedsim.comm.sign_codec``, and the residual is formed
from exactly the decoded value, so nothing is lost but delayed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, Message

from fedsim.comm.codec import Codec
from fedsim.comm.sign_codec import ScaledSignCodec
from fedsim.config.fields import setting
from fedsim.tasks.device import to_numpy
from fedsim.tasks.training import sgd_steps
from strategies.client_half import ClientAlgorithm, ClientUpdate, LocalRound
from strategies.coded import CodedStrategy
from strategies.registry import Sampling, StrategySpec, flower_sampling_kwargs
from strategies.stacked_steps import run_stacked_sgd
from strategies.vector import model_vector, record_vector, vector_record

RESIDUAL_KEY = "ef-residual"


@dataclass
class EFSignParams:
    """The server step eta (the client lr and E are in ``[train]``)."""

    server_lr: float = setting(1.0, "server step eta on the mean compressed update", low=0.0,
                               low_open=True)


class EFSignClient(ClientAlgorithm):
    """Local SGD, then scaled sign of (update + residual); the residual stays on the client."""

    def train(self, local: LocalRound) -> ClientUpdate:
        t = local.train
        x = model_vector(local.model)
        loss = sgd_steps(local.model, local.batches, local.steps, t.lr, t.momentum,
                         t.weight_decay)
        p = x - model_vector(local.model)
        if RESIDUAL_KEY in local.state.array_records:
            residual = record_vector(local.state.array_records[RESIDUAL_KEY], device=p.device)
            if residual.numel() == p.numel():
                p = p + residual
        codec = ScaledSignCodec()
        payload = codec.encode(to_numpy(p))
        sent = torch.from_numpy(codec.decode(payload, p.numel())).to(p.device)
        local.state[RESIDUAL_KEY] = vector_record(p - sent)
        return ClientUpdate(ArrayRecord({k: Array(a) for k, a in payload.items()}),
                            {"train-loss": loss})

    def train_many(self, rounds: list[LocalRound], budget_bytes: float) -> \
            list[ClientUpdate] | str:
        """The K clients' local SGD as one computation; P = (x - Y) + R with R the clients'
        residuals stacked from their states (zero rows where a client has none), then each
        client's scaled sign, and its new residual written back to its own state."""
        stacked = run_stacked_sgd(rounds, budget_bytes)
        if isinstance(stacked, str):
            return stacked
        x, y, losses = stacked
        p = x - y
        for k, local in enumerate(rounds):
            if RESIDUAL_KEY in local.state.array_records:
                residual = record_vector(local.state.array_records[RESIDUAL_KEY],
                                         device=p.device)
                if residual.numel() == p.shape[1]:
                    p[k] += residual
        codec = ScaledSignCodec()
        updates = []
        for k, (local, loss) in enumerate(zip(rounds, losses, strict=True)):
            payload = codec.encode(to_numpy(p[k]))
            sent = torch.from_numpy(codec.decode(payload, p.shape[1])).to(p.device)
            local.state[RESIDUAL_KEY] = vector_record(p[k] - sent)
            updates.append(ClientUpdate(ArrayRecord({n: Array(a) for n, a in payload.items()}),
                                        {"train-loss": loss}))
        return updates


class EFSignStrategy(CodedStrategy):
    """Server half: x <- x - eta * mean_i (scale_i * sign_i)."""

    def __init__(self, server_lr: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.server_lr = server_lr

    def reply_codecs(self, msg: Message) -> dict[str, Codec]:
        return {"arrays": ScaledSignCodec()}

    def server_step(self, decoded: list[dict[str, np.ndarray]], replies: list[Message]) -> None:
        self.x = self.x - self.server_lr * np.mean([d["arrays"] for d in decoded], axis=0,
                                                   dtype=np.float64)


def build_server(params: EFSignParams, sampling: Sampling) -> EFSignStrategy:
    return EFSignStrategy(server_lr=params.server_lr, **flower_sampling_kwargs(sampling))


def build_client(params: dict[str, Any]) -> EFSignClient:
    return EFSignClient()


SPEC = StrategySpec("ef_signsgd", "scaled sign with client-side error feedback "
                    "(Karimireddy et al. 2019)", EFSignParams, build_server, build_client)
