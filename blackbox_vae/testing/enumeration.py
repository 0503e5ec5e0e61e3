"""Exact references by enumerating every latent configuration of a small discrete model."""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet

__all__ = [
    "bernoulli_configurations",
    "exact_elbo",
    "exact_log_marginal",
    "exact_iwae_bound",
    "exact_rws_wake_objectives",
    "exact_sleep_phi_objective",
]

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


DEFAULT_MAX_TUPLES = 2**18


def _sample_tuples(n_configurations: int, n_samples: int, max_tuples: int, device) -> Tensor:
    """Every K-tuple of configuration indices: ``[S**K, K]``."""
    size = n_configurations**n_samples
    if size > max_tuples:
        raise ValueError(
            f"{n_samples}-tuples of {n_configurations} latent configurations number {size}, more than "
            f"`max_tuples`={max_tuples}; use fewer latents or samples, or raise the limit."
        )
    index = torch.arange(n_configurations, device=device)
    return torch.cartesian_prod(*[index] * n_samples).reshape(size, n_samples)


def _tuple_scores(inf_net, gen_model, data, configurations, n_samples, max_tuples):
    """Per K-tuple: log q of the tuple ``[batch, T]``, and log q, log p of its members ``[batch, T, K]``."""
    latents = _per_datum(configurations, data.shape[0])
    log_q = inf_net(data).log_prob(latents)  # [batch, S]
    log_p = gen_model(data, latents).log_prob(data, latents)  # [batch, S]
    tuples = _sample_tuples(configurations.shape[0], n_samples, max_tuples, data.device)  # [T, K]
    members_log_q, members_log_p = log_q[:, tuples], log_p[:, tuples]  # [batch, T, K]
    return members_log_q.sum(-1), members_log_q, members_log_p


def exact_iwae_bound(inf_net: InfNet, gen_model: GenModel, data: Tensor, configurations: Tensor, n_samples: int,
                     *, max_tuples: int = DEFAULT_MAX_TUPLES) -> Tensor:
    """E[log (1/K) sum_k p(x, z_k)/q(z_k|x)] over all K-tuples, differentiable: ``[batch]``.

    Args:
        configurations: every latent value, ``[S, *latent_shape]``.
        n_samples: K. The sum runs over S**K tuples.

    Raises:
        ValueError: if S**K exceeds ``max_tuples``.
    """
    tuple_log_q, log_q, log_p = _tuple_scores(inf_net, gen_model, data, configurations, n_samples, max_tuples)
    estimate = torch.logsumexp(log_p - log_q, dim=-1) - math.log(n_samples)  # [batch, T]
    return (tuple_log_q.exp() * estimate).sum(-1)


def exact_rws_wake_objectives(inf_net: InfNet, gen_model: GenModel, data: Tensor, configurations: Tensor,
                              n_samples: int, *, max_tuples: int = DEFAULT_MAX_TUPLES) -> tuple[Tensor, Tensor]:
    """Objectives whose gradients are the exact expected wake updates: ``(wake_theta [batch], wake_phi [batch])``.

    ``d wake_theta / d theta = E[sum_k w~_k grad_theta log p(x, z_k)]`` and
    ``d wake_phi / d phi = E[sum_k w~_k grad_phi log q(z_k|x)]``, the
    expectation over z_1..z_K ~ q taken exactly over all K-tuples, with the
    normalized weights w~ treated as constants as RWS does.
    """
    tuple_log_q, log_q, log_p = _tuple_scores(inf_net, gen_model, data, configurations, n_samples, max_tuples)
    tuple_prob = tuple_log_q.detach().exp()  # [batch, T]
    normalized = torch.softmax((log_p - log_q).detach(), dim=-1)  # [batch, T, K]
    wake_theta = (tuple_prob * (normalized * log_p).sum(-1)).sum(-1)
    wake_phi = (tuple_prob * (normalized * log_q).sum(-1)).sum(-1)
    return wake_theta, wake_phi


def exact_sleep_phi_objective(inf_net: InfNet, gen_model: GenModel, data_configurations: Tensor,
                              configurations: Tensor) -> Tensor:
    """sum_{x, z} p(x, z) log q(z|x) with p held constant: its phi-gradient is the exact expected sleep-phi update.

    Args:
        data_configurations: every data value, ``[Sx, *data_shape]``.
        configurations: every latent value, ``[S, *latent_shape]``.
    """
    latents = _per_datum(configurations, data_configurations.shape[0])  # [Sx, S, ...]
    log_p = gen_model(data_configurations, latents).log_prob(data_configurations, latents)  # [Sx, S]
    log_q = inf_net(data_configurations).log_prob(latents)  # [Sx, S]
    return (log_p.detach().exp() * log_q).sum()
