"""Tutorial (docs/testing.md): property-testing an estimator you wrote yourself.

docs/testing.md includes the marked sections of this file (pymdownx.snippets);
tests/test_tutorials.py checks that every section it names exists.
"""


import pytest
import torch
from hypothesis import given
from torch import Tensor

from blackbox_vae import Loss
from blackbox_vae.latents import map_latents


# --8<-- [start:estimator]
class ExtraSampleBaselineLoss(Loss):
    """Score function whose control variate is the learning signal of an independent extra sample.

    b_k = log p(x, z'_k) - log q(z'_k|x) with z'_k ~ q, drawn apart from z_k: unbiased for the ELBO's gradient.
    """

    def _estimate(self, data: Tensor) -> tuple[Tensor, Tensor]:
        _, log_q, log_p = self._draw(data)  # z_k ~ q (detached); log q, log p: [batch, K]
        extra = map_latents(Tensor.detach, self.inf_net.sample(self.n_samples))  # z'_k ~ q, independent
        baseline = (self._score(data, extra) - self.inf_net.log_prob(extra)).detach()  # [batch, K]
        learning_signal = (log_p - log_q).detach()  # [batch, K]
        surrogate = log_p + (learning_signal - baseline) * log_q
        return -learning_signal.mean(), -surrogate.mean()  # (negative ELBO, surrogate loss), both scalars
# --8<-- [end:estimator]


# --8<-- [start:property]
from blackbox_vae.testing import assert_unbiased, exact_elbo, gradients  # noqa: E402
from blackbox_vae.testing.strategies import n_samples, small_discrete_models  # noqa: E402


@given(model=small_discrete_models(), k=n_samples(1, 3))
def test_extra_sample_baseline_is_unbiased(model, k):
    torch.manual_seed(model.seed)
    loss = ExtraSampleBaselineLoss(model.inf_net, model.gen_model, n_samples=k)
    exact = exact_elbo(model.inf_net, model.gen_model, model.data, model.configurations)  # [batch]
    expected = gradients(-exact.mean(), loss)  # the gradient loss(data) must have on average
    assert_unbiased(loss, model.replicated_data(), expected, false_failure_rate=1e-5)
# --8<-- [end:property]


# --8<-- [start:buggy]
class SameSampleBaselineLoss(ExtraSampleBaselineLoss):
    """A bug: the "extra" sample is the same sample, so the baseline depends on z_k."""

    def _estimate(self, data: Tensor) -> tuple[Tensor, Tensor]:
        _, log_q, log_p = self._draw(data)
        learning_signal = (log_p - log_q).detach()
        baseline = 0.5 * learning_signal  # a function of z_k itself: biased
        surrogate = log_p + (learning_signal - baseline) * log_q
        return -learning_signal.mean(), -surrogate.mean()
# --8<-- [end:buggy]


def test_the_kit_catches_the_buggy_estimator():
    from blackbox_vae.models import SBNGenModel, SBNInfNet
    from blackbox_vae.testing import configurations_for

    torch.manual_seed(0)
    inf_net, gen_model = SBNInfNet(4, 2).double(), SBNGenModel(4, 2).double()
    data = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    loss = SameSampleBaselineLoss(inf_net, gen_model, n_samples=1)
    exact = exact_elbo(inf_net, gen_model, data, configurations_for(inf_net, data))
    with pytest.raises(AssertionError, match="differ from the exact gradient") as failure:
        assert_unbiased(loss, data.repeat(100, 1), gradients(-exact.mean(), loss))
    print(failure.value)  # the report shown in docs/testing.md
