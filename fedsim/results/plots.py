"""PNG plots of one run or several runs overlaid (matplotlib, headless Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MB = 1e6

# (file name, x key, x label, x scale)
ACCURACY_PLOTS = (
    ("accuracy_vs_round.png", "round", "round", 1.0),
    ("accuracy_vs_uplink.png", "cumulative_uplink_bytes", "cumulative uplink (MB)", MB),
    ("accuracy_vs_simulated_time.png", "cumulative_simulated_seconds", "simulated time (s)",
     1.0),
)


def _series(rows: list[dict[str, Any]], x_key: str, y_key: str, scale: float) -> tuple[
        list[float], list[float]]:
    xs, ys = [], []
    for row in rows:
        x = 0.0 if row.get("round") == 0 and x_key != "round" else row.get(x_key)
        y = row.get(y_key)
        if x is not None and y is not None:
            xs.append(x / scale)
            ys.append(y)
    return xs, ys


def plot_runs(runs: dict[str, list[dict[str, Any]]], out_dir: Path,
              target: float | None = None) -> list[Path]:
    """Central accuracy against round, cumulative uplink and simulated time; one line per run.

    A plot is written only when some run has its x-axis (uplink is metered, time simulated).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, x_key, x_label, scale in ACCURACY_PLOTS:
        lines = {label: _series(rows, x_key, "central_accuracy", scale)
                 for label, rows in runs.items()}
        if not any(len(xs) > 1 for xs, _ in lines.values()):
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for label, (xs, ys) in lines.items():
            ax.plot(xs, ys, marker="o" if len(xs) <= 30 else None, markersize=3, label=label)
        written.append(save_accuracy_plot(fig, ax, out_dir / name, x_label,
                                          "central test accuracy", target, legend_size=8))
    loss_lines = {label: _series(rows, "round", "central_loss", 1.0)
                  for label, rows in runs.items()}
    if any(len(xs) > 1 for xs, _ in loss_lines.values()):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for label, (xs, ys) in loss_lines.items():
            ax.plot(xs, ys, label=label)
        ax.set_xlabel("round")
        ax.set_ylabel("central test loss")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / "loss_vs_round.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    for key, label in TASK_METRIC_PLOTS:
        lines = {name: _series(rows, "round", key, 1.0) for name, rows in runs.items()}
        if any(len(xs) > 1 for xs, _ in lines.values()):
            written.append(_line_plot(lines, out_dir / f"{key}_vs_round.png", label))
    return written


# metrics of the diffusion and DNO tasks plotted against rounds when a run has them
TASK_METRIC_PLOTS = (
    ("sample_quality", "share of samples the held-out classifier labels confidently"),
    ("sample_target_prob", "held-out classifier's p(target digit) of the samples"),
    ("federated_reward", "clients' private reward of the samples"),
    ("noise_z_sq", "mean z^2 of the optimised noise"),
    ("sample_out_of_range", "share of pixels outside the data range [-1, 1]"),
)


def _line_plot(lines: dict[str, tuple[list[float], list[float]]], path: Path,
               y_label: str) -> Path:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, (xs, ys) in lines.items():
        ax.plot(xs, ys, marker="o" if len(xs) <= 30 else None, markersize=3, label=label)
    ax.set_xlabel("round")
    ax.set_ylabel(y_label, fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def save_accuracy_plot(fig: Any, ax: Any, path: Path, x_label: str, y_label: str,
                       target: float | None, legend_size: int = 8) -> Path:
    """Finish an accuracy plot the way every fedsim plot looks (the target as a dotted line,
    accuracy from 0 to 1, a light grid, the legend), write it to ``path`` and close it."""
    if target is not None:
        ax.axhline(target, color="grey", linestyle=":", linewidth=1,
                   label=f"target {target:.0%}")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
