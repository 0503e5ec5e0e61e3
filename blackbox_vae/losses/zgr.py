"""ZGR: the ELBO with exact discrete samples and the zero-temperature Gumbel-Rao gradient."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.losses.base import Loss

__all__ = ["ZGRLoss"]


class ZGRLoss(Loss):
    r"""The ELBO of discrete latents with the ZGR gradient (Shekhovtsov 2023; DARN(1/2) for Bernoulli latents).

    $$
    \mathcal{L}(x) = \frac{1}{K}\sum_{k=1}^{K} \big[\log p(x, z_k) - \log q(z_k|x)\big],
    \quad z_k \sim q(z|x) \text{ exact, from } ``inf\_net.zgr\_rsample``
    $$

    The latents are exact draws from q, so the value is an unbiased ELBO estimate and p only ever sees
    discrete codes; the gradient flows back through each draw with ZGR's Jacobian (`blackbox_vae.zgr`),
    the zero-temperature limit of the Gumbel-Rao estimator. It is unbiased when the objective is linear in
    each latent and biased otherwise (less than straight-through's bias, with no temperature to tune).
    p's gradient is exact given the samples.

    With ``analytic_kl=True`` the gradient is that of ``inf_net.analytic_elbo`` instead: the same expectation
    with per-layer KL terms in closed form (the baseline of Flach, Schlesinger & Shekhovtsov 2024 for
    hierarchical Bernoulli VAEs), of lower variance. The reported value stays the plain single-sample
    estimate ``-(log p(x, z) - log q(z|x))``, so that ``loss_history_`` reads as every other loss's.

    Cost per step: one forward/backward of q and p over K samples.

    Args:
        inf_net: q(z|x); needs ``zgr_rsample`` (`RelaxedBernoulliInfNet`, `RelaxedCategoricalInfNet`, the
            library's sigmoid belief networks and hierarchical Bernoulli models have it).
        gen_model: p(x, z).
        n_samples: K.
        analytic_kl: use ``inf_net.analytic_elbo`` (closed-form KL terms).
        validate: see `Loss`.

    Raises:
        TypeError: if ``inf_net`` has no ``zgr_rsample``, or (``analytic_kl=True``) no ``analytic_elbo``.
        ValueError: for an ``analytic_kl`` that is not a bool.

    References:
        Shekhovtsov (2023), Cold analysis of Rao-Blackwellized straight-through Gumbel-softmax gradient
        estimator, ICML.
        Gregor, Danihelka, Mnih, Blundell & Wierstra (2014), Deep autoregressive networks, ICML.
    """

    needs = ("zgr_rsample",)
    needs_differentiable_gen_model = True
    choices = {"analytic_kl": (False, True)}

    def __init__(self, inf_net: InfNet, gen_model: GenModel, n_samples: int = 1, analytic_kl: bool = False, *,
                 validate: bool = True):
        super().__init__(inf_net, gen_model, n_samples, validate=validate)
        self.analytic_kl = self._check_choice("analytic_kl", analytic_kl)
        if self.analytic_kl:
            self._check_hook(inf_net, "analytic_elbo")

    def _estimate(self, data: Tensor) -> tuple[Tensor, Tensor]:
        latents, log_q, log_p = self._draw(data, "zgr_rsample")
        negative_elbo = -(log_p - log_q).mean()
        if not self.analytic_kl:
            return negative_elbo, negative_elbo  # the objective is its own surrogate
        analytic = self._checked(self.inf_net.analytic_elbo(self.gen_model, data, latents), data.shape[0],
                                 self.n_samples, f"{type(self.inf_net).__name__}.analytic_elbo")
        return negative_elbo.detach(), -analytic.mean()

    def settings(self) -> dict[str, Any]:
        """K and ``analytic_kl`` (see `Loss.settings`)."""
        return {**super().settings(), "analytic_kl": self.analytic_kl}

    def extra_repr(self) -> str:
        return f"n_samples={self.n_samples}, analytic_kl={self.analytic_kl}"
