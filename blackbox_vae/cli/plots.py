"""Figures written by the command line: the loss curve and image grids."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # the command line's figures: files only, no display (the library's images choose none)

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from blackbox_vae.images import image_grid  # noqa: E402  (here too, for the command line's callers)

__all__ = ["plot_loss_curve", "image_grid", "save_image_grids", "save_scatter"]


def save_figure(figure, path: Path) -> None:
    """Writes a figure whole or not at all (`write_atomically`), in the format of ``path``'s suffix, and closes it.

    Raises:
        RunFileError: naming the path and the cause (no space left on the device, a read-only directory, ...).
    """
    from blackbox_vae.cli.files import write_atomically

    path = Path(path)
    try:
        write_atomically(path, lambda handle: figure.savefig(handle, format=path.suffix[1:] or "png", dpi=120))
    finally:
        plt.close(figure)


def plot_loss_curve(history: Sequence[float], metrics: list[dict], path: Path, title: str) -> None:
    """The training objective per step (and its moving average) and the validation bound, in nats."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    bounds = -torch.tensor(history, dtype=torch.float64)
    if len(bounds):
        window = max(1, min(100, len(bounds) // 20))
        axis.plot(range(1, len(bounds) + 1), bounds.numpy(), lw=0.3, alpha=0.35, label="training bound, per step")
        smoothed = bounds.unfold(0, window, 1).mean(1)
        axis.plot(range(window, len(bounds) + 1), smoothed.numpy(), lw=1.2, label=f"training bound, mean of {window}")
    valid = [(row["step"], row["valid_bound"]) for row in metrics if row.get("valid_bound") not in (None, "")]
    if valid:
        steps, values = zip(*valid)
        axis.plot(steps, values, "o-", ms=4, label="validation bound")
        low = min(min(values), smoothed.min().item() if len(bounds) else min(values))
        axis.set_ylim(bottom=low - 0.1 * (abs(low) + 1))
    axis.set(xlabel="step", ylabel="bound (nats, higher is better)", title=title)
    axis.legend()
    figure.tight_layout()
    save_figure(figure, path)


def save_image_grids(panels: list[tuple[str, Tensor]], image_shape: Sequence[int], path: Path, *,
                     columns: Optional[int] = None, title: Optional[str] = None,
                     panel_size: tuple[float, float] = (4.5, 4.8)) -> None:
    """Grids of images, one per (title, images) panel: ``columns`` panels to a row (default: all in one row),
    under an optional overall ``title``; ``panel_size`` is one panel's (width, height) in inches."""
    columns = columns or len(panels)
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(panel_size[0] * columns, panel_size[1] * rows),
                                squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, (panel_title, images) in zip(axes.flat, panels):
        grid = image_grid(images, image_shape)
        if grid.dim() == 3:  # colour images as they are (values in [0, 1])
            axis.imshow(grid.clamp(0, 1).numpy(), interpolation="nearest")
        else:
            axis.imshow(grid.numpy(), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        axis.set_title(panel_title)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    save_figure(figure, path)


def save_scatter(panels: list[tuple[str, Tensor]], path: Path) -> None:
    """2-D points, one colour per (label, points) panel, on one axis."""
    figure, axis = plt.subplots(figsize=(5.5, 5))
    for label, points in panels:
        axis.scatter(*points[:, :2].float().cpu().numpy().T, s=3, alpha=0.4, label=label)
    axis.set(aspect="equal", title="samples")
    axis.legend(markerscale=4)
    figure.tight_layout()
    save_figure(figure, path)
