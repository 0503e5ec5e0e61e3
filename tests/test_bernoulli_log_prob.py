"""`bernoulli_log_prob` against torch.distributions.Bernoulli in every broadcast the models use, with gradients, in both
of its forms: the one-pass BCE kernel (small tensors) and the dot product with one softplus (from SPLIT_FROM)."""

import math

import pytest
import torch
from torch.distributions import Bernoulli

from blackbox_vae._distributions import SPLIT_FROM
from blackbox_vae.models.deep_sbn import bernoulli_log_prob

#: last-dimension sizes that take each form at the shapes below (3 x 4 x H values at most)
FORMS = {"one pass": 5, "split": -(-SPLIT_FROM // 12)}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("logits_shape, value_shape", [
    ((3, 4, 5), (3, 4, 5)),  # a layer given the layer below: one row per sample
    ((3, 1, 5), (3, 4, 5)),  # q(z_1|x): logits shared by the K samples
    ((5,), (3, 4, 5)),       # a prior's logits
    ((3, 4, 5), (3, 1, 5)),  # p(x|z_1): the data shared by the K samples
    ((3, 4, 5), (5,)),
    ((1, 4, 5), (3, 4, 5)),  # the general broadcast
])
def test_equals_the_sum_of_bernoulli_log_probs_with_gradients(logits_shape, value_shape, form):
    torch.manual_seed(0)
    logits_shape, value_shape = (*logits_shape[:-1], FORMS[form]), (*value_shape[:-1], FORMS[form])
    logits = (4 * torch.randn(logits_shape, dtype=torch.float64)).requires_grad_()
    value = torch.rand(value_shape, dtype=torch.float64).requires_grad_()  # relaxed values: linear in them
    shape = torch.broadcast_shapes(logits_shape, value_shape)
    got = bernoulli_log_prob(logits, value)
    expected = (value * logits - torch.nn.functional.softplus(logits)).expand(shape).sum(-1)
    assert got.shape == shape[:-1]
    torch.testing.assert_close(got, expected)
    weights = torch.randn(shape[:-1], dtype=torch.float64)
    torch.testing.assert_close(torch.autograd.grad((got * weights).sum(), (logits, value)),
                               torch.autograd.grad((expected * weights).sum(), (logits, value)))
    binary = (torch.rand(value_shape) < 0.5).double()
    torch.testing.assert_close(bernoulli_log_prob(logits, binary),
                               Bernoulli(logits=logits.expand(shape)).log_prob(binary.expand(shape)).sum(-1))


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("scale", [1.0, 30.0, 100.0])
def test_float32_keeps_precision_at_large_logits(scale, form):
    # Each form is as precise as float32 allows: within the rounding of a pairwise sum of its parts, (log2 H + 2)
    # eps (sum |v l| + sum softplus(l)), of the float64 value; finite for logits of +-100, where log(sigmoid(l))
    # would be -inf and log(1 + exp(l)) inf in float32.
    torch.manual_seed(0)
    h = FORMS[form]
    logits = scale * torch.randn(3, 1, h)  # a shared side, as q(z_1|x)'s logits are
    value = (torch.rand(3, 4, h) < torch.sigmoid(logits)).float()
    value[0, 0, :5] = 1 - value[0, 0, :5]  # improbable values too: terms near -|l|
    got = bernoulli_log_prob(logits, value)
    terms = value.double() * logits.double() - torch.nn.functional.softplus(logits.double())
    assert torch.isfinite(got).all()
    parts = (value.double() * logits.double()).abs().sum(-1) + torch.nn.functional.softplus(logits.double()).sum(-1)
    bound = (math.log2(h) + 2) * torch.finfo(torch.float32).eps * parts
    assert ((got.double() - terms.sum(-1)).abs() <= bound).all()
