"""A sigmoid belief network: Bernoulli latents, Bernoulli observations."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli

from blackbox_vae.gen_model import DistributionGenModel
from blackbox_vae.models._mlp import mlp
from blackbox_vae.relaxed import RelaxedBernoulliInfNet

__all__ = ["SBNInfNet", "SBNGenModel"]


class SBNInfNet(RelaxedBernoulliInfNet):
    """q(z|x) = prod_j Bernoulli(z_j; sigmoid(f(x)_j)) with f an MLP (linear by default).

    Exact ``sample``/``log_prob`` for the score-function family (REINFORCE, NVIL,
    VIMCO, RWS), and ``relaxed_rsample(n, temperature=...)`` for Gumbel-softmax.

    Args:
        data_dim: D, observed units.
        latent_dim: H, latent units.
        hidden: widths of deterministic hidden layers of f (``()``: linear).

    Shapes: data ``[batch, D]``, latents ``[batch, n_samples, H]`` (floats in {0, 1}).
    """

    def __init__(self, data_dim: int, latent_dim: int, hidden: Sequence[int] = ()):
        super().__init__()
        self.encoder = mlp(data_dim, hidden, latent_dim)

    def logits(self, data: Tensor) -> Tensor:
        return self.encoder(data)  # [batch, H]


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

    @property
    def output_logits_bias(self) -> Tensor:
        """The ``[D]`` bias of p(x|z)'s logits (`blackbox_vae.models.initialize_output_bias`)."""
        return self.decoder[-1].bias

    def likelihood(self, latents: Tensor) -> Bernoulli:
        return Bernoulli(logits=self.decoder(latents), validate_args=False)  # [*lead, D]
