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
