"""The generative model p(x, z)."""

from __future__ import annotations

import abc
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from blackbox_vae._call_state import set_call_state, state_without_call_state
from blackbox_vae._distributions import check_distribution, sum_to_leading
from blackbox_vae.latents import Latents

__all__ = ["GenModel", "DistributionGenModel"]


class GenModel(nn.Module, metaclass=abc.ABCMeta):
    """Abstract generative model p(x, z).

    Same shape contract as `InfNet`: data
    ``[batch, *data_shape]``, latents ``[batch, n_samples, *latent_shape]``
    (or a tuple/dict of such tensors), log-probabilities ``[batch, n_samples]``.

    Losses call it as ``gen_model(data, latents).log_prob(data, latents)``.
    For a model written as a prior and a likelihood made of
    ``torch.distributions`` objects, subclass `DistributionGenModel`.

    Attributes:
        params_: whatever `forward` computed for the last call
            (e.g. the likelihood's parameters); ``None`` before the first call.
        differentiable: whether ``log_prob`` can be differentiated with respect to the latents. Set it to
            False for a model computed outside autograd (a simulator in NumPy, a compiled program): the
            estimators that differentiate through the latents (reparameterized, relaxed, ZGR, REBAR/RELAX)
            then refuse it when they are built, and the score-function family, RWS and DisARM, which only
            score samples, train it.
    """

    params_: Any = None
    differentiable: bool = True

    def __getstate__(self) -> dict[str, Any]:
        # params_ holds the last call's graph: a deep copy (or a pickle) starts without it.
        return state_without_call_state(self, ("params_",))

    @abc.abstractmethod
    def forward(self, data: Tensor, latents: Latents) -> "GenModel":
        """Computes p's parameters for these latents and stores them in ``self.params_``.

        Args:
            data: ``[batch, *data_shape]``.
            latents: leading dimensions ``[batch, n_samples]``.

        Returns:
            ``self``.
        """

    @abc.abstractmethod
    def log_prob(self, data: Tensor, latents: Latents) -> Tensor:
        """The joint log p(x, z), ``data`` broadcast against ``latents``.

        Args:
            data: ``[batch, *data_shape]``.
            latents: leading dimensions ``[batch, n_samples]``; the same ones
                last passed to `forward`.

        Returns:
            ``[batch, n_samples]``.
        """

    @abc.abstractmethod
    def sample(self, n_samples: int = 1) -> tuple[Tensor, Latents]:
        """Ancestral samples (x, z) ~ p(x, z).

        Returns:
            ``(x [n_samples, *data_shape], z)`` with z's leading dimension ``[n_samples]``.
        """


    def likelihood_mean(self, latents: Latents) -> Tensor:
        """Optional: E[x | z] for latents with leading dimensions ``[*lead]``: ``[*lead, *data_shape]``.

        Used to draw generated images and reconstructions (``blackbox-vae sample``); losses never call it.

        Raises:
            NotImplementedError: unless a subclass implements it.
        """
        raise NotImplementedError(
            f"`{type(self).__name__}.likelihood_mean` is not implemented; image grids of means and reconstructions "
            "need it (DistributionGenModel and the ready models have it)."
        )

    def sample_data(self, latents: Latents) -> Tensor:
        """Optional: x ~ p(x | z) for latents with leading dimensions ``[*lead]``: ``[*lead, *data_shape]``.

        Decodes given latents by sampling (``likelihood_mean`` decodes them to the mean). Samplers that
        decode with ``decode="sample"`` and the Markov chain x -> z ~ q(z|x) -> x ~ p(x|z) need it;
        losses never call it.

        Raises:
            NotImplementedError: unless a subclass implements it.
        """
        raise NotImplementedError(
            f"`{type(self).__name__}.sample_data` is not implemented: decoding latents by sampling x ~ p(x|z) needs "
            "it (DistributionGenModel and the ready models have it). Implement it, or decode to the mean "
            "(`likelihood_mean`, decode=\"mean\")."
        )


    def group_log_prob(self, latents: Latents) -> Tensor:
        """Optional: log p of each latent group given its parents, for the latents last passed to `forward`:
        ``[batch, K, G]``; ``log_prob`` minus their sum is log p(x | z).

        `ELBOLoss` with KL warm-up (``kl_warmup_steps``) scales the latents' terms apart from the likelihood's
        and needs it (`NVAEGenModel` has it).

        Raises:
            NotImplementedError: unless a subclass implements it.
        """
        raise NotImplementedError(
            f"`{type(self).__name__}.group_log_prob` is not implemented: KL warm-up scales the prior's terms "
            "apart from log p(x|z) and needs log p per latent group ([batch, K, G]). Implement it, or use "
            "kl_warmup_steps=0."
        )

    @property
    def has_group_log_prob(self) -> bool:
        """Whether `group_log_prob` works: true when the class implements it."""
        return type(self).group_log_prob is not GenModel.group_log_prob


