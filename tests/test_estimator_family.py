"""Exact expected gradients of VIMCO, NVIL, RWS, IWAE (reparam/STL/DReG) and Gumbel-softmax.

References: enumeration of all K-tuples of latent configurations (VIMCO's
K-sample bound, RWS's expected wake updates), enumeration of all (x, z) pairs
(sleep-phi), the closed-form ELBO and a Gauss-Hermite quadrature of the
K-sample bound on a linear Gaussian model (IWAE, STL, DReG), and a
Gauss-Legendre quadrature of the relaxed objective over the logistic noise
(Gumbel-softmax). ``assert_unbiased`` compares 200 gradient draws elementwise
with a Bonferroni-corrected threshold (false-failure rate <= 1e-3 per test).
Variants (of K, baselines, temperatures) are marked ``slow``: tests/test_loss_registry.py checks one of
each estimator in the default run, and ``pytest -m slow`` (which .ci/run runs) the rest.
"""

import math

import numpy as np
import pytest
import torch

from blackbox_vae import (
    GumbelSoftmaxLoss,
    IWAELoss,
    NVILBaseline,
    NVILLoss,
    RWSLoss,
    VIMCOLoss,
)
from blackbox_vae.models import SBNGenModel
from blackbox_vae.testing import (
    assert_unbiased,
    bernoulli_configurations,
    closed_form_elbo,
    exact_elbo,
    exact_iwae_bound,
    exact_rws_wake_objectives,
    exact_sleep_phi_objective,
    gradients,
    quadrature_gradients,
)
import exact_references as ref
from exact_references import DATA_DIM, LATENT_DIM, REPLICAS, binary_data, linear_gaussian, random_sbn


def configurations(device):
    return bernoulli_configurations(LATENT_DIM, dtype=torch.float64, device=device)


@pytest.mark.slow  # variants: the registry's exact test checks one in the default run
@pytest.mark.parametrize("n_samples", [2, 3])
def test_vimco_is_unbiased_for_the_k_sample_bound(device, n_samples):
    inf_net, gen_model = random_sbn(device)
    points, batch = binary_data(device)
    loss = VIMCOLoss(inf_net, gen_model, n_samples=n_samples)
    exact = exact_iwae_bound(inf_net, gen_model, points, configurations(device), n_samples)
    assert_unbiased(loss, batch, gradients(-exact.mean(), loss), n_draws=200)


@pytest.mark.slow  # variants: the registry's exact test checks one in the default run
@pytest.mark.parametrize("baseline_net, running_mean", [(True, True), (True, False), (False, True)])
def test_nvil_without_variance_normalization_is_unbiased(device, baseline_net, running_mean):
    inf_net, gen_model = random_sbn(device)
    points, batch = binary_data(device)
    net = NVILBaseline(DATA_DIM, hidden=(4,)).double().to(device) if baseline_net else None
    loss = NVILLoss(inf_net, gen_model, n_samples=1, baseline_net=net, running_mean=running_mean,
                    variance_normalization=False)
    if net is not None:
        with torch.no_grad():  # a baseline that is actually non-zero and input-dependent
            net.net[-1].bias.fill_(-5.0)
    for _ in range(5):  # non-zero running mean
        loss(batch)
    expected = gradients(-exact_elbo(inf_net, gen_model, points, configurations(device)).mean(), loss)
    expected = {n: g for n, g in expected.items() if not n.startswith("baseline_net")}
    assert_unbiased(loss, batch, expected, n_draws=200)


@pytest.mark.slow  # a long end-to-end run: in `pytest -m slow` (and .ci/run)
def test_nvil_trains_its_baseline_towards_the_learning_signal():
    inf_net, gen_model = random_sbn("cpu")
    _, batch = binary_data("cpu")
    net = NVILBaseline(DATA_DIM, hidden=(8,)).double()
    loss = NVILLoss(inf_net, gen_model, baseline_net=net, running_mean=False, variance_normalization=False)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)  # only the baseline moves
    errors = []
    for _ in range(300):
        optimizer.zero_grad()
        loss(batch).backward()
        optimizer.step()
        errors.append(((loss.log_p_ - loss.log_q_).mean(1) - net(batch)).pow(2).mean().item())
    first, last = np.mean(errors[:20]), np.mean(errors[-20:])
    signal_variance = (loss.log_p_ - loss.log_q_).var().item()
    assert last < first / 4 and last < signal_variance


