"""The testing kit on a user's layered model: exact references over tuple and dict latents, and contract checks
with power at realistic sizes (issue 29).

The two-layer model below is written as a user would from the docs: InfNet/GenModel subclasses with tuple
latents, a first layer one-hot over C classes and a second of B bits given it. docs/testing.md includes its
marked sections (pymdownx.snippets).
"""

import itertools
import math

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, OneHotCategorical
from torch.nn.functional import log_softmax, logsigmoid

from blackbox_vae import GenModel, InfNet, ScoreFunctionLoss
from blackbox_vae.testing import (
    ContractError,
    bernoulli_configurations,
    categorical_configurations,
    check_gen_model,
    check_inf_net,
    configurations_for,
    exact_elbo,
    exact_iwae_bound,
    exact_log_marginal,
    exact_rws_wake_objectives,
    product_configurations,
)
from direct_models import TwoLayerSBNGenModel, TwoLayerSBNInfNet


# --8<-- [start:model]
class ClassThenBitsInfNet(InfNet):
    """q(z1|x) one-hot over C classes, then q(z2|x, z1) of B bits: latents (z1 [batch, K, C], z2 [batch, K, B])."""

    layer_kinds = ("categorical", "bernoulli")  # what each layer is (estimators and configurations_for read it)

    def __init__(self, data_dim, n_classes, n_bits):
        super().__init__()
        self.class_logits = nn.Linear(data_dim, n_classes)
        self.bit_logits = nn.Linear(data_dim + n_classes, n_bits)

    def forward(self, data):
        self.params_ = data
        return self

    def bits_given(self, z1):  # z1 [batch, K, C] -> q(z2|x, z1), batch_shape [batch, K, B]
        x = self.params_.unsqueeze(1).expand(-1, z1.shape[1], -1)
        return Bernoulli(logits=self.bit_logits(torch.cat([x, z1], -1)))

    def sample(self, n_samples=1):
        with torch.no_grad():
            z1 = OneHotCategorical(logits=self.class_logits(self.params_)).sample((n_samples,)).transpose(0, 1)
            return z1, self.bits_given(z1).sample()

    def log_prob(self, latents):
        z1, z2 = latents
        log_q1 = OneHotCategorical(logits=self.class_logits(self.params_).unsqueeze(1)).log_prob(z1)  # [batch, K]
        return log_q1 + self.bits_given(z1).log_prob(z2).sum(-1)


class ClassThenBitsGenModel(GenModel):
    """p(z1) over C classes, p(z2|z1) of B bits, p(x|z1, z2) of D bits."""

    def __init__(self, data_dim, n_classes, n_bits):
        super().__init__()
        self.prior_logits = nn.Parameter(torch.zeros(n_classes))
        self.bit_logits = nn.Linear(n_classes, n_bits)
        self.data_logits = nn.Linear(n_classes + n_bits, data_dim)

    def forward(self, data, latents):
        self.params_ = self.data_logits(torch.cat(latents, -1))  # [batch, K, D]
        return self

    def log_prob(self, data, latents):
        z1, z2 = latents
        log_p1 = OneHotCategorical(logits=self.prior_logits).log_prob(z1)  # [batch, K]
        log_p2 = Bernoulli(logits=self.bit_logits(z1)).log_prob(z2).sum(-1)
        log_px = Bernoulli(logits=self.params_).log_prob(data.unsqueeze(1).expand_as(self.params_)).sum(-1)
        return log_p1 + log_p2 + log_px

    def sample(self, n_samples=1):
        with torch.no_grad():
            z1 = OneHotCategorical(logits=self.prior_logits).sample((n_samples,))
            z2 = Bernoulli(logits=self.bit_logits(z1)).sample()
            return Bernoulli(logits=self.data_logits(torch.cat([z1, z2], -1))).sample(), (z1, z2)
# --8<-- [end:model]


class DropsClassTerm(ClassThenBitsInfNet):
    """A bug: log q(z1|x) left out, so exp(log_prob) sums to C."""

    def log_prob(self, latents):
        z1, z2 = latents
        return self.bits_given(z1).log_prob(z2).sum(-1)


class DropsPrior(ClassThenBitsGenModel):
    """A bug: log p(z1) left out, so exp(log_prob) sums to C (a constant -log C here, which no frequency sees)."""

    def log_prob(self, data, latents):
        z1, z2 = latents
        log_p2 = Bernoulli(logits=self.bit_logits(z1)).log_prob(z2).sum(-1)
        return log_p2 + Bernoulli(logits=self.params_).log_prob(data.unsqueeze(1).expand_as(self.params_)).sum(-1)


def small_model(n_classes=3, n_bits=2, data_dim=4, seed=0):
    torch.manual_seed(seed)
    inf_net = ClassThenBitsInfNet(data_dim, n_classes, n_bits).double()
    gen_model = ClassThenBitsGenModel(data_dim, n_classes, n_bits).double()
    with torch.no_grad():
        gen_model.prior_logits.normal_()  # a non-uniform prior, so that its gradient is not zero
    data = torch.bernoulli(torch.full((2, data_dim), 0.5, dtype=torch.float64))
    return inf_net, gen_model, data


