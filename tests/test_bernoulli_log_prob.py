"""`bernoulli_log_prob` against torch.distributions.Bernoulli in every broadcast the models use, with gradients."""

import pytest
import torch
from torch.distributions import Bernoulli

from blackbox_vae.models.deep_sbn import bernoulli_log_prob


@pytest.mark.parametrize("logits_shape, value_shape", [
    ((3, 4, 5), (3, 4, 5)),  # a layer given the layer below: one row per sample
    ((3, 1, 5), (3, 4, 5)),  # q(z_1|x): logits shared by the K samples
    ((5,), (3, 4, 5)),       # a prior's logits
    ((3, 4, 5), (3, 1, 5)),  # p(x|z_1): the data shared by the K samples
    ((3, 4, 5), (5,)),
    ((1, 4, 5), (3, 4, 5)),  # the general broadcast
])
def test_equals_the_sum_of_bernoulli_log_probs_with_gradients(logits_shape, value_shape):
    torch.manual_seed(0)
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
