"""A categorical-latent VAE (Jang et al. 2017): L one-hot latents of C classes, Bernoulli observations."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, OneHotCategorical

from blackbox_vae.gen_model import GenModel
from blackbox_vae.models._mlp import mlp
from blackbox_vae.relaxed import RelaxedCategoricalInfNet

__all__ = ["CategoricalInfNet", "CategoricalGenModel"]


class CategoricalInfNet(RelaxedCategoricalInfNet):
    """q(z|x) = prod_l OneHotCategorical(z_l; softmax(f(x)_l)), f an MLP; `relaxed_rsample` for Gumbel-softmax.

    Args:
        data_dim: D.
        n_latents: L.
        n_classes: C.
        hidden: hidden-layer widths of f (Jang et al.: 512, 256).

    Shapes: data ``[batch, D]``, latents ``[batch, n_samples, L, C]`` (one-hot).
    """

    def __init__(self, data_dim: int, n_latents: int, n_classes: int, hidden: Sequence[int] = (512, 256)):
        super().__init__()
        self.n_latents, self.n_classes = n_latents, n_classes
        self.encoder = mlp(data_dim, hidden, n_latents * n_classes, activation=nn.ReLU)

    def logits(self, data: Tensor) -> Tensor:
        return self.encoder(data).unflatten(-1, (self.n_latents, self.n_classes))  # [batch, L, C]


class CategoricalGenModel(GenModel):
    """p(z) = prod_l Categorical(z_l; pi), p(x|z) = prod_i Bernoulli(x_i; sigmoid(g(z)_i)), g an MLP.

    ``log p(z) = sum_l sum_c z_lc log pi_c`` is written out (linear in z), so
    relaxed one-hot samples are scored with a gradient;
    ``OneHotCategorical.log_prob`` takes an argmax and would cut it.

    Args:
        data_dim: D.
        n_latents: L.
        n_classes: C.
        hidden: hidden-layer widths of g (Jang et al.: 256, 512).
        learn_prior: learn pi (default: fixed uniform, as in the paper).

    Shapes: data ``[batch, D]``, latents ``[batch, n_samples, L, C]``.
    """

    def __init__(self, data_dim: int, n_latents: int, n_classes: int, hidden: Sequence[int] = (256, 512),
                 learn_prior: bool = False):
        super().__init__()
        self.n_latents, self.n_classes = n_latents, n_classes
        self.prior_logits = nn.Parameter(torch.zeros(n_latents, n_classes), requires_grad=learn_prior)
        self.decoder = mlp(n_latents * n_classes, hidden, data_dim, activation=nn.ReLU)

    @property
    def output_logits_bias(self) -> Tensor:
        """The ``[D]`` bias of p(x|z)'s logits (`blackbox_vae.models.initialize_output_bias`)."""
        return self.decoder[-1].bias

    def forward(self, data: Tensor, latents: Tensor) -> "CategoricalGenModel":
        self.params_ = self.decoder(latents.flatten(-2))  # [batch, n_samples, D] logits of p(x|z)
        return self

    def log_prob(self, data: Tensor, latents: Tensor) -> Tensor:
        """log p(z) + log p(x|z): ``[batch, n_samples]``."""
        log_prior = (latents * torch.log_softmax(self.prior_logits, dim=-1)).sum(dim=(-2, -1))
        likelihood = Bernoulli(logits=self.params_, validate_args=False)
        return log_prior + likelihood.log_prob(data.unsqueeze(1)).sum(-1)

    def likelihood_mean(self, latents: Tensor) -> Tensor:
        """E[x | z] for latents ``[*lead, L, C]``: ``[*lead, D]``."""
        return torch.sigmoid(self.decoder(latents.flatten(-2)))

    @torch.no_grad()
    def sample_data(self, latents: Tensor) -> Tensor:
        """x ~ p(x | z) for latents ``[*lead, L, C]``: ``[*lead, D]``."""
        return torch.bernoulli(self.likelihood_mean(latents))

    def sample(self, n_samples: int = 1) -> tuple[Tensor, Tensor]:
        """(x [n_samples, D], z [n_samples, L, C])."""
        with torch.no_grad():
            latents = OneHotCategorical(logits=self.prior_logits, validate_args=False).sample((n_samples,))
            data = Bernoulli(logits=self.decoder(latents.flatten(-2)), validate_args=False).sample()
        return data, latents
