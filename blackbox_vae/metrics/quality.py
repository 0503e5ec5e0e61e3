"""Sample quality on a feature space: the Fréchet distance (FID) and precision and recall."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["frechet_distance", "precision_recall"]


def _mean_and_covariance(features: Tensor) -> tuple[Tensor, Tensor]:
    features = features.double()
    mean = features.mean(0)
    centred = features - mean
    return mean, centred.T @ centred / (features.shape[0] - 1)


def _sqrt_psd(matrix: Tensor) -> Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix (eigendecomposition)."""
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(real: Tensor, generated: Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to two sets of features, ``real`` ``[N, F]`` and
    ``generated`` ``[M, F]`` (FID).

    ||mu_r - mu_g||^2 + tr(C_r + C_g - 2 (C_r^(1/2) C_g C_r^(1/2))^(1/2)), in float64; the matrix square
    roots by symmetric eigendecomposition (SciPy's sqrtm is not needed for symmetric matrices).

    Raises:
        ValueError: for fewer than two rows, or feature widths that differ.
    """
    if real.dim() != 2 or generated.dim() != 2 or real.shape[1] != generated.shape[1]:
        raise ValueError(f"frechet_distance: expected features [N, F] and [M, F]; got {tuple(real.shape)} and "
                         f"{tuple(generated.shape)}.")
    if real.shape[0] < 2 or generated.shape[0] < 2:
        raise ValueError("frechet_distance: each set needs at least two rows to have a covariance.")
    mean_r, cov_r = _mean_and_covariance(real)
    mean_g, cov_g = _mean_and_covariance(generated)
    root_r = _sqrt_psd(cov_r)
    cross = torch.linalg.eigvalsh(root_r @ cov_g @ root_r).clamp_min(0).sqrt().sum()
    return ((mean_r - mean_g).pow(2).sum() + cov_r.trace() + cov_g.trace() - 2 * cross).clamp_min(0).item()


def _kth_neighbour_radii(features: Tensor, k: int, chunk: int) -> Tensor:
    """Distance from each row to its k-th nearest other row: ``[N]``."""
    radii = []
    for start in range(0, features.shape[0], chunk):
        distances = torch.cdist(features[start:start + chunk], features)  # [chunk, N]
        radii.append(distances.kthvalue(k + 1, dim=1).values)  # the 0 to itself is the first
    return torch.cat(radii)


def _covered(points: Tensor, centres: Tensor, radii: Tensor, chunk: int) -> Tensor:
    """For each point, whether it lies within the radius of some centre: ``[N]`` bool."""
    covered = []
    for start in range(0, points.shape[0], chunk):
        distances = torch.cdist(points[start:start + chunk], centres)  # [chunk, M]
        covered.append((distances <= radii).any(dim=1))
    return torch.cat(covered)


def precision_recall(real: Tensor, generated: Tensor, k: int = 3, chunk: int = 1000) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of generated features against real ones.

    Each set's manifold is the union of balls around its points, each reaching the point's k-th nearest
    neighbour in the same set. Precision: the share of generated points inside the real manifold
    (fidelity). Recall: the share of real points inside the generated manifold (diversity). Distances
    by ``torch.cdist`` in chunks rather than scikit-learn's ``NearestNeighbors``: the coverage test needs
    every point-to-centre distance anyway, and this way it runs on the features' device (the tests check
    it against a scikit-learn version of the definition).

    Args:
        real: ``[N, F]``.
        generated: ``[M, F]``.
        k: the neighbour that sets a ball's radius.
        chunk: rows of distances computed at a time (memory).

    Returns:
        ``(precision, recall)``, each in [0, 1].

    Raises:
        ValueError: for sets of at most ``k`` rows, or feature widths that differ.
    """
    if real.shape[1:] != generated.shape[1:] or min(real.shape[0], generated.shape[0]) <= k:
        raise ValueError(f"precision_recall: expected [N, F] and [M, F] with N, M > k = {k}; got "
                         f"{tuple(real.shape)} and {tuple(generated.shape)}.")
    real, generated = real.float(), generated.float()
    precision = _covered(generated, real, _kth_neighbour_radii(real, k, chunk), chunk).float().mean().item()
    recall = _covered(real, generated, _kth_neighbour_radii(generated, k, chunk), chunk).float().mean().item()
    return precision, recall
