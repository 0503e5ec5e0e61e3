"""VIMCO: the K-sample bound with leave-one-out baselines."""

from __future__ import annotations

from torch import Tensor

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.losses._importance import log_mean_exp, vimco_learning_signals
from blackbox_vae.losses.base import Loss

__all__ = ["VIMCOLoss"]


class VIMCOLoss(Loss):
    r"""VIMCO (Mnih & Rezende 2016): the K-sample importance-weighted bound with per-sample baselines.

    Objective (reported):

    $$
    \hat{\mathcal{L}}_K(x) = \log \frac{1}{K}\sum_{k=1}^{K} w_k, \quad
    w_k = \frac{p(x, z_k)}{q(z_k|x)},\ z_k \sim q(z|x)
    $$

    Gradient, with normalized weights $\tilde w_k = w_k / \sum_j w_j$:

    $$
    \nabla_\theta = \sum_k \tilde w_k \nabla_\theta \log p(x, z_k), \qquad
    \nabla_\phi = \sum_k \big(\hat{\mathcal{L}}_K - \hat{\mathcal{L}}_K^{-k}\big)\nabla_\phi \log q(z_k|x)
                 - \sum_k \tilde w_k \nabla_\phi \log q(z_k|x)
    $$

    where $\hat{\mathcal{L}}_K^{-k}$ replaces $w_k$ by the geometric
    mean of the other weights, $\exp(\frac{1}{K-1}\sum_{j\neq k}\log w_j)$
    (the paper's geometric-mean variant). The baseline of sample k does not
    depend on $z_k$, so the estimator is unbiased for the gradient of
    $\mathbb{E}[\hat{\mathcal{L}}_K]$ in both parameter sets.

    All K leave-one-out signals are computed together in O(K) time and memory per
    data point (prefix/suffix log-sum-exps, never a K x K matrix), as a
    difference of two softplus terms of size 1/K rather than of two bounds of
    size |log w|, so they keep their precision in float32 at large K and
    |log w| (see ``vimco_learning_signals``).

    Cost per step: as `ScoreFunctionLoss` with K samples.
    Needs ``n_samples >= 2``.

    Args:
        inf_net: q(z|x); needs ``sample`` and ``log_prob``.
        gen_model: p(x, z).
        n_samples: K >= 2.
        validate: see `Loss`.

    References:
        Mnih & Rezende (2016), Variational inference for Monte Carlo objectives.
        Burda, Grosse & Salakhutdinov (2016), Importance weighted autoencoders.
    """

    min_samples = 2
    min_samples_reason = "each sample's baseline is built from the other samples"

    def __init__(self, inf_net: InfNet, gen_model: GenModel, n_samples: int = 2, *, validate: bool = True):
        super().__init__(inf_net, gen_model, n_samples, validate=validate)

    def _estimate(self, data: Tensor) -> tuple[Tensor, Tensor]:
        _, log_q, log_p = self._draw(data)
        log_weights = log_p - log_q  # [batch, K], differentiable in both parameter sets
        bound = log_mean_exp(log_weights)  # [batch]
        learning_signal = vimco_learning_signals(log_weights)  # [batch, K], no gradient
        surrogate = bound + (learning_signal * log_q).sum(dim=1)  # [batch]
        return -bound.detach().mean(), -surrogate.mean()
