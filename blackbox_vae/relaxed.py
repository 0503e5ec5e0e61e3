"""Inference networks over discrete latents with a relaxed (Gumbel-softmax / Concrete) sample.

``sample`` and ``log_prob`` are the exact discrete distribution's; ``zgr_rsample`` draws exact samples with
the ZGR gradient (`blackbox_vae.zgr`), for `ZGRLoss`; ``relaxed_rsample``
draws from its continuous relaxation at a given temperature, optionally
straight-through (hard values forward, relaxed gradient backward), for
`GumbelSoftmaxLoss`. ``log_prob`` extends the discrete
log-mass linearly to relaxed values (``sum_i y_i log pi_i``), which is what
the relaxed objective scores. There is no reparameterized sample of the discrete
latents themselves, so ``has_rsample`` is false.
"""

from __future__ import annotations

import abc

import torch
from torch import Tensor
from torch.distributions import Bernoulli, OneHotCategorical, RelaxedBernoulli, RelaxedOneHotCategorical

from blackbox_vae._distributions import sum_to_leading
from blackbox_vae.inf_net import DistributionInfNet
from blackbox_vae.zgr import bernoulli_zgr, categorical_zgr

__all__ = ["RelaxedBernoulliInfNet", "RelaxedCategoricalInfNet", "check_temperature", "straight_through_sample"]


