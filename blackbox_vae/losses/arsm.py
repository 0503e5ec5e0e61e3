"""ARSM: the categorical extension of ARM, by swapping the coordinates of a Dirichlet draw."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.functional import one_hot

from blackbox_vae._call_state import set_call_state
from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.latents import Latents
from blackbox_vae.losses._layers import CATEGORICAL
from blackbox_vae.losses._one_layer import check_declared_layer, one_layer_logits
from blackbox_vae.losses.base import Loss

__all__ = ["ARSMLoss"]


class ARSMLoss(Loss):
    r"""ARSM (Yin, Yue & Zhou 2019): augment-REINFORCE-swap-merge gradients for one layer of categorical latents.

    For each of K draws, one $\pi_d \sim \mathrm{Dirichlet}(\mathbf{1}_C)$ per latent dimension d gives the
    exact draw $z_d = \arg\min_i (\log \pi_{di} - \phi_{di})$ from q = softmax(φ), and, for every pair of
    classes (m, j), the pseudo-action $z^{m \leftrightharpoons j}$ drawn the same way from π with its
    coordinates m and j swapped (in every dimension at once). With f = log p(x, z) − log q(z|x),

    $$
    \hat g_{dc} = \sum_{j=1}^{C} \Big(f(z^{c \leftrightharpoons j})
        - \tfrac{1}{C} \sum_{m=1}^{C} f(z^{m \leftrightharpoons j})\Big)\big(\tfrac{1}{C} - \pi_{dj}\big)
    $$

    is an unbiased estimate of the gradient of E_q[f] with respect to the logits φ_dc, which backpropagates
    into q's parameters. For C = 2 it is ARM. As for every score-function estimator, the gradient of f's own
    dependence on q vanishes in expectation and is left out. Every pseudo-action is itself a draw from q,
    so p's gradient is the mean of ∇ log p(x, z) over all of them.

    Cost: each draw evaluates p at its C(C − 1)/2 + 1 distinct pseudo-actions (z^{m⇌j} = z^{j⇌m}, and
    z^{m⇌m} = z): 4 for C = 3, 46 for C = 10, so compare estimators at equal evaluations of p.

    Reported objective: the negative ELBO over the K exact draws (kept in ``log_p_`` / ``log_q_``).

    Refusals: a model without `InfNet.categorical_logits` is refused when the loss is built (a TypeError), and so
    is one whose `InfNet.layer_kinds` (or `InfNet.layer_order`) declares several layers, or a layer that is not
    categorical (a ValueError); otherwise the first call refuses latents of several layers, and a layer whose
    draw is not one-hot (ValueErrors). Each message names the estimators that fit the model.

    Args:
        inf_net: q(z|x) with one layer of one-hot latents ``[batch, K, *shape, C]``: needs
            `InfNet.categorical_logits` (`RelaxedCategoricalInfNet`, `CategoricalInfNet` and any
            `DistributionInfNet` with a OneHotCategorical have it). For Bernoulli latents use `ARMLoss`
            (the same estimator at C = 2) or `DisARMLoss`.
        gen_model: p(x, z).
        n_samples: K Dirichlet draws per data point.
        validate: see `Loss`.

    References:
        Yin, Yue & Zhou (2019), ARSM: Augment-REINFORCE-swap-merge estimator for gradient backpropagation
        through categorical variables.
    """

    needs = ("categorical_logits",)

    def __init__(self, inf_net: InfNet, gen_model: GenModel, n_samples: int = 1, *, validate: bool = True):
        super().__init__(inf_net, gen_model, n_samples, validate=validate)
        check_declared_layer(type(self).__name__, inf_net, gen_model, (CATEGORICAL,))

    def _estimate(self, data: Tensor) -> tuple[Tensor, Tensor]:
        name = type(self).__name__
        inf_net = self.inf_net(data)
        self._check_hook(inf_net, "categorical_logits")  # again after forward: a DistributionInfNet's distribution
        batch, k = data.shape[0], self.n_samples
        logits, layer, one_tuple = one_layer_logits(name, inf_net, "categorical_logits", gen_model=self.gen_model,
                                                    check_values=not self._draws_checked)  # [batch, 1, *shape, C]
        set_call_state(self, "_draws_checked", True)
        shape, n_classes = layer.shape[2:], layer.shape[-1]
        phi = logits[:, 0].reshape(batch, 1, -1, n_classes)  # [batch, 1, D, C]
        log_q_classes = torch.log_softmax(phi.detach(), dim=-1)

        with torch.no_grad():
            # pi ~ Dirichlet(1) as normalized Exp(1) draws e: log e here (the normalizer cancels in every argmin)
            log_pi = torch.log(-torch.log(torch.rand(batch, k, phi.shape[2], n_classes, dtype=phi.dtype,
                                                     device=phi.device)))
            pairs = _swap_pairs(n_classes, phi.device)  # [E, 2]: (0, 0) (the exact draw), then every m < j
            swaps = _swap_permutations(n_classes, pairs)  # [E, C]: the coordinate order after each swap
            scores = log_pi[:, :, :, swaps] - phi.detach().unsqueeze(3)  # [batch, K, D, E, C]
            actions = scores.argmin(dim=-1).movedim(3, 2)  # [batch, K, E, D]
            n_evaluations = len(pairs)
            log_q = log_q_classes.unsqueeze(2).expand(batch, k, n_evaluations, -1, -1).gather(
                -1, actions.unsqueeze(-1)).squeeze(-1).sum(-1)  # [batch, K, E]
        latents_layer = one_hot(actions, n_classes).to(layer.dtype).reshape(batch, k * n_evaluations, *shape)
        latents: Latents = (latents_layer,) if one_tuple else latents_layer
        log_p = self.gen_model(data, latents).log_prob(data, latents)
        log_p = self._checked(log_p, batch, k * n_evaluations, f"{type(self.gen_model).__name__}.log_prob")
        log_p = log_p.view(batch, k, n_evaluations)
        self._keep(log_q[:, :, 0], log_p[:, :, 0])

        with torch.no_grad():
            f = log_p.detach() - log_q  # [batch, K, E]
            table = f.new_empty(batch, k, n_classes, n_classes)  # f(z^{m<->j}), symmetric, f(z) on the diagonal
            table[:, :, pairs[1:, 0], pairs[1:, 1]] = f[:, :, 1:]
            table[:, :, pairs[1:, 1], pairs[1:, 0]] = f[:, :, 1:]
            diagonal = torch.arange(n_classes, device=f.device)
            table[:, :, diagonal, diagonal] = f[:, :, :1]
            centred = table - table.mean(dim=2, keepdim=True)  # f(z^{c<->j}) - mean_m f(z^{m<->j})
            weights = 1.0 / n_classes - torch.softmax(log_pi, dim=-1)  # 1/C - pi_dj: [batch, K, D, C]
            gradient = torch.einsum("bkcj,bkdj->bkdc", centred, weights)  # d E[f] / d phi_dc, per draw
        q_surrogate = (gradient * phi).flatten(2).sum(2).mean(1)  # [batch]
        surrogate = q_surrogate + log_p.flatten(1).mean(1)  # every pseudo-action is a draw from q
        return -f[:, :, 0].mean(), -surrogate.mean()


def _swap_pairs(n_classes: int, device: torch.device) -> Tensor:
    """``[1 + C(C-1)/2, 2]``: (0, 0), then every (m, j) with m < j."""
    upper = torch.triu_indices(n_classes, n_classes, offset=1, device=device).T
    return torch.cat([torch.zeros(1, 2, dtype=torch.long, device=device), upper])


def _swap_permutations(n_classes: int, pairs: Tensor) -> Tensor:
    """``[E, C]``: for each pair (m, j), the coordinates 0..C-1 with m and j exchanged."""
    order = torch.arange(n_classes, device=pairs.device).repeat(len(pairs), 1)
    rows = torch.arange(len(pairs), device=pairs.device)
    order[rows, pairs[:, 0]] = pairs[:, 1]
    order[rows, pairs[:, 1]] = pairs[:, 0]
    return order
