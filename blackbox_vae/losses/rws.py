"""Reweighted wake-sleep."""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch
from torch import Tensor

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.losses._checks import check_n_samples
from blackbox_vae.losses._dreams import dreamed_log_q
from blackbox_vae.losses._importance import log_mean_exp
from blackbox_vae.losses.base import Loss

__all__ = ["RWSLoss"]

PhiUpdate = Literal["wake", "sleep", "wake-sleep"]


class RWSLoss(Loss):
    r"""Reweighted wake-sleep (Bornschein & Bengio 2015; Le et al. 2019).

    Objective (reported): the K-sample bound
    $\hat{\mathcal{L}}_K = \log \frac{1}{K}\sum_k w_k$, $w_k = p(x, z_k)/q(z_k|x)$,
    $z_k \sim q(z|x)$.

    Updates, with self-normalized weights $\tilde w_k = w_k / \sum_j w_j$
    (treated as constants):

    - wake-theta (always, for p): $\sum_k \tilde w_k \nabla_\theta \log p(x, z_k)$,
      the IWAE gradient for $\theta$, unbiased for $\nabla_\theta\,\mathbb{E}[\hat{\mathcal{L}}_K]$.
    - wake-phi (``phi_update="wake"``): $\sum_k \tilde w_k \nabla_\phi \log q(z_k|x)$,
      a self-normalized estimate of $-\nabla_\phi \mathrm{KL}(p(z|x)\,\|\,q(z|x))$, biased
      for finite K, consistent as K grows.
    - sleep-phi (``"sleep"``): dream $(x', z') \sim p$ with ``gen_model.sample`` and
      ascend $\nabla_\phi \log q(z'|x')$, unbiased for
      $-\nabla_\phi\,\mathbb{E}_{p(x)}\mathrm{KL}(p(z|x)\,\|\,q(z|x))$.
    - ``"wake-sleep"``: the average of the two.

    Each term reaches only its own parameter set (latents and dreams are
    detached), so one ``backward`` applies both phases. The sleep phase runs
    first, so that after a call ``inf_net.params_`` is q's for the data (not for
    the dreams), as after every other loss.

    Cost per step: one forward/backward of q and p over K samples; the sleep
    phase adds ancestral sampling of ``n_dreams`` pairs and one q pass on them.

    Args:
        inf_net: q(z|x); needs ``sample`` and ``log_prob``.
        gen_model: p(x, z); the sleep phase also needs its ``sample``.
        n_samples: K; the wake-phi update needs K >= 2 (with K = 1 its expectation is zero).
        phi_update: ``"wake"``, ``"sleep"`` or ``"wake-sleep"``.
        n_dreams: dreamed pairs per sleep phase (default: the batch size).
        validate: see `Loss`.

    References:
        Bornschein & Bengio (2015), Reweighted wake-sleep. Le, Kosiorek, Siddharth, Teh & Wood (2019),
        Revisiting reweighted wake-sleep for models with stochastic control flow.
    """

    choices = {"phi_update": ("wake", "sleep", "wake-sleep")}

    def __init__(
        self,
        inf_net: InfNet,
        gen_model: GenModel,
        n_samples: int = 2,
        phi_update: PhiUpdate = "wake",
        *,
        n_dreams: Optional[int] = None,
        validate: bool = True,
    ):
        super().__init__(inf_net, gen_model, n_samples, validate=validate)
        self._check_choice("phi_update", phi_update)
        if "wake" in phi_update.split("-"):
            check_n_samples(n_samples, 2, f"RWSLoss(phi_update={phi_update!r})",
                            "the wake-phi update self-normalizes K weights; with K = 1 its expectation is zero")
        if n_dreams is not None:
            check_n_samples(n_dreams, 1, "RWSLoss: `n_dreams`")
        self.phi_update = phi_update
        self.n_dreams = n_dreams

    def _estimate(self, data: Tensor) -> tuple[Tensor, Tensor]:
        # The sleep phase first: its q pass on the dreams would otherwise leave inf_net.params_ holding theirs.
        sleep_phi = self._sleep_phi(data.shape[0], data.device) if self.phi_update != "wake" else None
        _, log_q, log_p = self._draw(data)
        log_weights = (log_p - log_q).detach()  # [batch, K]
        normalized_weights = torch.softmax(log_weights, dim=1)  # [batch, K]
        objective = -log_mean_exp(log_weights).mean()  # the negative K-sample bound
        if self.phi_update == "wake":
            # Both wake terms in one weighted sum: 6.1% of a step of the 100-20 SBN at K = 5 (hot_path_tricks).
            return objective, -(normalized_weights * (log_p + log_q)).sum(dim=1).mean()
        wake_theta = (normalized_weights * log_p).sum(dim=1).mean()
        if self.phi_update == "sleep":
            phi_objective = sleep_phi
        else:
            wake_phi = (normalized_weights * log_q).sum(dim=1).mean()
            phi_objective = (wake_phi + sleep_phi) / 2
        return objective, -(wake_theta + phi_objective)

    def _sleep_phi(self, batch: int, device: torch.device) -> Tensor:
        """mean log q(z'|x') over dreams (x', z') ~ p(x, z): a scalar, differentiable in phi."""
        return dreamed_log_q(self, self.n_dreams or batch, device).mean()

    def settings(self) -> dict[str, Any]:
        """K, the phi update and the number of dreams (see `Loss.settings`)."""
        return {**super().settings(), "phi_update": self.phi_update, "n_dreams": self.n_dreams}

    def extra_repr(self) -> str:
        return f"n_samples={self.n_samples}, phi_update={self.phi_update!r}"
