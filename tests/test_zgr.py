"""ZGR (blackbox_vae.zgr) against its defining properties (Shekhovtsov 2023).

- Bernoulli: the gradient through each draw is DARN(1/2)'s, (x - 1/2)(x - p) f'(x), draw by draw (so also
  in expectation), and for a non-linear objective its mean is the trapezoid rule, not the exact gradient.
- Categorical: the Jacobian through a draw is (diag(p) - p p^T + (x - p)(x - p)^T) / 2, whose expectation is
  d p / d logits, so the estimator is exact for objectives linear in x; with two classes it is DARN(1/2).
- The forward values are exact draws from the distribution.
"""

import pytest
import torch
from torch import nn

from blackbox_vae.testing import assert_unbiased, bernoulli_configurations, gradients
from blackbox_vae.zgr import bernoulli_zgr, categorical_zgr

import exact_references as ref

REPLICAS = 400


def nonlinear(z):
    """f(z) = exp(w.z): not quadratic in any z_i, so the trapezoid rule (exact up to quadratics) is not exact."""
    weights = torch.linspace(-1.0, 2.0, z.shape[-1], dtype=z.dtype)
    return torch.exp((z * weights).sum(-1))


class Objective(nn.Module):
    """E over REPLICAS draws of f(draw(logits)): one gradient draw of the estimator per call."""

    def __init__(self, logits, draw, f):
        super().__init__()
        self.logits = nn.Parameter(logits.clone())
        self.draw, self.f = draw, f

    def forward(self, data):
        logits = self.logits.expand(data.shape[0], *self.logits.shape)
        return self.f(self.draw(logits)).mean()


def test_bernoulli_gradient_is_darn_half_draw_by_draw():
    torch.manual_seed(0)
    logits = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    sample = torch.bernoulli(torch.full((6, 5), 0.5, dtype=torch.float64))
    z = bernoulli_zgr(logits, sample)
    assert torch.equal(z.detach(), sample)
    (grad,) = torch.autograd.grad(nonlinear(z).sum(), logits)
    f_prime = torch.autograd.functional.jacobian(lambda v: nonlinear(v).sum(), sample)  # df/dz at the draw
    p = torch.sigmoid(logits.detach())
    torch.testing.assert_close(grad, f_prime * (sample - 0.5) * (sample - p))


def test_bernoulli_expected_gradient_is_darn_half_trapezoid():
    """Fresh draws: the mean gradient equals E[DARN(1/2)] by enumeration, which differs from the exact gradient."""
    torch.manual_seed(1)
    logits = torch.randn(4, dtype=torch.float64)
    module = Objective(logits, bernoulli_zgr, nonlinear)
    configurations = bernoulli_configurations(4, dtype=torch.float64)  # [16, 4]
    q = torch.distributions.Bernoulli(logits=module.logits).log_prob(configurations).sum(-1).exp().detach()
    darn = (q * nonlinear(ref.darn_half(module.logits.expand_as(configurations), configurations))).sum()
    exact = (torch.distributions.Bernoulli(logits=module.logits).log_prob(configurations).sum(-1).exp()
             * nonlinear(configurations)).sum()
    expected, true = gradients(darn, module), gradients(exact, module)
    assert (expected["logits"] - true["logits"]).abs().max() > 0.05  # the property is not the trivial one
    assert_unbiased(module, torch.zeros(REPLICAS, 1), expected)


@pytest.mark.parametrize("kind", ["bernoulli", "categorical"])
def test_exact_for_linear_objectives(kind):
    torch.manual_seed(2)
    weights = torch.tensor([0.5, -1.5, 2.0], dtype=torch.float64)
    if kind == "bernoulli":
        logits, draw = torch.tensor([0.3, -1.0, 1.2], dtype=torch.float64), bernoulli_zgr

        def mean(parameter):
            return (torch.sigmoid(parameter) * weights).sum()
    else:
        logits, draw = torch.tensor([[0.3, -1.0, 1.2], [2.0, 0.0, -0.5]], dtype=torch.float64), categorical_zgr

        def mean(parameter):
            return (torch.softmax(parameter, -1) * weights).sum()
    module = Objective(logits, draw, lambda z: (z * weights).sum((-1,) if kind == "bernoulli" else (-2, -1)))
    assert_unbiased(module, torch.zeros(REPLICAS, 1), gradients(mean(module.logits), module))


def test_categorical_jacobian_through_a_draw():
    torch.manual_seed(3)
    logits = torch.randn(4, dtype=torch.float64)
    sample = torch.nn.functional.one_hot(torch.tensor(2), 4).to(torch.float64)
    jacobian = torch.autograd.functional.jacobian(lambda eta: categorical_zgr(eta, sample), logits)
    p = torch.softmax(logits, -1)
    expected = (torch.diag(p) - torch.outer(p, p) + torch.outer(sample - p, sample - p)) / 2
    torch.testing.assert_close(jacobian, expected)
    torch.testing.assert_close(categorical_zgr(logits, sample), sample)


def test_two_class_categorical_is_the_bernoulli_estimator():
    eta = torch.tensor([0.7, -0.4], dtype=torch.float64, requires_grad=True)
    for bit in (0.0, 1.0):
        x = torch.tensor([bit, bit], dtype=torch.float64)
        (binary,) = torch.autograd.grad(bernoulli_zgr(eta, x).sum(), eta)
        pair = torch.stack([torch.zeros_like(eta), eta], -1)  # class 1 has logit eta: p(class 1) = sigmoid(eta)
        one_hot = torch.stack([1 - x, x], -1)
        (categorical,) = torch.autograd.grad(categorical_zgr(pair, one_hot)[..., 1].sum(), eta)
        torch.testing.assert_close(categorical, binary)


def test_values_are_exact_draws():
    torch.manual_seed(4)
    n = 20000
    logits = torch.tensor([-1.0, 0.0, 2.0])
    bits = bernoulli_zgr(logits.expand(n, 3))
    assert set(bits.unique().tolist()) <= {0.0, 1.0}
    p = torch.sigmoid(logits)
    standard_error = (p * (1 - p) / n).sqrt()
    assert ((bits.mean(0) - p).abs() < 5 * standard_error).all()
    classes = torch.tensor([0.5, -0.5, 1.0])
    one_hot = categorical_zgr(classes.expand(n, 3))
    assert torch.equal(one_hot.sum(-1), torch.ones(n))
    probs = torch.softmax(classes, -1)
    assert ((one_hot.mean(0) - probs).abs() < 5 * (probs * (1 - probs) / n).sqrt()).all()
