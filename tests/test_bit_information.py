"""Per-bit mutual information (`bit_mutual_information`) and the `bit_probabilities` hook, on models whose
answer is known in closed form: bits that copy fair-coin data carry log 2 nats, bits that ignore it 0, and a
two-point case equals the formula worked by hand."""

import itertools
import math

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent, Normal

from blackbox_vae import DistributionInfNet, InfNet
from blackbox_vae.metrics import bit_mutual_information
from blackbox_vae.metrics.information import binary_entropy
from blackbox_vae.models import CategoricalInfNet, DeepSBNInfNet, GaussianMLPInfNet, SBNInfNet
from direct_models import TwoLayerSBNInfNet

LOG2 = math.log(2)


class TableInfNet(DistributionInfNet):
    """q(z_i = 1 | x) read from the data: the first D bits are given columns of x, the rest fixed probabilities."""

    def __init__(self, constant=()):
        super().__init__()
        self.constant = torch.tensor(constant, dtype=torch.float64)

    def distribution(self, data):
        fixed = self.constant.to(data).expand(data.shape[0], -1)
        return Bernoulli(probs=torch.cat([data, fixed], 1), validate_args=False)  # batch_shape [batch, D + C]


def all_binary_vectors(dim):
    """Every x in {0, 1}^dim once: the uniform distribution, exactly."""
    return torch.tensor(list(itertools.product((0.0, 1.0), repeat=dim)), dtype=torch.float64)


# ------------------------------------------------------------------------------------ closed forms
def test_a_bit_that_copies_a_fair_coin_carries_log_2_and_a_constant_bit_carries_0():
    """p_i = x_i in {0, 1} on uniform x: H_b(1/2) - 0 = log 2, with no NaN at p = 0 or 1; p = 0.3 always: 0."""
    data = all_binary_vectors(3)  # [8, 3]
    information, = bit_mutual_information(TableInfNet(constant=(0.3, 0.0, 1.0)), data, batch_size=3, n_samples=2)
    assert information.shape == (6,) and information.dtype == torch.float64
    assert torch.allclose(information, torch.tensor([LOG2, LOG2, LOG2, 0, 0, 0], dtype=torch.float64), atol=1e-12)


def test_two_data_points_match_the_formula_worked_by_hand():
    """x = 0 gives p = 0.9, x = 1 gives p = 0.2: I = H_b(0.55) - (H_b(0.9) + H_b(0.2)) / 2."""
    def h(p):
        return -p * math.log(p) - (1 - p) * math.log(1 - p)

    class TwoPoints(DistributionInfNet):
        def distribution(self, data):
            return Bernoulli(probs=0.9 - 0.7 * data, validate_args=False)  # [batch, 1]

    expected = h(0.55) - (h(0.9) + h(0.2)) / 2  # = 0.2096...
    data = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    for batch_size, n_samples in ((2, 1), (1, 3), (5, 4)):
        information, = bit_mutual_information(TwoPoints(), data, batch_size=batch_size, n_samples=n_samples)
        assert information.item() == pytest.approx(expected, rel=1e-12), (batch_size, n_samples)
    # Unequal weights: three points, two of them x = 0: H_b(2/3 0.9 + 1/3 0.2) - (2 H_b(0.9) + H_b(0.2)) / 3.
    information, = bit_mutual_information(TwoPoints(), torch.tensor([[0.0], [1.0], [0.0]]), batch_size=2)
    assert information.item() == pytest.approx(h(2 / 3 * 0.9 + 0.2 / 3) - (2 * h(0.9) + h(0.2)) / 3, rel=1e-6)


def test_binary_entropy_is_exact_at_the_ends():
    entropy = binary_entropy(torch.tensor([0.0, 1.0, 0.5, 0.1]))
    assert torch.allclose(entropy, torch.tensor([0, 0, LOG2, -0.1 * math.log(0.1) - 0.9 * math.log(0.9)]))


