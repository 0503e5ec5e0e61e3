"""The testing kit itself: enumeration helpers, contract checks, and the failure report."""

import math

import pytest
import torch

import blackbox_vae.testing as kit
from blackbox_vae.models import CategoricalGenModel, CategoricalInfNet, GaussianMLPGenModel, GaussianMLPInfNet
from blackbox_vae.models import DeepSBNGenModel, DeepSBNInfNet, SBNGenModel, SBNInfNet
from blackbox_vae.testing import (
    ContractError,
    assert_unbiased,
    bernoulli_configurations,
    categorical_configurations,
    check_gen_model,
    check_inf_net,
    configurations_for,
    exact_iwae_bound,
    exact_rws_wake_objectives,
    gradients,
    integer_configurations,
)
from direct_models import TwoLayerSBNGenModel, TwoLayerSBNInfNet
from exact_references import SelfIncludingBaselineLoss, binary_data, random_sbn

DATA = torch.bernoulli(torch.full((4, 6), 0.5), generator=torch.Generator().manual_seed(0))  # whatever was collected before


def test_configurations():
    assert integer_configurations([2, 3]).tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    assert bernoulli_configurations(3).shape == (8, 3)
    one_hot = categorical_configurations(2, 3)
    assert one_hot.shape == (9, 2, 3) and torch.equal(one_hot.sum(-1), torch.ones(9, 2))
    assert len({tuple(c.flatten().tolist()) for c in one_hot}) == 9


def test_configurations_for_reads_the_distribution():
    assert configurations_for(SBNInfNet(6, 3), DATA).shape == (8, 3)
    assert configurations_for(CategoricalInfNet(6, 2, 3, hidden=()), DATA).shape == (9, 2, 3)
    with pytest.raises(TypeError, match="cannot enumerate a Normal"):
        configurations_for(kit.LinearGaussianInfNet(6, 2), DATA)


def test_too_large_latent_spaces_name_their_size():
    with pytest.raises(ValueError, match=r"20 Bernoulli latents has 1048576 joint configurations, more than "
                                         r"`max_configurations`=65536"):
        bernoulli_configurations(20)
    with pytest.raises(ValueError, match=r"30 categorical latents of 10 classes has 10{30} joint configurations"):
        categorical_configurations(30, 10)
    inf_net, gen_model = random_sbn("cpu")
    points, _ = binary_data("cpu")
    with pytest.raises(ValueError, match=r"8-sample groups of 8 latent configurations number 16777216 \(tuples\)"):
        exact_iwae_bound(inf_net, gen_model, points, configurations_for(inf_net, points), 8, method="tuples")


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_multisets_and_tuples_agree(k):
    inf_net, gen_model = random_sbn("cpu")
    points, _ = binary_data("cpu")
    configurations = configurations_for(inf_net, points)
    torch.testing.assert_close(exact_iwae_bound(inf_net, gen_model, points, configurations, k),
                               exact_iwae_bound(inf_net, gen_model, points, configurations, k, method="tuples"))
    for a, b in zip(exact_rws_wake_objectives(inf_net, gen_model, points, configurations, k),
                    exact_rws_wake_objectives(inf_net, gen_model, points, configurations, k, method="tuples")):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("models, data", [
    (lambda: (SBNInfNet(6, 3), SBNGenModel(6, 3)), DATA),
    (lambda: (TwoLayerSBNInfNet(6, 3, 2), TwoLayerSBNGenModel(6, 3, 2)), DATA),
    (lambda: (DeepSBNInfNet(6, [3, 2]), DeepSBNGenModel(6, [3, 2])), DATA),
    (lambda: (CategoricalInfNet(6, 2, 3, hidden=()), CategoricalGenModel(6, 2, 3, hidden=())), DATA),
    (lambda: (GaussianMLPInfNet(3, 2), GaussianMLPGenModel(3, 2)), torch.randn(4, 3, generator=torch.Generator().manual_seed(0))),
], ids=["sbn", "two-layer-dict-latents", "deep-sbn", "categorical", "gaussian"])
def test_library_and_test_models_satisfy_the_contract(models, data):
    # The checks are statistical (false-failure rate 1e-3 each): the same parameters and draws in every run,
    # whatever the tests collected before.
    torch.manual_seed(0)
    inf_net, gen_model = models()
    check_inf_net(inf_net, data)
    check_gen_model(gen_model, data)


class Unnormalized(SBNInfNet):
    def log_prob(self, latents):
        return super().log_prob(latents) + 0.3


class MixesSamples(SBNInfNet):
    def log_prob(self, latents):
        log_q = super().log_prob(latents)
        return log_q - 0.1 * log_q.mean(1, keepdim=True)


