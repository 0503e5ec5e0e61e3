"""Small synthetic data sets that need no files."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["correlated_gaussian_2d"]


def correlated_gaussian_2d(n: int, correlation: float = 0.8, scales: tuple[float, float] = (1.0, 0.5),
                           mean: tuple[float, float] = (0.0, 0.0), seed: int = 0) -> Tensor:
    """Draws ``n`` points from a 2-D Gaussian with the given correlation.

    Args:
        n: number of points.
        correlation: in (-1, 1).
        scales: the two standard deviations.
        mean: the mean.
        seed: seed of a private generator (the global RNG is untouched).

    Returns:
        ``[n, 2]`` float32.

    Raises:
        ValueError: if ``n < 1`` or ``correlation`` is not in (-1, 1).
    """
    if n < 1:
        raise ValueError(f"correlated_gaussian_2d: `n` must be >= 1; got {n}.")
    if not -1.0 < correlation < 1.0:
        raise ValueError(f"correlated_gaussian_2d: `correlation` must be in (-1, 1); got {correlation}.")
    s1, s2 = scales
    covariance = torch.tensor([[s1 * s1, correlation * s1 * s2], [correlation * s1 * s2, s2 * s2]])
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, 2, generator=generator)
    return noise @ torch.linalg.cholesky(covariance).T + torch.tensor(mean)
