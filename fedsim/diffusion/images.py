"""Write a grid of image samples as a PNG (matplotlib, Agg backend)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def save_grid(
    x: torch.Tensor, path: str | Path, ncols: int | None = None, titles: list[str] | None = None
) -> Path:
    """Save images (B, C, H, W) in [-1, 1] (clipped for display) as a grid PNG; returns path."""
    x = x.detach().float().cpu()
    b = x.shape[0]
    ncols = ncols or math.ceil(math.sqrt(b))
    nrows = math.ceil(b / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * 1.0, nrows * 1.1), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < b:
            img = x[i].clamp(-1, 1).permute(1, 2, 0).squeeze(-1).numpy()
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=-1, vmax=1)
            if titles:
                ax.set_title(titles[i], fontsize=6)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