class SharperSampler(SBNInfNet):
    def sample(self, n_samples=1):
        return torch.bernoulli(torch.sigmoid(2 * self.params_.logits).unsqueeze(1).expand(-1, n_samples, -1))


class Detached(SBNInfNet):
    def log_prob(self, latents):
        return super().log_prob(latents).detach()


class ReturnsParams(SBNInfNet):
    def forward(self, data):
        super().forward(data)
        return self.params_


class UnsummedLogProb(SBNInfNet):
    def log_prob(self, latents):
        return torch.distributions.Bernoulli(logits=self.params_.logits.unsqueeze(1)).log_prob(latents)


class BitLogits(SBNInfNet):
    def bit_probabilities(self, n_samples=1):
        return (self.params_.logits.unsqueeze(1).expand(-1, n_samples, -1),)


class BitsSwapped(SBNInfNet):
    def bit_probabilities(self, n_samples=1):
        return (super().bit_probabilities(n_samples)[0].transpose(0, 1),)


@pytest.mark.parametrize("broken, message", [
    (BitLogits, r"`BitLogits.bit_probabilities` returned values outside \[0, 1\] for latents: .* not logits"),
    (BitsSwapped, r"`BitsSwapped.bit_probabilities\(3\)` returned shape \(3, 4, 3\) for latents; expected .* "
                  r"= \(4, 3, 3\)"),
    (Unnormalized, r"probabilities exp\(log_prob\) sum to 1\.\d+ > 1: `log_prob` is not normalized"),
    (MixesSamples, r"of 3 samples differs from 3 calls with one sample each"),
    (SharperSampler, r"samples and log-probabilities disagree"),
    (Detached, r"without a gradient path to the parameters"),
    (ReturnsParams, r"`ReturnsParams.forward` must return `self`"),
    (UnsummedLogProb, r"returned shape \(4, \d, 3\); expected \[batch, n_samples\] = \(4, \d\)"),
])
def test_contract_checks_catch_broken_inf_nets(broken, message):
    torch.manual_seed(0)
    with pytest.raises(ContractError, match=message):
        check_inf_net(broken(6, 3), DATA)


def test_contract_check_catches_a_gen_model_whose_sampler_disagrees():
    class FlippedPrior(SBNGenModel):
        def sample(self, n_samples=1):
            x, z = super().sample(n_samples)
            return x, 1 - z

    torch.manual_seed(0)
    gen_model = FlippedPrior(6, 3)
    with torch.no_grad():
        gen_model.prior_logits.fill_(1.5)
    with pytest.raises(ContractError, match="samples and log-probabilities disagree"):
        check_gen_model(gen_model, DATA)


def test_failure_report_is_a_table():
    inf_net, gen_model = random_sbn("cpu")
    points, batch = binary_data("cpu")
    loss = SelfIncludingBaselineLoss(inf_net, gen_model, n_samples=2)
    exact = kit.exact_elbo(inf_net, gen_model, points, configurations_for(inf_net, points))
    with pytest.raises(AssertionError) as failure:
        assert_unbiased(loss, batch, gradients(-exact.mean(), loss))
    lines = str(failure.value).splitlines()
    assert "standard errors (200 draws, false-failure rate 0.001)" in lines[0]
    assert lines[1].split() == ["parameter", "exact", "mean", "std.err", "z"]
    assert len(lines) == 12  # the ten worst elements


def test_strategies_are_imported_on_first_use():
    assert kit.strategies.small_discrete_models is not None


def test_closed_form_posterior_is_bayes_rule():
    """log p(z|x) = log p(x, z) - log p(x), at random z, for a linear Gaussian model."""
    from blackbox_vae.testing import LinearGaussianGenModel, closed_form_log_marginal, closed_form_posterior

    torch.manual_seed(3)
    gen_model = LinearGaussianGenModel(4, 2).double()
    data = torch.randn(5, 4, dtype=torch.float64)
    z = torch.randn(5, 7, 2, dtype=torch.float64)
    log_joint = gen_model(data, z).log_prob(data, z)  # [5, 7]
    log_posterior = closed_form_posterior(gen_model, data).log_prob(z.transpose(0, 1)).T  # [5, 7]
    torch.testing.assert_close(log_posterior, log_joint - closed_form_log_marginal(gen_model, data).unsqueeze(1))



