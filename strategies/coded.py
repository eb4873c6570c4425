"""Server-half plumbing for strategies whose replies are encoded flat vectors.

:class:`CodedStrategy` is what FedLion, z-SignFedAvg and the sign/momentum baselines share:

- ``configure_train`` remembers the global model as one float64 vector ``self.x`` (layout of
  ``strategies/vector.py``), reads the client learning rate γ from the setup document the
  server sends (the same γ the clients use), and adds the strategy's extra downlink records
  (``downlink_records``, e.g. FedLion's global momentum);
- ``reject_reason`` decodes each reply with the codecs the strategy names
  (``reply_codecs``: ArrayRecord key -> codec) through ``fedsim.comm.validate.decode_checked``;
  a wrong key, length or dtype, NaN/Inf or a truncated bit payload rejects the reply (it is
  counted in the round's ``train_rejected`` and the round goes on with the others);
- ``aggregate_train`` hands the decoded vectors, in partition order, to ``server_step`` (the
  paper's server update, a few lines of numpy in each strategy) and averages the metrics.

The algorithm modules therefore contain only the paper's two halves.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from clients.setup import SETUP_KEY, parse_setup
from fedsim.comm.codec import Codec
from fedsim.comm.records import array_records, metric_records
from fedsim.comm.validate import MalformedPayload, decode_checked
from fedsim.engine.fold import ReplyFold
from strategies.reply_checks import is_train_reply, metrics_reject_reason, model_reply_reject_reason
from strategies.server_half import FedsimStrategyMixin
from strategies.vector import Layout


class ModelRepliesMixin:
    """For Flower's own averaging strategies, whose replies are whole fp32 models that
    ``FedsimStrategyMixin.reject_reason`` already screened: Flower's second consistency pass
    is skipped, and an engine may fold the replies (``engine.fold_replies``)."""

    replies_screened = True  # what Flower's consistency check tests, reject_reason did

    def reply_fold(self) -> ReplyFold:
        """How an engine may sum this round's replies before they arrive: FedAvg's weighted
        average, after this very reply check (``fedsim.engine.fold``)."""
        return ReplyFold(self.weighted_by_key,  # type: ignore[attr-defined]
                         functools.partial(model_reply_reject_reason, layout=self.layout))


class CodedStrategy(FedsimStrategyMixin, FedAvg):
    """Base server half: decode-and-check every reply, then the strategy's ``server_step``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.layout: Layout | None = None
        self.x: np.ndarray | None = None  # global model, float64, layout order
        self.lr: float | None = None  # client learning rate gamma (from the setup document)
        self.local_steps: int | None = None
        self._decoded: dict[int, dict[str, np.ndarray]] = {}

    # -- hooks for the algorithm modules ---------------------------------------------------
    def downlink_records(self) -> dict[str, ArrayRecord]:
        """Extra downlink ArrayRecords beside the model (server state the clients need)."""
        return {}

    def reply_codecs(self, msg: Message) -> dict[str, Codec]:
        """ArrayRecord key -> codec of each payload in a reply."""
        raise NotImplementedError

    def server_step(self, decoded: list[dict[str, np.ndarray]], replies: list[Message]) -> None:
        """Update ``self.x`` (and any server state) from the decoded replies."""
        raise NotImplementedError

    # -- plumbing -------------------------------------------------------------------------
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self.layout = Layout.of(arrays)
        self.x = self.layout.flatten(arrays)
        if SETUP_KEY in config:
            train = parse_setup(str(config[SETUP_KEY])).train
            self.lr, self.local_steps = float(train.lr), int(train.local_steps)
        messages = list(super().configure_train(server_round, arrays, config, grid))
        extra = self.downlink_records()
        for msg in messages:
            for key, record in extra.items():
                msg.content[key] = record
        return messages

    def reject_reason(self, msg: Message) -> str | None:
        if (reason := metrics_reject_reason(msg, self.weighted_by_key)) is not None \
                or not is_train_reply(msg):
            return reason
        if self.layout is None:
            return "no round configured"
        try:
            codecs = self.reply_codecs(msg)
        except (KeyError, TypeError, ValueError) as err:
            return f"cannot read the payload description: {err}"
        decoded = {}
        replied = array_records(msg.content)
        for key, codec in codecs.items():
            if key not in replied:
                return f"missing ArrayRecord {key!r}"
            try:
                decoded[key] = decode_checked(replied[key], codec,
                                              self.layout.size, prefix=key)
            except MalformedPayload as err:
                return str(err)
        self._decoded[id(msg)] = decoded
        return None

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[
            ArrayRecord | None, MetricRecord | None]:
        self._decoded = {}
        kept = self.screen_replies(replies, "train")
        if not kept or self.layout is None:
            return None, None
        self.server_step([self._decoded[id(m)] for m in kept], kept)
        self._decoded = {}
        metrics = self.train_metrics_aggr_fn([m.content for m in kept], self.weighted_by_key)
        return self.layout.unflatten(self.x), metrics


def reply_int_metric(msg: Message, key: str, low: int, high: int) -> int:
    """An integer metric of a reply, checked to lie in [low, high] (ValueError otherwise)."""
    record = next(iter(metric_records(msg.content).values()))
    value = record.get(key)
    if (not isinstance(value, (int, float)) or not math.isfinite(value)
            or value != int(value) or not low <= value <= high):
        raise ValueError(f"metric {key!r} = {value!r} is not an integer in [{low}, {high}]")
    return int(value)
