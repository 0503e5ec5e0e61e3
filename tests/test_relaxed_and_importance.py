"""Relaxed categorical InfNets, and the log-space helpers behind VIMCO/RWS/IWAE."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from blackbox_vae import GenModel, GumbelSoftmaxLoss, RelaxedCategoricalInfNet
from blackbox_vae.losses._importance import log_mean_exp, log_sum_exp_others, vimco_learning_signals
from blackbox_vae.testing import assert_unbiased, gradients

N_LATENTS, N_CLASSES, DATA_DIM = 1, 3, 4


class CategoricalEncoder(RelaxedCategoricalInfNet):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(DATA_DIM, N_LATENTS * N_CLASSES)

    def logits(self, data):
        return self.net(data).view(-1, N_LATENTS, N_CLASSES)  # [batch, L, C]


class CategoricalDecoder(GenModel):
    """p(z) = prod Categorical(pi), p(x|z) = Bernoulli(sigmoid(W z)); log p(z) = sum z_i log pi_i (linear in z)."""

    def __init__(self):
        super().__init__()
        self.prior_logits = nn.Parameter(torch.randn(N_LATENTS, N_CLASSES))
        self.net = nn.Linear(N_LATENTS * N_CLASSES, DATA_DIM)

    def forward(self, data, latents):
        self.params_ = self.net(latents.flatten(-2))  # [batch, K, D]
        return self

    def log_prob(self, data, latents):
        log_prior = (latents * torch.log_softmax(self.prior_logits, -1)).sum((-1, -2))
        log_likelihood = -nn.functional.binary_cross_entropy_with_logits(
            self.params_, data.unsqueeze(1).expand_as(self.params_), reduction="none").sum(-1)
        return log_prior + log_likelihood

    def sample(self, n_samples=1):
        z = torch.distributions.OneHotCategorical(logits=self.prior_logits).sample((n_samples,))
        return torch.bernoulli(torch.sigmoid(self.net(z.flatten(-2)))), z


def test_categorical_inf_net_shapes_and_exact_log_prob():
    torch.manual_seed(0)
    inf_net = CategoricalEncoder()(torch.randn(5, DATA_DIM))
    z = inf_net.sample(7)
    assert z.shape == (5, 7, N_LATENTS, N_CLASSES) and torch.equal(z.sum(-1), torch.ones(5, 7, N_LATENTS))
    expected = inf_net.params_.log_prob(z.movedim(1, 0)).sum(-1).movedim(0, 1)  # OneHotCategorical's own
    torch.testing.assert_close(inf_net.log_prob(z), expected)
    hard = inf_net.relaxed_rsample(7, temperature=0.5, straight_through=True)
    assert torch.equal(hard.sum(-1), torch.ones(5, 7, N_LATENTS)) and set(hard.unique().tolist()) == {0.0, 1.0}
    assert hard.requires_grad
    soft = inf_net.relaxed_rsample(7, temperature=0.5)
    torch.testing.assert_close(soft.sum(-1), torch.ones(5, 7, N_LATENTS))
    assert inf_net.log_prob(soft).requires_grad  # linear in the relaxed sample: the gradient flows


def relaxed_categorical_objective(inf_net, gen_model, data, temperature, n_nodes=32):
    """E over Gumbel noise of log p(x, y) - log q(y|x), y = softmax((logits + g) / tau), by Gauss-Legendre in u."""
    nodes, weights = np.polynomial.legendre.leggauss(n_nodes)
    u = torch.as_tensor((nodes + 1) / 2, dtype=data.dtype)
    w = torch.as_tensor(weights / 2, dtype=data.dtype)
    grid = torch.cartesian_prod(*[u] * N_CLASSES)  # [G, C] (N_LATENTS == 1)
    grid_weights = torch.cartesian_prod(*[w] * N_CLASSES).prod(-1)  # [G]
    gumbel = -torch.log(-torch.log(grid))
    logits = inf_net(data).params_.logits  # [batch, 1, C]
    relaxed = torch.softmax((logits.unsqueeze(1) + gumbel.view(1, -1, 1, N_CLASSES)) / temperature, -1)
    objective = gen_model(data, relaxed).log_prob(data, relaxed) - inf_net.log_prob(relaxed)  # [batch, G]
    return (objective * grid_weights).sum(-1)


def test_gumbel_softmax_on_categorical_latents_is_unbiased_for_the_relaxed_objective():
    torch.manual_seed(1)
    inf_net, gen_model = CategoricalEncoder().double(), CategoricalDecoder().double()
    points = torch.bernoulli(torch.full((3, DATA_DIM), 0.5, dtype=torch.float64))
    loss = GumbelSoftmaxLoss(inf_net, gen_model, n_samples=2, temperature=0.7)
    exact = relaxed_categorical_objective(inf_net, gen_model, points, 0.7)
    finer = relaxed_categorical_objective(inf_net, gen_model, points, 0.7, n_nodes=48)
    torch.testing.assert_close(exact, finer, rtol=0, atol=1e-6)  # the quadrature has converged
    assert_unbiased(loss, points.repeat(100, 1), gradients(-exact.mean(), loss), n_draws=200)


def brute_force_log_sum_exp_others(w):
    k = w.shape[1]
    mask = torch.eye(k, dtype=torch.bool)
    return torch.logsumexp(w.unsqueeze(1).masked_fill(mask, -math.inf), dim=-1)  # O(K^2)


@pytest.mark.parametrize("k", [2, 3, 10, 257])
def test_log_sum_exp_others_matches_brute_force(k):
    w = torch.randn(6, k, dtype=torch.float64) * 30
    torch.testing.assert_close(log_sum_exp_others(w), brute_force_log_sum_exp_others(w))


def test_log_sum_exp_others_is_stable_when_one_weight_dominates():
    w = torch.tensor([[0.0, -200.0, -201.0], [1000.0, -1000.0, 0.0]], dtype=torch.float32)
    result = log_sum_exp_others(w)
    expected = brute_force_log_sum_exp_others(w.double()).float()
    torch.testing.assert_close(result, expected)
    # log(S - exp(w_0)) would have lost everything here in float32:
    assert math.isfinite(result[0, 0].item()) and result[0, 0].item() == pytest.approx(-200 + math.log1p(math.exp(-1)))


def vimco_signals_by_definition(w):
    """L - L^{-k} in float64, forming both bounds: L^{-k} replaces w_k by the mean of the others' log-weights."""
    w = w.double()
    k = w.shape[1]
    geometric_mean_others = (w.sum(1, keepdim=True) - w) / (k - 1)
    bound = torch.logsumexp(w, 1, keepdim=True) - math.log(k)
    replaced = torch.stack([torch.logsumexp(torch.cat([w[:, :i], geometric_mean_others[:, i:i + 1], w[:, i + 1:]], 1),
                                            1) for i in range(k)], 1) - math.log(k)
    return bound - replaced