class NaNGradientLoss(torch.nn.Module):
    """A "loss" whose gradient is NaN in one element on every `every`-th call, and exact otherwise."""

    def __init__(self, every):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
        self.every, self.calls = every, 0

    def forward(self, data):
        self.calls += 1
        poison = torch.tensor([0.0, math.nan if self.calls % self.every == 0 else 0.0, 0.0], dtype=torch.float64)
        return (self.weight * (torch.ones(3, dtype=torch.float64) + poison)).sum() + 0 * data.sum()


@pytest.mark.parametrize("every, message", [(1, r"gradient draw 0 \(of 50\) is not finite: weight\[1\] = nan; 50 "),
                                            (7, r"gradient draw 6 \(of 50\) is not finite: weight\[1\] = nan; 7 ")])
def test_assert_unbiased_fails_on_non_finite_draws(every, message):
    """NaN never exceeds a threshold, so a NaN draw must fail by itself, whatever the other draws say."""
    loss = NaNGradientLoss(every)
    with pytest.raises(AssertionError, match=message):
        assert_unbiased(loss, torch.zeros(1), {"weight": torch.ones(3, dtype=torch.float64)}, n_draws=50)


@pytest.mark.parametrize("which", ["expected", "reference_error"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_assert_unbiased_fails_on_non_finite_references(which, value):
    loss = NaNGradientLoss(every=10**9)  # finite draws
    bad = torch.tensor([1.0, value, 1.0], dtype=torch.float64)
    arguments = {"expected": {"weight": torch.ones(3, dtype=torch.float64)}}
    arguments[which] = {"weight": bad}
    what = r"the exact \(expected\) gradient" if which == "expected" else "the reference error"
    with pytest.raises(AssertionError, match=rf"{what} is not finite: weight\[1\] = {value}"):
        assert_unbiased(loss, torch.zeros(1), n_draws=20, **arguments)


def test_assert_unbiased_fails_when_finite_draws_overflow():
    class Huge(NaNGradientLoss):
        def forward(self, data):
            return 1e308 * self.weight.sum() + 0 * data.sum()

    with pytest.raises(AssertionError, match=r"the mean of the gradient draws is not finite: weight\[0\] = inf"):
        assert_unbiased(Huge(every=1), torch.zeros(1), {"weight": torch.ones(3, dtype=torch.float64)}, n_draws=20)


@pytest.mark.parametrize("rate, comparisons, draws", [(1e-3, 1, 200), (1e-3, 40, 200), (1e-5, 7, 50), (1e-3, 500, 30)])
def test_critical_value_is_the_bonferroni_corrected_student_t_quantile(rate, comparisons, draws):
    """The threshold that sets every exact-gradient test's false-failure rate, against SciPy's t quantile."""
    stats = pytest.importorskip("scipy.stats")  # installed with scikit-learn, a dependency of the command line
    expected = stats.t.ppf(1 - rate / (2 * comparisons), draws - 1)
    # The Cornish-Fisher expansion is within a few parts in a thousand down to 30 draws (measured: 4e-3 there).
    assert kit.critical_value(rate, comparisons, draws) == pytest.approx(expected, rel=5e-3)


@pytest.mark.parametrize("power", [0.5, 0.9])
@pytest.mark.parametrize("rate, comparisons, draws", [(1e-3, 24, 200), (1e-5, 24, 200), (1e-3, 100, 30)])
def test_detectable_bias_is_the_power_of_assert_unbiaseds_z_test(power, rate, comparisons, draws):
    """docs/testing.md's power statement: a bias of `detectable_bias(...)` standard errors is flagged with
    probability `power`. Checked against simulated z-scores of `draws` normal draws (as assert_unbiased
    computes them: the mean over the sample standard error), 20000 replications; the tolerance is 5 binomial
    standard errors (false-failure rate below 1e-6 per case)."""
    bias = kit.detectable_bias(rate, comparisons, draws, power)
    assert kit.detection_probability(bias, rate, comparisons, draws) == pytest.approx(power, abs=1e-9)
    generator = torch.Generator().manual_seed(0)
    replications = 20000
    draws_ = torch.randn(replications, draws, generator=generator, dtype=torch.float64) + bias / math.sqrt(draws)
    z = draws_.mean(1) / (draws_.std(1) / math.sqrt(draws))  # the per-draw standard deviation is 1
    flagged = (z.abs() > kit.critical_value(rate, comparisons, draws)).double().mean().item()
    assert flagged == pytest.approx(power, abs=5 * math.sqrt(power * (1 - power) / replications))


def test_detectable_bias_refuses_a_power_outside_0_1():
    with pytest.raises(ValueError, match=r"`power` must be in \(0, 1\); got 1\.0"):
        kit.detectable_bias(1e-3, 24, 200, power=1.0)
