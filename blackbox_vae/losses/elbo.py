"""The reparameterized ELBO."""

from __future__ import annotations

from torch import Tensor

from blackbox_vae.losses.base import Loss

__all__ = ["ELBOLoss"]


class ELBOLoss(Loss):
    r"""Reparameterized (pathwise) estimator of the ELBO and its gradient.

    $$
    \mathcal{L}(x) = \frac{1}{K}\sum_{k=1}^{K} \big[\log p(x, z_k) - \log q(z_k|x)\big],
    \quad z_k = g_\phi(\epsilon_k, x),\ \epsilon_k \sim p(\epsilon)
    $$

    The surrogate is $-\mathcal{L}$ itself: gradients flow through the
    samples into q's parameters and into p's. Unbiased for the gradient of the
    ELBO in both parameter sets, and usually of far lower variance than the
    score function. Needs ``inf_net.rsample`` (continuous latents).

    Cost per step: one forward and backward pass of q and p over K samples.

    Args:
        inf_net: q(z|x); needs ``rsample``.
        gen_model: p(x, z).
        n_samples: K, samples per data point.
        validate: see `Loss`.

    Raises:
        TypeError: if ``inf_net`` has no ``rsample`` (``has_rsample`` is False).

    References:
        Kingma & Welling (2014), Auto-encoding variational Bayes.
        Rezende, Mohamed & Wierstra (2014), Stochastic backpropagation and
        approximate inference in deep generative models.
    """

    needs = ("rsample",)

    def _estimate(self, data: Tensor) -> tuple[Tensor, Tensor]:
        _, log_q, log_p = self._draw(data, "rsample")
        negative_elbo = -(log_p - log_q).mean()  # the objective is its own surrogate
        return negative_elbo, negative_elbo