class DistributionGenModel(GenModel):
    """Convenience GenModel p(x, z) = p(z) p(x|z) from two distribution objects.

    Implement `prior` (a distribution over one latent:
    ``batch_shape + event_shape = latent_shape``) and `likelihood`
    (given latents with any leading dimensions ``[*lead, *latent_shape]``, a
    distribution with ``batch_shape + event_shape = [*lead, *data_shape]``).
    The base class sums log-probabilities over the latent and data dimensions
    and vectorizes over samples; after `forward`, ``params_`` holds the
    likelihood distribution.

    Example:

    ```python
    class SBN(DistributionGenModel):
        def __init__(self):
            super().__init__()
            self.prior_logits = nn.Parameter(torch.zeros(200))
            self.decoder = nn.Linear(200, 784)

        def prior(self):
            return torch.distributions.Bernoulli(logits=self.prior_logits)  # latent_shape [200]

        def likelihood(self, latents):
            return torch.distributions.Bernoulli(logits=self.decoder(latents))  # [*lead, 784]
    ```
    """

    params_: Distribution | None = None

    @abc.abstractmethod
    def prior(self) -> Distribution:
        """p(z) for one latent: ``batch_shape + event_shape == latent_shape``."""

    @abc.abstractmethod
    def likelihood(self, latents: Tensor) -> Distribution:
        """p(x|z) for latents ``[*lead, *latent_shape]``: shape ``[*lead, *data_shape]``."""

    def forward(self, data: Tensor, latents: Tensor) -> "DistributionGenModel":
        set_call_state(self, "params_", check_distribution(self.likelihood(latents), f"{type(self).__name__}.likelihood"))
        return self

    def log_prob(self, data: Tensor, latents: Tensor) -> Tensor:
        """log p(z) + log p(x|z), each summed over its dimensions: ``[batch, n_samples]``."""
        if self.params_ is None:
            raise RuntimeError(f"Call `{type(self).__name__}(data, latents)` (its forward) before `log_prob`.")
        prior = check_distribution(self.prior(), f"{type(self).__name__}.prior")
        log_prior = sum_to_leading(prior.log_prob(latents), 2)  # [batch, n_samples]
        log_likelihood = sum_to_leading(self.params_.log_prob(data.unsqueeze(1)), 2)  # [batch, n_samples]
        return log_prior + log_likelihood

    def likelihood_mean(self, latents: Tensor) -> Tensor:
        """E[x | z] = ``likelihood(latents).mean``: ``[*lead, *data_shape]``."""
        return self.likelihood(latents).mean

    def sample_data(self, latents: Tensor) -> Tensor:
        """x ~ ``likelihood(latents)``: ``[*lead, *data_shape]``."""
        with torch.no_grad():
            return self.likelihood(latents).sample()

    def sample(self, n_samples: int = 1) -> tuple[Tensor, Tensor]:
        """(x [n_samples, *data_shape], z [n_samples, *latent_shape]) ~ p(x, z)."""
        with torch.no_grad():
            latents = check_distribution(self.prior(), f"{type(self).__name__}.prior").sample((n_samples,))
            data = self.likelihood(latents).sample()
        return data, latents
