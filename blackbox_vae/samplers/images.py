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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from blackbox_vae.cli.files import write_atomically
    from blackbox_vae.cli.plots import image_grid

    shape = infer_image_shape(samples.shape[1:], image_shape)
    directory.mkdir(parents=True, exist_ok=True)
    images = samples.detach().cpu().float().clamp(0, 1).reshape(-1, *shape)
    def write(path: Path, array) -> None:  # whole or not at all, with one line naming the path on failure
        write_atomically(path, lambda handle: plt.imsave(handle, array, format="png", cmap="gray_r", vmin=0.0,
                                                         vmax=1.0))

    for index, image in enumerate(images):
        write(directory / f"{index:05d}.png", image.numpy())
    write(directory / "grid.png", image_grid(images.reshape(len(images), -1), shape).numpy())
