"""Statistical checks of gradient estimators against exact gradients."""

from __future__ import annotations

import math
from statistics import NormalDist

import torch
from torch import Tensor, nn

__all__ = ["gradients", "gradient_draws", "assert_unbiased", "critical_value", "detection_probability",
           "detectable_bias"]


def gradients(scalar: Tensor, module: nn.Module) -> dict[str, Tensor]:
    """d scalar / d parameter for every named parameter of ``module`` (zeros where unused).

    Uses ``torch.autograd.grad``, so the parameters' ``.grad`` are left alone.

    Args:
        scalar: a scalar ``[]`` that depends on ``module``'s parameters.
        module: the module whose parameters (those with ``requires_grad``) to differentiate.

    Returns:
        ``{parameter name: gradient}``, each detached and of its parameter's shape.
    """
    named = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(scalar, [p for _, p in named], allow_unused=True)
    return {name: (torch.zeros_like(p) if g is None else g.detach()) for (name, p), g in zip(named, grads)}


def gradient_draws(loss: nn.Module, data: Tensor, n_draws: int, names: list[str]) -> Tensor:
    """``n_draws`` independent gradient estimates of ``loss(data)``: ``[n_draws, P]``.

    P is the total number of elements of the parameters in ``names``.

    Args:
        loss: a loss object (any module returning a scalar to minimize); each draw calls it and
            backpropagates, so its parameters' ``.grad`` hold the last draw afterwards.
        data: the batch to call it on.
        n_draws: the number of estimates.
        names: names of ``loss``'s parameters, whose flattened gradients are concatenated in this
            order (zeros for a parameter that got none).
    """
    params = dict(loss.named_parameters())
    draws = []
    for _ in range(n_draws):
        loss.zero_grad(set_to_none=True)
        loss(data).backward()
        draws.append(torch.cat([
            (params[n].grad if params[n].grad is not None else torch.zeros_like(params[n])).reshape(-1)
            for n in names
        ]))
    return torch.stack(draws)


def _assert_finite(values: Tensor, labels: list[str], what: str) -> None:
    """Raises AssertionError naming the first non-finite element of ``values [P]``."""
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        index = int((~finite).nonzero()[0])
        raise AssertionError(f"{what} is not finite: {labels[index]} = {values[index].item()} "
                             f"({int((~finite).sum())} of {values.numel()} elements are NaN or infinite).")


def critical_value(false_failure_rate: float, n_comparisons: int, n_draws: int) -> float:
    """Two-sided Bonferroni threshold for |mean - exact| / standard error.

    Student's t quantile with ``n_draws - 1`` degrees of freedom, from the
    normal one by the Cornish-Fisher expansion (Abramowitz & Stegun 26.7.5),
    which is accurate to a few parts in a thousand for the tens of degrees of
    freedom and more used here; SciPy is not a dependency for this one number.

    Args:
        false_failure_rate: the chance that any of the comparisons exceeds the threshold when every
            estimate is unbiased.
        n_comparisons: the number of elements compared (the Bonferroni correction).
        n_draws: the draws averaged in each comparison.
    """
    z = NormalDist().inv_cdf(1 - false_failure_rate / (2 * n_comparisons))
    nu = n_draws - 1
    return z + (z**3 + z) / (4 * nu) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * nu**2)


def detection_probability(bias: float, false_failure_rate: float, n_comparisons: int, n_draws: int) -> float:
    """The chance that `assert_unbiased` flags an element whose mean is off by ``bias`` standard errors.

    The element's z-score is a noncentral Student t with ``nu = n_draws - 1`` degrees of freedom and
    noncentrality ``bias``, flagged when ``|z|`` exceeds ``t = critical_value(false_failure_rate, n_comparisons,
    n_draws)``; ``P(z > t)`` is approximated by ``Phi((bias - t (1 - 1/(4 nu))) / sqrt(1 + t**2 / (2 nu)))``
    (Abramowitz & Stegun 26.7.10), and likewise for ``z < -t``.

    Args:
        bias: the difference between the estimator's mean and the exact value, in units of the element's
            standard error (the per-draw standard deviation over sqrt(n_draws)).
        false_failure_rate: as passed to `assert_unbiased`.
        n_comparisons: the number of elements compared.
        n_draws: as passed to `assert_unbiased`.
    """
    threshold = critical_value(false_failure_rate, n_comparisons, n_draws)
    nu = n_draws - 1
    shifted, spread = threshold * (1 - 1 / (4 * nu)), math.sqrt(1 + threshold**2 / (2 * nu))
    normal = NormalDist()
    return normal.cdf((bias - shifted) / spread) + normal.cdf((-bias - shifted) / spread)