def copying_deep_sbn(copy_second=True):
    """A 1-1-1 DeepSBNInfNet: z_1 copies x (logits +-25); z_2 copies z_1, or ignores it (p = 0.3)."""
    net = DeepSBNInfNet(1, [1, 1]).double()
    with torch.no_grad():
        net.conditionals[0][0].weight.fill_(50.0), net.conditionals[0][0].bias.fill_(-25.0)
        if copy_second:
            net.conditionals[1][0].weight.fill_(50.0), net.conditionals[1][0].bias.fill_(-25.0)
        else:
            net.conditionals[1][0].weight.fill_(0.0), net.conditionals[1][0].bias.fill_(math.log(0.3 / 0.7))
    return net


def test_deep_layers_closed_form():
    """Uniform x: z_1 = x carries log 2; z_2 = z_1 carries log 2 about (x, z_1); a z_2 that ignores z_1, 0."""
    data = torch.tensor([[0.0], [1.0]] * 3, dtype=torch.float64)
    first, second = bit_mutual_information(copying_deep_sbn(), data, batch_size=4, n_samples=5)
    assert first.shape == second.shape == (1,)
    assert first.item() == pytest.approx(LOG2, abs=1e-8) and second.item() == pytest.approx(LOG2, abs=1e-8)
    first, second = bit_mutual_information(copying_deep_sbn(copy_second=False), data, n_samples=5)
    assert first.item() == pytest.approx(LOG2, abs=1e-8) and second.item() == pytest.approx(0, abs=1e-12)


def test_a_deep_bit_that_copies_a_noisy_parent_is_measured_against_the_sampled_parent():
    """z_1 ~ Bernoulli(1/2) whatever x is (0 information), z_2 copies z_1: given (x, z_1), z_2 is certain, so
    its information is log 2 -- the mean over samples makes E[p] = 1/2, where one sample alone would not."""
    net = copying_deep_sbn()
    with torch.no_grad():
        net.conditionals[0][0].weight.fill_(0.0), net.conditionals[0][0].bias.fill_(0.0)
    data = torch.zeros(1, 1, dtype=torch.float64)
    torch.manual_seed(1)
    first, second = bit_mutual_information(net, data, n_samples=4000)
    assert first.item() == pytest.approx(0, abs=1e-12)
    # E[p] is a mean of 4000 fair coin flips: H_b of it is log 2 - 2 (E[p] - 1/2)^2 + ..., within 1e-3 of log 2
    # unless the mean is more than 0.022 (4 standard errors of 0.0079) from 1/2: a false failure rate below 1e-4.
    assert second.item() == pytest.approx(LOG2, abs=1e-3)


# ---------------------------------------------------------------------------- the hook in each model
def test_deep_sbn_bit_probabilities_are_drawn_layer_by_layer_for_all_samples_at_once():
    net = DeepSBNInfNet(5, [4, 3, 2], hidden=[6])
    data = torch.bernoulli(torch.full((7, 5), 0.5))
    torch.manual_seed(3)
    probs = net(data).bit_probabilities(6)
    assert [tuple(p.shape) for p in probs] == [(7, 6, 4), (7, 6, 3), (7, 6, 2)]
    assert torch.equal(probs[0], torch.sigmoid(net.conditionals[0](data)).unsqueeze(1).expand(-1, 6, -1))
    torch.manual_seed(3)  # the same draws, by hand: each layer from a sample of the one below
    z1 = torch.bernoulli(probs[0])
    assert torch.allclose(probs[1], torch.sigmoid(net.conditionals[1](z1)))
    z2 = torch.bernoulli(probs[1])
    assert torch.allclose(probs[2], torch.sigmoid(net.conditionals[2](z2)))
    assert net.has_bit_probabilities
    information = bit_mutual_information(net, data, batch_size=3, n_samples=2)
    assert [tuple(i.shape) for i in information] == [(4,), (3,), (2,)]
    assert all(((i >= 0) & (i <= LOG2 + 1e-12)).all() for i in information)