def brute_force_scores(inf_net, gen_model, data):
    """log q(z|x) and log p(x, z) ``[batch, C * 2**B]`` by a loop over every (datum, class, bits), written from
    the model's definition with scalar log-softmax and log-sigmoid, apart from the models' log_prob and the
    kit's batching; the configurations in the kit's order (the class slowest)."""
    n_classes, n_bits = inf_net.class_logits.out_features, inf_net.bit_logits.out_features
    log_q, log_p = [], []
    for x in data:
        q_row, p_row = [], []
        for c, bits in itertools.product(range(n_classes), itertools.product([0.0, 1.0], repeat=n_bits)):
            z1 = torch.zeros(n_classes, dtype=data.dtype)
            z1[c] = 1
            z2 = torch.tensor(bits, dtype=data.dtype)

            def bernoulli(logits, value):
                return sum(logsigmoid(l) if v == 1 else logsigmoid(-l) for l, v in zip(logits, value))

            q_row.append(log_softmax(inf_net.class_logits(x), 0)[c]
                         + bernoulli(inf_net.bit_logits(torch.cat([x, z1])), z2))
            p_row.append(log_softmax(gen_model.prior_logits, 0)[c] + bernoulli(gen_model.bit_logits(z1), z2)
                         + bernoulli(gen_model.data_logits(torch.cat([z1, z2])), x))
        log_q.append(torch.stack(q_row))
        log_p.append(torch.stack(p_row))
    return torch.stack(log_q), torch.stack(log_p)


class Undeclared(ClassThenBitsInfNet):
    layer_kinds = None  # configurations_for reads the supports from draws


def test_configurations_for_builds_the_product_of_each_layers_support():
    inf_net, _, data = small_model(n_classes=3, n_bits=2)
    z1, z2 = configurations_for(inf_net, data)
    assert z1.shape == (12, 3) and z2.shape == (12, 2) and z1.dtype == torch.float64
    expected = [(c, bits) for c in range(3) for bits in itertools.product([0, 1], repeat=2)]
    assert [(int(a.argmax()), tuple(b.int().tolist())) for a, b in zip(z1, z2)] == expected
    by_hand = product_configurations((categorical_configurations(1, 3, dtype=torch.float64).reshape(3, 3),
                                      bernoulli_configurations(2, dtype=torch.float64)))
    assert torch.equal(by_hand[0], z1) and torch.equal(by_hand[1], z2)
    for other in [configurations_for(inf_net, data, supports=("one-hot", "bernoulli")),
                  configurations_for(Undeclared(4, 3, 2).double(), data)]:
        assert torch.equal(other[0], z1) and torch.equal(other[1], z2)


def test_exact_references_over_tuple_latents_equal_a_brute_force_loop():
    inf_net, gen_model, data = small_model()
    configurations = configurations_for(inf_net, data)
    log_q, log_p = brute_force_scores(inf_net, gen_model, data)  # [batch, 12]
    elbo = (log_q.exp() * (log_p - log_q)).sum(1)
    torch.testing.assert_close(exact_elbo(inf_net, gen_model, data, configurations), elbo)
    torch.testing.assert_close(exact_log_marginal(gen_model, data, configurations), torch.logsumexp(log_p, 1))
    torch.testing.assert_close(exact_iwae_bound(inf_net, gen_model, data, configurations, 1), elbo)
    log_w = log_p - log_q  # K = 2 by its definition: every ordered pair of configurations
    pairs = torch.logsumexp(torch.stack(torch.broadcast_tensors(log_w[:, :, None], log_w[:, None, :])), 0)
    iwae_2 = ((log_q[:, :, None] + log_q[:, None, :]).exp() * (pairs - math.log(2))).sum((1, 2))
    torch.testing.assert_close(exact_iwae_bound(inf_net, gen_model, data, configurations, 2), iwae_2)
    for a, b in zip(exact_rws_wake_objectives(inf_net, gen_model, data, configurations, 2),
                    exact_rws_wake_objectives(inf_net, gen_model, data, configurations, 2, method="tuples")):
        torch.testing.assert_close(a, b)


def test_exact_references_over_dict_latents_equal_a_loop_over_configurations():
    torch.manual_seed(1)
    inf_net, gen_model = TwoLayerSBNInfNet(4, 2, 2).double(), TwoLayerSBNGenModel(4, 2, 2).double()
    data = torch.bernoulli(torch.full((3, 4), 0.5, dtype=torch.float64))
    configurations = configurations_for(inf_net, data)
    assert set(configurations) == {"z1", "z2"} and configurations["z1"].shape == (16, 2)
    elbo = torch.zeros(3, dtype=torch.float64)
    for z1, z2 in itertools.product(bernoulli_configurations(2, dtype=torch.float64), repeat=2):
        one = {"z1": z1.expand(3, 1, 2), "z2": z2.expand(3, 1, 2)}  # one configuration for every datum
        log_q, log_p = inf_net(data).log_prob(one)[:, 0], gen_model(data, one).log_prob(data, one)[:, 0]
        elbo += log_q.exp() * (log_p - log_q)
    torch.testing.assert_close(exact_elbo(inf_net, gen_model, data, configurations), elbo)


