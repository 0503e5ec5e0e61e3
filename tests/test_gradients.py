"""Every estimator's expected gradient equals the exact gradient of its objective.

Exact references: enumeration of all latent configurations of small sigmoid
belief networks, and the closed-form ELBO of a linear Gaussian model.
``assert_unbiased`` compares the mean of independent gradient draws with the
exact gradient elementwise, with a Bonferroni-corrected threshold in
standard errors; a correct estimator fails with probability <= 1e-3 per test
(the seeds are fixed, so a run is reproducible). The last tests show that
the same check catches a biased estimator.

Each gradient draw is the loss on a few distinct data points replicated R
times, so one draw averages R independent estimates per point; the exact
target for the replicated batch equals the one for the distinct points.
"""

import itertools

import pytest
import torch

from blackbox_vae import ELBOLoss, ScoreFunctionLoss
from blackbox_vae.testing import (
    assert_unbiased,
    bernoulli_configurations,
    closed_form_elbo,
    exact_elbo,
    gradients,
)
from direct_models import TwoLayerSBNGenModel, TwoLayerSBNInfNet
from exact_references import (
    LATENT_DIM,
    REPLICAS,
    SelfIncludingBaselineLoss,
    binary_data,
    linear_gaussian,
    random_sbn,
)

@pytest.mark.slow  # K and baseline variants; tests/test_loss_registry.py checks one of each in the default run
@pytest.mark.parametrize("baseline, n_samples", [(None, 1), (None, 3), ("mean", 2), ("leave-one-out", 2),
                                                 ("leave-one-out", 4)])
def test_score_function_is_unbiased_on_an_enumerable_sbn(device, baseline, n_samples):
    inf_net, gen_model = random_sbn(device)
    points, batch = binary_data(device)
    loss = ScoreFunctionLoss(inf_net, gen_model, n_samples=n_samples, baseline=baseline)
    configurations = bernoulli_configurations(LATENT_DIM, dtype=torch.float64, device=device)
    expected = gradients(-exact_elbo(inf_net, gen_model, points, configurations).mean(), loss)
    if baseline == "mean":
        for _ in range(5):  # so the moving average is non-zero and actually subtracted
            loss(batch)
    assert_unbiased(loss, batch, expected, n_draws=200)


def test_score_function_is_unbiased_with_dict_latents(device):
    """The direct-path model with two stochastic layers: 2^(3+2) configurations enumerated as a dict."""
    torch.manual_seed(1)
    inf_net, gen_model = TwoLayerSBNInfNet(4, 3, 2).double().to(device), TwoLayerSBNGenModel(4, 3, 2).double().to(device)
    points = torch.bernoulli(torch.full((2, 4), 0.5, dtype=torch.float64)).to(device)
    configurations = torch.tensor(list(itertools.product((0.0, 1.0), repeat=5)), dtype=torch.float64, device=device)
    latents = {"z1": configurations[:, :3].expand(2, -1, -1), "z2": configurations[:, 3:].expand(2, -1, -1)}
    log_q = inf_net(points).log_prob(latents)  # [2, 32]
    log_p = gen_model(points, latents).log_prob(points, latents)  # [2, 32]
    exact = (log_q.exp() * (log_p - log_q)).sum(1)
    loss = ScoreFunctionLoss(inf_net, gen_model, n_samples=3, baseline="leave-one-out")
    assert_unbiased(loss, points.repeat(REPLICAS, 1), gradients(-exact.mean(), loss), n_draws=200)


def test_reported_objective_is_an_unbiased_elbo_estimate(device):
    inf_net, gen_model = random_sbn(device)
    points, batch = binary_data(device)
    loss = ScoreFunctionLoss(inf_net, gen_model, n_samples=2)
    configurations = bernoulli_configurations(LATENT_DIM, dtype=torch.float64, device=device)
    exact = -exact_elbo(inf_net, gen_model, points, configurations).mean().item()
    for _ in range(100):
        loss(batch)
    history = torch.tensor(loss.loss_history_, dtype=torch.float64)
    standard_error = history.std() / len(history) ** 0.5
    assert abs(history.mean().item() - exact) < 4.5 * standard_error  # two-sided, about 1e-5 false failures


@pytest.mark.slow  # K variants; the registry's exact test checks K = 2
@pytest.mark.parametrize("n_samples", [1, 3])
def test_elbo_loss_is_unbiased_on_a_linear_gaussian_model(device, n_samples):
    inf_net, gen_model, points = linear_gaussian(device)
    loss = ELBOLoss(inf_net, gen_model, n_samples=n_samples)
    expected = gradients(-closed_form_elbo(inf_net, gen_model, points).mean(), loss)
    assert_unbiased(loss, points.repeat(REPLICAS, 1), expected, n_draws=200)


@pytest.mark.parametrize("baseline", [None, "leave-one-out"])
def test_score_function_is_unbiased_on_a_linear_gaussian_model(device, baseline):
    inf_net, gen_model, points = linear_gaussian(device)
    loss = ScoreFunctionLoss(inf_net, gen_model, n_samples=2, baseline=baseline)
    expected = gradients(-closed_form_elbo(inf_net, gen_model, points).mean(), loss)
    assert_unbiased(loss, points.repeat(REPLICAS, 1), expected, n_draws=200)


def test_closed_form_elbo_matches_enumeration_free_monte_carlo():
    """The closed form itself, against a large plain Monte Carlo average."""
    inf_net, gen_model, points = linear_gaussian("cpu")
    z = inf_net(points).rsample(200_000)
    monte_carlo = gen_model(points, z).log_prob(points, z) - inf_net.log_prob(z)  # [batch, K]
    standard_error = monte_carlo.std(1) / 200_000**0.5
    exact = closed_form_elbo(inf_net, gen_model, points)
    assert ((monte_carlo.mean(1) - exact).abs() < 4.5 * standard_error).all()


def test_the_check_catches_a_biased_baseline():
    inf_net, gen_model = random_sbn("cpu")
    points, batch = binary_data("cpu")
    loss = SelfIncludingBaselineLoss(inf_net, gen_model, n_samples=2)
    configurations = bernoulli_configurations(LATENT_DIM, dtype=torch.float64)
    expected = gradients(-exact_elbo(inf_net, gen_model, points, configurations).mean(), loss)
    with pytest.raises(AssertionError, match="standard errors") as failure:
        assert_unbiased(loss, batch, expected, n_draws=200)
    assert "inf_net.encoder" in str(failure.value)  # the bias is in q's gradient, where it should be


def test_the_check_catches_a_missing_gradient_term():
    """ELBO without the pathwise term through log q (a common bug): biased in q's parameters."""

    class DetachedEntropyLoss(ELBOLoss):
        def _estimate(self, data):
            _, log_q, log_p = self._draw(data, "rsample")
            elbo = log_p - log_q.detach()
            return -elbo.mean(), -elbo.mean()

    inf_net, gen_model, points = linear_gaussian("cpu")
    loss = DetachedEntropyLoss(inf_net, gen_model, n_samples=2)
    expected = gradients(-closed_form_elbo(inf_net, gen_model, points).mean(), loss)
    with pytest.raises(AssertionError, match="inf_net"):
        assert_unbiased(loss, points.repeat(REPLICAS, 1), expected, n_draws=200)
