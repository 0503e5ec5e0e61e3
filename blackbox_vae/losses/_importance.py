"""Log-space helpers for importance-weighted bounds, over the sample axis (dim 1)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def log_mean_exp(log_weights: Tensor) -> Tensor:
    """log (1/K) sum_k exp(w_k): ``[batch, K] -> [batch]``, the K-sample bound's estimate."""
    return torch.logsumexp(log_weights, dim=1) - math.log(log_weights.shape[1])


def log_sum_exp_others(log_weights: Tensor) -> Tensor:
    """log sum_{j != k} exp(w_j) for every k: ``[batch, K] -> [batch, K]``, in O(K).

    Built from exclusive prefix and suffix ``logcumsumexp``, so no term is ever
    subtracted from a sum: ``log(S - exp(w_k))`` would cancel catastrophically
    when sample k carries most of the weight, and the K x K masked alternative
    costs O(K^2) time and memory.
    """
    batch, k = log_weights.shape
    pad = log_weights.new_full((batch, 1), -math.inf)
    prefix = torch.cat([pad, torch.logcumsumexp(log_weights, dim=1)[:, :-1]], dim=1)  # lse(w_0..w_{k-1})
    suffix = torch.cat([torch.logcumsumexp(log_weights.flip(1), dim=1).flip(1)[:, 1:], pad], dim=1)  # lse(w_{k+1}..)
    return torch.logaddexp(prefix, suffix)


# Up to this K the K x K form is cheaper: a handful of kernels against the prefix/suffix scans' dozen, and
# its K^2 memory is a few dozen numbers per data point. Above it, the O(K) form.
_SMALL_K = 8


def log_mean_exp_replacing_each(log_weights: Tensor, replacements: Tensor) -> Tensor:
    """log (1/K) (sum_{j != k} exp(w_j) + exp(r_k)) for every k: ``[batch, K], [batch, K] -> [batch, K]``.

    The K-sample bound with sample k's weight replaced by ``r_k`` (VIMCO's leave-one-out bounds). O(K)
    time and memory per data point for K > 8 (through `log_sum_exp_others`); for K <= 8 a masked
    K x K matrix, which takes fewer kernels. Neither subtracts a term from a sum.
    """
    k = log_weights.shape[1]
    if k <= _SMALL_K:
        diagonal = torch.eye(k, dtype=torch.bool, device=log_weights.device)  # [K, K]: row k replaces w_k
        rows = torch.where(diagonal, replacements.unsqueeze(2), log_weights.unsqueeze(1))  # [batch, K, K]
        return torch.logsumexp(rows, dim=2) - math.log(k)
    return torch.logaddexp(log_sum_exp_others(log_weights), replacements) - math.log(k)
