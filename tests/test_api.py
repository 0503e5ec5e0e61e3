"""The InfNet/GenModel contract: abstract surface, shapes, and the two ways to implement it."""

import pyro.distributions as pdist
import pytest
import torch
from torch import nn

import blackbox_vae
from blackbox_vae import DistributionGenModel, DistributionInfNet, ELBOLoss, GenModel, InfNet, ScoreFunctionLoss
from blackbox_vae.models import GaussianMLPGenModel, GaussianMLPInfNet, SBNGenModel, SBNInfNet
from direct_models import TwoLayerSBNGenModel, TwoLayerSBNInfNet, bernoulli_log_prob


def test_public_names():
    for name in ["InfNet", "GenModel", "DistributionInfNet", "DistributionGenModel", "Loss", "ELBOLoss",
                 "ScoreFunctionLoss"]:
        assert name in blackbox_vae.__all__
        assert getattr(blackbox_vae, name).__doc__


@pytest.mark.parametrize("base", [InfNet, GenModel, DistributionInfNet, DistributionGenModel, blackbox_vae.Loss])
def test_incomplete_subclass_cannot_be_instantiated(base):
    class Incomplete(base):
        pass

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()


def test_inf_net_shapes_and_forward_returns_self(device):
    inf_net = SBNInfNet(6, 4).to(device)
    data = torch.bernoulli(torch.full((5, 6), 0.5, device=device))
    assert inf_net(data) is inf_net
    latents = inf_net(data).sample(7)
    assert latents.shape == (5, 7, 4) and latents.device.type == device.type
    assert inf_net.log_prob(latents).shape == (5, 7)
    assert inf_net.latent_shape == (4,)


def test_gen_model_shapes(device):
    gen_model = SBNGenModel(6, 4).to(device)
    data = torch.bernoulli(torch.full((5, 6), 0.5, device=device))
    latents = torch.bernoulli(torch.full((5, 7, 4), 0.5, device=device))
    assert gen_model(data, latents) is gen_model
    assert gen_model.log_prob(data, latents).shape == (5, 7)
    x, z = gen_model.sample(3)
    assert x.shape == (3, 6) and z.shape == (3, 4)


def test_gaussian_vae_shapes_and_rsample_gradient(device):
    inf_net = GaussianMLPInfNet(3, 2, hidden=(8,)).to(device)
    gen_model = GaussianMLPGenModel(3, 2, hidden=(8,)).to(device)
    data = torch.randn(4, 3, device=device)
    z = inf_net(data).rsample(5)
    assert z.shape == (4, 5, 2) and z.requires_grad
    assert gen_model(data, z).log_prob(data, z).shape == (4, 5)
    x, z = gen_model.sample(6)
    assert x.shape == (6, 3) and z.shape == (6, 2)


def test_convenience_path_matches_the_direct_formula():
    """DistributionInfNet/GenModel sum over the right dimensions: compare with hand-written log-probs."""
    inf_net, gen_model = SBNInfNet(6, 4), SBNGenModel(6, 4)
    data = torch.bernoulli(torch.full((5, 6), 0.5))
    latents = inf_net(data).sample(3)
    logits_q = inf_net.encoder(data).unsqueeze(1)
    torch.testing.assert_close(inf_net.log_prob(latents), bernoulli_log_prob(logits_q, latents))
    expected = bernoulli_log_prob(gen_model.prior_logits, latents) + bernoulli_log_prob(
        gen_model.decoder(latents), data.unsqueeze(1).expand(-1, 3, -1))
    torch.testing.assert_close(gen_model(data, latents).log_prob(data, latents), expected)


def test_sampling_is_vectorized_not_looped():
    """All n_samples come from one call into the distribution: its sample sees sample_shape (K,)."""
    seen = []

    class Spy(SBNInfNet):
        def distribution(self, data):
            dist = super().distribution(data)
            original = dist.sample
            dist.sample = lambda shape=torch.Size(): seen.append(tuple(shape)) or original(shape)
            return dist

    Spy(6, 4)(torch.zeros(2, 6)).sample(9)
    assert seen == [(9,)]


def test_pyro_distributions_work_in_the_convenience_path():
    class PyroInfNet(DistributionInfNet):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(6, 4)

        def distribution(self, data):
            return pdist.Bernoulli(logits=self.net(data))

    class PyroGenModel(DistributionGenModel):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(4, 6)

        def prior(self):
            return pdist.Bernoulli(probs=torch.full((4,), 0.5))

        def likelihood(self, latents):
            return pdist.Bernoulli(logits=self.net(latents))

    loss = ScoreFunctionLoss(PyroInfNet(), PyroGenModel(), n_samples=3)
    loss(torch.bernoulli(torch.full((5, 6), 0.5))).backward()
    assert loss.log_q_.shape == (5, 3)


def test_event_shaped_latents():
    """A distribution with an event shape (one-hot categoricals): latent_shape = batch_shape[1:] + event_shape."""

    class CategoricalInfNet(DistributionInfNet):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(6, 3 * 5)

        def distribution(self, data):
            logits = self.net(data).view(-1, 3, 5)
            return torch.distributions.OneHotCategorical(logits=logits)  # batch [batch, 3], event [5]

    inf_net = CategoricalInfNet()
    latents = inf_net(torch.zeros(2, 6)).sample(4)
    assert latents.shape == (2, 4, 3, 5)
    assert inf_net.log_prob(latents).shape == (2, 4)


