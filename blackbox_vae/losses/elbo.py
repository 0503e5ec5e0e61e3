"""The reparameterized ELBO, with NVAE's KL warm-up and KL balancing as options."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.latents import Latents
from blackbox_vae.losses.base import Loss

__all__ = ["ELBOLoss"]

#: NVAE's floor of the KL coefficient during warm-up: the KL term is never switched off entirely.
KL_FLOOR = 1e-4


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

    **KL warm-up** (``kl_warmup_steps`` > 0; Sønderby et al. 2016, as NVAE uses it): during the first
    ``kl_warmup_steps`` training calls the surrogate is
    $-\frac1K\sum_k [\log p(x|z_k) - \beta \sum_g \gamma_g (\log q(z_{k,g}|\cdot) - \log p(z_{k,g}|\cdot))]$ with
    $\beta = \max(t / T, 10^{-4})$ rising linearly in the call count t, which the state dict keeps. **KL
    balancing** (``kl_balancing=True``, NVAE's) sets each group's $\gamma_g$ while $\beta < 1$ to its share of
    the batch's mean |KL| divided by $\alpha_g$ (the group's size over the number of groups of that size, as
    NVAE's quadratic rule for scales), normalized to mean 1 and detached: groups that carry little
    information are pushed less to carry none. After the warm-up both are off and the surrogate is the ELBO.
    The reported value is always the plain negative ELBO, so ``loss_history_`` stays comparable.

    Cost per step: one forward and backward pass of q and p over K samples.

    Args:
        inf_net: q(z|x); needs ``rsample`` (and ``group_log_prob`` with ``kl_balancing``).
        gen_model: p(x, z); needs ``group_log_prob`` when ``kl_warmup_steps`` > 0.
        n_samples: K, samples per data point.
        kl_warmup_steps: training calls over which the KL coefficient rises to 1 (0: no warm-up).
        kl_balancing: weigh the groups' KL terms during the warm-up.
        validate: see `Loss`.

    Raises:
        TypeError: if ``inf_net`` has no ``rsample`` (``has_rsample`` is False), or a model lacks the
            ``group_log_prob`` an option needs.
        ValueError: for a negative ``kl_warmup_steps``, or ``kl_balancing`` without a warm-up.

    References:
        Kingma & Welling (2014), Auto-encoding variational Bayes.
        Rezende, Mohamed & Wierstra (2014), Stochastic backpropagation and
        approximate inference in deep generative models.
        Sønderby et al. (2016), Ladder variational autoencoders (KL warm-up).
        Vahdat & Kautz (2020), NVAE: a deep hierarchical variational autoencoder (KL balancing).
    """

    needs = ("rsample",)
    needs_differentiable_gen_model = True

    def __init__(self, inf_net: InfNet, gen_model: GenModel, n_samples: int = 1, kl_warmup_steps: int = 0,
                 kl_balancing: bool = False, *, validate: bool = True):
        super().__init__(inf_net, gen_model, n_samples, validate=validate)
        if isinstance(kl_warmup_steps, bool) or not isinstance(kl_warmup_steps, int) or kl_warmup_steps < 0:
            raise ValueError(f"ELBOLoss: `kl_warmup_steps` must be an integer >= 0 (0: no warm-up); got "
                             f"{kl_warmup_steps!r}.")
        self.kl_warmup_steps = kl_warmup_steps
        # Not in `choices`: those are the estimator's options, each value with an exact-gradient case in the
        # registry's examples; the warm-up and its balancing are training aids that change the objective, checked
        # against the weighted objective on the same draw (tests/test_nvae.py).
        if not isinstance(kl_balancing, bool):
            raise ValueError(f"ELBOLoss: `kl_balancing` must be True or False; got {kl_balancing!r}.")
        self.kl_balancing = kl_balancing
        if self.kl_balancing and not kl_warmup_steps:
            raise ValueError("ELBOLoss: `kl_balancing=True` acts during the KL warm-up only; give kl_warmup_steps > 0.")
        if kl_warmup_steps:
            if not gen_model.has_group_log_prob:
                gen_model.group_log_prob(None)  # raises its NotImplementedError, which names the fix
            if self.kl_balancing and not inf_net.has_group_log_prob:
                inf_net.group_log_prob(None)
        self.steps = 0  # training calls so far: where the warm-up stands

    @property
    def kl_coefficient(self) -> float:
        """The warm-up's beta at the next training call: ``max(steps / kl_warmup_steps, 1e-4)``, 1 after it."""
        if not self.kl_warmup_steps or self.steps >= self.kl_warmup_steps:
            return 1.0
        return max(self.steps / self.kl_warmup_steps, KL_FLOOR)

    def _estimate(self, data: Tensor) -> tuple[Tensor, Tensor]:
        beta = self.kl_coefficient
        if self.training and torch.is_grad_enabled():
            self.steps += 1
        latents, log_q, log_p = self._draw(data, "rsample")
        negative_elbo = -(log_p - log_q).mean()
        if beta == 1.0:
            return negative_elbo, negative_elbo  # the objective is its own surrogate
        log_p_groups = self.gen_model.group_log_prob(latents)  # [batch, K, G]
        log_likelihood = log_p - log_p_groups.sum(-1)  # log p(x | z): [batch, K]
        if self.kl_balancing:
            kl_groups = self.inf_net.group_log_prob(latents) - log_p_groups  # [batch, K, G]
            kl = (kl_groups * _balancing_coefficients(kl_groups.detach(), latents)).sum(-1)
        else:
            kl = log_q - log_p_groups.sum(-1)
        return negative_elbo.detach(), -(log_likelihood - beta * kl).mean()

    def settings(self) -> dict[str, Any]:
        """K, and the warm-up options when there is a warm-up (see `Loss.settings`; without one the settings
        are those of states saved before the options existed)."""
        if not self.kl_warmup_steps:
            return super().settings()
        return {**super().settings(), "kl_warmup_steps": self.kl_warmup_steps, "kl_balancing": self.kl_balancing}

    def get_extra_state(self) -> dict[str, Any]:
        """The history, and the call count where the warm-up stands."""
        return {**super().get_extra_state(), "steps": self.steps}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restores what `get_extra_state` saved (states saved before the warm-up existed count from 0)."""
        super().set_extra_state(state)
        self.steps = int(state.get("steps", 0))

    def extra_repr(self) -> str:
        extra = f", kl_warmup_steps={self.kl_warmup_steps}, kl_balancing={self.kl_balancing}" \
            if getattr(self, "kl_warmup_steps", 0) else ""  # also while __init__ fails
        return f"n_samples={self.n_samples}{extra}"


def _balancing_coefficients(kl_groups: Tensor, latents: Latents) -> Tensor:
    """NVAE's KL-balancing weights ``[G]``: the mean |KL| of each group (+0.01) over alpha_g, normalized to mean 1.

    alpha_g is the group's number of latent units over the number of groups of that size (normalized to a
    minimum of 1): for NVAE's scales, 4^scale / groups per scale. Latents that are not one tensor per group
    get alpha = 1.
    """
    share = kl_groups.abs().mean(dim=(0, 1)) + 0.01  # [G]
    groups = kl_groups.shape[-1]
    if isinstance(latents, (tuple, list)) and len(latents) == groups:
        sizes = [z[0, 0].numel() for z in latents]
        alpha = torch.tensor([size / sizes.count(size) for size in sizes], dtype=share.dtype, device=share.device)
        share = share / (alpha / alpha.min())
    return share / share.mean()