@pytest.mark.parametrize("k", [2, 3, 5, 8, 9, 65])  # 5 = the batch: a reduction over the wrong axis keeps its shape
def test_vimco_learning_signals_match_the_definition(k):
    w = torch.randn(5, k, dtype=torch.float64) * 30
    w[0, 0] = 500.0  # one dominating weight: no catastrophic cancellation in either form
    torch.testing.assert_close(vimco_learning_signals(w), vimco_signals_by_definition(w))
    torch.testing.assert_close(vimco_learning_signals(w.float()), vimco_signals_by_definition(w).float(),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("level", [-500.0, -2000.0])
def test_vimco_learning_signals_keep_their_precision_at_large_k(level):
    """K = 10,000 log-weights near -500 or -2000 (float32), against a float64 reference.

    The signals are of size 1/K = 1e-4. Forming the two bounds (each of size |log w|) and subtracting
    them leaves an absolute error of about eps * |log w| = 6e-5..2.4e-4: 60% to 250% of the signal
    (measured). Computed as a difference of softplus terms from a max-shifted log-sum-exp, the error is
    that of the O(log K)-sized log-sum-exp of K terms, accumulated over K float32 additions: at most about
    sqrt(K) * log(K) * eps relative to the signal's size (measured: 1e-5); the test allows ten times that.
    """
    torch.manual_seed(0)
    k = 10_000
    w = (level + torch.randn(3, k, dtype=torch.float64)).float()  # float32, as the losses compute
    reference = vimco_signals_by_definition_fast(w.double())  # the same float32 inputs, in float64
    error = (vimco_learning_signals(w).double() - reference).abs().max() / reference.abs().mean()
    allowed = 10 * math.sqrt(k) * math.log(k) * torch.finfo(torch.float32).eps
    assert error < allowed, f"relative error {error:.3g} > {allowed:.3g}"


def vimco_signals_by_definition_fast(w):
    """`vimco_signals_by_definition` in O(K) for float64 input: S - exp(w_k) loses nothing in float64 here."""
    k = w.shape[1]
    geometric_mean_others = (w.sum(1, keepdim=True) - w) / (k - 1)
    shift = w.max(1, keepdim=True).values
    total = (w - shift).exp().sum(1, keepdim=True)
    replaced = torch.log(total - (w - shift).exp() + (geometric_mean_others - shift).exp())
    return torch.log(total) - replaced


def test_the_fast_reference_is_the_definition():
    w = (-500.0 + torch.randn(3, 300, dtype=torch.float64))
    torch.testing.assert_close(vimco_signals_by_definition_fast(w), vimco_signals_by_definition(w))


def test_log_mean_exp():
    w = torch.tensor([[0.0, math.log(3.0)]])
    torch.testing.assert_close(log_mean_exp(w), torch.tensor([math.log(2.0)]))
