"""Helpers for the convenience path that wraps ``torch.distributions`` objects."""

from __future__ import annotations

from torch import Tensor
from torch.distributions import Distribution


def sum_to_leading(log_prob: Tensor, n_leading: int) -> Tensor:
    """Sums ``log_prob`` over all but its first ``n_leading`` dimensions."""
    if log_prob.dim() == n_leading:
        return log_prob
    return log_prob.sum(dim=tuple(range(n_leading, log_prob.dim())))


def check_distribution(dist: object, where: str) -> Distribution:
    """Raises a clear TypeError unless ``dist`` is a torch (or Pyro) Distribution."""
    if not isinstance(dist, Distribution):
        raise TypeError(
            f"`{where}` must return a torch.distributions.Distribution (Pyro distributions are ones too); "
            f"got {type(dist).__name__}."
        )
    return dist


def shape_of(dist: Distribution) -> tuple[int, ...]:
    """The full shape of one draw: ``batch_shape + event_shape``."""
    return tuple(dist.batch_shape) + tuple(dist.event_shape)
