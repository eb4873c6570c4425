"""Round metrics as TensorBoard scalars in RESULTS/tensorboard (torch's SummaryWriter).

A resumed run writes again from the round after its checkpoint: the writer purges the
events of those rounds that the stopped run had logged (``purge_step``), as metrics.jsonl is
truncated, so each round appears once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedsim.tracking.base import require

TB_FOLDER = "tensorboard"


class TensorBoardTracker:
    def __init__(self, run_dir: Path) -> None:
        require("tensorboard")
        self.log_dir = Path(run_dir) / TB_FOLDER
        self._writer = None

    def log_round(self, step: int, metrics: dict[str, float]) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.log_dir),
                                         purge_step=step if step > 0 else None)
        for key, value in metrics.items():
            self._writer.add_scalar(key, value, global_step=step)
        self._writer.flush()

    def finish(self, summary: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