def test_dict_latents_flow_through_the_losses():
    """Dict latents pass through a loss untouched: its gradient equals a hand-written leave-one-out REINFORCE
    on the same draws (the same seed), for both networks. (test_gradients checks the expectation.)"""
    torch.manual_seed(0)
    inf_net, gen_model = TwoLayerSBNInfNet(6, 3, 2).double(), TwoLayerSBNGenModel(6, 3, 2).double()
    data = torch.bernoulli(torch.full((5, 6), 0.5, dtype=torch.float64))
    loss = ScoreFunctionLoss(inf_net, gen_model, n_samples=4, baseline="leave-one-out")
    torch.manual_seed(1)
    loss(data).backward()
    got = [p.grad.clone() for p in loss.parameters()]
    torch.manual_seed(1)
    latents = inf_net(data).sample(4)
    assert set(latents) == {"z1", "z2"} and latents["z1"].shape == (5, 4, 3) and latents["z2"].shape == (5, 4, 2)
    log_q, log_p = inf_net.log_prob(latents), gen_model(data, latents).log_prob(data, latents)
    signal = (log_p - log_q).detach()
    baseline = (signal.sum(1, keepdim=True) - signal) / 3
    surrogate = -(log_p + (signal - baseline) * log_q).mean()
    for a, b in zip(got, torch.autograd.grad(surrogate, list(loss.parameters()))):
        torch.testing.assert_close(a, b)


def test_rsample_default_error_names_the_estimators():
    inf_net = TwoLayerSBNInfNet(6, 3, 2)
    assert not inf_net.has_rsample
    with pytest.raises(NotImplementedError, match="ELBOLoss.*ScoreFunctionLoss"):
        inf_net.rsample(2)


class PlainBernoulliInfNet(DistributionInfNet):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(6, 4)

    def distribution(self, data):
        return torch.distributions.Bernoulli(logits=self.net(data))


def test_bernoulli_convenience_rsample_explains_itself():
    inf_net = PlainBernoulliInfNet()
    assert inf_net.has_rsample  # unknown before the first forward: the distribution decides
    inf_net(torch.zeros(2, 6))
    assert not inf_net.has_rsample  # a Bernoulli cannot reparameterize
    with pytest.raises(NotImplementedError, match="Bernoulli distribution has no reparameterized"):
        inf_net.rsample(2)


def test_normal_convenience_path_has_rsample_after_forward():
    class NormalInfNet(DistributionInfNet):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(6, 4)

        def distribution(self, data):
            return torch.distributions.Normal(self.net(data), 1.0)

    inf_net = NormalInfNet()(torch.zeros(2, 6))
    assert inf_net.has_rsample and inf_net.rsample(3).requires_grad


def test_sbn_inf_net_serves_both_families():
    """Exact samples for the score-function family, a relaxed sample for Gumbel-softmax; no plain rsample."""
    inf_net = SBNInfNet(6, 4)(torch.zeros(2, 6))
    assert set(inf_net.sample(3).unique().tolist()) <= {0.0, 1.0}
    assert not inf_net.has_rsample and inf_net.has_relaxed_rsample
    relaxed = inf_net.relaxed_rsample(3, temperature=0.5)
    assert relaxed.shape == (2, 3, 4) and relaxed.requires_grad and ((relaxed > 0) & (relaxed < 1)).any()
    with pytest.raises(NotImplementedError, match="discrete.*GumbelSoftmaxLoss"):
        inf_net.rsample(3)


def test_capability_flags_say_what_works():
    """has_rsample / has_relaxed_rsample are true exactly when the call works without extra arguments."""
    gaussian = GaussianMLPInfNet(3, 2, hidden=(4,))
    two_layer = TwoLayerSBNInfNet(6, 3, 2)
    assert gaussian.has_rsample and not gaussian.has_relaxed_rsample
    assert not two_layer.has_rsample and not two_layer.has_relaxed_rsample
    with pytest.raises(NotImplementedError, match="relaxed_rsample.*RelaxedBernoulliInfNet"):
        two_layer.relaxed_rsample(2, temperature=0.5)


def test_losses_are_modules_that_move_with_their_models(device):
    loss = ELBOLoss(GaussianMLPInfNet(3, 2, hidden=(8,)), GaussianMLPGenModel(3, 2, hidden=(8,)), n_samples=2)
    loss.to(device)
    value = loss(torch.randn(4, 3, device=device))
    assert value.dim() == 0 and value.device.type == device.type
    assert {id(p) for p in loss.parameters()} == {
        id(p) for m in (loss.inf_net, loss.gen_model) for p in m.parameters()}


def test_importing_the_library_loads_none_of_the_optional_dependencies():
    """Pyro, matplotlib, scikit-learn, PyYAML and torch's compiler load only where they are used."""
    import subprocess
    import sys

    code = ("import sys, blackbox_vae, blackbox_vae.models, blackbox_vae.testing; "
            "print(sorted(m for m in ('pyro', 'matplotlib', 'sklearn', 'yaml', 'torch._dynamo') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
