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

__all__ = ["log1mexp", "sample_without_replacement", "log_set_probabilities"]


def log1mexp(x: Tensor) -> Tensor:
    """log(1 - exp(x)) for x <= 0, accurate at both ends (Mächler 2012)."""
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def sample_without_replacement(log_probs: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """k distinct draws from the product of D categoricals, by stochastic beam search.

    The draws are the top k of the joint values perturbed by independent Gumbels (Gumbel-top-k), a sample
    without replacement; the search builds them one dimension at a time, each partial value carrying the
    maximum of its completions' perturbed log-probabilities, drawn conditionally on its parent's.

    Args:
        log_probs: ``[batch, D, C]`` normalized log-probabilities of each dimension's classes.
        k: the number of draws, at most C^D.

    Returns:
        ``(classes [batch, k, D], log_prob [batch, k])``: each draw's classes and its joint log-probability.
        A draw with log-probability -inf means fewer than k values have positive probability.
    """
    batch, dims, n_classes = log_probs.shape
    classes = log_probs.new_zeros(batch, k, 0, dtype=torch.long)
    log_prob = log_probs.new_zeros(batch, k)
    # the beam's perturbed values; one root to begin with, the other slots empty (-inf)
    perturbed = torch.full_like(log_prob, -math.inf)
    perturbed[:, 0] = 0.0
    for dim in range(dims):
        children = log_prob.unsqueeze(2) + log_probs[:, dim].unsqueeze(1)  # [batch, k, C]
        gumbels = children - torch.log(-torch.log(torch.rand_like(children).clamp_min(torch.finfo(children.dtype).tiny)))
        top = gumbels.max(dim=2, keepdim=True).values
        parent = perturbed.unsqueeze(2)
        # the children's values conditioned on their maximum being the parent's: -log(e^-T - e^-Z + e^-G),
        # in the stable form of Kool et al. (2019), appendix B
        v = parent - gumbels + log1mexp(torch.clamp_max(gumbels - top, 0.0))
        conditioned = parent - v.clamp_min(0.0) - torch.log1p(torch.exp(-v.abs()))
        conditioned = torch.where(torch.isfinite(parent) & torch.isfinite(children), conditioned, -math.inf)
        perturbed, index = conditioned.flatten(1).topk(k, dim=1)  # [batch, k] over k x C candidates
        parent_index, chosen = index // n_classes, index % n_classes
        classes = torch.cat([classes.gather(1, parent_index.unsqueeze(2).expand(-1, -1, dim)),
                             chosen.unsqueeze(2)], dim=2)
        log_prob = children.flatten(1).gather(1, index)
        log_prob = torch.where(torch.isfinite(perturbed), log_prob, -math.inf)
    return classes, log_prob


#: Quadrature in t = log u of the set-probability integral: the step, and the range below u = 1. The
#: integrand is entire in t and decays doubly exponentially above and at least like e^t below, so the
#: trapezoidal rule converges geometrically: a step of 1/4 leaves an error near 1e-15 (tests check it against
#: the sum over orderings), and below e^-40 the integrand is under e^-40 of its peak.
_STEP, _BELOW = 0.25, 40.0


def log_set_probabilities(log_prob: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The probabilities, under sampling without replacement, of a set and of its subsets missing one or two
    members, each under q restricted to the values not left out (Kool et al. 2020).

    With b the probability of the values outside S, the probability of drawing the set S (in any order) is
    ``P(S) = int_0^inf e^-u prod_{s in S} (1 - exp(-u p(s) / b)) du``; leaving members out of S and out of
    the domain removes their factors and keeps b, so one grid serves all.

    Args:
        log_prob: ``[batch, k]`` log q of k distinct values (float64 advised).

    Returns:
        ``(log P(S) [batch], log P^{D-s}(S-s) [batch, k], log P^{D-s-s'}(S-s-s') [batch, k, k])``, the last
        with log P^{D-s}(S-s) on its diagonal.
    """
    k = log_prob.shape[1]
    inside = torch.logsumexp(log_prob, dim=1).clamp_max(0.0)
    log_outside = log1mexp(inside)  # log b; -inf when S is the whole domain (then every set probability is 1)
    log_ratio = log_prob - log_outside.unsqueeze(1)  # log(p(s) / b), +inf when b = 0
    top = math.log(2 * (k + 1) + 50)  # past the peak of u^(k+1) e^-u, the integrand when every ratio is small
    t = torch.arange(-_BELOW, top + _STEP, _STEP, dtype=log_prob.dtype, device=log_prob.device)  # [G]
    base = t - t.exp() + math.log(_STEP)  # u e^-u dt = e^-u du, times the step
    factors = log1mexp(-torch.exp(log_ratio.unsqueeze(2) + t))  # [batch, k, G]: log(1 - exp(-u p(s) / b))
    every = factors.sum(1)  # [batch, G]
    log_set = torch.logsumexp(base + every, dim=1)
    without_one = every.unsqueeze(1) - factors  # [batch, k, G]
    log_without_one = torch.logsumexp(base + without_one, dim=2)
    without_two = without_one.unsqueeze(2) - factors.unsqueeze(1)  # [batch, k, k, G]
    log_without_two = torch.logsumexp(base + without_two, dim=3)
    diagonal = torch.eye(k, dtype=torch.bool, device=log_prob.device)
    log_without_two = torch.where(diagonal, log_without_one.unsqueeze(2), log_without_two)
    return log_set, log_without_one, log_without_two
