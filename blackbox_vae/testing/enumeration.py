"""Exact references by enumerating every latent configuration of a small discrete model."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet

__all__ = ["bernoulli_configurations", "exact_elbo", "exact_log_marginal"]

DEFAULT_MAX_CONFIGURATIONS = 2**16


def bernoulli_configurations(
    n_latents: int,
    *,
    max_configurations: int = DEFAULT_MAX_CONFIGURATIONS,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Every vector in {0, 1}^n_latents: ``[2**n_latents, n_latents]``.

    Raises:
        ValueError: if there are more than ``max_configurations`` of them.
    """
    size = 2**n_latents
    if size > max_configurations:
        raise ValueError(
            f"bernoulli_configurations: {n_latents} Bernoulli latents have {size} joint configurations, more than "
            f"`max_configurations`={max_configurations}; enumerate a smaller model or raise the limit."
        )
    return torch.tensor(list(itertools.product((0.0, 1.0), repeat=n_latents)), dtype=dtype, device=device)


def _per_datum(configurations: Tensor, batch: int) -> Tensor:
    """The S configurations on the ``n_samples`` axis: ``[batch, S, *latent_shape]``, one batched call."""
    return configurations.unsqueeze(0).expand(batch, *configurations.shape)


def exact_elbo(inf_net: InfNet, gen_model: GenModel, data: Tensor, configurations: Tensor) -> Tensor:
    """sum_z q(z|x) [log p(x, z) - log q(z|x)], differentiable: ``[batch]``.

    Args:
        configurations: every latent value, ``[S, *latent_shape]``.
    """
    latents = _per_datum(configurations, data.shape[0])
    log_q = inf_net(data).log_prob(latents)  # [batch, S]
    log_p = gen_model(data, latents).log_prob(data, latents)  # [batch, S]
    return (log_q.exp() * (log_p - log_q)).sum(dim=1)


def exact_log_marginal(gen_model: GenModel, data: Tensor, configurations: Tensor) -> Tensor:
    """log p(x) = logsumexp_z log p(x, z), differentiable: ``[batch]``."""
    latents = _per_datum(configurations, data.shape[0])
    log_p = gen_model(data, latents).log_prob(data, latents)  # [batch, S]
    return torch.logsumexp(log_p, dim=1)
