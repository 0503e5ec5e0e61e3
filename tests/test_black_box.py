"""A generative model computed outside autograd (`GenModel.differentiable = False`): the estimators that only score
samples train it without bias, and the pathwise ones refuse it when they are built."""

import numpy as np
import pytest
import torch

from blackbox_vae import GenModel
from blackbox_vae.losses.registry import LOSSES, build_loss
from blackbox_vae.testing import assert_unbiased, exact_elbo, gradients
import exact_references as ref


class NumPySBN(GenModel):
    """A sigmoid belief network's log p(x, z), computed in NumPy from a frozen torch twin's weights."""

    differentiable = False

    def __init__(self, twin):
        super().__init__()
        self.prior = twin.prior_logits.detach().cpu().numpy()
        (linear,) = [m for m in twin.decoder.modules() if isinstance(m, torch.nn.Linear)]  # a linear decoder
        self.weight = linear.weight.detach().cpu().numpy()
        self.bias = linear.bias.detach().cpu().numpy()

    @staticmethod
    def _log_bernoulli(logits, values):
        return values * -np.logaddexp(0, -logits) + (1 - values) * -np.logaddexp(0, logits)

    def forward(self, data, latents):
        return self

    def sample(self, n_samples=1):
        generator = np.random.default_rng(int(torch.randint(2**31, ())))
        z = (generator.random((n_samples, self.prior.size)) < 1 / (1 + np.exp(-self.prior))).astype(float)
        logits = z @ self.weight.T + self.bias
        x = (generator.random(logits.shape) < 1 / (1 + np.exp(-logits))).astype(float)
        return torch.as_tensor(x), torch.as_tensor(z)

    def log_prob(self, data, latents):
        x, z = data.detach().cpu().numpy(), latents.detach().cpu().numpy()  # [B, D], [B, K, H]
        logits = z @ self.weight.T + self.bias  # [B, K, D]
        log_p = self._log_bernoulli(self.prior, z).sum(-1) + self._log_bernoulli(logits, x[:, None]).sum(-1)
        return torch.as_tensor(log_p, dtype=latents.dtype, device=latents.device)


PATHWISE = sorted(name for name, spec in LOSSES.items() if spec.loss_class.needs_differentiable_gen_model)
SCORING = sorted(set(LOSSES) - set(PATHWISE))


def test_the_pathwise_estimators_are_the_expected_ones():
    assert PATHWISE == ["elbo", "gumbel-softmax", "iwae", "rebar", "relax", "zgr"]


@pytest.mark.parametrize("name", PATHWISE)
def test_pathwise_estimators_refuse_a_model_without_gradient(name):
    inf_net, twin = ref.random_sbn("cpu")
    with pytest.raises(TypeError, match=r"differentiates log p\(x, z\) with respect to the latents, but `NumPySBN` "
                                        r"declares `differentiable = False`.*VIMCOLoss"):
        build_loss(name, inf_net, NumPySBN(twin), 2, data_dim=ref.DATA_DIM)


@pytest.mark.parametrize("name", ["score-function", "vimco", "nvil", "disarm", "arm", "rws"])
def test_scoring_estimators_train_q_through_a_numpy_model(name):
    inf_net, twin = ref.random_sbn("cpu")
    points, batch = ref.binary_data("cpu")
    loss = build_loss(name, inf_net, NumPySBN(twin), 2, data_dim=ref.DATA_DIM,
                      options={"baseline": "leave-one-out"} if name == "score-function" else None).double()
    value = loss(batch)
    value.backward()
    assert torch.isfinite(value)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in inf_net.parameters())


@pytest.mark.parametrize("name", ["disarm", "score-function"])
def test_the_gradient_through_a_numpy_model_is_exact(name):
    """q's expected gradient with p in NumPy equals the exact ELBO gradient computed with p's torch twin."""
    torch.manual_seed(0)
    inf_net, twin = ref.random_sbn("cpu")
    points, batch = ref.binary_data("cpu")
    loss = build_loss(name, inf_net, NumPySBN(twin), 4, data_dim=ref.DATA_DIM,
                      options={"baseline": "leave-one-out"} if name == "score-function" else None)
    expected = gradients(-exact_elbo(inf_net, twin, points, ref.configurations("cpu")).mean(), loss)
    assert_unbiased(loss, batch, {n: g for n, g in expected.items() if n.startswith("inf_net.")}, n_draws=200)
