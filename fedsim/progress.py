"""A per-round progress bar fed by metrics.jsonl, so it works for every engine.

The ServerApp may run in this process, in Flower's simulation process or on a remote
SuperLink; in every case it appends one line per round to the results folder, which this
watcher tails from a background thread.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from tqdm import tqdm

from fedsim.results.writer import MetricsTail


def _describe(row: dict) -> dict[str, str]:
    shown = {}
    if row.get("central_accuracy") is not None:
        shown["acc"] = f"{row['central_accuracy']:.3f}"
    for key, name in (("sample_quality", "quality"), ("federated_reward", "reward"),
                      ("noise_z_sq", "z2")):
        if row.get(key) is not None:
            shown[name] = f"{row[key]:.3f}"
    if row.get("central_loss") is not None:
        shown["loss"] = f"{row['central_loss']:.3f}"
    if row.get("cumulative_uplink_bytes") is not None:
        shown["up"] = f"{row['cumulative_uplink_bytes'] / 1e6:.2f}MB"
    return shown


class RoundProgress:
    """Shows rounds done with the latest accuracy and loss until ``stop`` is called."""

    def __init__(self, run_dir: Path, total_rounds: int, interval: float = 0.25) -> None:
        self.run_dir = run_dir
        self.total = total_rounds
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._tty = sys.stderr.isatty()
        self._bar = tqdm(total=total_rounds, unit="round", desc="fedsim", dynamic_ncols=True,
                         disable=not self._tty)
        self._tail = MetricsTail(run_dir)
        self._shown_round = 0

    def start(self) -> RoundProgress:
        self._thread.start()
        return self

    def _update(self) -> None:
        for row in self._tail.new_rows():
            if row.get("round", 0) <= self._shown_round:
                continue  # round 0, or rounds shown before a resume truncated the file
            self._shown_round = row["round"]
            shown = _describe(row)
            if self._tty:
                self._bar.set_postfix(shown, refresh=False)
                self._bar.update(1)
            else:
                extra = " ".join(f"{k} {v}" for k, v in shown.items())
                print(f"round {row['round']}/{self.total} {extra}", file=sys.stderr, flush=True)

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self._update()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._update()
        self._bar.close()
