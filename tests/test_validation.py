"""Bad input gets a clear error naming the argument or method, what it got, and what was expected."""

import math

import pytest
import torch

from blackbox_vae import DistributionInfNet, ELBOLoss, GumbelSoftmaxLoss, ScoreFunctionLoss
from blackbox_vae.models import GaussianMLPGenModel, GaussianMLPInfNet, SBNGenModel, SBNInfNet
from direct_models import TwoLayerSBNGenModel, TwoLayerSBNInfNet

DATA = torch.bernoulli(torch.full((5, 6), 0.5))


class WrongShapeInfNet(SBNInfNet):
    def log_prob(self, latents):
        return super().log_prob(latents).unsqueeze(-1).expand(-1, -1, 4)  # [batch, K, 4]: forgot to sum


class WrongShapeGenModel(SBNGenModel):
    def log_prob(self, data, latents):
        return super().log_prob(data, latents).sum(1)  # [batch]: summed over the samples


class TransposedSampleInfNet(SBNInfNet):
    def sample(self, n_samples=1):
        return super().sample(n_samples).transpose(0, 1)  # [K, batch, H]


def poisoned(value):
    class Poisoned(SBNGenModel):
        def log_prob(self, data, latents):
            log_p = super().log_prob(data, latents).clone()
            log_p[1, 0] = value
            return log_p

    return Poisoned(6, 3)


def test_log_prob_with_latent_dims_left_in():
    loss = ScoreFunctionLoss(WrongShapeInfNet(6, 3), SBNGenModel(6, 3), n_samples=2)
    with pytest.raises(ValueError, match=r"WrongShapeInfNet.log_prob` returned shape \(5, 2, 4\); expected "
                                         r"\[batch, n_samples\] = \(5, 2\). Sum the log-probability"):
        loss(DATA)


def test_gen_model_log_prob_of_wrong_shape():
    loss = ScoreFunctionLoss(SBNInfNet(6, 3), WrongShapeGenModel(6, 3), n_samples=2)
    with pytest.raises(ValueError, match=r"WrongShapeGenModel.log_prob` returned shape \(5,\); expected"):
        loss(DATA)


def test_sample_with_wrong_leading_dims():
    loss = ScoreFunctionLoss(TransposedSampleInfNet(6, 3), SBNGenModel(6, 3), n_samples=2)
    with pytest.raises(ValueError, match=r"TransposedSampleInfNet.sample` returned latents of shape \(2, 5, 3\); "
                                         r"expected leading dimensions \[batch, n_samples\] = \(5, 2\)"):
        loss(DATA)