def rws_expected(loss, inf_net, gen_model, points, device, phi_update, n_samples):
    wake_theta, wake_phi = exact_rws_wake_objectives(inf_net, gen_model, points, configurations(device), n_samples)
    data_configurations = bernoulli_configurations(DATA_DIM, dtype=torch.float64, device=device)
    sleep_phi = exact_sleep_phi_objective(inf_net, gen_model, data_configurations, configurations(device))
    phi = {"wake": wake_phi.mean(), "sleep": sleep_phi, "wake-sleep": (wake_phi.mean() + sleep_phi) / 2}[phi_update]
    return gradients(-(wake_theta.mean() + phi), loss)


@pytest.mark.slow  # variants: the registry's exact test checks one in the default run
@pytest.mark.parametrize("phi_update, n_samples", [("wake", 2), ("wake", 3), ("sleep", 2), ("sleep", 1),
                                                   ("wake-sleep", 3)])
def test_rws_updates_have_their_exact_expectations(device, phi_update, n_samples):
    inf_net, gen_model = random_sbn(device)
    points, batch = binary_data(device)
    loss = RWSLoss(inf_net, gen_model, n_samples=n_samples, phi_update=phi_update)
    expected = rws_expected(loss, inf_net, gen_model, points, device, phi_update, n_samples)
    assert_unbiased(loss, batch, expected, n_draws=200)


def test_rws_reports_the_k_sample_bound():
    inf_net, gen_model = random_sbn("cpu")
    points, batch = binary_data("cpu")
    loss = RWSLoss(inf_net, gen_model, n_samples=3)
    exact = -exact_iwae_bound(inf_net, gen_model, points, configurations("cpu"), 3).mean().item()
    for _ in range(100):
        loss(batch)
    history = torch.tensor(loss.loss_history_, dtype=torch.float64)
    assert abs(history.mean().item() - exact) < 4.5 * history.std().item() / 10  # two-sided, ~1e-5 false failures


def one_dimensional_linear_gaussian(device):
    return linear_gaussian(device, data_dim=3, latent_dim=1)


@pytest.mark.slow  # variants: the registry's exact test checks one in the default run
@pytest.mark.parametrize("gradient, n_samples", [("reparam", 2), ("reparam", 3), ("dreg", 2), ("dreg", 3),
                                                 ("stl", 1), ("dreg", 1)])
def test_iwae_gradients_are_unbiased_where_theory_says_so(device, gradient, n_samples):
    inf_net, gen_model, points = one_dimensional_linear_gaussian(device)
    loss = IWAELoss(inf_net, gen_model, n_samples=n_samples, gradient=gradient)
    expected, error = quadrature_gradients(inf_net, gen_model, points, n_samples, loss,
                                           n_nodes=24 if n_samples == 3 else 40)
    assert_unbiased(loss, points.repeat(REPLICAS, 1), expected, n_draws=200, reference_error=error)


def test_stl_for_k_1_matches_the_closed_form_elbo_gradient_in_higher_dimensions(device):
    inf_net, gen_model, points = linear_gaussian(device)  # latent_dim 2
    loss = IWAELoss(inf_net, gen_model, n_samples=1, gradient="stl")
    expected = gradients(-closed_form_elbo(inf_net, gen_model, points).mean(), loss)
    assert_unbiased(loss, points.repeat(REPLICAS, 1), expected, n_draws=200)


@pytest.mark.parametrize("gradient", ["reparam", "dreg"])
def test_iwae_with_one_sample_is_unbiased_for_the_closed_form_elbo_gradient(gradient):
    """K = 1: the bound is the ELBO, so every IWAE gradient must average to the closed-form ELBO gradient."""
    inf_net, gen_model, points = linear_gaussian("cpu")  # a 2-D latent
    loss = IWAELoss(inf_net, gen_model, 1, gradient=gradient)
    expected = gradients(-closed_form_elbo(inf_net, gen_model, points).mean(), loss)
    assert_unbiased(loss, points.repeat(REPLICAS, 1), expected, n_draws=200)


