"""NVIL: the score function with a learned input-dependent baseline."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.losses._moving_average import MovingAverage
from blackbox_vae.losses.base import Loss
from blackbox_vae.models._mlp import mlp

__all__ = ["NVILLoss", "NVILBaseline"]


class NVILBaseline(nn.Module):
    """The paper's input-dependent baseline C(x): an MLP from the flattened data to a scalar.

    Args:
        data_dim: number of elements of one data point (its shape is flattened).
        hidden: hidden-layer widths (the paper: one layer of 100 tanh units).

    Shapes: data ``[batch, *data_shape]`` -> ``[batch]``.
    """

    def __init__(self, data_dim: int, hidden: Sequence[int] = (100,)):
        super().__init__()
        self.net = mlp(data_dim, hidden, 1)

    def forward(self, data: Tensor) -> Tensor:
        return self.net(data.flatten(1)).squeeze(-1)


class NVILLoss(Loss):
    r"""NVIL (Mnih & Gregor 2014): score function with variance-reduction ingredients.

    Objective (reported): the ELBO, estimated as $\frac{1}{K}\sum_k \ell_k$ with
    $\ell_k = \log p(x, z_k) - \log q(z_k|x)$.

    Gradient:

    $$
    \nabla_\theta = \frac{1}{K}\sum_k \nabla_\theta \log p(x, z_k), \qquad
    \nabla_\phi = \frac{1}{K}\sum_k \frac{\ell_k - C_\psi(x) - c}{\max(1, \sqrt{v})}\,
    \nabla_\phi \log q(z_k|x)
    $$

    Ingredients, each optional:

    - ``baseline_net``: $C_\psi(x)$, any module mapping data ``[batch, ...]``
      to ``[batch]`` (e.g. `NVILBaseline`). The loss trains it itself, by
      adding $\frac{1}{K}\sum_k (\ell_k - C_\psi(x) - c)^2$ to the surrogate
      (that term reaches only $\psi$); its parameters are part of
      ``loss.parameters()``.
    - ``running_mean``: $c$, a moving average of $\ell - C_\psi(x)$
      over past calls (decay ``decay``).
    - ``variance_normalization``: divide the centred signal by
      $\max(1, \sqrt{v})$, $v$ a moving average of the batch
      variance of $\ell - C_\psi(x)$.

    Unbiasedness: $C_\psi(x)$ and $c$ do not depend on the current
    samples (``c`` and ``v`` are updated after the gradient is formed), so with
    variance normalization off the estimator is unbiased for the ELBO gradient
    in both parameter sets, with any combination of the other two. Variance
    normalization rescales q's gradient by $1/\max(1, \sqrt{v})$: its
    expected direction is kept but its size is not, so it is then biased
    (a per-step rescaling of q's learning rate, as in the paper).

    Cost per step: one forward/backward of q and p over K samples plus the
    baseline network's.

    Args:
        inf_net: q(z|x); needs ``sample`` and ``log_prob``.
        gen_model: p(x, z).
        n_samples: K (the paper uses 1).
        baseline_net: $C_\psi$, or ``None`` for no input-dependent baseline.
        running_mean: subtract the moving average $c$.
        variance_normalization: divide by $\max(1, \sqrt{v})$.
        decay: decay of the moving averages, in [0, 1) (the paper's alpha: 0.8).
        validate: see `Loss`.

    References:
        Mnih & Gregor (2014), Neural variational inference and learning in belief networks.
    """

    choices = {"running_mean": (True, False), "variance_normalization": (True, False)}

    def __init__(
        self,
        inf_net: InfNet,
        gen_model: GenModel,
        n_samples: int = 1,
        baseline_net: Optional[nn.Module] = None,
        *,
        running_mean: bool = True,
        variance_normalization: bool = True,
        decay: float = 0.8,
        validate: bool = True,
    ):
        if baseline_net is not None and not isinstance(baseline_net, nn.Module):
            raise TypeError(f"NVILLoss: `baseline_net` must be an nn.Module or None; got {type(baseline_net).__name__}.")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"NVILLoss: `decay` must be in [0, 1); got {decay!r}.")
        super().__init__(inf_net, gen_model, n_samples, validate=validate)
        self.baseline_net = baseline_net
        self.running_mean = self._check_choice("running_mean", running_mean)
        self.variance_normalization = self._check_choice("variance_normalization", variance_normalization)
        device = MovingAverage.device_of(inf_net, gen_model)
        self.signal_mean = MovingAverage(decay, device)
        self.signal_variance = MovingAverage(decay, device)

    def _estimate(self, data: Tensor) -> tuple[Tensor, Tensor]:
        _, log_q, log_p = self._draw(data)
        batch = data.shape[0]
        learning_signal = (log_p - log_q).detach()  # [batch, K]
        if self.baseline_net is not None:
            input_baseline = self.baseline_net(data)  # [batch], differentiable in psi
            if tuple(input_baseline.shape) not in ((batch,), (batch, 1)):
                raise ValueError(
                    f"NVILLoss: `baseline_net` returned shape {tuple(input_baseline.shape)}; expected [batch] = ({batch},)."
                )
            input_baseline = input_baseline.reshape(batch, 1)
        else:
            input_baseline = learning_signal.new_zeros(batch, 1)
        residual = learning_signal - input_baseline.detach()  # [batch, K]
        centred = residual - self.signal_mean.value().to(residual.dtype) if self.running_mean else residual
        advantage = centred
        if self.variance_normalization:
            advantage = centred / self.signal_variance.value().to(centred.dtype).sqrt().clamp_min(1.0)
        surrogate = log_p + advantage * log_q  # [batch, K]
        surrogate_loss = -surrogate.mean()
        if self.baseline_net is not None:
            # Regress the baseline onto the signal; only psi receives this gradient.
            target = learning_signal - (self.signal_mean.value().to(residual.dtype) if self.running_mean else 0.0)
            surrogate_loss = surrogate_loss + (target - input_baseline).pow(2).mean()
        with torch.no_grad():
            mean, variance = self._batch_moments(residual)
            self.signal_mean.update(mean)
            self.signal_variance.update(variance)
        return -learning_signal.mean(), surrogate_loss

    def settings(self) -> dict[str, Any]:
        """K, the ingredients and the decay (see `Loss.settings`)."""
        net = type(self.baseline_net).__name__ if self.baseline_net is not None else None
        return {**super().settings(), "baseline_net": net, "running_mean": self.running_mean,
                "variance_normalization": self.variance_normalization, "decay": self.signal_mean.decay}

    def extra_repr(self) -> str:
        return (f"n_samples={self.n_samples}, running_mean={self.running_mean}, "
                f"variance_normalization={self.variance_normalization}")
