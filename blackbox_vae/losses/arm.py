"""ARM and DisARM: antithetic, unbiased gradients for Bernoulli latents, one layer at a time."""

from __future__ import annotations

import torch
from torch import Tensor

from blackbox_vae._call_state import set_call_state
from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.latents import Latents
from blackbox_vae.losses._layers import (BERNOULLI, CATEGORICAL, OTHER, bernoulli_log_prob, declared_kinds,
                                         describe_kinds, fitting_advice, is_one_hot, layer_kinds, non_binary_value)
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

    Refusals: every layer must be Bernoulli. A model whose `InfNet.layer_kinds` declares another kind (a one-hot
    layer, say) is refused when the loss is built; otherwise the first call checks the drawn latents (a tensor
    or a tuple of tensors), each layer's values in {0, 1}, and that q's `log_prob` equals the Bernoulli
    log-probability of `bernoulli_logits` summed over the layers (it does not when `bernoulli_logits` is written
    for a one-hot layer, which the message then names). Each refusal is a ValueError naming the layer, what was
    found, and the estimators that fit the model.
    """

    min_samples = 2
    min_samples_reason = "each antithetic pair costs two evaluations of log p(x, z)"
    needs = ("bernoulli_logits",)

    def __init__(self, inf_net: InfNet, gen_model: GenModel, n_samples: int = 2, *, validate: bool = True):
        super().__init__(inf_net, gen_model, n_samples, validate=validate)
        kinds = declared_kinds(inf_net)
        if kinds is not None and any(kind != BERNOULLI for kind in kinds):
            layer = next(index for index, kind in enumerate(kinds) if kind != BERNOULLI)
            raise ValueError(f"{type(self).__name__} draws every layer of latents as Bernoulli bits, but "
                             f"`{type(inf_net).__name__}.layer_kinds` declares layer {layer} {kinds[layer]!r} "
                             f"({describe_kinds(kinds)}). {fitting_advice(inf_net, gen_model, kinds)}")

    def _layer_error(self, inf_net: InfNet, layer: int, found: str, latents: Latents, kind: str) -> ValueError:
        """The refusal of a layer that is not Bernoulli: ``found`` says what it is, ``kind`` which kind it is for the
        advice (the other layers' as declared, or as drawn)."""
        kinds = list(layer_kinds(inf_net, latents) or ())
        if layer < len(kinds):
            kinds[layer] = kind
        return ValueError(f"{type(self).__name__} draws every layer of latents as Bernoulli bits, but layer {layer} "
                          f"of `{type(inf_net).__name__}.sample` {found}. Declare what each layer is in `layer_kinds` "
                          f"(e.g. ('categorical', 'bernoulli')) to be told when the loss is built. "
                          f"{fitting_advice(inf_net, self.gen_model, tuple(kinds) or None)}")

    def _logits(self, inf_net: InfNet, latents: Latents, layer: int) -> Tensor:
        """``inf_net.bernoulli_logits(latents, layer)``; a layer it has no logits for (NotImplementedError) is
        refused as not Bernoulli."""
        try:
            return inf_net.bernoulli_logits(latents, layer)
        except NotImplementedError as error:
            reason = str(error).splitlines()[0] if str(error) else "NotImplementedError"
            values = latents[layer] if isinstance(latents, tuple) else latents
            raise self._layer_error(inf_net, layer, f"has no Bernoulli logits (`bernoulli_logits` raised: {reason})",
                                    latents, CATEGORICAL if is_one_hot(values) else OTHER) from error

    def _check_values(self, inf_net: InfNet, base: Latents, layers: list[Tensor]) -> None:
        """The first call's check of the drawn layers' values: a tensor or a tuple, each in {0, 1}."""
        if not isinstance(base, (Tensor, tuple)):
            raise ValueError(f"{type(self).__name__} handles latents as a tensor or a tuple of Bernoulli layers; "
                             f"`{type(inf_net).__name__}.sample` returned {type(base).__name__}. "
                             f"{fitting_advice(inf_net, self.gen_model)}")
        for layer, values in enumerate(layers):
            value = non_binary_value(values)
            if value is not None:
                raise self._layer_error(inf_net, layer, f"holds values other than 0 and 1 (e.g. {value:g})", base,
                                        OTHER)

    def _check_log_prob(self, inf_net: InfNet, base: Latents, layers: list[Tensor], order: tuple[int, ...],
                        drawn: list[tuple[Tensor, Tensor, Tensor, Tensor]]) -> None:
        """The first call's check that q's log_prob of the drawn layers is the Bernoulli log-probability of
        `bernoulli_logits` (``drawn``: each layer's logits, given the same earlier layers), to rounding."""
        with torch.no_grad():
            computed = inf_net.log_prob(base)  # [batch, P]
            terms = [bernoulli_log_prob(drawn[step][0].detach().double(), layers[layer].double())
                     for step, layer in enumerate(order)]  # each [batch, P]
        log_q, bernoulli = computed.double(), sum(terms)
        # rounding: a few ulps of the magnitudes summed, in the lowest precision the model computed in
        eps = max(torch.finfo(t.dtype).eps for t in (computed, *(d[0] for d in drawn)) if t.is_floating_point())
        tolerance = 1e-3 + 16 * eps * (log_q.abs() + sum(t.abs() for t in terms))
        gap = (log_q - bernoulli).abs()
        wrong = (gap > tolerance) & torch.isfinite(gap)
        if not bool(wrong.any()):
            return
        worst = gap[wrong].max().item()
        one_hot = [layer for layer in order if is_one_hot(layers[layer])]
        if one_hot:
            width = layers[one_hot[0]].shape[-1]
            found = (f"is one-hot (every draw has exactly one 1 among its last dimension's {width} entries), and "
                     f"`{type(inf_net).__name__}.log_prob` differs from the Bernoulli log-probability of "
                     f"`bernoulli_logits` by up to {worst:.3g} nats: its `bernoulli_logits` is written for a "
                     "one-hot layer, whose Bernoulli draws would have any number of ones")
            raise self._layer_error(inf_net, one_hot[0], found, base, CATEGORICAL)
        raise ValueError(f"{type(self).__name__} draws every layer of latents as Bernoulli bits from "
                         f"`{type(inf_net).__name__}.bernoulli_logits`, but `{type(inf_net).__name__}.log_prob` of "
                         f"the drawn layers {tuple(order)} differs from their Bernoulli log-probability under those "
                         f"logits by up to {worst:.3g} nats: some layer is not Bernoulli(sigmoid(bernoulli_logits)). "
                         f"{fitting_advice(inf_net, self.gen_model, declared_kinds(inf_net))}")

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
        checking = not self._draws_checked  # the first call
        if checking:
            self._check_values(inf_net, base, layers)
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
            logits = self._logits(inf_net, pack(layers), layer)  # [batch, P, *shape], differentiable
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
                        filled[later] = torch.bernoulli(torch.sigmoid(self._logits(inf_net, pack(filled), later)))
                members.append(filled)
        if checking:
            self._check_log_prob(inf_net, pack(layers), layers, order, drawn)
            set_call_state(self, "_draws_checked", True)
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

    Refusals (ValueErrors naming the layer, what was found, and the estimators that fit): a layer that
    `InfNet.layer_kinds` declares other than ``"bernoulli"`` when the loss is built; where nothing is declared,
    at the first call, a drawn layer with values other than 0 and 1, one `bernoulli_logits` has no logits for,
    or a `log_prob` that is not the Bernoulli log-probability of `bernoulli_logits` (a `bernoulli_logits`
    written for a one-hot layer).

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

    Refusals: as `ARMLoss` (every layer must be Bernoulli).

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
