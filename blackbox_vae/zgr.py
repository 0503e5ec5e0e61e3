r"""ZGR: exact discrete samples whose gradient is the zero-temperature limit of Gumbel-Rao (Shekhovtsov 2023).

For a categorical variable with logits $\eta$, probabilities $p = \mathrm{softmax}(\eta)$ and a one-hot draw
$x \sim p$, ZGR back-propagates through $x$ with the Jacobian

$$
\frac{\partial x}{\partial \eta} \approx \tfrac12 \Big(\frac{\partial p}{\partial \eta}
    + (x - p)\, \frac{\partial \log p_x}{\partial \eta}\Big)
    = \tfrac12 \big(\mathrm{diag}(p) - p p^\top + (x - p)(x - p)^\top\big),
$$

the average of the straight-through Jacobian and a score-function term. Its expectation is
$\partial p / \partial \eta$, so the estimator is exact for objectives linear in $x$; for a Bernoulli variable
it is DARN(1/2) (Gregor et al. 2014): $\partial x / \partial \eta = (x - \frac12)(x - p)$, i.e. $(1 - p)/2$ at
$x = 1$ and $p/2$ at $x = 0$, the trapezoid rule for $f(1) - f(0)$. The forward value is the exact sample, so a
model only ever sees discrete codes, and no temperature is needed.

torch.distributions and Pyro have no ZGR; each function is the two lines of its definition.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import OneHotCategorical

__all__ = ["bernoulli_zgr", "categorical_zgr"]


def _with_gradient(sample: Tensor, surrogate: Tensor) -> Tensor:
    """``sample``'s value with ``surrogate``'s gradient."""
    return sample + (surrogate - surrogate.detach())


def bernoulli_zgr(logits: Tensor, sample: Tensor | None = None) -> Tensor:
    """x ~ Bernoulli(sigmoid(logits)), elementwise, with the ZGR (= DARN(1/2)) gradient to ``logits``.

    Args:
        logits: ``[*shape]``.
        sample: an exact {0, 1} draw ``[*shape]`` to attach the gradient to; default a fresh one (passing one
            lets a test take the estimator's expectation by enumerating the draws).

    Returns:
        ``[*shape]`` in {0, 1}, whose gradient with respect to ``logits`` is ``(x - 1/2)(x - p)`` times the
        incoming gradient.
    """
    probs = torch.sigmoid(logits)
    if sample is None:
        sample = torch.bernoulli(probs.detach())
    sample = sample.detach().to(logits.dtype)
    log_p_sample = -F.binary_cross_entropy_with_logits(logits, sample, reduction="none")  # log p(x)
    return _with_gradient(sample, 0.5 * (probs + (sample - probs.detach()) * log_p_sample))


def categorical_zgr(logits: Tensor, sample: Tensor | None = None) -> Tensor:
    """One-hot x ~ Categorical(softmax(logits)) over the last dimension, with the ZGR gradient to ``logits``.

    Args:
        logits: ``[*shape, n_classes]``.
        sample: an exact one-hot draw ``[*shape, n_classes]`` to attach the gradient to; default a fresh one.

    Returns:
        ``[*shape, n_classes]`` one-hot, whose Jacobian with respect to ``logits`` is
        ``(diag(p) - p p^T + (x - p)(x - p)^T) / 2``.
    """
    log_probs = torch.log_softmax(logits, -1)
    probs = log_probs.exp()
    if sample is None:
        sample = OneHotCategorical(logits=log_probs.detach(), validate_args=False).sample()
    sample = sample.detach().to(logits.dtype)
    log_p_sample = (sample * log_probs).sum(-1, keepdim=True)  # log p(x)
    return _with_gradient(sample, 0.5 * (probs + (sample - probs.detach()) * log_p_sample))
