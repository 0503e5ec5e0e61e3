"""Sampling without replacement from a product of categoricals, and the probabilities of the sampled set.

Neither torch nor Pyro has these: ``torch.multinomial(replacement=False)`` draws from one categorical whose
classes it can list, while the joint of D categoricals has C^D values. The sampler is stochastic beam search
(Kool, van Hoof & Welling 2019), exact for a product distribution; the set probabilities are the integral of
Kool, van Hoof & Welling (2020), computed by quadrature in log-space.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn.functional import softplus

__all__ = ["log1mexp", "sample_without_replacement", "unordered_set_estimates"]


def log1mexp(x: Tensor) -> Tensor:
    """log(1 - exp(x)) for x <= 0, accurate at both ends (Mächler 2012)."""
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


#: Stochastic beam search walks dimensions in blocks: a block is one categorical over its joint values. A
#: step's cost is a fixed dispatch plus its batch x k x (block values) candidates, so blocks are as large
#: as keeps the candidates under _STEP_CANDIDATES (at most _BLOCK_VALUES values: 6 bits).
_BLOCK_VALUES, _STEP_CANDIDATES = 64, 2**15


def _digits(n_classes: int, width: int, device: torch.device) -> Tensor:
    """Every joint value of ``width`` digits in base ``n_classes``: ``[n_classes ** width, width]``."""
    values = torch.arange(n_classes ** width, device=device)
    powers = n_classes ** torch.arange(width - 1, -1, -1, device=device)
    return values.unsqueeze(1) // powers % n_classes


def sample_without_replacement(log_probs: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """k distinct draws from the product of D categoricals, by stochastic beam search.

    The draws are the top k of the joint values perturbed by independent Gumbels (Gumbel-top-k), a sample
    without replacement; the search builds them a block of dimensions at a time, each partial value carrying
    the maximum of its completions' perturbed log-probabilities, drawn conditionally on its parent's. The
    search runs in float32 (its values only rank the candidates; half the cost of float64), the returned
    log-probabilities in the input's dtype.

    Args:
        log_probs: ``[batch, D, C]`` normalized log-probabilities of each dimension's classes.
        k: the number of draws, at most C^D.

    Returns:
        ``(classes [batch, k, D], log_prob [batch, k])``: each draw's classes and its joint log-probability.
        A draw with log-probability -inf means fewer than k values have positive probability.
    """
    batch, dims, n_classes = log_probs.shape
    device = log_probs.device
    values = max(n_classes, min(_BLOCK_VALUES, _STEP_CANDIDATES // (batch * k)))
    block = max(1, int(math.log(values) / math.log(n_classes) + 1e-9)) if n_classes > 1 else dims
    n_blocks = -(-dims // block)
    # padding dimensions take class 0 with probability 1, so that every block has the same width
    padding = log_probs.new_full((batch, n_blocks * block - dims, n_classes), -math.inf, dtype=torch.float32)
    padding[..., 0] = 0.0
    padded = torch.cat([log_probs.float(), padding], dim=1).view(batch, n_blocks, block, n_classes)
    digits = _digits(n_classes, block, device)  # [V, block]
    index = digits.T.expand(batch, n_blocks, block, len(digits))
    block_log_probs = padded.gather(3, index).sum(2)  # [batch, n_blocks, V]: each block's joint values
    uniform = torch.rand(n_blocks, batch, k, len(digits), device=device).clamp_min(torch.finfo(torch.float32).tiny)
    noise = -torch.log(-torch.log(uniform))
    log_prob = block_log_probs.new_zeros(batch, k)
    # the beam's perturbed values: one root to begin with, the other slots empty (-inf)
    perturbed = torch.full_like(log_prob, -math.inf)
    perturbed[:, 0] = 0.0
    parents, chosen = [], []
    for step in range(n_blocks):
        children = log_prob.unsqueeze(2) + block_log_probs[:, step].unsqueeze(1)  # [batch, k, V]
        gumbels = children + noise[step]
        top = gumbels.amax(dim=2, keepdim=True)
        parent = perturbed.unsqueeze(2)
        # the children's values conditioned on their maximum being the parent's, -log(e^-T - e^-Z + e^-G), in
        # the stable form of Kool et al. (2019), appendix B (T - softplus(v)); -inf for the children of empty
        # slots and of values of probability 0
        v = parent - gumbels + torch.log(-torch.expm1(gumbels - top))
        conditioned = parent - softplus(v)
        conditioned = conditioned.nan_to_num(nan=-math.inf, neginf=-math.inf)  # -inf - -inf: empty slots' children
        perturbed, flat = conditioned.flatten(1).topk(k, dim=1)  # [batch, k] over k x V candidates
        parents.append(flat // len(digits))
        chosen.append(flat % len(digits))
        log_prob = children.flatten(1).gather(1, flat)
    picked = []
    slot = torch.arange(k, device=device).expand(batch, k)
    for step in reversed(range(n_blocks)):  # follow each draw back to the root
        picked.append(chosen[step].gather(1, slot))
        slot = parents[step].gather(1, slot)
    classes = digits[torch.stack(picked[::-1], dim=2)].flatten(2)[:, :, :dims]  # [batch, k, D]
    exact = log_probs.unsqueeze(1).expand(batch, k, dims, n_classes).gather(3, classes.unsqueeze(3)).sum((2, 3))
    return classes, torch.where(torch.isfinite(perturbed), exact, -math.inf)


#: Quadrature in t = log u of the set-probability integral: the step, and the range below u = 1. The
#: integrand is entire in t and decays doubly exponentially above and at least like e^t below, so the
#: trapezoidal rule converges geometrically: a step of 1/4 leaves a relative error under 1e-10 (tests check it against
#: the sums over orderings), and below e^-30 the integrand is under e^-30 of its peak.
_STEP, _BELOW = 0.25, 30.0


def unordered_set_estimates(log_prob: Tensor, values: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The probabilities of a set drawn without replacement, and the baselines of the unordered set estimator
    (Kool et al. 2020).

    With b the probability of the values outside S, the probability of drawing the set S (in any order) is
    ``P(S) = int_0^inf e^-u prod_{s in S} (1 - exp(-u p(s) / b)) du``; leaving members out of S and out of
    the domain removes their factors and keeps b, so one grid of nodes serves every integral. The baseline
    of member s is the unordered set estimate of E_q[f] given s,
    ``q(s) f(s) + sum_{s' != s} q(s') f(s') P^{D-s-s'}(S-s-s') / P^{D-s}(S-s)``; its K x K integrals are
    never formed: the sum over s' is taken inside the integral, node by node, each s' excluded by prefix
    and suffix sums (no subtraction of a term from a sum it may dominate), with positive and negative f
    summed apart in log-space. O(batch K G) in all.

    Args:
        log_prob: ``[batch, k]`` log q of k distinct values (float64 advised).
        values: ``[batch, k]`` f of each.

    Returns:
        ``(log P(S) [batch], log P^{D-s}(S-s) [batch, k], baselines [batch, k])``.
    """
    k = log_prob.shape[1]
    inside = torch.logsumexp(log_prob, dim=1).clamp_max(0.0)
    log_outside = log1mexp(inside)  # log b; -inf when S is the whole domain (then every set probability is 1)
    top = math.log(2 * (k + 1) + 50)  # past the peak of u^(k+1) e^-u, the integrand when every ratio is small
    t = torch.arange(-_BELOW, top + _STEP, _STEP, dtype=log_prob.dtype, device=log_prob.device)  # [G]
    base = t - t.exp() + math.log(_STEP)  # u e^-u dt = e^-u du, times the step
    log_x = (log_prob - log_outside.unsqueeze(1)).unsqueeze(2) + t  # [batch, k, G]: log(u p(s) / b)
    # log(1 - e^-x), which is log x (to 1e-13) where e^-x would round to 1 and x underflow; 0 when b = 0
    factors = torch.where(log_x < -30, log_x, torch.log(-torch.expm1(-log_x.clamp_min(-30).exp())))
    every = base + factors.sum(1)  # [batch, G]: the integrand of P(S)
    without_one = every.unsqueeze(1) - factors  # [batch, k, G]: that of P^{D-s}(S-s)
    log_set, log_without_one = torch.logsumexp(every, dim=1), torch.logsumexp(without_one, dim=2)
    baselines = log_prob.exp() * values  # the s' = s term (its ratio is 1)
    for sign in (1.0, -1.0):
        log_weighted = torch.log((sign * values).clamp_min(0.0)) + log_prob  # log(q(s') f(s')^+ or ^-)
        others = _log_sum_of_others(log_weighted.unsqueeze(2) - factors)  # [batch, k, G]: over s' != s
        baselines = baselines + sign * torch.exp(torch.logsumexp(without_one + others, dim=2) - log_without_one)
    return log_set, log_without_one, baselines


def _log_sum_of_others(terms: Tensor) -> Tensor:
    """``log sum_{j != i} exp(terms[:, j])`` for each i, along dimension 1, by prefix and suffix sums."""
    pad = torch.full_like(terms[:, :1], -math.inf)
    before = torch.cat([pad, torch.logcumsumexp(terms, dim=1)[:, :-1]], dim=1)
    after = torch.cat([torch.logcumsumexp(terms.flip(1), dim=1).flip(1)[:, 1:], pad], dim=1)
    return torch.logaddexp(before, after)
