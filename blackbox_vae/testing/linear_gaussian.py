"""A linear Gaussian model whose ELBO and marginal likelihood have closed forms.

p(z) = N(0, I_H), p(x|z) = N(W z + b, sigma^2 I_D), q(z|x) = N(A x + c, diag(s^2)).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import MultivariateNormal, Normal

from blackbox_vae.gen_model import DistributionGenModel
from blackbox_vae.inf_net import DistributionInfNet

__all__ = ["LinearGaussianInfNet", "LinearGaussianGenModel", "closed_form_elbo", "closed_form_log_marginal"]


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
    """log p(x) = log N(x; b, W W^T + sigma^2 I): ``[batch]``."""
    weight, bias = gen_model.linear.weight, gen_model.linear.bias
    noise_var = (2 * gen_model.log_noise).exp()
    covariance = weight @ weight.T + noise_var * torch.eye(weight.shape[0], dtype=weight.dtype, device=weight.device)
    return MultivariateNormal(bias, covariance_matrix=covariance).log_prob(data)
