"""PNG files of generated images: one per sample, and a grid."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

from torch import Tensor

__all__ = ["write_images", "infer_image_shape"]


def infer_image_shape(data_shape: Sequence[int], image_shape: Optional[Sequence[int]] = None) -> tuple[int, ...]:
    """The 2-D shape to draw samples of ``data_shape`` with: ``image_shape`` if given, else the data's own shape
    when it is 2-D, else a square when the size is a square number.

    Raises:
        ValueError: when no image shape fits.
    """
    size = math.prod(data_shape)
    if image_shape is not None:
        if math.prod(image_shape) != size:
            raise ValueError(f"`image_shape` {tuple(image_shape)} does not fit samples of {size} values.")
        return tuple(image_shape)
    if len(data_shape) == 2:
        return tuple(data_shape)
    side = math.isqrt(size)
    if side * side != size:
        raise ValueError(f"samples of {size} values are not square images; pass `image_shape` to draw them.")
    return (side, side)


def write_images(samples: Tensor, directory: Path, image_shape: Optional[Sequence[int]] = None) -> None:
    """Writes ``samples [N, *data_shape]`` (values in [0, 1]; dark on light, as the command line's grids) as
    ``directory/00000.png``, ... and ``grid.png``."""
    from blackbox_vae.images import image_grid, write_png

    shape = infer_image_shape(samples.shape[1:], image_shape)
    directory.mkdir(parents=True, exist_ok=True)
    images = samples.detach().cpu().float().clamp(0, 1).reshape(-1, *shape)
    for index, image in enumerate(images):  # whole or not at all, one line naming the path on failure
        write_png(directory / f"{index:05d}.png", image_grid(image.reshape(1, -1), shape))
    write_png(directory / "grid.png", image_grid(images.reshape(len(images), -1), shape))