def check_temperature(owner: str, temperature: object) -> float:
    """``temperature`` as a float, or a ValueError naming ``owner`` unless it is a number > 0."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"`{owner}`: `temperature` must be a number > 0; got {temperature!r}.")
    return float(temperature)


def straight_through_sample(hard: Tensor, relaxed: Tensor) -> Tensor:
    """``hard`` in the forward pass, ``relaxed``'s gradient in the backward pass.

    torch.distributions has no straight-through distributions; Pyro's (``RelaxedBernoulliStraightThrough``)
    compute exactly this, and this one line keeps Pyro out of ``import blackbox_vae``.
    """
    return hard + (relaxed - relaxed.detach())


def _relaxed_rsample(inf_net: DistributionInfNet, relaxed: type, n_samples: int, temperature: float) -> Tensor:
    """``[batch, n_samples, *latent_shape]`` draws from ``relaxed(temperature, logits=q's logits)``."""
    logits = inf_net._dist().logits
    tau = torch.as_tensor(check_temperature(f"{type(inf_net).__name__}.relaxed_rsample", temperature),
                          dtype=logits.dtype, device=logits.device)
    return relaxed(tau, logits=logits, validate_args=False).rsample((n_samples,)).movedim(0, 1).contiguous()


def _expanded_logits(inf_net: DistributionInfNet, n_samples: int) -> Tensor:
    """q's logits ``[batch, n_samples, *latent_shape]`` (normalized over classes for a categorical)."""
    logits = inf_net._dist().logits.unsqueeze(1)
    return logits.expand(logits.shape[0], n_samples, *logits.shape[2:])


class _DiscreteInfNet(DistributionInfNet):
    """Shared by the two relaxed networks: discrete latents have no reparameterized sample."""

    @property
    def has_rsample(self) -> bool:
        """False: discrete latents have no reparameterized sample (their relaxation does: `relaxed_rsample`)."""
        return False

    def rsample(self, n_samples: int = 1) -> Tensor:
        """Raises: discrete latents have no reparameterized sample.

        Raises:
            NotImplementedError: always, naming `relaxed_rsample` and the estimators that fit.
        """
        raise NotImplementedError(
            f"`{type(self).__name__}.rsample`: its latents are discrete, so they have no reparameterized sample. "
            "Use GumbelSoftmaxLoss (it calls `relaxed_rsample`), or a score-function estimator such as VIMCOLoss.")


class RelaxedBernoulliInfNet(_DiscreteInfNet):
    """q(z|x) = prod Bernoulli(z; sigmoid(logits(x))), with a relaxed sample for Gumbel-softmax.

    Implement `logits`. Latents: ``[batch, n_samples, *latent_shape]``, values in [0, 1]
    (exactly {0, 1} from ``sample`` and from straight-through ``relaxed_rsample``).
    """

    @abc.abstractmethod
    def logits(self, data: Tensor) -> Tensor:
        """``[batch, *latent_shape]`` logits of q(z|x)."""

    def distribution(self, data: Tensor) -> Bernoulli:
        return Bernoulli(logits=self.logits(data), validate_args=False)

    @property
    def has_bit_probabilities(self) -> bool:
        """True: the latents are bits, and `bit_probabilities` gives sigmoid(logits) for every sample."""
        return True

    @property
    def has_categorical_logits(self) -> bool:
        """False: Bernoulli latents are not one-hot (`categorical_logits` raises; `bernoulli_logits` works)."""
        return False

    #: One layer of Bernoulli latents (`InfNet.layer_kinds`).
    layer_kinds: tuple[str, ...] = ("bernoulli",)

    def relaxed_rsample(self, n_samples: int = 1, *, temperature: float, straight_through: bool = False) -> Tensor:
        """Relaxed Bernoulli (binary Concrete) samples ``[batch, n_samples, *latent_shape]``.

        Args:
            n_samples: samples per data point.
            temperature: the relaxation's temperature, > 0.
            straight_through: return exact {0, 1} samples (rounded relaxed ones)
                whose gradient is the relaxed sample's.

        Raises:
            ValueError: for a temperature that is not a number > 0.
        """
        relaxed = _relaxed_rsample(self, RelaxedBernoulli, n_samples, temperature)
        return straight_through_sample(relaxed.detach().round(), relaxed) if straight_through else relaxed

    def zgr_rsample(self, n_samples: int = 1) -> Tensor:
        """Exact {0, 1} samples ``[batch, n_samples, *latent_shape]`` with the ZGR (DARN(1/2)) gradient."""
        return bernoulli_zgr(_expanded_logits(self, n_samples))


class RelaxedCategoricalInfNet(_DiscreteInfNet):
    """q(z|x) = prod OneHotCategorical(z; softmax(logits(x))), with a relaxed sample for Gumbel-softmax.

    Implement `logits`, returning ``[batch, *latent_shape]`` whose last
    dimension is the number of classes. Latents are one-hot (or relaxed one-hot)
    vectors: ``[batch, n_samples, *latent_shape]``.
    """

    @abc.abstractmethod
    def logits(self, data: Tensor) -> Tensor:
        """``[batch, ..., n_classes]`` logits of q(z|x)."""

    def distribution(self, data: Tensor) -> OneHotCategorical:
        return OneHotCategorical(logits=self.logits(data), validate_args=False)

    @property
    def has_bit_probabilities(self) -> bool:
        """False: one-hot latents are not independent bits (`bit_probabilities` raises)."""
        return False

    @property
    def has_bernoulli_logits(self) -> bool:
        """False: one-hot latents are not Bernoulli (`bernoulli_logits` raises)."""
        return False

    #: One layer of one-hot latents (`InfNet.layer_kinds`).
    layer_kinds: tuple[str, ...] = ("categorical",)

    def log_prob(self, latents: Tensor) -> Tensor:
        """``sum_i z_i log pi_i`` over classes and latents: ``[batch, n_samples]``.

        Exact for one-hot z, and linear (hence differentiable) in relaxed z;
        ``OneHotCategorical.log_prob`` takes an argmax and would cut the gradient.
        """
        log_probs = self._check_latent_shape(latents).logits  # normalized: [batch, ..., n_classes]
        return sum_to_leading(latents * log_probs.unsqueeze(1), 2)  # [batch, n_samples]

    def relaxed_rsample(self, n_samples: int = 1, *, temperature: float, straight_through: bool = False) -> Tensor:
        """Gumbel-softmax (Concrete) samples ``[batch, n_samples, ..., n_classes]``.

        Args:
            n_samples: samples per data point.
            temperature: the relaxation's temperature, > 0.
            straight_through: return exact one-hot samples (argmax of the relaxed
                ones) whose gradient is the relaxed sample's.

        Raises:
            ValueError: for a temperature that is not a number > 0.
        """
        relaxed = _relaxed_rsample(self, RelaxedOneHotCategorical, n_samples, temperature)
        if not straight_through:
            return relaxed
        hard = torch.nn.functional.one_hot(relaxed.detach().argmax(-1), relaxed.shape[-1]).to(relaxed.dtype)
        return straight_through_sample(hard, relaxed)

    def zgr_rsample(self, n_samples: int = 1) -> Tensor:
        """Exact one-hot samples ``[batch, n_samples, ..., n_classes]`` with the ZGR gradient."""
        return categorical_zgr(_expanded_logits(self, n_samples))

