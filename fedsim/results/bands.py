"""Plots of several settings, each a line (mean over seeds) in a band (mean ± std over seeds).

For accuracy against cumulative uplink, each round's point sits at the seeds' mean cumulative
uplink of that round (the seeds of a setting send nearly the same bytes per round).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fedsim.results.plots import save_accuracy_plot  # noqa: E402
from fedsim.results.spread import MB, spread  # noqa: E402

# (file name, x key, x label, x scale)
BAND_PLOTS = (
    ("accuracy_band_vs_round.png", "round", "round", 1.0),
    ("accuracy_band_vs_uplink.png", "cumulative_uplink_bytes", "cumulative uplink (MB)", MB),
)


def band_series(runs: list[list[dict[str, Any]]], x_key: str, scale: float = 1.0) -> tuple[
        list[float], list[float], list[float]]:
    """(x, mean, std) of central accuracy per round over the runs that evaluated that round;
    x is the round's mean of ``x_key`` (0 at round 0)."""
    by_round: dict[int, tuple[list[float], list[float]]] = {}
    for rows in runs:
        for row in rows:
            acc = row.get("central_accuracy")
            x = 0.0 if row.get("round") == 0 and x_key != "round" else row.get(x_key)
            if acc is None or x is None:
                continue
            xs, ys = by_round.setdefault(row["round"], ([], []))
            xs.append(x / scale)
            ys.append(acc)
    out_x, out_mean, out_std = [], [], []
    for rnd in sorted(by_round):
        xs, ys = by_round[rnd]
        mean, std, _, _ = spread(ys)
        out_x.append(sum(xs) / len(xs))
        out_mean.append(mean)
        out_std.append(std or 0.0)
    return out_x, out_mean, out_std


def plot_bands(groups: dict[str, list[list[dict[str, Any]]]], out_dir: Path,
               target: float | None = None) -> list[Path]:
    """Accuracy against round and against cumulative uplink, one band per setting."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, x_key, x_label, scale in BAND_PLOTS:
        series = {label: band_series(runs, x_key, scale) for label, runs in groups.items()}
        if not any(len(xs) > 1 for xs, _, _ in series.values()):
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for label, (xs, mean, std) in series.items():
            n = len(groups[label])
            (line,) = ax.plot(xs, mean, label=f"{label} (n={n})")
            ax.fill_between(xs, [m - s for m, s in zip(mean, std, strict=True)],
                            [m + s for m, s in zip(mean, std, strict=True)],
                            color=line.get_color(), alpha=0.2, linewidth=0)
        written.append(save_accuracy_plot(
            fig, ax, out_dir / name, x_label, "central test accuracy (mean ± std over seeds)",
            target, legend_size=7))
    return written