@pytest.mark.parametrize("value, shown", [(math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf")])
def test_non_finite_log_weight(value, shown):
    loss = ScoreFunctionLoss(SBNInfNet(6, 3), poisoned(value), n_samples=2)
    with pytest.raises(ValueError, match=rf"Poisoned.log_prob` returned a non-finite log-probability {shown} "
                                         r"at \[batch 1, sample 0\]"):
        loss(DATA)


def test_validation_can_be_switched_off_for_speed():
    loss = ScoreFunctionLoss(SBNInfNet(6, 3), poisoned(math.nan), n_samples=2, validate=False)
    assert math.isnan(loss(DATA).item())


def test_leave_one_out_needs_two_samples():
    with pytest.raises(ValueError, match=r"baseline='leave-one-out'\) needs `n_samples` >= 2 \(each sample's "
                                         r"baseline .*\); got n_samples=1"):
        ScoreFunctionLoss(SBNInfNet(6, 3), SBNGenModel(6, 3), n_samples=1, baseline="leave-one-out")


@pytest.mark.parametrize("n_samples, error", [(0, ValueError), (-3, ValueError), (2.0, TypeError), (True, TypeError)])
def test_bad_n_samples(n_samples, error):
    with pytest.raises(error, match="n_samples"):
        ScoreFunctionLoss(SBNInfNet(6, 3), SBNGenModel(6, 3), n_samples=n_samples)


def test_unknown_baseline_and_decay():
    with pytest.raises(ValueError, match=r"`baseline` must be one of \(None, 'mean', 'leave-one-out'\); got 'avg'"):
        ScoreFunctionLoss(SBNInfNet(6, 3), SBNGenModel(6, 3), baseline="avg")
    with pytest.raises(ValueError, match=r"`baseline_decay` must be in \[0, 1\); got 1.0"):
        ScoreFunctionLoss(SBNInfNet(6, 3), SBNGenModel(6, 3), baseline="mean", baseline_decay=1.0)


def test_reparameterized_loss_without_rsample():
    with pytest.raises(TypeError, match=r"ELBOLoss needs `TwoLayerSBNInfNet.rsample`, which it does not have "
                                        r"\(`has_rsample` is False\): a reparameterized sample; implement"):
        ELBOLoss(TwoLayerSBNInfNet(6, 3, 2), TwoLayerSBNGenModel(6, 3, 2))


def test_elbo_on_discrete_latents_is_refused_at_construction():
    with pytest.raises(TypeError, match=r"ELBOLoss needs `SBNInfNet.rsample`.*ScoreFunctionLoss or VIMCOLoss"):
        ELBOLoss(SBNInfNet(6, 3), SBNGenModel(6, 3))


def test_gumbel_softmax_without_a_relaxed_sample():
    with pytest.raises(TypeError, match=r"GumbelSoftmaxLoss needs `GaussianMLPInfNet.relaxed_rsample`.*"
                                        r"RelaxedBernoulliInfNet"):
        GumbelSoftmaxLoss(GaussianMLPInfNet(6, 3), GaussianMLPGenModel(6, 3))


def test_models_of_the_wrong_type():
    with pytest.raises(TypeError, match=r"`inf_net` must be an InfNet \(q\(z\|x\)\); got SBNGenModel"):
        ScoreFunctionLoss(SBNGenModel(6, 3), SBNGenModel(6, 3))
    with pytest.raises(TypeError, match=r"`gen_model` must be a GenModel \(p\(x, z\)\); got Linear"):
        ScoreFunctionLoss(SBNInfNet(6, 3), torch.nn.Linear(3, 6))


@pytest.mark.parametrize("data, error, message", [
    ([[0.0] * 6], TypeError, r"`data` must be a Tensor of shape \[batch, \*data_shape\]; got list"),
    (torch.tensor(1.0), ValueError, r"got shape \(\)"),
    (torch.zeros(0, 6), ValueError, r"batch >= 1; got shape \(0, 6\)"),
])
def test_bad_data(data, error, message):
    with pytest.raises(error, match=message):
        ScoreFunctionLoss(SBNInfNet(6, 3), SBNGenModel(6, 3))(data)


class NormalInfNet(DistributionInfNet):
    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Linear(3, 2)

    def distribution(self, data):
        return torch.distributions.Normal(self.encoder(data), 1.0)


def test_distribution_with_the_wrong_batch_size():
    class Broken(NormalInfNet):
        def distribution(self, data):
            return super().distribution(data[:1])

    with pytest.raises(ValueError, match=r"Broken.distribution` returned a Normal with batch_shape \(1, 2\); "
                                         r"expected it to start with the batch size 4"):
        ELBOLoss(Broken(), GaussianMLPGenModel(3, 2))(torch.randn(4, 3))


def test_distribution_path_rejects_a_non_distribution():
    class NotADistribution(NormalInfNet):
        def distribution(self, data):
            return self.encoder(data)

    with pytest.raises(TypeError, match=r"NotADistribution.distribution` must return a "
                                        r"torch.distributions.Distribution .*; got Tensor"):
        NotADistribution()(torch.randn(4, 3))


def test_latents_of_the_wrong_shape_for_log_prob():
    inf_net = SBNInfNet(6, 3)(DATA)
    with pytest.raises(ValueError, match=r"got latents of shape \(5, 3\); expected \[batch, n_samples, "
                                         r"\*latent_shape\] = \(5, n_samples, 3\)"):
        inf_net.log_prob(torch.zeros(5, 3))


def test_sampling_before_forward():
    with pytest.raises(RuntimeError, match=r"Call `SBNInfNet\(data\)`"):
        SBNInfNet(6, 3).sample(2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA to put data and models on different devices")
def test_data_on_another_device():
    loss = ScoreFunctionLoss(SBNInfNet(6, 3), SBNGenModel(6, 3)).cuda()
    with pytest.raises(ValueError, match=r"`data` is on cpu but the models' parameters are on cuda:0"):
        loss(DATA)


# ----------------------------------------------------------- the estimator family
from blackbox_vae import (  # noqa: E402
    IWAELoss,
    NVILBaseline,
    NVILLoss,
    RWSLoss,
    TemperatureSchedule,
    VIMCOLoss,
)
from loss_examples import TinyRelaxedInfNet  # noqa: E402

RELAXED_DATA = torch.bernoulli(torch.full((5, 8), 0.5))


def test_vimco_needs_two_samples():
    with pytest.raises(ValueError, match=r"VIMCOLoss needs `n_samples` >= 2 \(each sample's baseline is built from "
                                         r"the other samples\); got n_samples=1"):
        VIMCOLoss(SBNInfNet(6, 3), SBNGenModel(6, 3), n_samples=1)


def test_rws_wake_needs_two_samples_but_sleep_does_not():
    with pytest.raises(ValueError, match=r"RWSLoss\(phi_update='wake-sleep'\) needs `n_samples` >= 2"):
        RWSLoss(SBNInfNet(6, 3), SBNGenModel(6, 3), n_samples=1, phi_update="wake-sleep")
    RWSLoss(SBNInfNet(6, 3), SBNGenModel(6, 3), n_samples=1, phi_update="sleep")(DATA)


@pytest.mark.parametrize("make, message", [
    (lambda: RWSLoss(SBNInfNet(6, 3), SBNGenModel(6, 3), 2, phi_update="dream"),
     r"`phi_update` must be one of \('wake', 'sleep', 'wake-sleep'\); got 'dream'"),
    (lambda: IWAELoss(GaussianMLPInfNet(3, 2), GaussianMLPGenModel(3, 2), 2, gradient="vr"),
     r"`gradient` must be one of \('reparam', 'stl', 'dreg'\); got 'vr'"),
    (lambda: NVILLoss(SBNInfNet(6, 3), SBNGenModel(6, 3), decay=1.5), r"`decay` must be in \[0, 1\); got 1.5"),
    (lambda: GumbelSoftmaxLoss(TinyRelaxedInfNet(), SBNGenModel(8, 4), temperature=0.0),
     r"`GumbelSoftmaxLoss`: `temperature` must be a number > 0; got 0.0"),
    (lambda: GumbelSoftmaxLoss(TinyRelaxedInfNet(), SBNGenModel(8, 4), temperature=-1),
     r"`temperature` must be a number > 0; got -1"),
    (lambda: GumbelSoftmaxLoss(TinyRelaxedInfNet(), SBNGenModel(8, 4), straight_through="yes"),
     r"`straight_through` must be one of \(True, False\); got 'yes'"),
    (lambda: NVILLoss(SBNInfNet(6, 3), SBNGenModel(6, 3), variance_normalization=1),
     r"`variance_normalization` must be one of \(True, False\); got 1"),
    (lambda: TemperatureSchedule(initial=1.0, minimum=0.0), r"`initial` and `minimum` must be > 0"),
])
def test_bad_estimator_options(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_schedule_that_reaches_zero_is_caught_when_used():
    loss = GumbelSoftmaxLoss(TinyRelaxedInfNet(), SBNGenModel(8, 4), temperature=lambda step: 1.0 - step)
    loss(RELAXED_DATA)
    with pytest.raises(ValueError, match=r"its temperature schedule at step 1\)`: `temperature` must be a number "
                                         r"> 0; got 0.0"):
        loss(RELAXED_DATA)


@pytest.mark.parametrize("loss_class, hook", [(IWAELoss, "rsample"), (GumbelSoftmaxLoss, "relaxed_rsample")])
def test_estimators_check_the_hooks_they_need(loss_class, hook):
    with pytest.raises(TypeError, match=rf"{loss_class.__name__} needs `TwoLayerSBNInfNet.{hook}`, which it does "
                                        rf"not have \(`has_{hook}` is False\)"):
        loss_class(TwoLayerSBNInfNet(6, 3, 2), TwoLayerSBNGenModel(6, 3, 2))


def test_relaxed_rsample_checks_its_temperature():
    inf_net = TinyRelaxedInfNet()(RELAXED_DATA)
    with pytest.raises(TypeError, match=r"temperature"):
        inf_net.relaxed_rsample(2)
    with pytest.raises(ValueError, match=r"`TinyRelaxedInfNet.relaxed_rsample`: `temperature` must be a number > 0; "
                                         r"got -0.5"):
        inf_net.relaxed_rsample(2, temperature=-0.5)


def test_nvil_baseline_net_checks():
    with pytest.raises(TypeError, match=r"`baseline_net` must be an nn.Module or None; got function"):
        NVILLoss(SBNInfNet(6, 3), SBNGenModel(6, 3), baseline_net=lambda x: x.sum(1))
    wrong = torch.nn.Linear(6, 2)  # [batch, 2] instead of [batch]
    with pytest.raises(ValueError, match=r"`baseline_net` returned shape \(5, 2\); expected \[batch\] = \(5,\)"):
        NVILLoss(SBNInfNet(6, 3), SBNGenModel(6, 3), baseline_net=wrong)(DATA)
    NVILLoss(SBNInfNet(6, 3), SBNGenModel(6, 3), baseline_net=NVILBaseline(6))(DATA)


def test_sleep_phase_checks_the_dreams():
    class BadSampler(SBNGenModel):
        def sample(self, n_samples=1):
            x, z = super().sample(n_samples)
            return x[:1], z

    with pytest.raises(ValueError, match=r"`BadSampler.sample\(5\)` returned data of shape \(1, 6\); expected "
                                         r"\[n_samples, \*data_shape\] with n_samples = 5"):
        RWSLoss(SBNInfNet(6, 3), BadSampler(6, 3), 2, phi_update="sleep")(DATA)


# ----------------------------------------------------------- issue 13: the API under ordinary mistakes
@pytest.mark.parametrize("dtype, fix", [(torch.float64, "convert the data with `data.to(torch.float32)`, or the "
                                                        "models with `loss.to(torch.float64)`"),
                                        (torch.int64, "convert the data with `data.to(torch.float32)`.")])
def test_data_of_another_dtype_than_the_models(dtype, fix):
    loss = ScoreFunctionLoss(SBNInfNet(6, 3), SBNGenModel(6, 3), n_samples=2)
    with pytest.raises(TypeError, match=rf"`data` has dtype {dtype} but the models' parameters are torch.float32"):
        loss(DATA.to(dtype))
    with pytest.raises(TypeError) as failure:
        loss(DATA.to(dtype))
    assert fix in str(failure.value)


def test_gumbel_softmax_with_a_prior_that_validates_its_support_says_what_to_change():
    from torch import nn
    from torch.distributions import Bernoulli

    from blackbox_vae import DistributionGenModel

    class ReadmeDecoder(DistributionGenModel):  # the README's model, whose Bernoulli validates its support
        def __init__(self):
            super().__init__()
            self.prior_logits = nn.Parameter(torch.zeros(3))
            self.net = nn.Linear(3, 6)

        def prior(self):
            return Bernoulli(logits=self.prior_logits)

        def likelihood(self, latents):
            return Bernoulli(logits=self.net(latents))

    with pytest.raises(ValueError, match=r"rejected them because it validates its support: construct it with "
                                         r"validate_args=False"):
        GumbelSoftmaxLoss(SBNInfNet(6, 3), ReadmeDecoder())(DATA)


def test_a_loss_and_its_models_deep_copy_after_a_call():
    import copy

    loss = RWSLoss(SBNInfNet(6, 3), SBNGenModel(6, 3), n_samples=3, phi_update="wake-sleep")
    loss(DATA).backward()
    twin = copy.deepcopy(loss)
    assert twin.inf_net.params_ is None and twin.loss_history_ == loss.loss_history_
    for a, b in zip(loss.parameters(), twin.parameters()):
        assert torch.equal(a, b) and a is not b
    twin(DATA).backward()  # the copy trains on its own
    assert len(twin.loss_history_) == 2 and len(loss.loss_history_) == 1


@pytest.mark.parametrize("make_saved, make_loaded, named", [
    (lambda q, p: ScoreFunctionLoss(q, p, 4), lambda q, p: ScoreFunctionLoss(q, p, 5), "n_samples: saved 4, this loss 5"),
    (lambda q, p: ScoreFunctionLoss(q, p, 2, baseline="mean"), lambda q, p: ScoreFunctionLoss(q, p, 2),
     "baseline: saved 'mean', this loss None"),
    (lambda q, p: RWSLoss(q, p, 2), lambda q, p: RWSLoss(q, p, 2, phi_update="sleep"),
     "phi_update: saved 'wake', this loss 'sleep'"),
    (lambda q, p: GumbelSoftmaxLoss(q, p, temperature=TemperatureSchedule(1.0, 0.5, 1e-4, 500)),
     lambda q, p: GumbelSoftmaxLoss(q, p, temperature=TemperatureSchedule(1.0, 0.5, 1e-3, 500)), "temperature: saved"),
    (lambda q, p: VIMCOLoss(q, p, 3), lambda q, p: RWSLoss(q, p, 3), "loss: saved 'VIMCOLoss', this loss 'RWSLoss'"),
])
def test_loading_a_state_saved_with_other_settings_is_refused(make_saved, make_loaded, named):
    saved = make_saved(SBNInfNet(6, 3), SBNGenModel(6, 3))
    saved(DATA)
    loaded = make_loaded(SBNInfNet(6, 3), SBNGenModel(6, 3))
    with pytest.raises(ValueError, match="the state was saved by a loss with other settings") as failure:
        loaded.load_state_dict(saved.state_dict())
    assert named in str(failure.value)


def test_contract_checks_catch_swapped_sample_and_batch_axes_when_they_are_equal():
    """With K == batch a [K, batch] log-probability has the right shape; the checks vary K to see it."""
    from blackbox_vae.testing import ContractError, check_inf_net

    class SwappedAxes(SBNInfNet):
        def sample(self, n_samples=1):
            return super().sample(n_samples).transpose(0, 1)  # [K, batch, H]

        def log_prob(self, latents):
            return super().log_prob(latents.transpose(0, 1)).transpose(0, 1)  # [K, batch]

    data = torch.bernoulli(torch.full((3, 6), 0.5))
    with pytest.raises(ContractError, match=r"returned latents of shape \(\d, 3, 3\); expected leading dimensions "
                                            r"\[batch, n_samples\] = \(3, \d\)"):
        check_inf_net(SwappedAxes(6, 3), data, n_samples=3)
