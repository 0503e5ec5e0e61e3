"""REINFORCE (the score-function estimator) for the ELBO."""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch
from torch import Tensor

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.losses._checks import check_n_samples
from blackbox_vae.losses._moving_average import MovingAverage
from blackbox_vae.losses.base import Loss

__all__ = ["ScoreFunctionLoss"]

Baseline = Optional[Literal["mean", "leave-one-out"]]


class ScoreFunctionLoss(Loss):
    r"""Score-function (REINFORCE) estimator of the ELBO's gradient.

    $$
    \mathcal{L}(x) = \frac{1}{K}\sum_{k=1}^{K} \big[\log p(x, z_k) - \log q(z_k|x)\big],
    \quad z_k \sim q(z|x)
    $$

    Gradients, with the learning signal $\ell_k = \log p(x, z_k) - \log q(z_k|x)$:

    $$
    \nabla_\theta = \frac{1}{K}\sum_k \nabla_\theta \log p(x, z_k), \qquad
    \nabla_\phi = \frac{1}{K}\sum_k (\ell_k - b_k)\, \nabla_\phi \log q(z_k|x)
    $$

    The term $-\nabla_\phi \log q$ of the pathwise part has mean zero
    and is left out. Both gradients are unbiased for every baseline here,
    because each $b_k$ is independent of $z_k$:

    - ``None``: $b_k = 0$.
    - ``"mean"``: an exponential moving average of the batch-mean learning
      signal over past calls (bias-corrected as in Adam, so early calls are not
      pulled towards zero), read before it is updated with the current batch
      (reading it after would make each sample's baseline depend on it).
    - ``"leave-one-out"``: the mean signal of the other K-1 samples of the same
      data point; needs ``n_samples >= 2``.

    Cost per step: one forward pass of q and of p over K samples, one
    backward pass; no reparameterization needed, so it works for any latent.

    Args:
        inf_net: q(z|x); needs ``sample`` and ``log_prob``.
        gen_model: p(x, z).
        n_samples: K, samples per data point.
        baseline: ``None``, ``"mean"`` or ``"leave-one-out"``.
        baseline_decay: decay of the ``"mean"`` baseline's moving average, in [0, 1).
        validate: see `Loss`.

    Raises:
        ValueError: for an unknown ``baseline``, a ``baseline_decay`` outside
            [0, 1), or ``n_samples < 2`` with ``"leave-one-out"``.

    References:
        Williams (1992), Simple statistical gradient-following algorithms for
        connectionist reinforcement learning. Paisley, Blei & Jordan (2012),
        Variational Bayesian inference with stochastic search. Ranganath,
        Gerrish & Blei (2014), Black box variational inference.
    """

    choices = {"baseline": (None, "mean", "leave-one-out")}

    def __init__(
        self,
        inf_net: InfNet,
        gen_model: GenModel,
        n_samples: int = 1,
        baseline: Baseline = None,
        *,
        baseline_decay: float = 0.9,
        validate: bool = True,
    ):
        if not 0.0 <= baseline_decay < 1.0:
            raise ValueError(f"ScoreFunctionLoss: `baseline_decay` must be in [0, 1); got {baseline_decay!r}.")
        super().__init__(inf_net, gen_model, n_samples, validate=validate)
        self._check_choice("baseline", baseline)
        if baseline == "leave-one-out":
            check_n_samples(
                n_samples, 2, "ScoreFunctionLoss(baseline='leave-one-out')",
                "each sample's baseline is the mean of the other samples' learning signals",
            )
        self.baseline = baseline
        self.signal_average = MovingAverage(baseline_decay, MovingAverage.device_of(inf_net, gen_model))

    def _estimate(self, data: Tensor) -> tuple[Tensor, Tensor]:
        _, log_q, log_p = self._draw(data)
        learning_signal = (log_p - log_q).detach()  # [batch, K]
        advantage = learning_signal if self.baseline is None else learning_signal - self._baseline(learning_signal)
        surrogate = log_p + advantage * log_q  # [batch, K]
        self._update_average(learning_signal)  # after the baseline was read
        return -learning_signal.mean(), -surrogate.mean()

    def _baseline(self, learning_signal: Tensor) -> Tensor:
        if self.baseline == "leave-one-out":
            total = learning_signal.sum(dim=1, keepdim=True)  # [batch, 1]
            return (total - learning_signal) / (self.n_samples - 1)  # [batch, K]
        if self.baseline == "mean":
            return self.signal_average.value().to(learning_signal.dtype)
        return torch.zeros((), dtype=learning_signal.dtype, device=learning_signal.device)

    def _update_average(self, learning_signal: Tensor) -> None:
        if self.baseline == "mean":
            self.signal_average.update(self._batch_moments(learning_signal)[0])

    def settings(self) -> dict[str, Any]:
        """K, the baseline and its decay (see `Loss.settings`)."""
        return {**super().settings(), "baseline": self.baseline, "baseline_decay": self.signal_average.decay}

    def extra_repr(self) -> str:
        return f"n_samples={self.n_samples}, baseline={self.baseline!r}"
