"""Exact references by enumerating every latent configuration of a small discrete model.

The S configurations of a model's latent space ride on the ``n_samples`` axis,
so every model is scored in one batched call. The K-sample bound and the
expected RWS updates average over K-tuples of configurations; since both are
symmetric in the K samples, the default method sums over multisets (each
weighted by its multinomial coefficient): C(S + K - 1, K) terms instead of S**K.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal, Sequence

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Categorical, Distribution, Independent, OneHotCategorical

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import DistributionInfNet, InfNet

__all__ = [
    "DEFAULT_MAX_CONFIGURATIONS",
    "bernoulli_configurations",
    "categorical_configurations",
    "integer_configurations",
    "configurations_for",
    "exact_elbo",
    "exact_log_marginal",
    "exact_iwae_bound",
    "exact_rws_wake_objectives",
    "exact_sleep_phi_objective",
]

DEFAULT_MAX_CONFIGURATIONS = 2**16
DEFAULT_MAX_TUPLES = 2**18


def _check_size(size: int, limit: int, what: str) -> None:
    if size > limit:
        raise ValueError(f"{what} has {size} joint configurations, more than `max_configurations`={limit}; "
                         "enumerate a smaller model or raise the limit.")


def integer_configurations(cardinalities: Sequence[int], *, max_configurations: int = DEFAULT_MAX_CONFIGURATIONS,
                           dtype: torch.dtype | None = None, device=None) -> Tensor:
    """Every integer code with ``0 <= z_j < cardinalities[j]``: ``[prod(cardinalities), len(cardinalities)]``.

    The codes are in lexicographic order, the last position varying fastest.

    Args:
        cardinalities: the number of values of each position.
        max_configurations: the most codes allowed.
        dtype: of the result (default: torch's default floating-point dtype).
        device (str | torch.device | None): of the result (default: torch's default device).

    Returns:
        the codes, of ``dtype`` on ``device``.

    Raises:
        ValueError: if there are more than ``max_configurations``.
    """
    size = math.prod(cardinalities)
    _check_size(size, max_configurations, f"An integer code with cardinalities {tuple(cardinalities)}")
    grid = list(itertools.product(*[range(c) for c in cardinalities]))
    return torch.tensor(grid, dtype=dtype or torch.get_default_dtype(), device=device).reshape(size, len(cardinalities))


def bernoulli_configurations(n_latents: int, *, max_configurations: int = DEFAULT_MAX_CONFIGURATIONS,
                             dtype: torch.dtype | None = None, device=None) -> Tensor:
    """Every vector in {0, 1}^n_latents: ``[2**n_latents, n_latents]``.

    Args:
        n_latents: the number of binary latents.
        max_configurations: the most vectors allowed.
        dtype: of the result (default: torch's default floating-point dtype).
        device (str | torch.device | None): of the result (default: torch's default device).

    Returns:
        the vectors, of ``dtype`` on ``device``.

    Raises:
        ValueError: if there are more than ``max_configurations``.
    """
    if 2**n_latents > max_configurations:
        _check_size(2**n_latents, max_configurations, f"{n_latents} Bernoulli latents")
    return integer_configurations([2] * n_latents, max_configurations=max_configurations, dtype=dtype, device=device)


def categorical_configurations(n_latents: int, n_classes: int, *, max_configurations: int = DEFAULT_MAX_CONFIGURATIONS,
                               dtype: torch.dtype | None = None, device=None) -> Tensor:
    """Every assignment of ``n_latents`` one-hot categoricals: ``[n_classes**n_latents, n_latents, n_classes]``.

    Args:
        n_latents: the number of categorical latents.
        n_classes: the classes of each.
        max_configurations: the most assignments allowed.
        dtype: of the result (default: torch's default floating-point dtype).
        device (str | torch.device | None): of the result (default: torch's default device).

    Returns:
        the one-hot assignments, of ``dtype`` on ``device``.

    Raises:
        ValueError: if there are more than ``max_configurations``.
    """
    size = n_classes**n_latents
    _check_size(size, max_configurations, f"{n_latents} categorical latents of {n_classes} classes")
    codes = integer_configurations([n_classes] * n_latents, max_configurations=max_configurations,
                                   dtype=torch.long, device=device)
    return torch.nn.functional.one_hot(codes, n_classes).to(dtype or torch.get_default_dtype())


def configurations_for(inf_net: DistributionInfNet, data: Tensor, *,
                       max_configurations: int = DEFAULT_MAX_CONFIGURATIONS) -> Tensor:
    """Every value of a DistributionInfNet's latent, from its distribution: ``[S, *latent_shape]``.

    Supports Bernoulli, OneHotCategorical and Categorical distributions (wrapped in
    ``Independent`` or not), whose latents are independent per element.

    Args:
        inf_net: the inference network; it is run on the first row of ``data`` (which replaces its
            ``params_``) to get the distribution.
        data: ``[batch, *data_shape]``; only its first row is used.
        max_configurations: the most configurations allowed.

    Returns:
        the configurations in the distribution's dtype and on its device (integer codes, in a
        floating-point dtype, for Categorical).

    Raises:
        TypeError: for other distributions (pass configurations explicitly).
        ValueError: if the latent space exceeds ``max_configurations``.
    """
    dist: Distribution = inf_net(data[:1]).params_
    base = dist.base_dist if isinstance(dist, Independent) else dist
    if not isinstance(base, (Bernoulli, OneHotCategorical, Categorical)):
        raise TypeError(f"configurations_for: cannot enumerate a {type(base).__name__}; "
                        "pass configurations explicitly.")
    like = base.logits
    shape = tuple(dist.batch_shape[1:]) + tuple(dist.event_shape)
    if isinstance(base, Bernoulli):
        n = math.prod(shape)
        return bernoulli_configurations(n, max_configurations=max_configurations, dtype=like.dtype,
                                        device=like.device).reshape(-1, *shape)
    if isinstance(base, OneHotCategorical):
        n_classes, n = shape[-1], math.prod(shape[:-1])
        return categorical_configurations(n, n_classes, max_configurations=max_configurations, dtype=like.dtype,
                                          device=like.device).reshape(-1, *shape)
    n_classes, n = like.shape[-1], math.prod(shape)  # Categorical: integer codes
    return integer_configurations([n_classes] * n, max_configurations=max_configurations, dtype=like.dtype,
                                  device=like.device).reshape(-1, *shape)


def _per_datum(configurations: Tensor, batch: int) -> Tensor:
    """The S configurations on the ``n_samples`` axis: ``[batch, S, *latent_shape]``, one batched call."""
    return configurations.unsqueeze(0).expand(batch, *configurations.shape)


def _scores(inf_net: InfNet, gen_model: GenModel, data: Tensor, configurations: Tensor) -> tuple[Tensor, Tensor]:
    """log q and log p of every configuration for every datum: ``[batch, S]`` each."""
    latents = _per_datum(configurations, data.shape[0])
    return inf_net(data).log_prob(latents), gen_model(data, latents).log_prob(data, latents)


def exact_elbo(inf_net: InfNet, gen_model: GenModel, data: Tensor, configurations: Tensor) -> Tensor:
    """sum_z q(z|x) [log p(x, z) - log q(z|x)], differentiable: ``[batch]``.

    Args:
        inf_net: q(z|x).
        gen_model: p(x, z).
        data: ``[batch, *data_shape]``.
        configurations: every latent value, ``[S, *latent_shape]``.
    """
    log_q, log_p = _scores(inf_net, gen_model, data, configurations)
    return (log_q.exp() * (log_p - log_q)).sum(dim=1)


def exact_log_marginal(gen_model: GenModel, data: Tensor, configurations: Tensor) -> Tensor:
    """log p(x) = logsumexp_z log p(x, z), differentiable: ``[batch]``.

    Args:
        gen_model: p(x, z).
        data: ``[batch, *data_shape]``.
        configurations: every latent value, ``[S, *latent_shape]``.
    """
    latents = _per_datum(configurations, data.shape[0])
    log_p = gen_model(data, latents).log_prob(data, latents)  # [batch, S]
    return torch.logsumexp(log_p, dim=1)


Method = Literal["multisets", "tuples"]


def _sample_groups(n_configurations: int, n_samples: int, method: Method, max_tuples: int, device
                   ) -> tuple[Tensor, Tensor]:
    """Index groups ``[T, K]`` and the log of how many ordered K-tuples each stands for ``[T]``."""
    if method == "tuples":
        size = n_configurations**n_samples
    elif method == "multisets":
        size = math.comb(n_configurations + n_samples - 1, n_samples)
    else:
        raise ValueError(f"`method` must be 'multisets' or 'tuples'; got {method!r}.")
    if size > max_tuples:
        raise ValueError(f"{n_samples}-sample groups of {n_configurations} latent configurations number {size} "
                         f"({method}), more than `max_tuples`={max_tuples}; use fewer latents or samples, or raise it.")
    if method == "tuples":
        index = torch.arange(n_configurations, device=device)
        return (torch.cartesian_prod(*[index] * n_samples).reshape(size, n_samples),
                torch.zeros(size, dtype=torch.float64, device=device))
    groups = list(itertools.combinations_with_replacement(range(n_configurations), n_samples))
    # multinomial coefficient K! / prod(multiplicity!) in log space
    log_counts = [math.lgamma(n_samples + 1) - sum(math.lgamma(g.count(i) + 1) for i in set(g)) for g in groups]
    return torch.tensor(groups, device=device), torch.tensor(log_counts, dtype=torch.float64, device=device)


def _group_scores(inf_net, gen_model, data, configurations, n_samples, method, max_tuples):
    """Per group: log of its total probability under q ``[batch, T]``, members' log q and log p ``[batch, T, K]``."""
    log_q, log_p = _scores(inf_net, gen_model, data, configurations)  # [batch, S]
    groups, log_counts = _sample_groups(configurations.shape[0], n_samples, method, max_tuples, data.device)
    members_log_q, members_log_p = log_q[:, groups], log_p[:, groups]  # [batch, T, K]
    return members_log_q.sum(-1) + log_counts.to(log_q.dtype), members_log_q, members_log_p


def exact_iwae_bound(inf_net: InfNet, gen_model: GenModel, data: Tensor, configurations: Tensor, n_samples: int,
                     *, method: Method = "multisets", max_tuples: int = DEFAULT_MAX_TUPLES) -> Tensor:
    """E[log (1/K) sum_k p(x, z_k)/q(z_k|x)] over z_1..z_K ~ q, exactly and differentiably: ``[batch]``.

    Args:
        inf_net: q(z|x).
        gen_model: p(x, z).
        data: ``[batch, *data_shape]``.
        configurations: every latent value, ``[S, *latent_shape]``.
        n_samples: K.
        method: ``"multisets"`` (C(S+K-1, K) terms) or ``"tuples"`` (S**K terms, the definition).
        max_tuples: the most terms allowed.

    Raises:
        ValueError: for an unknown ``method``, or if the number of terms exceeds ``max_tuples``.
    """
    log_group_q, log_q, log_p = _group_scores(inf_net, gen_model, data, configurations, n_samples, method, max_tuples)
    estimate = torch.logsumexp(log_p - log_q, dim=-1) - math.log(n_samples)  # [batch, T]
    return (log_group_q.exp() * estimate).sum(-1)


def exact_rws_wake_objectives(inf_net: InfNet, gen_model: GenModel, data: Tensor, configurations: Tensor,
                              n_samples: int, *, method: Method = "multisets", max_tuples: int = DEFAULT_MAX_TUPLES
                              ) -> tuple[Tensor, Tensor]:
    """Objectives whose gradients are the exact expected wake updates: ``(wake_theta [batch], wake_phi [batch])``.

    ``d wake_theta / d theta = E[sum_k w~_k grad_theta log p(x, z_k)]`` and
    ``d wake_phi / d phi = E[sum_k w~_k grad_phi log q(z_k|x)]``, the
    expectation over z_1..z_K ~ q taken exactly, with the normalized weights
    w~ treated as constants as RWS does.

    Args:
        inf_net: q(z|x).
        gen_model: p(x, z).
        data: ``[batch, *data_shape]``.
        configurations: every latent value, ``[S, *latent_shape]``.
        n_samples: K.
        method: ``"multisets"`` (C(S+K-1, K) terms) or ``"tuples"`` (S**K terms, the definition).
        max_tuples: the most terms allowed.

    Raises:
        ValueError: for an unknown ``method``, or if the number of terms exceeds ``max_tuples``.
    """
    log_group_q, log_q, log_p = _group_scores(inf_net, gen_model, data, configurations, n_samples, method, max_tuples)
    group_prob = log_group_q.detach().exp()  # [batch, T]
    normalized = torch.softmax((log_p - log_q).detach(), dim=-1)  # [batch, T, K]
    wake_theta = (group_prob * (normalized * log_p).sum(-1)).sum(-1)
    wake_phi = (group_prob * (normalized * log_q).sum(-1)).sum(-1)
    return wake_theta, wake_phi


def exact_sleep_phi_objective(inf_net: InfNet, gen_model: GenModel, data_configurations: Tensor,
                              configurations: Tensor) -> Tensor:
    """sum_{x, z} p(x, z) log q(z|x) with p held constant: its phi-gradient is the exact expected sleep-phi update.

    Args:
        inf_net: q(z|x).
        gen_model: p(x, z).
        data_configurations: every data value, ``[Sx, *data_shape]``.
        configurations: every latent value, ``[S, *latent_shape]``.

    Returns:
        a scalar ``[]``.
    """
    latents = _per_datum(configurations, data_configurations.shape[0])  # [Sx, S, ...]
    log_p = gen_model(data_configurations, latents).log_prob(data_configurations, latents)  # [Sx, S]
    log_q = inf_net(data_configurations).log_prob(latents)  # [Sx, S]
    return (log_p.detach().exp() * log_q).sum()
