"""A Gaussian MLP VAE: Gaussian latents, Gaussian or Bernoulli observations."""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Normal
from torch.nn.functional import softplus

from blackbox_vae.gen_model import DistributionGenModel
from blackbox_vae.inf_net import DistributionInfNet
from blackbox_vae.models._mlp import mlp

__all__ = ["GaussianMLPInfNet", "GaussianMLPGenModel"]

# Keeps scales away from zero so that log-densities stay finite.
_MIN_SCALE = 1e-4


class GaussianMLPInfNet(DistributionInfNet):
    """q(z|x) = N(z; mu(x), diag(sigma(x)^2)), one MLP emitting both.

    Reparameterizable, so it serves ``ELBOLoss`` as well as the score-function losses.

    Args:
        data_dim: D.
        latent_dim: H.
        hidden: hidden-layer widths of the MLP.

    Shapes: data ``[batch, D]``, latents ``[batch, n_samples, H]``.
    """

    def __init__(self, data_dim: int, latent_dim: int, hidden: Sequence[int] = (200, 200)):
        super().__init__()
        self.encoder = mlp(data_dim, hidden, 2 * latent_dim)

    def distribution(self, data: Tensor) -> Normal:
        loc, raw_scale = self.encoder(data).chunk(2, dim=-1)  # [batch, H] each
        return Normal(loc, softplus(raw_scale) + _MIN_SCALE, validate_args=False)


class GaussianMLPGenModel(DistributionGenModel):
    """p(z) = N(0, I), p(x|z) = N(x; mu(z), diag(sigma^2)) or Bernoulli(x; sigmoid(f(z))).

    Args:
        data_dim: D.
        latent_dim: H.
        hidden: hidden-layer widths of the decoder MLP.
        likelihood: ``"gaussian"`` (a learned per-dimension scale) or ``"bernoulli"``.

    Shapes: data ``[batch, D]``, latents ``[batch, n_samples, H]``.
    """

    def __init__(
        self,
        data_dim: int,
        latent_dim: int,
        hidden: Sequence[int] = (200, 200),
        likelihood: Literal["gaussian", "bernoulli"] = "gaussian",
    ):
        super().__init__()
        if likelihood not in ("gaussian", "bernoulli"):
            raise ValueError(f"GaussianMLPGenModel: `likelihood` must be 'gaussian' or 'bernoulli'; got {likelihood!r}.")
        self.likelihood_kind = likelihood
        self.decoder = mlp(latent_dim, hidden, data_dim)
        if likelihood == "gaussian":
            self.raw_scale = nn.Parameter(torch.zeros(data_dim))
        # Buffers, so the prior follows .to(device) and .double().
        self.register_buffer("prior_loc", torch.zeros(latent_dim))
        self.register_buffer("prior_scale", torch.ones(latent_dim))

    def prior(self) -> Normal:
        return Normal(self.prior_loc, self.prior_scale, validate_args=False)  # batch_shape [H]

    def likelihood(self, latents: Tensor) -> Distribution:
        out = self.decoder(latents)  # [*lead, D]
        if self.likelihood_kind == "bernoulli":
            return Bernoulli(logits=out, validate_args=False)
        return Normal(out, softplus(self.raw_scale) + _MIN_SCALE, validate_args=False)
