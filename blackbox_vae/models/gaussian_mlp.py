"""A Gaussian MLP VAE: Gaussian latents, Gaussian or Bernoulli observations.

Written directly against InfNet/GenModel with closed-form log-densities rather than distribution objects.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
from torch import Tensor, nn
from torch.nn.functional import binary_cross_entropy_with_logits, softplus

from blackbox_vae._call_state import set_call_state
from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.models._mlp import mlp

__all__ = ["GaussianMLPInfNet", "GaussianMLPGenModel"]

# Keeps scales away from zero so that log-densities stay finite.
_MIN_SCALE = 1e-4
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _normal_log_prob(standardized: Tensor, log_scale_sum: Tensor | float) -> Tensor:
    """sum over the last dimension of log N(x; loc, scale), from (x - loc) / scale and sum(log scale)."""
    return -0.5 * standardized.pow(2).sum(-1) - log_scale_sum - standardized.shape[-1] * _HALF_LOG_2PI


def _standard_noise(loc: Tensor, n_samples: int) -> Tensor:
    """eps ~ N(0, I) shaped ``[batch, n_samples, H]`` for ``loc [batch, H]``, on its device and dtype."""
    return torch.randn(loc.shape[0], n_samples, loc.shape[1], dtype=loc.dtype, device=loc.device)


class GaussianMLPInfNet(InfNet):
    """q(z|x) = N(z; mu(x), diag(sigma(x)^2)), one MLP emitting both (sigma through a softplus).

    Reparameterizable, so it serves ``ELBOLoss``/``IWAELoss`` as well as the score-function losses.

    Args:
        data_dim: D.
        latent_dim: H.
        hidden: hidden-layer widths of the MLP.

    Shapes: data ``[batch, D]``, latents ``[batch, n_samples, H]``. After `forward`,
    ``params_`` is ``(loc, scale)``, each ``[batch, H]``.
    """

    def __init__(self, data_dim: int, latent_dim: int, hidden: Sequence[int] = (200, 200)):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = mlp(data_dim, hidden, 2 * latent_dim)

    def forward(self, data: Tensor) -> "GaussianMLPInfNet":
        loc, raw_scale = self.encoder(data).chunk(2, dim=-1)  # [batch, H] each
        set_call_state(self, "params_", (loc, softplus(raw_scale) + _MIN_SCALE))
        return self

    def _loc_scale(self) -> tuple[Tensor, Tensor]:
        if self.params_ is None:
            raise RuntimeError(f"Call `{type(self).__name__}(data)` (its forward) before sampling or scoring.")
        return self.params_

    def rsample(self, n_samples: int = 1) -> Tensor:
        """z = loc + scale * eps: ``[batch, n_samples, H]``, differentiable in the parameters."""
        loc, scale = self._loc_scale()
        noise = _standard_noise(loc, n_samples)
        return loc.unsqueeze(1) + scale.unsqueeze(1) * noise

    def rsample_and_log_prob(self, n_samples: int = 1) -> tuple[Tensor, Tensor]:
        """Fused: the standardized value of the sample is its noise, so log q needs no (z - loc) / scale.

        Measured (benchmarks/hot_path_tricks.py): up to 13.8% of a step of the Gaussian 100-20 model.
        """
        loc, scale = self._loc_scale()
        noise = _standard_noise(loc, n_samples)
        latents = loc.unsqueeze(1) + scale.unsqueeze(1) * noise
        return latents, _normal_log_prob(noise, scale.log().sum(-1, keepdim=True))

    def sample(self, n_samples: int = 1) -> Tensor:
        with torch.no_grad():
            return self.rsample(n_samples)

    def mean(self) -> Tensor:
        """E[z | x] = loc: ``[batch, H]``."""
        return self._loc_scale()[0]

    def log_prob(self, latents: Tensor) -> Tensor:
        """log q(z|x): ``[batch, n_samples]``."""
        loc, scale = self._loc_scale()
        if latents.dim() != 3 or latents.shape[0] != loc.shape[0] or latents.shape[2] != loc.shape[1]:
            raise ValueError(f"`{type(self).__name__}.log_prob` got latents of shape {tuple(latents.shape)}; expected "
                             f"[batch, n_samples, latent_dim] = ({loc.shape[0]}, n_samples, {loc.shape[1]}).")
        standardized = (latents - loc.unsqueeze(1)) / scale.unsqueeze(1)  # [batch, K, H]
        return _normal_log_prob(standardized, scale.log().sum(-1, keepdim=True))

    def sample_and_log_prob(self, n_samples: int = 1) -> tuple[Tensor, Tensor]:
        """Fused: the standardized value of a fresh sample is its noise."""
        loc, scale = self._loc_scale()
        with torch.no_grad():
            noise = _standard_noise(loc, n_samples)
            latents = loc.unsqueeze(1) + scale.unsqueeze(1) * noise
        # scored as a fixed value: the score-function path differentiates log q in the parameters only
        return latents, self.log_prob(latents)


class GaussianMLPGenModel(GenModel):
    """p(z) = N(0, I), p(x|z) = N(x; mu(z), diag(sigma^2)) or Bernoulli(x; sigmoid(f(z))).

    Args:
        data_dim: D.
        latent_dim: H.
        hidden: hidden-layer widths of the decoder MLP.
        likelihood: ``"gaussian"`` (a learned per-dimension scale) or ``"bernoulli"``.

    Shapes: data ``[batch, D]``, latents ``[batch, n_samples, H]``. After `forward`, ``params_``
    holds the decoder's output ``[batch, n_samples, D]`` (means, or logits).
    """

    def __init__(self, data_dim: int, latent_dim: int, hidden: Sequence[int] = (200, 200),
                 likelihood: Literal["gaussian", "bernoulli"] = "gaussian"):
        super().__init__()
        if likelihood not in ("gaussian", "bernoulli"):
            raise ValueError(f"GaussianMLPGenModel: `likelihood` must be 'gaussian' or 'bernoulli'; got {likelihood!r}.")
        self.likelihood_kind = likelihood
        self.latent_dim = latent_dim
        self.decoder = mlp(latent_dim, hidden, data_dim)
        if likelihood == "gaussian":
            self.raw_scale = nn.Parameter(torch.zeros(data_dim))

    @property
    def output_logits_bias(self) -> Tensor | None:
        """The ``[D]`` bias of p(x|z)'s Bernoulli logits (`blackbox_vae.models.initialize_output_bias`); None for
        the Gaussian likelihood."""
        return self.decoder[-1].bias if self.likelihood_kind == "bernoulli" else None

    def forward(self, data: Tensor, latents: Tensor) -> "GaussianMLPGenModel":
        set_call_state(self, "params_", self.decoder(latents))  # [batch, K, D]
        return self

    def log_prob(self, data: Tensor, latents: Tensor) -> Tensor:
        """log p(z) + log p(x|z): ``[batch, n_samples]``."""
        log_prior = _normal_log_prob(latents, 0.0)  # [batch, K]
        out = self.params_  # [batch, K, D]
        target = data.unsqueeze(1).expand_as(out)
        if self.likelihood_kind == "bernoulli":
            return log_prior - binary_cross_entropy_with_logits(out, target, reduction="none").sum(-1)
        scale = softplus(self.raw_scale) + _MIN_SCALE  # [D]
        return log_prior + _normal_log_prob((target - out) / scale, scale.log().sum())

    def likelihood_mean(self, latents: Tensor) -> Tensor:
        """E[x | z]: ``[*lead, D]``."""
        out = self.decoder(latents)
        return torch.sigmoid(out) if self.likelihood_kind == "bernoulli" else out

    @torch.no_grad()
    def sample_data(self, latents: Tensor) -> Tensor:
        """x ~ p(x | z): ``[*lead, D]``."""
        mean = self.likelihood_mean(latents)
        if self.likelihood_kind == "bernoulli":
            return torch.bernoulli(mean)
        return mean + (softplus(self.raw_scale) + _MIN_SCALE) * torch.randn_like(mean)

    def sample(self, n_samples: int = 1) -> tuple[Tensor, Tensor]:
        """(x [n_samples, D], z [n_samples, H])."""
        with torch.no_grad():
            reference = self.decoder[0].weight
            latents = torch.randn(n_samples, self.latent_dim, dtype=reference.dtype, device=reference.device)
            out = self.decoder(latents)
            if self.likelihood_kind == "bernoulli":
                return torch.bernoulli(torch.sigmoid(out)), latents
            return out + (softplus(self.raw_scale) + _MIN_SCALE) * torch.randn_like(out), latents