def test_sbn_and_bernoulli_distribution_inf_nets_give_their_probs_for_every_sample():
    sbn = SBNInfNet(5, 3)
    data = torch.rand(4, 5)
    assert sbn.has_bit_probabilities
    probs, = sbn(data).bit_probabilities(2)
    assert probs.shape == (4, 2, 3) and torch.equal(probs[:, 1], torch.sigmoid(sbn.logits(data)))

    class Grid(DistributionInfNet):  # latents of shape [2, 3], one of them an event dimension
        def distribution(self, data):
            return Independent(Bernoulli(logits=data[:, :6].reshape(-1, 2, 3)), 1)

    information, = bit_mutual_information(Grid(), torch.randn(10, 6))
    assert information.shape == (2, 3)


def test_the_flag_is_true_exactly_when_the_latents_are_bits():
    class Gaussian(DistributionInfNet):
        def distribution(self, data):
            return Normal(data, 1.0)

    gaussian = Gaussian()
    assert gaussian.has_bit_probabilities  # not known before the first forward, as has_rsample
    gaussian(torch.zeros(2, 3))
    assert not gaussian.has_bit_probabilities
    with pytest.raises(NotImplementedError, match="its distribution is a Normal, not a Bernoulli"):
        gaussian.bit_probabilities(1)
    assert not CategoricalInfNet(4, 2, 3, [5]).has_bit_probabilities
    assert not GaussianMLPInfNet(4, 2, [5]).has_bit_probabilities
    hand_written = TwoLayerSBNInfNet(4, 3, 2)
    assert not hand_written.has_bit_probabilities
    with pytest.raises(NotImplementedError, match="`TwoLayerSBNInfNet.bit_probabilities` is not implemented"):
        hand_written(torch.zeros(2, 4)).bit_probabilities(1)


# ------------------------------------------------------------------------------------------ errors
def test_clear_errors():
    data = torch.bernoulli(torch.full((5, 4), 0.5))
    with pytest.raises(TypeError, match=r"`inf_net` must be an InfNet .*got TwoLayerSBNInfNet \(has_bit_prob"):
        bit_mutual_information(TwoLayerSBNInfNet(4, 3, 2), data)
    with pytest.raises(TypeError, match="got Linear, not an InfNet"):
        bit_mutual_information(nn.Linear(4, 3), data)
    with pytest.raises(TypeError, match="got CategoricalInfNet"):
        bit_mutual_information(CategoricalInfNet(4, 2, 3, [5]), data)

    class Gaussian(DistributionInfNet):
        def distribution(self, data):
            return Normal(data, 1.0)

    with pytest.raises(TypeError, match="its distribution is a Normal, not a Bernoulli"):
        bit_mutual_information(Gaussian(), data)
    sbn = SBNInfNet(4, 3)
    with pytest.raises(TypeError, match=r"`data` must be a tensor \[N, \*data_shape\] with N >= 1; got list"):
        bit_mutual_information(sbn, [[0.0] * 4])
    with pytest.raises(ValueError, match=r"`data` .* got shape \(0, 4\)"):
        bit_mutual_information(sbn, data[:0])
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=f"`batch_size` must be a positive int; got {bad!r}"):
            bit_mutual_information(sbn, data, batch_size=bad)
    with pytest.raises(ValueError, match="`n_samples` must be a positive int; got 0"):
        bit_mutual_information(sbn, data, n_samples=0)

    class WrongShape(InfNet):
        def forward(self, data):
            self.params_ = data
            return self

        def sample(self, n_samples=1):
            return torch.zeros(self.params_.shape[0], n_samples, 2)

        def log_prob(self, latents):
            return torch.zeros(latents.shape[:2])

        def bit_probabilities(self, n_samples=1):
            return (torch.full((n_samples, self.params_.shape[0], 2), 0.5),)  # [n_samples, batch]: swapped

    with pytest.raises(ValueError, match=r"returned layer 0 of shape \(3, 5, 2\); expected .* = \(5, 3, \.\.\.\)"):
        bit_mutual_information(WrongShape(), data, n_samples=3)
