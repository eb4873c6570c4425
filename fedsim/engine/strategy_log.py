"""``StrategyLog``: what Flower's ``Strategy.start`` reports only in its log, read as objects.

``Strategy.start`` (flwr 1.41, ``flwr/serverapp/strategy/strategy.py``) runs the ServerApp's
central evaluation (``evaluate_fn``) itself and hands its ``MetricRecord`` to nobody but its
log and its ``Result``; it also times itself ("Strategy execution finished in %.2fs"). A
logging handler on Flower's logger gets each record's arguments, the objects themselves, so the
metered grid can put the central metrics in the round's row and compare the strategy's own
time with Flower's simulation, without the ServerApp knowing. Nothing is parsed from text but
the record's format string, which identifies the line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from flwr.supercore.logger import FLOWER_LOGGER

INITIAL_EVALUATION = "Initial global evaluation results: %s"
ROUND_START = "[ROUND %s/%s]"
CENTRAL_EVALUATION = "\t└──> MetricRecord: %s"
FINISHED = "Strategy execution finished in %.2fs"


class StrategyLog(logging.Handler):
    """Follows ``Strategy.start`` in Flower's log while installed (a context manager).

    ``on_central(server_round, metrics)`` receives each central evaluation's metrics;
    ``seconds`` is the strategy's own running time once it finished (None before). With
    ``quiet``, Flower's own console output is held to warnings while installed.
    """

    def __init__(self, on_central: Callable[[int, dict[str, Any]], None],
                 quiet: bool = False) -> None:
        super().__init__(level=logging.INFO)
        self.on_central = on_central
        self.quiet = quiet
        self.seconds: float | None = None
        self.rounds_started = 0
        self._round = 0
        self._saved: tuple[int, list[int]] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        # logging hands a lone Mapping argument (a MetricRecord) over as ``args`` itself
        args = (record.args,) if isinstance(record.args, Mapping) else record.args or ()
        if record.msg == ROUND_START and args:
            self._round = int(args[0])
            self.rounds_started += 1
        elif record.msg in (INITIAL_EVALUATION, CENTRAL_EVALUATION) and args:
            metrics = args[0]
            if isinstance(metrics, Mapping):
                rnd = 0 if record.msg == INITIAL_EVALUATION else self._round
                self.on_central(rnd, dict(metrics.items()))
        elif record.msg == FINISHED and args:
            self.seconds = float(args[0])

    def __enter__(self) -> StrategyLog:
        self._saved = (FLOWER_LOGGER.level, [h.level for h in FLOWER_LOGGER.handlers])
        if self.quiet:
            for handler in FLOWER_LOGGER.handlers:
                handler.setLevel(max(handler.level, logging.WARNING))
        FLOWER_LOGGER.setLevel(logging.INFO)
        FLOWER_LOGGER.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        FLOWER_LOGGER.removeHandler(self)
        if self._saved is not None:
            level, handler_levels = self._saved
            FLOWER_LOGGER.setLevel(level)
            for handler, saved in zip(FLOWER_LOGGER.handlers, handler_levels, strict=False):
                handler.setLevel(saved)
