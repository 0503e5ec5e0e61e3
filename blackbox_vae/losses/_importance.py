"""Log-space helpers for importance-weighted bounds, over the sample axis (dim 1)."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn.functional import softplus


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


def vimco_learning_signals(log_weights: Tensor) -> Tensor:
    """VIMCO's learning signals L - L^{-k}: ``[batch, K] -> [batch, K]``, for K >= 2 (no gradient).

    L is the K-sample bound log (1/K) sum_j w_j, and L^{-k} the same bound with w_k replaced by the
    geometric mean of the other weights, g_k = (1/(K-1)) sum_{j != k} log w_j. With A_k the log-sum-exp of
    the other weights, L = A_k + softplus(w_k - A_k) - log K and likewise for L^{-k}, so

        L - L^{-k} = softplus(w_k - A_k) - softplus(g_k - A_k),

    computed without ever forming L or L^{-k}: those are of the size of |log w| (hundreds of nats) while
    their difference is of the size of 1/K, and subtracting them loses every digit of it in float32 at
    large K. The log-weights are first shifted by their detached row maximum (the signals do not depend on
    a shift), so A_k is of the size of log K, not of |log w|. O(K) time and memory per data point
    (`log_sum_exp_others`).
    """
    log_weights = log_weights.detach()
    log_weights = log_weights - log_weights.max(dim=1, keepdim=True).values  # [batch, K], max 0
    k = log_weights.shape[1]
    others = log_sum_exp_others(log_weights)  # [batch, K]: A_k
    geometric_mean_others = (log_weights.sum(dim=1, keepdim=True) - log_weights) / (k - 1)  # [batch, K]: g_k
    return softplus(log_weights - others) - softplus(geometric_mean_others - others)