# --8<-- [start:unbiased]
from blackbox_vae.testing import assert_unbiased, gradients  # noqa: E402


def test_score_function_is_unbiased_on_a_two_layer_model():
    torch.manual_seed(0)
    inf_net = ClassThenBitsInfNet(data_dim=4, n_classes=3, n_bits=2).double()
    gen_model = ClassThenBitsGenModel(data_dim=4, n_classes=3, n_bits=2).double()
    data = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    configurations = configurations_for(inf_net, data)  # (z1 [12, 3], z2 [12, 2]): 3 classes x 2**2 bits
    loss = ScoreFunctionLoss(inf_net, gen_model, n_samples=2, baseline="leave-one-out")
    exact = exact_elbo(inf_net, gen_model, data, configurations)  # [batch]
    assert_unbiased(loss, data.repeat(100, 1), gradients(-exact.mean(), loss))
# --8<-- [end:unbiased]


def test_assert_unbiased_on_the_two_layer_model_catches_a_dropped_class_term():
    """The same check fails when q's log_prob leaves out log q(z1|x) (the estimator then sees a wrong score)."""
    torch.manual_seed(0)
    inf_net = DropsClassTerm(4, 3, 2).double()
    gen_model = ClassThenBitsGenModel(4, 3, 2).double()
    data = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    correct = ClassThenBitsInfNet(4, 3, 2).double()
    correct.load_state_dict(inf_net.state_dict())
    loss = ScoreFunctionLoss(inf_net, gen_model, n_samples=2, baseline="leave-one-out")
    exact = exact_elbo(correct, gen_model, data, configurations_for(correct, data))
    with pytest.raises(AssertionError, match="differ from the exact gradient"):
        assert_unbiased(loss, data.repeat(100, 1), gradients(-exact.mean(), loss))


def test_configurations_must_share_their_count_across_layers():
    inf_net, gen_model, data = small_model()
    per_layer = (categorical_configurations(1, 3, dtype=torch.float64).reshape(3, 3),
                 bernoulli_configurations(2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"`configurations` must hold every joint configuration .* got "
                                         r"configurations\[0\] \(3, 3\), configurations\[1\] \(4, 2\)\. "
                                         r"Combine .* product_configurations"):
        exact_elbo(inf_net, gen_model, data, per_layer)


def test_configurations_for_checks_the_supports():
    inf_net, _, data = small_model()
    with pytest.raises(ValueError, match=r"`supports` must have the latents' structure, one support per latent "
                                         r"tensor \(latents\[0\], latents\[1\]\); got 'bernoulli'"):
        configurations_for(inf_net, data, supports="bernoulli")
    with pytest.raises(ValueError, match=r"sum to 0\.\d+, not 1: pass the right `supports`"):
        configurations_for(inf_net, data, supports=("one-hot", "one-hot"))  # two bits are not one-hot

    class Other(ClassThenBitsInfNet):
        layer_kinds = ("categorical", "other")

    with pytest.raises(TypeError, match=r"`Other.layer_kinds` is \('categorical', 'other'\); only Bernoulli and "
                                        r"categorical layers"):
        configurations_for(Other(4, 3, 2), data.float())
    with pytest.raises(ValueError, match=r"The latents of `ClassThenBitsInfNet` \(latents\[0\] 'one-hot', "
                                         r"latents\[1\] 'bernoulli'\) has 655360 joint configurations"):
        configurations_for(ClassThenBitsInfNet(4, 10, 16), data.float())


# ---------------------------------------------------------------- contract checks at 10 classes x 16 bits
def realistic(inf_class=ClassThenBitsInfNet, gen_class=ClassThenBitsGenModel, seed=0):
    torch.manual_seed(seed)
    return inf_class(20, 10, 16), gen_class(20, 10, 16), torch.bernoulli(torch.full((4, 20), 0.5))


def test_the_two_layer_model_at_a_realistic_size_satisfies_the_contract():
    inf_net, gen_model, data = realistic()
    check_inf_net(inf_net, data)
    check_gen_model(gen_model, data)


def test_check_inf_net_catches_a_dropped_layer_term_at_10_classes_by_16_bits():
    inf_net, _, data = realistic(inf_class=DropsClassTerm)
    with pytest.raises(ContractError, match=r"`DropsClassTerm.log_prob`: exp\(log_prob\) sums to about 10\.\d* .* "
                                            r"not 1: `log_prob` is not normalized"):
        check_inf_net(inf_net, data)


def test_check_gen_model_catches_a_dropped_prior_term_at_10_classes_by_16_bits():
    _, gen_model, data = realistic(gen_class=DropsPrior)
    with pytest.raises(ContractError, match=r"`DropsPrior.log_prob`: exp\(log_prob\) sums to about \d+.* not 1"):
        check_gen_model(gen_model, data)
