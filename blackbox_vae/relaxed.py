"""Inference networks over discrete latents with a relaxed (Gumbel-softmax / Concrete) ``rsample``.

``sample`` and ``log_prob`` are the exact discrete distribution's; ``rsample``
draws from its continuous relaxation at a given temperature, optionally
straight-through (hard values forward, relaxed gradient backward), for
`GumbelSoftmaxLoss`. ``log_prob`` extends the discrete
log-mass linearly to relaxed values (``sum_i y_i log pi_i``), which is what
the relaxed objective scores.
"""

from __future__ import annotations

import abc
from typing import Optional

import torch
from pyro.distributions import RelaxedBernoulliStraightThrough, RelaxedOneHotCategoricalStraightThrough
from torch import Tensor
from torch.distributions import Bernoulli, OneHotCategorical, RelaxedBernoulli, RelaxedOneHotCategorical

from blackbox_vae._distributions import sum_to_leading
from blackbox_vae.inf_net import DistributionInfNet

__all__ = ["RelaxedBernoulliInfNet", "RelaxedCategoricalInfNet"]


def _relaxed_rsample(inf_net: DistributionInfNet, relaxed: type, n_samples: int,
                     temperature: Optional[float]) -> Tensor:
    """``[batch, n_samples, *latent_shape]`` draws from ``relaxed(temperature, logits=q's logits)``."""
    logits = inf_net._dist().logits
    tau = _temperature(type(inf_net).__name__, temperature, logits)
    return relaxed(tau, logits=logits, validate_args=False).rsample((n_samples,)).movedim(0, 1).contiguous()


def _temperature(owner: str, temperature: Optional[float], like: Tensor) -> Tensor:
    if temperature is None:
        raise TypeError(
            f"`{owner}.rsample` needs a `temperature`: its latents are discrete, so a reparameterized sample "
            "exists only for the relaxation. Use GumbelSoftmaxLoss (it passes one), or a score-function estimator."
        )
    if not float(temperature) > 0:
        raise ValueError(f"`{owner}.rsample`: `temperature` must be > 0; got {temperature!r}.")
    return torch.as_tensor(float(temperature), dtype=like.dtype, device=like.device)


class RelaxedBernoulliInfNet(DistributionInfNet):
    """q(z|x) = prod Bernoulli(z; sigmoid(logits(x))), with a relaxed ``rsample``.

    Implement `logits`. Latents: ``[batch, n_samples, *latent_shape]``, values in [0, 1]
    (exactly {0, 1} from ``sample`` and from straight-through ``rsample``).
    """

    @abc.abstractmethod
    def logits(self, data: Tensor) -> Tensor:
        """``[batch, *latent_shape]`` logits of q(z|x)."""

    def distribution(self, data: Tensor) -> Bernoulli:
        return Bernoulli(logits=self.logits(data), validate_args=False)

    def rsample(self, n_samples: int = 1, temperature: Optional[float] = None,
                straight_through: bool = False) -> Tensor:
        """Relaxed Bernoulli (binary Concrete) samples ``[batch, n_samples, *latent_shape]``.

        Args:
            n_samples: samples per data point.
            temperature: the relaxation's temperature, > 0.
            straight_through: return exact {0, 1} samples (rounded relaxed ones)
                whose gradient is the relaxed sample's.

        Raises:
            TypeError: without a temperature. ValueError: for a temperature <= 0.
        """
        relaxed = RelaxedBernoulliStraightThrough if straight_through else RelaxedBernoulli
        return _relaxed_rsample(self, relaxed, n_samples, temperature)


class RelaxedCategoricalInfNet(DistributionInfNet):
    """q(z|x) = prod OneHotCategorical(z; softmax(logits(x))), with a relaxed ``rsample``.

    Implement `logits`, returning ``[batch, *latent_shape]`` whose last
    dimension is the number of classes. Latents are one-hot (or relaxed one-hot)
    vectors: ``[batch, n_samples, *latent_shape]``.
    """

    @abc.abstractmethod
    def logits(self, data: Tensor) -> Tensor:
        """``[batch, ..., n_classes]`` logits of q(z|x)."""

    def distribution(self, data: Tensor) -> OneHotCategorical:
        return OneHotCategorical(logits=self.logits(data), validate_args=False)

    def log_prob(self, latents: Tensor) -> Tensor:
        """``sum_i z_i log pi_i`` over classes and latents: ``[batch, n_samples]``.

        Exact for one-hot z, and linear (hence differentiable) in relaxed z;
        ``OneHotCategorical.log_prob`` takes an argmax and would cut the gradient.
        """
        log_probs = self._check_latent_shape(latents).logits  # normalized: [batch, ..., n_classes]
        return sum_to_leading(latents * log_probs.unsqueeze(1), 2)  # [batch, n_samples]

    def rsample(self, n_samples: int = 1, temperature: Optional[float] = None,
                straight_through: bool = False) -> Tensor:
        """Gumbel-softmax (Concrete) samples ``[batch, n_samples, ..., n_classes]``.

        Args:
            n_samples: samples per data point.
            temperature: the relaxation's temperature, > 0.
            straight_through: return exact one-hot samples (argmax of the relaxed
                ones) whose gradient is the relaxed sample's.

        Raises:
            TypeError: without a temperature. ValueError: for a temperature <= 0.
        """
        relaxed = RelaxedOneHotCategoricalStraightThrough if straight_through else RelaxedOneHotCategorical
        return _relaxed_rsample(self, relaxed, n_samples, temperature)
