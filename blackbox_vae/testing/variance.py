"""Gradient variance of estimators, for efficiency comparisons."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional

import torch
from torch import Tensor, nn

from blackbox_vae.testing.statistics import gradient_draws

__all__ = ["VarianceReport", "gradient_variance", "compare_variance"]


@dataclass
class VarianceReport:
    """Per-element gradient variance of one estimator, and summaries.

    Attributes:
        names: the parameters measured.
        mean: ``[P]`` mean gradient over the draws.
        variance: ``[P]`` per-element variance (unbiased).
        total: the trace of the gradient's covariance, ``variance.sum()``.
        total_standard_error: the Monte Carlo standard error of ``total``.
        mean_log_variance: mean over elements of ``log variance`` (a scale-free summary).
        n_draws: the number of gradient draws.
    """

    names: list[str]
    mean: Tensor
    variance: Tensor
    total: float
    total_standard_error: float
    mean_log_variance: float
    n_draws: int


def gradient_variance(loss: nn.Module, data: Tensor, n_draws: int = 100, parameters: Optional[str] = None,
                      ) -> VarianceReport:
    """Draws ``n_draws`` gradient estimates of ``loss(data)`` and measures their spread.

    Args:
        loss: a loss object.
        data: the batch, fixed across draws.
        n_draws: independent gradient draws (>= 2).
        parameters: measure only parameters whose name starts with this prefix
            (e.g. ``"inf_net"`` for the inference network); all by default.

    Returns:
        a `VarianceReport`.

    Raises:
        ValueError: if ``n_draws < 2``, or no parameter matches ``parameters``.
    """
    if n_draws < 2:
        raise ValueError(f"gradient_variance: `n_draws` must be >= 2; got {n_draws}.")
    names = [n for n, p in loss.named_parameters() if p.requires_grad and (parameters is None or n.startswith(parameters))]
    if not names:
        raise ValueError(f"gradient_variance: no parameter of the loss starts with {parameters!r}.")
    draws = gradient_draws(loss, data, n_draws, names).double()  # [n_draws, P]
    mean = draws.mean(0)
    variance = draws.var(0)
    # total = mean of d_i = |g_i - mean|^2 * n/(n-1); its standard error from the spread of the d_i.
    squared_deviation = (draws - mean).pow(2).sum(1) * n_draws / (n_draws - 1)  # [n_draws]
    return VarianceReport(
        names=names,
        mean=mean,
        variance=variance,
        total=variance.sum().item(),
        total_standard_error=(squared_deviation.std() / math.sqrt(n_draws)).item(),
        mean_log_variance=variance.clamp_min(torch.finfo(torch.float64).tiny).log().mean().item(),
        n_draws=n_draws,
    )


def compare_variance(losses: Mapping[str, nn.Module], data: Tensor, n_draws: int = 100,
                     parameters: Optional[str] = None) -> dict[str, VarianceReport]:
    """`gradient_variance` for several named losses on the same data: ``{name: report}``.

    Args:
        losses: ``{name: loss object}``.
        data: the batch, the same for every loss and draw.
        n_draws: independent gradient draws per loss (>= 2).
        parameters: measure only parameters whose name starts with this prefix; all by default.

    Raises:
        ValueError: if ``n_draws < 2``, or a loss has no parameter matching ``parameters``.
    """
    return {name: gradient_variance(loss, data, n_draws, parameters) for name, loss in losses.items()}