@pytest.mark.slow  # variants: the registry's exact test checks one in the default run
@pytest.mark.parametrize("temperature", [0.5, 1.0])
def test_gumbel_softmax_is_unbiased_for_its_relaxed_objective(device, temperature):
    torch.manual_seed(4)
    inf_net = ref.SmallRelaxedBernoulliInfNet(DATA_DIM, 2).double().to(device)
    gen_model = SBNGenModel(DATA_DIM, 2).double().to(device)
    points, batch = binary_data(device)
    loss = GumbelSoftmaxLoss(inf_net, gen_model, n_samples=2, temperature=temperature)
    exact = ref.relaxed_bernoulli_objective(inf_net, gen_model, points, temperature)
    assert_unbiased(loss, batch, gradients(-exact.mean(), loss), n_draws=200)


def test_relaxed_objective_quadrature_has_converged():
    inf_net = ref.SmallRelaxedBernoulliInfNet(DATA_DIM, 2).double()
    gen_model = SBNGenModel(DATA_DIM, 2).double()
    points, _ = binary_data("cpu")
    coarse = ref.relaxed_bernoulli_objective(inf_net, gen_model, points, 0.5, n_nodes=48)
    fine = ref.relaxed_bernoulli_objective(inf_net, gen_model, points, 0.5, n_nodes=96)
    torch.testing.assert_close(coarse, fine, rtol=0, atol=1e-6)


def test_straight_through_uses_exact_discrete_samples_and_reports_the_elbo():
    torch.manual_seed(5)
    inf_net = ref.SmallRelaxedBernoulliInfNet(DATA_DIM, LATENT_DIM).double()
    gen_model = SBNGenModel(DATA_DIM, LATENT_DIM).double()
    points, batch = binary_data("cpu")
    loss = GumbelSoftmaxLoss(inf_net, gen_model, n_samples=2, temperature=0.7, straight_through=True)
    latents = inf_net(batch).relaxed_rsample(2, temperature=0.7, straight_through=True)
    assert set(latents.unique().tolist()) <= {0.0, 1.0} and latents.requires_grad
    # The hard samples are exact draws from q: their frequencies match q's probabilities.
    probabilities = torch.sigmoid(inf_net.params_.logits)  # [batch, H]
    frequencies = inf_net(batch).relaxed_rsample(400, temperature=0.7, straight_through=True).mean(1)
    standard_error = (probabilities * (1 - probabilities) / 400).sqrt()
    assert ((frequencies - probabilities).abs() < 5 * standard_error).all()
    # And the reported objective is an unbiased ELBO estimate.
    exact = -exact_elbo(inf_net, gen_model, points, configurations("cpu")).mean().item()
    for _ in range(100):
        loss(batch)
    history = torch.tensor(loss.loss_history_, dtype=torch.float64)
    assert abs(history.mean().item() - exact) < 4.5 * history.std().item() / 10
    loss(batch).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in loss.parameters())


@pytest.mark.slow  # variants: the registry's exact test checks one in the default run
@pytest.mark.parametrize("n_samples", [2, 3])
def test_stl_is_biased_for_more_than_one_sample(n_samples):
    """Tucker et al. (2019): STL's dropped score term does not have mean zero for the K-sample bound."""
    inf_net, gen_model, points = one_dimensional_linear_gaussian("cpu")
    loss = IWAELoss(inf_net, gen_model, n_samples=n_samples, gradient="stl")
    expected, error = quadrature_gradients(inf_net, gen_model, points, n_samples, loss,
                                           n_nodes=24 if n_samples == 3 else 40)
    with pytest.raises(AssertionError, match=r"inf_net\."):
        assert_unbiased(loss, points.repeat(REPLICAS, 1), expected, n_draws=200, reference_error=error)


class OwnWeightVIMCOLoss(VIMCOLoss):
    """A deliberately wrong VIMCO: every sample's baseline is the full bound, its own weight included."""

    def _estimate(self, data):
        _, log_q, log_p = self._draw(data)
        bound = torch.logsumexp(log_p - log_q, dim=1) - math.log(self.n_samples)
        learning_signal = torch.zeros_like(log_q)  # bound minus a baseline equal to the bound itself
        return -bound.mean(), -(bound + (learning_signal * log_q).sum(1)).mean()


def test_the_check_catches_a_vimco_whose_baseline_includes_the_sample():
    inf_net, gen_model = random_sbn("cpu")
    points, batch = binary_data("cpu")
    loss = OwnWeightVIMCOLoss(inf_net, gen_model, n_samples=3)
    exact = exact_iwae_bound(inf_net, gen_model, points, configurations("cpu"), 3)
    with pytest.raises(AssertionError, match=r"inf_net\.encoder"):
        assert_unbiased(loss, batch, gradients(-exact.mean(), loss), n_draws=200)
