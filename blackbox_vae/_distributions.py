"""Helpers for ``torch.distributions`` objects, and the Bernoulli log-likelihood and draws of the hot path."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution
from torch.nn.functional import softplus


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


#: Sizes (of the larger side) from which `bernoulli_log_prob` takes a dot product and one softplus on the logits'
#: own shape; below it the one-pass BCE kernel, whose single pass costs less there than the split form's extra
#: operator calls (benchmarks/results/hot_path_tricks.md; the split form pays on evaluation's large chunks).
SPLIT_FROM = 2**15


def bernoulli_log_prob(logits: Tensor, value: Tensor) -> Tensor:
    """sum over the last dimension of log Bernoulli(value; sigmoid(logits)), broadcasting the two.

    ``value`` may be relaxed (in [0, 1]): the expression is linear in it.
    """
    if max(logits.numel(), value.numel()) < SPLIT_FROM:
        # One pass: the ATen op behind F.binary_cross_entropy_with_logits (reduction 0 is "none"), the smaller
        # side expanded to the larger (expand_as: torch.broadcast_shapes runs in Python, slower than the kernel).
        if logits.shape != value.shape:
            try:
                if logits.dim() <= value.dim() and logits.numel() <= value.numel():
                    logits = logits.expand_as(value)
                else:
                    value = value.expand_as(logits)
            except RuntimeError:  # neither side covers the other
                logits, value = torch.broadcast_tensors(logits, value)
        return -torch.binary_cross_entropy_with_logits(logits, value, None, None, 0).sum(-1)
    # log Bernoulli(v; sigmoid(l)) = v l - softplus(l). Summed, v . l is a dot product, a matrix product where
    # one side is shared by the K samples (q(z_1|x)'s logits [B, 1, H], the data [B, 1, D], a prior's [H]), and
    # softplus (exp and log1p, the costly pass) runs on the logits' own shape: once per data point for
    # q(z_1|x), once in all for the prior.
    return _dot_last(logits, value) - softplus(logits).sum(-1)


def _dot_last(a: Tensor, b: Tensor) -> Tensor:
    """sum over the last dimension of ``a * b``, broadcasting, without materializing a side that is expanded."""
    if a.shape == b.shape:
        return (a * b).sum(-1)
    if a.dim() == 1:
        return b @ a
    if b.dim() == 1:
        return a @ b
    if a.dim() == b.dim() and a.dim() >= 2:
        if a.shape[-2] == 1 and a.shape[:-2] == b.shape[:-2]:  # [..., 1, H] against [..., K, H]
            return (b @ a.transpose(-1, -2)).squeeze(-1)
        if b.shape[-2] == 1 and a.shape[:-2] == b.shape[:-2]:
            return (a @ b.transpose(-1, -2)).squeeze(-1)
    return torch.linalg.vecdot(a, b)


def draw_bernoulli(probs: Tensor) -> Tensor:
    """z ~ Bernoulli(probs), elementwise, as 1[u < p] with u ~ U[0, 1): on the CPU the very draws of
    ``torch.bernoulli(probs)`` (the same uniform stream, compared the same way), which runs element by element
    and took 2.9x as long at the shapes of evaluation ([100, 50, 600]: 32 ms against 11 ms on one thread; the
    k = 5000 test bound of the 784-200-200-200 SBN 1.15x faster, benchmarks/results/evaluate_deep_sbn.md)."""
    return (torch.rand_like(probs) < probs).to(probs.dtype)
