"""ARM and DisARM: antithetic, unbiased gradients for Bernoulli latents, one layer at a time."""

from __future__ import annotations

import torch
from torch import Tensor

from blackbox_vae.latents import Latents
from blackbox_vae.losses.base import Loss

__all__ = ["ARMLoss", "DisARMLoss"]


class _AntitheticLoss(Loss):
    """The ELBO with an antithetic pair of samples per Bernoulli layer; subclasses weigh the pair (`_coefficient`).

    For each layer q draws (in `InfNet.layer_order`), the layers before it are shared by a pair: one uniform
    vector u gives b = 1[u < sigmoid(a)] and its antithetic twin b' = 1[u > sigmoid(-a)], a being the layer's
    logits (`InfNet.bernoulli_logits`); each member of the pair is completed by ancestral draws of the later
    layers and scored, f = log p(x, z) - log q(z|x). The pair gives an unbiased estimate of the gradient with
    respect to that layer's logits, which backpropagates into q's parameters. As for every score-function
    estimator, the gradient of f's own dependence on q vanishes in expectation (E_q[grad log q] = 0) and is
    left out. p's gradient is the mean of grad log p(x, z) over all the scored samples, each a draw from q.

    Cost: ``n_samples`` = K evaluations of log p(x, z) per data point, K/(2L) pairs per layer for L layers;
    K must be a multiple of 2L.
    """

    min_samples = 2
    min_samples_reason = "each antithetic pair costs two evaluations of log p(x, z)"
    needs = ("bernoulli_logits",)

    def _coefficient(self, logits: Tensor, u: Tensor, b: Tensor, b_anti: Tensor, f: Tensor, f_anti: Tensor) -> Tensor:
        """The estimate of d E[f] / d logits from one pair: ``[batch, P, *layer shape]`` (f: ``[batch, P]``)."""
        raise NotImplementedError

    def _estimate(self, data: Tensor) -> tuple[Tensor, Tensor]:
        name = type(self).__name__
        inf_net = self.inf_net(data)
        self._check_hook(inf_net, "bernoulli_logits")  # again after forward: a DistributionInfNet's distribution decides
        batch, k = data.shape[0], self.n_samples
        with torch.no_grad():
            base = inf_net.sample(k // 2)  # the shared earlier layers of every pair
        layers = list(base) if isinstance(base, tuple) else [base]
        n_layers = len(layers)
        if k % (2 * n_layers):
            raise ValueError(f"{name}: `n_samples` (K) must be a multiple of 2 x {n_layers} layers = {2 * n_layers} "
                             f"(an antithetic pair at each layer, two evaluations each); got {k}.")
        pairs = k // (2 * n_layers)
        layers = [z[:, :pairs] for z in layers]
        order = (inf_net.layer_order or tuple(range(n_layers))) if isinstance(base, tuple) else (0,)
        pack = tuple if isinstance(base, tuple) else (lambda entries: entries[0])

        drawn, members = [], []  # per layer: (logits, u, b, b'); the scored latents, pair member by pair member
        for step, layer in enumerate(order):
            logits = inf_net.bernoulli_logits(pack(layers), layer)  # [batch, P, *shape], differentiable
            if logits.shape != layers[layer].shape:
                raise ValueError(f"{name}: `{type(inf_net).__name__}.bernoulli_logits` returned shape "
                                 f"{tuple(logits.shape)} for layer {layer}; expected that layer's "
                                 f"[batch, n_samples, *shape] = {tuple(layers[layer].shape)}.")
            probs = torch.sigmoid(logits.detach())
            u = torch.rand_like(probs)
            b, b_anti = (u < probs).to(probs.dtype), (u > 1 - probs).to(probs.dtype)
            drawn.append((logits, u, b, b_anti))
            for value in (b, b_anti):
                filled = list(layers)
                filled[layer] = value
                with torch.no_grad():  # the later layers: ancestral draws given this member
                    for later in order[step + 1:]:
                        filled[later] = torch.bernoulli(torch.sigmoid(inf_net.bernoulli_logits(pack(filled), later)))
                members.append(filled)
        latents: Latents = pack([torch.cat([member[i] for member in members], dim=1) for i in range(n_layers)])

        with torch.no_grad():
            log_q = self._checked(inf_net.log_prob(latents), batch, k, f"{type(inf_net).__name__}.log_prob")
        log_p = self._score(data, latents)  # [batch, K], differentiable in p's parameters
        self._keep(log_q, log_p)
        signal = (log_p.detach() - log_q).view(batch, n_layers, 2, pairs)  # f of each member
        q_surrogate = 0.0
        for step, (logits, u, b, b_anti) in enumerate(drawn):
            f, f_anti = signal[:, step, 0], signal[:, step, 1]  # [batch, P]
            coefficient = self._coefficient(logits.detach(), u, b, b_anti, f, f_anti)
            q_surrogate = q_surrogate + (coefficient * logits).flatten(2).sum(2).mean(1)  # [batch]
        surrogate = q_surrogate + log_p.mean(1)
        return -signal.mean(), -surrogate.mean()


def _expand(values: Tensor, like: Tensor) -> Tensor:
    """``[batch, P]`` values broadcast against ``[batch, P, *shape]``."""
    return values.view(*values.shape, *([1] * (like.dim() - 2)))


class ARMLoss(_AntitheticLoss):
    r"""ARM (Yin & Zhou 2019): the augment-REINFORCE-merge estimator of the ELBO's gradient for Bernoulli latents.

    For logits $\alpha$ of a Bernoulli layer and $u \sim \mathcal{U}(0, 1)$ per unit,

    $$
    \nabla_\alpha \mathbb{E}[f(z)] = \mathbb{E}_u\big[\big(f(\mathbb{1}[u > \sigma(-\alpha)])
        - f(\mathbb{1}[u < \sigma(\alpha)])\big)\,(u - \tfrac{1}{2})\big],
    $$

    unbiased, with f = log p(x, z) - log q(z|x) the ELBO's integrand (later layers drawn ancestrally given
    each member of the pair). Several layers: the layer-wise form of the paper, one pair per layer.

    Reported objective: the negative ELBO, averaged over all K scored samples.

    Args:
        inf_net: q(z|x) with Bernoulli latents: needs `InfNet.bernoulli_logits` (the library's SBN, deep SBN,
            HVAE encoders and `RelaxedBernoulliInfNet` have it).
        gen_model: p(x, z).
        n_samples: K, evaluations of log p(x, z) per data point: a multiple of 2 x the number of layers.
        validate: see `Loss`.

    References:
        Yin & Zhou (2019), ARM: Augment-REINFORCE-merge gradient for stochastic binary networks.
    """

    def _coefficient(self, logits, u, b, b_anti, f, f_anti):
        return _expand(f_anti - f, u) * (u - 0.5)


class DisARMLoss(_AntitheticLoss):
    r"""DisARM (Dong, Mnih & Tucker 2020; also U2G): ARM with the augmentation integrated out.

    For the same antithetic pair $b = \mathbb{1}[u < \sigma(\alpha)]$, $\tilde b = \mathbb{1}[u > \sigma(-\alpha)]$,

    $$
    \hat g_\alpha = \tfrac{1}{2}\big(f(b) - f(\tilde b)\big)\,(-1)^{\tilde b}\,
        \mathbb{1}[b \neq \tilde b]\,\sigma(|\alpha|),
    $$

    the conditional expectation of ARM's estimate given the pair: unbiased, and of lower variance than
    ARM at the same cost. Several layers: one pair per layer, as for `ARMLoss`.

    Reported objective: the negative ELBO, averaged over all K scored samples.

    Args:
        inf_net: q(z|x) with Bernoulli latents: needs `InfNet.bernoulli_logits`.
        gen_model: p(x, z).
        n_samples: K, evaluations of log p(x, z) per data point: a multiple of 2 x the number of layers.
        validate: see `Loss`.

    References:
        Dong, Mnih & Tucker (2020), DisARM: An antithetic gradient estimator for binary latent variables.
        Yin, Ho, Zhang, Qian & Zhou (2020), Probabilistic best subset selection via gradient-based optimization
        (U2G).
    """

    def _coefficient(self, logits, u, b, b_anti, f, f_anti):
        return 0.5 * _expand(f - f_anti, u) * (1 - 2 * b_anti) * (b != b_anti) * torch.sigmoid(logits.abs())
