"""The importance-weighted bound (IWAE) with reparameterized, STL and DReG gradients."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.latents import latent_leaves, map_latents
from blackbox_vae.losses._checks import check_latents
from blackbox_vae.losses._importance import log_mean_exp
from blackbox_vae.losses.base import Loss

__all__ = ["IWAELoss"]

Gradient = Literal["reparam", "stl", "dreg"]


class IWAELoss(Loss):
    r"""The K-sample importance-weighted bound (Burda et al. 2016) with a choice of gradient.

    Objective (reported):

    $$
    \hat{\mathcal{L}}_K(x) = \log \frac{1}{K}\sum_{k=1}^K w_k,\quad
    w_k = \frac{p(x, z_k)}{q(z_k|x)},\ z_k = g_\phi(\epsilon_k, x)
    $$

    Gradients, with $\tilde w_k = w_k/\sum_j w_j$; for $\theta$ always
    $\sum_k \tilde w_k \nabla_\theta \log p(x, z_k)$. For $\phi$:

    - ``"reparam"``: the total derivative of $\hat{\mathcal{L}}_K$, through the
      samples and through q's parameters in $\log q$. Unbiased. With K = 1 it
      is `ELBOLoss`.
    - ``"stl"`` (sticking the landing, Roeder et al. 2017):
      $\sum_k \tilde w_k \frac{\partial \log w_k}{\partial z_k}\frac{\partial z_k}{\partial\phi}$,
      dropping the score term $\partial \log q / \partial\phi$ at fixed z.
      Unbiased for K = 1 (that term has mean zero); for K > 1 it is biased
      (Tucker et al. 2019), though often useful.
    - ``"dreg"`` (doubly reparameterized, Tucker et al. 2019):
      $\sum_k \tilde w_k^2 \frac{\partial \log w_k}{\partial z_k}\frac{\partial z_k}{\partial\phi}$.
      Unbiased for every K, with a signal-to-noise ratio for $\phi$ that does
      not vanish as K grows.

    ``"stl"`` and ``"dreg"`` take $\partial \log w_k/\partial z_k$ with one
    ``torch.autograd.grad`` call on a detached copy of the samples and push it
    back along the sampling path, so they work for any InfNet with ``rsample``
    (tuple/dict latents too) at the cost of one extra partial backward pass.

    Cost per step: one forward/backward of q and p over K samples (plus that
    partial backward for ``"stl"``/``"dreg"``).

    Args:
        inf_net: q(z|x); needs ``rsample``.
        gen_model: p(x, z).
        n_samples: K.
        gradient: ``"reparam"``, ``"stl"`` or ``"dreg"``.
        validate: see `Loss`.

    References:
        Burda, Grosse & Salakhutdinov (2016), Importance weighted autoencoders.
        Roeder, Wu & Duvenaud (2017), Sticking the landing.
        Tucker, Lawson, Gu & Maddison (2019), Doubly reparameterized gradient estimators for Monte Carlo objectives.
    """

    needs = ("rsample",)
    needs_differentiable_gen_model = True
    choices = {"gradient": ("reparam", "stl", "dreg")}

    def __init__(self, inf_net: InfNet, gen_model: GenModel, n_samples: int = 1, gradient: Gradient = "reparam",
                 *, validate: bool = True):
        super().__init__(inf_net, gen_model, n_samples, validate=validate)
        self.gradient = self._check_choice("gradient", gradient)

    def _estimate(self, data: Tensor) -> tuple[Tensor, Tensor]:
        if self.gradient == "reparam" or not torch.is_grad_enabled():
            _, log_q, log_p = self._draw(data, "rsample")
            negative_bound = -log_mean_exp(log_p - log_q).mean()  # the objective is its own surrogate
            return negative_bound, negative_bound
        return self._path_gradient_estimate(data)

    def _path_gradient_estimate(self, data: Tensor) -> tuple[Tensor, Tensor]:
        """STL / DReG: q's parameters get gradient only along the sampling path."""
        batch = data.shape[0]
        inf_net = self.inf_net(data)
        latents = inf_net.rsample(self.n_samples)  # carries the path to phi
        check_latents(latents, batch, self.n_samples, f"{type(self.inf_net).__name__}.rsample")
        # Score at a detached copy: d/d(copy) is the partial derivative at fixed parameters.
        at_sample = map_latents(lambda t: t.detach().requires_grad_(), latents)
        log_q = self._checked(inf_net.log_prob(at_sample), batch, self.n_samples,
                              f"{type(self.inf_net).__name__}.log_prob")
        log_p = self._score(data, at_sample)
        self._keep(log_q, log_p)
        log_weights = log_p - log_q  # [batch, K]
        normalized = torch.softmax(log_weights.detach(), dim=1)  # [batch, K]
        coefficient = normalized if self.gradient == "stl" else normalized.pow(2)
        leaves = [leaf for _, leaf in latent_leaves(at_sample)]
        partials = torch.autograd.grad((coefficient * log_weights).sum(), leaves, retain_graph=True,
                                       allow_unused=True)
        path_term = sum(
            (partial * sample).sum()
            for partial, (_, sample) in zip(partials, latent_leaves(latents))
            if partial is not None
        )
        theta_term = (normalized * log_p).sum()  # reaches theta only: the latents in log_p are detached
        surrogate = (theta_term + path_term) / batch
        return -log_mean_exp(log_weights.detach()).mean(), -surrogate

    def settings(self) -> dict[str, Any]:
        """K and the gradient (see `Loss.settings`)."""
        return {**super().settings(), "gradient": self.gradient}

    def extra_repr(self) -> str:
        return f"n_samples={self.n_samples}, gradient={self.gradient!r}"
