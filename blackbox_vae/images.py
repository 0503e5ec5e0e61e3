"""Image grids and PNG files, for samplers, callbacks and the command line alike.

Nothing here chooses a matplotlib backend: the files are written by ``matplotlib.image.imsave``, which draws
no figure, so a notebook user's backend stays theirs (the command line's figures, in `blackbox_vae.cli.plots`,
select the file-only "Agg" backend for themselves).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor

__all__ = ["image_grid", "write_png"]


def image_grid(images: Tensor, image_shape: Sequence[int], columns: Optional[int] = None) -> Tensor:
    """Flattened images ``[n, prod(image_shape)]`` tiled into one array with 1-pixel gaps: ``[rows*h, columns*w]``
    for ``image_shape`` ``(H, W)`` or ``(1, H, W)``, ``[rows*h, columns*w, 3]`` (RGB) for ``(3, H, W)``."""
    channels, height, width = (1, *image_shape) if len(image_shape) == 2 else tuple(image_shape)
    n = images.shape[0]
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = torch.full((rows * (height + 1) - 1, columns * (width + 1) - 1, channels), 0.3)  # light-grey gaps
    for index, image in enumerate(images.reshape(n, channels, height, width).float().cpu()):
        r, c = divmod(index, columns)
        grid[r * (height + 1): r * (height + 1) + height, c * (width + 1): c * (width + 1) + width] = \
            image.permute(1, 2, 0)
    return grid[..., 0] if channels == 1 else grid


def write_png(path: Path, image: Tensor) -> None:
    """Writes ``image`` (``[H, W]`` grey, dark on light as the command line's grids; or ``[H, W, 3]`` RGB; values
    in [0, 1]) as a PNG, whole or not at all (`blackbox_vae.cli.files.write_atomically`).

    Raises:
        RunFileError: naming the path and the cause.
    """
    from matplotlib.image import imsave

    from blackbox_vae.cli.files import write_atomically

    array = image.detach().float().cpu().clamp(0, 1).numpy()
    options = dict(cmap="gray_r", vmin=0.0, vmax=1.0) if array.ndim == 2 else {}
    write_atomically(Path(path), lambda handle: imsave(handle, array, format="png", **options))
