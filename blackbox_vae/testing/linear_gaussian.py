"""A linear Gaussian model whose ELBO and marginal likelihood have closed forms.

p(z) = N(0, I_H), p(x|z) = N(W z + b, sigma^2 I_D), q(z|x) = N(A x + c, diag(s^2)).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn
from torch.distributions import MultivariateNormal, Normal

from blackbox_vae.gen_model import DistributionGenModel
from blackbox_vae.inf_net import DistributionInfNet

__all__ = [
    "LinearGaussianInfNet",
    "LinearGaussianGenModel",
    "closed_form_elbo",
    "closed_form_log_marginal",
    "closed_form_posterior",
    "quadrature_expectation",
    "quadrature_iwae_bound",
    "quadrature_gradients",
]


class LinearGaussianInfNet(DistributionInfNet):
    """q(z|x) = N(A x + c, diag(exp(2 log_scale))). Latents ``[batch, n_samples, H]``."""

    def __init__(self, data_dim: int, latent_dim: int):
        super().__init__()
        self.linear = nn.Linear(data_dim, latent_dim)
        self.log_scale = nn.Parameter(torch.zeros(latent_dim))

    def distribution(self, data: Tensor) -> Normal:
        loc = self.linear(data)  # [batch, H]
        return Normal(loc, self.log_scale.exp().expand_as(loc))


class LinearGaussianGenModel(DistributionGenModel):
    """p(z) = N(0, I), p(x|z) = N(W z + b, exp(2 log_noise) I)."""

    def __init__(self, data_dim: int, latent_dim: int):
        super().__init__()
        self.linear = nn.Linear(latent_dim, data_dim)
        self.log_noise = nn.Parameter(torch.zeros(()))
        self.register_buffer("prior_loc", torch.zeros(latent_dim))
        self.register_buffer("prior_scale", torch.ones(latent_dim))

    def prior(self) -> Normal:
        return Normal(self.prior_loc, self.prior_scale)

    def likelihood(self, latents: Tensor) -> Normal:
        loc = self.linear(latents)  # [*lead, D]
        return Normal(loc, self.log_noise.exp().expand_as(loc))


def closed_form_elbo(inf_net: LinearGaussianInfNet, gen_model: LinearGaussianGenModel, data: Tensor) -> Tensor:
    """The exact ELBO, differentiable in both models' parameters: ``[batch]``.

    E_q[log p(x|z)] + E_q[log p(z)] + H[q], each in closed form.

    Args:
        inf_net: q(z|x).
        gen_model: p(x, z).
        data: ``[batch, D]``.
    """
    mu = inf_net.linear(data)  # [batch, H]
    var_q = (2 * inf_net.log_scale).exp()  # [H]
    weight, bias = gen_model.linear.weight, gen_model.linear.bias  # [D, H], [D]
    noise_var = (2 * gen_model.log_noise).exp()
    data_dim, latent_dim = weight.shape
    residual = data - mu @ weight.T - bias  # [batch, D]
    trace = (weight.pow(2) * var_q).sum()  # tr(W diag(var_q) W^T)
    expected_log_likelihood = -0.5 * data_dim * torch.log(2 * math.pi * noise_var) - 0.5 * (
        residual.pow(2).sum(-1) + trace
    ) / noise_var
    expected_log_prior = -0.5 * latent_dim * math.log(2 * math.pi) - 0.5 * (mu.pow(2).sum(-1) + var_q.sum())
    entropy = 0.5 * (latent_dim * (1 + math.log(2 * math.pi)) + torch.log(var_q).sum())
    return expected_log_likelihood + expected_log_prior + entropy


def closed_form_log_marginal(gen_model: LinearGaussianGenModel, data: Tensor) -> Tensor:
    """log p(x) = log N(x; b, W W^T + sigma^2 I): ``[batch]``.

    Args:
        gen_model: p(x, z).
        data: ``[batch, D]``.
    """
    weight, bias = gen_model.linear.weight, gen_model.linear.bias
    noise_var = (2 * gen_model.log_noise).exp()
    covariance = weight @ weight.T + noise_var * torch.eye(weight.shape[0], dtype=weight.dtype, device=weight.device)
    return MultivariateNormal(bias, covariance_matrix=covariance).log_prob(data)


def closed_form_posterior(gen_model: LinearGaussianGenModel, data: Tensor) -> MultivariateNormal:
    """The exact posterior p(z|x) = N(S W^T (x - b) / sigma^2, S), S = (I + W^T W / sigma^2)^-1: batch ``[batch]``.

    Args:
        gen_model: p(x, z).
        data: ``[batch, D]``.

    Returns:
        a ``MultivariateNormal`` of batch shape ``[batch]`` and event shape ``[H]``.
    """
    weight, bias = gen_model.linear.weight, gen_model.linear.bias  # [D, H], [D]
    noise_var = (2 * gen_model.log_noise).exp()
    eye = torch.eye(weight.shape[1], dtype=weight.dtype, device=weight.device)
    covariance = torch.linalg.inv(eye + weight.T @ weight / noise_var)  # [H, H]
    mean = (data - bias) @ (covariance @ weight.T / noise_var).T  # [batch, H]
    return MultivariateNormal(mean, covariance_matrix=covariance.expand(data.shape[0], -1, -1))


def quadrature_expectation(inf_net: DistributionInfNet, data: Tensor, n_samples: int,
                           function: Callable[[Tensor], Tensor], n_nodes: int = 40, max_points: int = 2**20) -> Tensor:
    """E[function(z_1, ..., z_K)] over z_k ~ q(z|x) i.i.d., for a diagonal-Gaussian q, by Gauss-Hermite quadrature.

    Integrates over the K standard-normal noises of z_k = loc + scale * eps_k on a tensor grid of
    ``n_nodes`` points per dimension, so the result is differentiable along the sampling path (as a
    reparameterized estimator is) and in whatever ``function`` computes from the parameters. Exact to
    quadrature precision, far below Monte Carlo error for smooth integrands such as those of the
    linear Gaussian model.

    Args:
        inf_net: q(z|x), whose distribution must be a ``Normal`` with latents ``[batch, n_samples, H]``.
        data: ``[batch, *data_shape]``.
        n_samples: K.
        function: maps latents ``[batch, G * K, H]`` (G grid points, the K samples of each adjacent)
            to values ``[batch, G]``.
        n_nodes: quadrature nodes per dimension.
        max_points: the most grid points allowed.

    Returns:
        ``[batch]``.

    Raises:
        TypeError: unless q is a ``torch.distributions.Normal``.
        ValueError: if the grid (n_nodes ** (latent_dim * K) points) exceeds ``max_points``.
    """
    import numpy as np  # only the quadrature helpers need it

    q = inf_net(data).params_
    if not isinstance(q, Normal):
        raise TypeError(f"quadrature_expectation needs q to be a Normal; got {type(q).__name__}.")
    loc, scale = q.loc, q.scale  # [batch, H]
    latent_dim = loc.shape[1]
    dims = latent_dim * n_samples
    if n_nodes**dims > max_points:
        raise ValueError(f"quadrature_expectation: {n_nodes}**{dims} grid points exceed `max_points`={max_points}.")
    nodes, weights = np.polynomial.hermite_e.hermegauss(n_nodes)  # for the weight exp(-x^2 / 2)
    nodes = torch.as_tensor(nodes, dtype=loc.dtype, device=loc.device)
    weights = torch.as_tensor(weights / math.sqrt(2 * math.pi), dtype=loc.dtype, device=loc.device)
    grid = torch.cartesian_prod(*[nodes] * dims).reshape(-1, n_samples, latent_dim)  # [G, K, H]
    grid_weights = torch.cartesian_prod(*[weights] * dims).reshape(-1, dims).prod(-1)  # [G]
    batch, points = loc.shape[0], grid.shape[0]
    latents = (loc[:, None, None, :] + scale[:, None, None, :] * grid).reshape(batch, points * n_samples, latent_dim)
    return (function(latents) * grid_weights).sum(-1)


def quadrature_iwae_bound(inf_net: DistributionInfNet, gen_model: DistributionGenModel, data: Tensor,
                          n_samples: int, n_nodes: int = 40, max_points: int = 2**20) -> Tensor:
    """E[log (1/K) sum_k w_k] for a diagonal-Gaussian q by Gauss-Hermite quadrature, differentiable: ``[batch]``.

    `quadrature_expectation` of the K-sample bound, so its gradient is the exact expectation of the
    reparameterized IWAE gradient (to quadrature precision). Works for any GenModel.

    Args:
        inf_net: q(z|x), whose distribution must be a ``Normal`` with latents ``[batch, n_samples, H]``.
        gen_model: p(x, z).
        data: ``[batch, *data_shape]``.
        n_samples: K.
        n_nodes: quadrature nodes per dimension.
        max_points: the most grid points allowed.

    Raises:
        TypeError: unless q is a ``torch.distributions.Normal``.
        ValueError: if the grid (n_nodes ** (latent_dim * K) points) exceeds ``max_points``.
    """

    def bound(latents: Tensor) -> Tensor:  # [batch, G * K, H] -> [batch, G]
        log_w = gen_model(data, latents).log_prob(data, latents) - inf_net.log_prob(latents)  # [batch, G * K]
        return torch.logsumexp(log_w.reshape(data.shape[0], -1, n_samples), dim=-1) - math.log(n_samples)

    return quadrature_expectation(inf_net, data, n_samples, bound, n_nodes, max_points)


def quadrature_gradients(inf_net: DistributionInfNet, gen_model: DistributionGenModel, data: Tensor, n_samples: int,
                         module: nn.Module, n_nodes: int = 40) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The exact gradient of ``-E[L_K]`` (mean over the batch) for ``module``'s parameters, and its numerical error.

    Evaluates `quadrature_iwae_bound` with ``n_nodes`` and with half as many again, and reports
    the larger rule's gradient with the absolute difference as its error, ready for
    ``assert_unbiased(..., reference_error=error)``.

    Args:
        inf_net: q(z|x), as for `quadrature_iwae_bound`.
        gen_model: p(x, z).
        data: ``[batch, *data_shape]``.
        n_samples: K.
        module: the module whose parameters to differentiate (e.g. ``inf_net``).
        n_nodes: quadrature nodes per dimension of the coarser rule.

    Returns:
        ``(gradients, errors)``, both ``{parameter name: tensor}``.

    Raises:
        TypeError: unless q is a ``torch.distributions.Normal``.
        ValueError: if a quadrature grid is too large (see `quadrature_iwae_bound`).
    """
    from blackbox_vae.testing.statistics import gradients  # avoid a cycle at import time

    coarse = gradients(-quadrature_iwae_bound(inf_net, gen_model, data, n_samples, n_nodes).mean(), module)
    fine_nodes = n_nodes + n_nodes // 2
    fine = gradients(-quadrature_iwae_bound(inf_net, gen_model, data, n_samples, fine_nodes,
                                            max_points=max(2**20, fine_nodes ** (n_samples * 2))).mean(), module)
    return fine, {name: (fine[name] - coarse[name]).abs() for name in fine}
