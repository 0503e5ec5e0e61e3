"""The unordered set estimator: score-function gradients from K distinct latents drawn without replacement."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn.functional import logsigmoid, one_hot

from blackbox_vae._call_state import set_call_state
from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.latents import Latents
from blackbox_vae.losses._layers import BERNOULLI, CATEGORICAL, declared_kinds, fitting_advice
from blackbox_vae.losses._one_layer import check_declared_layer, one_layer_logits
from blackbox_vae.losses._without_replacement import sample_without_replacement, unordered_set_estimates
from blackbox_vae.losses.base import Loss

__all__ = ["UnorderedSetLoss"]


class UnorderedSetLoss(Loss):
    r"""The unordered set estimator with its built-in baseline (Kool, van Hoof & Welling 2020).

    K distinct latent values S are drawn from q without replacement (Gumbel-top-k, by stochastic beam search
    over the latent dimensions). With $P(S)$ the probability of drawing that set, $R(S, s) =
    P^{D \setminus s}(S \setminus s) / P(S)$ and $f = \log p(x, z) - \log q(z|x)$,

    $$
    \sum_{s \in S} q(s)\,R(S, s)\,f(s)
    $$

    is an unbiased estimate of the ELBO (the reported objective, with the weights q(s) R(S, s) kept in
    ``weights_``), whose pathwise gradient gives p's, and

    $$
    \hat g = \sum_{s \in S} q(s)\,R(S, s)\,\Big(f(s) - \sum_{s' \in S} q(s')\,R^{D \setminus s}(S, s')\,f(s')\Big)
        \nabla \log q(s)
    $$

    is an unbiased estimate of the gradient with respect to q: for each s, the baseline is the unordered set
    estimate of E_q[f] from the others, given s (``R^{D-s}(S, s) = 1``). This Rao-Blackwellizes the
    score-function estimator over the order of the draws; when q is nearly deterministic, S covers almost
    all its mass and the estimate tends to the exact sum. As for every score-function estimator, the
    gradient of f's own dependence on q vanishes in expectation and is left out.

    The set probabilities are one-dimensional integrals, computed by quadrature in float64 to about 1e-13
    relative error (checked against the sum over orderings), on about 200 nodes; the K baselines, which
    involve K x K integrals, are summed inside one integral per sample: O(K) integrals per data point.

    Refusals: a model with neither `InfNet.bernoulli_logits` nor `InfNet.categorical_logits` is refused when the
    loss is built (a TypeError), and so is one whose `InfNet.layer_kinds` (or `InfNet.layer_order`) declares
    several layers, or a layer that is neither Bernoulli nor categorical (a ValueError); otherwise the first call
    refuses latents of several layers, and a draw whose values are not in {0, 1} (or not one-hot, for
    `categorical_logits`) (ValueErrors). Each message names the estimators that fit the model.

    Args:
        inf_net: q(z|x) with one layer of independent discrete latents: Bernoulli (`InfNet.bernoulli_logits`)
            or one-hot categorical (`InfNet.categorical_logits`). The library's SBN, categorical VAE and
            `DistributionInfNet` with a Bernoulli or OneHotCategorical have them.
        gen_model: p(x, z).
        n_samples: K >= 2 distinct values per data point (the baseline needs another sample), at most the
            number of latent values (2^D, or C^D).
        validate: see `Loss`.

    References:
        Kool, van Hoof & Welling (2020), Estimating gradients for discrete random variables by sampling
        without replacement. Kool, van Hoof & Welling (2019), Stochastic beams and where to find them.
    """

    #: q(s) R(S, s) of the last call's samples, ``[batch, K]`` (detached): the reported objective is
    #: ``-(weights_ * (log_p_ - log_q_)).sum(1).mean()``.
    weights_: Tensor | None = None
    min_samples = 2
    min_samples_reason = "each sample's baseline is estimated from the others"

    def __init__(self, inf_net: InfNet, gen_model: GenModel, n_samples: int = 2, *, validate: bool = True):
        super().__init__(inf_net, gen_model, n_samples, validate=validate)
        self._check_discrete(inf_net)
        check_declared_layer(type(self).__name__, inf_net, gen_model, (BERNOULLI, CATEGORICAL))

    def _check_discrete(self, inf_net: InfNet) -> None:
        if not (inf_net.has_bernoulli_logits or inf_net.has_categorical_logits):
            raise TypeError(
                f"{type(self).__name__} needs `{type(inf_net).__name__}.bernoulli_logits` or `.categorical_logits`, "
                "which it does not have (`has_bernoulli_logits` and `has_categorical_logits` are False): it draws "
                "distinct values of discrete latents from q's logits. Implement one, subclass "
                "RelaxedBernoulliInfNet or RelaxedCategoricalInfNet, or use a score-function estimator such as "
                "VIMCOLoss, which needs only `sample` and `log_prob`. "
                f"{fitting_advice(inf_net, getattr(self, 'gen_model', None), declared_kinds(inf_net))}")

    def _class_log_probs(self, inf_net: InfNet) -> tuple[Tensor, Tensor, bool, bool]:
        """q's log-probabilities per latent dimension and class, ``[batch, D, C]`` (float64, detached), with one
        draw of the latents ``[batch, 1, *shape]``, whether they are one-hot, and whether they come as a
        1-tuple."""
        kinds = declared_kinds(inf_net)
        one_hot_latents = kinds == (CATEGORICAL,) if kinds is not None else not inf_net.has_bernoulli_logits
        with torch.no_grad():
            logits, layer, one_tuple = one_layer_logits(
                type(self).__name__, inf_net, "categorical_logits" if one_hot_latents else "bernoulli_logits",
                gen_model=self.gen_model, check_values=not self._draws_checked)
        set_call_state(self, "_draws_checked", True)
        batch = logits.shape[0]
        logits = logits[:, 0].to(torch.float64)
        if one_hot_latents:
            log_probs = torch.log_softmax(logits, dim=-1).reshape(batch, -1, logits.shape[-1])
        else:  # classes 0 and 1
            flat = logits.reshape(batch, -1, 1)
            log_probs = torch.cat([logsigmoid(-flat), logsigmoid(flat)], dim=2)
        return log_probs, layer, one_hot_latents, one_tuple

    def _estimate(self, data: Tensor) -> tuple[Tensor, Tensor]:
        name = type(self).__name__
        inf_net = self.inf_net(data)
        self._check_discrete(inf_net)  # again after forward: a DistributionInfNet's distribution decides
        batch, k = data.shape[0], self.n_samples
        log_probs, draw, one_hot_latents, one_tuple = self._class_log_probs(inf_net)
        shape, dtype = draw.shape[2:], draw.dtype
        dims, n_classes = log_probs.shape[1:]
        if dims * math.log(n_classes) < math.log(k) - 1e-9:
            raise ValueError(f"{name}: `n_samples` (K) = {k} distinct values exceed the {n_classes}^{dims} = "
                             f"{n_classes ** dims} values of the latents; use K <= {n_classes ** dims}.")
        classes, log_q_set = sample_without_replacement(log_probs, k)  # [batch, K, D], [batch, K]
        if self.validate and not bool(torch.isfinite(log_q_set).all()):
            raise ValueError(f"{name}: fewer than `n_samples` = {k} latent values have positive probability "
                             "under q; lower K.")
        if one_hot_latents:
            layer = one_hot(classes, n_classes).to(dtype).reshape(batch, k, *shape)
        else:
            layer = classes.to(dtype).reshape(batch, k, *shape)
        latents: Latents = (layer,) if one_tuple else layer

        log_q = self._checked(inf_net.log_prob(latents), batch, k, f"{type(inf_net).__name__}.log_prob")
        log_p = self._score(data, latents)
        self._keep(log_q, log_p)
        with torch.no_grad():
            signal = (log_p - log_q).to(torch.float64)  # f(s)
            # for each s, its baseline: E[f] estimated from the set given s
            log_set, log_without_one, baseline = unordered_set_estimates(log_q_set, signal)
            weight = torch.exp(log_q_set + log_without_one - log_set.unsqueeze(1))  # q(s) R(S, s)
            score_weight = (weight * (signal - baseline)).to(log_q.dtype)
            weight = weight.to(log_q.dtype)
        set_call_state(self, "weights_", weight)
        elbo = (weight * (log_p.detach() - log_q.detach())).sum(1)  # [batch]
        surrogate = (score_weight * log_q).sum(1) + (weight * log_p).sum(1)
        return -elbo.mean(), -surrogate.mean()

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["weights_"] = None  # per-call state, like log_p_ and log_q_
        return state

