"""A sigmoid belief network: Bernoulli latents, Bernoulli observations."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli

from blackbox_vae.gen_model import DistributionGenModel
from blackbox_vae.inf_net import DistributionInfNet
from blackbox_vae.models._mlp import mlp

__all__ = ["SBNInfNet", "SBNGenModel"]


class SBNInfNet(DistributionInfNet):
    """q(z|x) = prod_j Bernoulli(z_j; sigmoid(f(x)_j)) with f an MLP (linear by default).

    Args:
        data_dim: D, observed units.
        latent_dim: H, latent units.
        hidden: widths of deterministic hidden layers of f (``()``: linear).

    Shapes: data ``[batch, D]``, latents ``[batch, n_samples, H]`` (floats in {0, 1}).
    """

    def __init__(self, data_dim: int, latent_dim: int, hidden: Sequence[int] = ()):
        super().__init__()
        self.encoder = mlp(data_dim, hidden, latent_dim)

    def distribution(self, data: Tensor) -> Bernoulli:
        return Bernoulli(logits=self.encoder(data), validate_args=False)  # batch_shape [batch, H]


class SBNGenModel(DistributionGenModel):
    """p(z) = prod_j Bernoulli(z_j; sigmoid(b_j)), p(x|z) = prod_i Bernoulli(x_i; sigmoid(g(z)_i)).

    Args:
        data_dim: D, observed units.
        latent_dim: H, latent units.
        hidden: widths of deterministic hidden layers of g (``()``: linear, the classic SBN).

    Shapes: data ``[batch, D]``, latents ``[batch, n_samples, H]``.
    """

    def __init__(self, data_dim: int, latent_dim: int, hidden: Sequence[int] = ()):
        super().__init__()
        self.prior_logits = nn.Parameter(torch.zeros(latent_dim))
        self.decoder = mlp(latent_dim, hidden, data_dim)

    def prior(self) -> Bernoulli:
        return Bernoulli(logits=self.prior_logits, validate_args=False)  # batch_shape [H]

    def likelihood(self, latents: Tensor) -> Bernoulli:
        return Bernoulli(logits=self.decoder(latents), validate_args=False)  # [*lead, D]