def detectable_bias(false_failure_rate: float, n_comparisons: int, n_draws: int, power: float = 0.9) -> float:
    """The smallest bias, in standard errors, that `assert_unbiased` flags with probability ``power``.

    About ``critical_value(...) + NormalDist().inv_cdf(power)``: 5.5 standard errors at 200 draws, 24 elements
    and a false-failure rate of 1e-3 (see `detection_probability`).

    Args:
        false_failure_rate: as passed to `assert_unbiased`.
        n_comparisons: the number of elements compared.
        n_draws: as passed to `assert_unbiased`.
        power: the detection probability wanted, in (0, 1).

    Raises:
        ValueError: for a ``power`` outside (0, 1).
    """
    if not 0 < power < 1:
        raise ValueError(f"detectable_bias: `power` must be in (0, 1); got {power!r}.")
    low, high = 0.0, 2 * critical_value(false_failure_rate, n_comparisons, n_draws) + 20
    for _ in range(100):  # bisection: the probability increases with the bias
        middle = (low + high) / 2
        if detection_probability(middle, false_failure_rate, n_comparisons, n_draws) < power:
            low = middle
        else:
            high = middle
    return high


def assert_unbiased(
    loss: nn.Module,
    data: Tensor,
    expected: dict[str, Tensor],
    n_draws: int = 200,
    false_failure_rate: float = 1e-3,
    reference_error: dict[str, Tensor] | None = None,
) -> None:
    """Checks that ``loss(data)``'s gradient has mean ``expected`` in every parameter element.

    Draws ``n_draws`` independent estimates, and compares their mean with the
    exact value by a z-score against the Monte Carlo standard error. The
    threshold is Bonferroni-corrected over all compared elements, so a correct
    estimator fails with probability at most ``false_failure_rate`` per call.
    Elements whose estimate never varies are compared to rounding precision.

    The standard error is trustworthy when every outcome that carries gradient
    is drawn many times: for discrete latents, when each latent configuration
    has probability of at least about 20 / (n_draws * batch * K) under q. Mass
    on configurations rarer than that can hold an exact gradient that no
    finite set of draws shows (the kit's model strategies stay clear of this).

    Args:
        loss: a loss object (any module returning a scalar to minimize).
        data: the batch to call it on.
        expected: ``{parameter name: exact expected gradient of loss(data)}``;
            only these parameters are compared.
        n_draws: independent gradient estimates to average.
        false_failure_rate: the chance that a correct estimator fails.
        reference_error: ``{parameter name: absolute error of expected[name]}`` for references that are
            themselves approximate (quadrature); it is added to the standard error in quadrature.

    Raises:
        AssertionError: with a table of the worst elements (parameter, exact,
            estimated mean, standard error, z) when any element is off; and
            when any draw, the exact gradient or its reference error holds a
            NaN or an infinity (a non-finite value can never be compared, so it
            fails, naming the first such element).
    """
    names = list(expected)
    labels = [f"{n}[{i}]" for n in names for i in range(expected[n].numel())]
    exact = torch.cat([expected[n].reshape(-1) for n in names]).double()
    _assert_finite(exact, labels, "the exact (expected) gradient")
    if reference_error is not None:
        error = torch.cat([reference_error[n].reshape(-1) for n in names]).double()
        _assert_finite(error, labels, "the reference error")
    draws = gradient_draws(loss, data, n_draws, names).double()  # [n_draws, P]
    exact = exact.to(draws.device)
    non_finite = ~torch.isfinite(draws)
    if bool(non_finite.any()):
        draw, index = non_finite.nonzero()[0].tolist()
        raise AssertionError(f"gradient draw {draw} (of {n_draws}) is not finite: {labels[index]} = "
                             f"{draws[draw, index].item()}; {int(non_finite.any(1).sum())} of the draws hold NaN or "
                             "infinite elements.")
    mean = draws.mean(0)
    standard_error = draws.std(0) / math.sqrt(n_draws)
    if reference_error is not None:
        standard_error = (standard_error.pow(2) + error.to(draws.device).pow(2)).sqrt()
    _assert_finite(mean, labels, "the mean of the gradient draws")  # finite draws can still overflow
    _assert_finite(standard_error, labels, "the standard error of the gradient draws")
    threshold = critical_value(false_failure_rate, exact.numel(), n_draws)
    # A deterministic element (zero spread) can only be off by rounding.
    rounding = 64 * torch.finfo(torch.float32 if data.dtype == torch.float32 else torch.float64).eps
    deterministic = standard_error <= rounding * (1 + exact.abs())
    z = torch.where(deterministic, torch.zeros_like(mean), (mean - exact) / standard_error.clamp_min(1e-300))
    bad = torch.where(deterministic, (mean - exact).abs() > rounding * (1 + exact.abs()), z.abs() > threshold)
    if bool(bad.any()):
        order = torch.argsort(z.abs(), descending=True)[:10]
        rows = [f"{'parameter':<40} {'exact':>12} {'mean':>12} {'std.err':>12} {'z':>8}"]
        for i in order.tolist():
            rows.append(f"{labels[i]:<40} {exact[i].item():>12.5g} {mean[i].item():>12.5g} "
                        f"{standard_error[i].item():>12.5g} {z[i].item():>8.2f}")
        raise AssertionError(
            f"{int(bad.sum())} of {exact.numel()} gradient elements differ from the exact gradient by more than "
            f"{threshold:.2f} standard errors ({n_draws} draws, false-failure rate {false_failure_rate}):\n"
            + "\n".join(rows)
        )
