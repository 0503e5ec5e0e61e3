"""`LayeredInfNet`: a user's layered q written as one method serves every estimator, exactly.

The user models here are written as the protocol's docstring shows (about 15 lines each): a two-layer Bernoulli
q (the second layer given x and the first), a one-layer Bernoulli q, and a one-hot q. Each estimator is checked
against its exact expected gradient on them (enumeration of every configuration, or quadrature for the relaxed
objectives), with the same references as the registry's exact test (tests/exact_references.py).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Normal, OneHotCategorical

from blackbox_vae import (ARMLoss, ARSMLoss, DisARMLoss, GenModel, GumbelSoftmaxLoss, LayeredInfNet, NVILBaseline,
                          NVILLoss, REBARLoss, RELAXControlVariate, RELAXLoss, RWSLoss, ScoreFunctionLoss,
                          UnorderedSetLoss, VIMCOLoss, ZGRLoss, ELBOLoss)
from blackbox_vae.models import DeepSBNGenModel, SBNGenModel
from blackbox_vae.testing import (assert_unbiased, bernoulli_configurations, categorical_configurations, exact_elbo,
                                  exact_iwae_bound, exact_rws_wake_objectives, gradients, product_configurations)
import exact_references as ref

D = ref.DATA_DIM


# ------------------------------------------------------------------------------------- the user's models
class TwoLayerQ(LayeredInfNet):
    layer_order = (0, 1)

    def __init__(self, data_dim=D, h0=2, h1=2):
        super().__init__()
        self.enc0, self.enc1 = nn.Linear(data_dim, h0), nn.Linear(data_dim + h0, h1)

    def conditional(self, data, layer, latents):
        if layer == 0:
            return Bernoulli(logits=self.enc0(data).unsqueeze(1))  # broadcasts over the K samples
        x = data.unsqueeze(1).expand(-1, latents[0].shape[1], -1)
        return Bernoulli(logits=self.enc1(torch.cat([x, latents[0]], dim=-1)))


class OneLayerQ(LayeredInfNet):
    layer_order = (0,)
    layer_distributions = (Bernoulli,)

    def __init__(self, data_dim=D, h=ref.LATENT_DIM):
        super().__init__()
        self.enc = nn.Linear(data_dim, h)

    def conditional(self, data, layer, latents):
        return Bernoulli(logits=self.enc(data).unsqueeze(1))


class OneHotQ(LayeredInfNet):
    layer_order = (0,)
    layer_distributions = (OneHotCategorical,)

    def __init__(self, data_dim=D, n_latents=2, n_classes=3):
        super().__init__()
        self.shape = (n_latents, n_classes)
        self.enc = nn.Linear(data_dim, n_latents * n_classes)

    def conditional(self, data, layer, latents):
        return OneHotCategorical(logits=self.enc(data).unflatten(-1, self.shape).unsqueeze(1))


class TupleLatents(GenModel):
    """p(x, z) of a one-layer model (``SBNGenModel``, or a one-hot p) read from 1-tuple latents ``(z,)``."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, data, latents):
        self.inner(data, latents[0])
        return self

    def log_prob(self, data, latents):
        return self.inner.log_prob(data, latents[0])

    def sample(self, n_samples=1):
        data, z = self.inner.sample(n_samples)
        return data, (z,)


class OneHotP(GenModel):
    """p(z) uniform over C classes for each of L latents, p(x|z) Bernoulli with logits linear in z."""

    def __init__(self, data_dim=D, n_latents=2, n_classes=3):
        super().__init__()
        self.n_classes = n_classes
        self.decoder = nn.Linear(n_latents * n_classes, data_dim)

    def forward(self, data, latents):
        self.params_ = self.decoder(latents[0].flatten(-2))
        return self

    def log_prob(self, data, latents):
        prior = -(latents[0].sum((-2, -1))) * torch.log(torch.tensor(float(self.n_classes), dtype=data.dtype))
        return prior + Bernoulli(logits=self.params_, validate_args=False).log_prob(data.unsqueeze(1)).sum(-1)

    def sample(self, n_samples=1):
        raise NotImplementedError


class TensorView(nn.Module):
    """A one-layer LayeredInfNet seen with tensor latents, for the references written for one-tensor models (the
    same parameters: their gradients are the loss's)."""

    def __init__(self, inf_net):
        super().__init__()
        self.inner = inf_net

    def forward(self, data):
        self.inner(data)
        logits = self.inner.params_.logits.squeeze(1)
        self.params_ = Bernoulli(logits=logits, validate_args=False)
        return self

    def logits(self, data):
        return self.inner(data).params_.logits.squeeze(1)

    def log_prob(self, latents):
        return self.inner.log_prob((latents,))


def seeded(build, seed=0, scale=2.0):
    """``build()``'s models in float64 with parameters scaled away from 0 (the pairs of antithetic draws and the
    layers' dependence then differ visibly)."""
    torch.manual_seed(seed)
    models = build()
    with torch.no_grad():
        for parameter in models[0].parameters():
            parameter.mul_(scale)
    return tuple(model.double() for model in models)


def two_layer():
    return seeded(lambda: (TwoLayerQ(), DeepSBNGenModel(D, [2, 2])))


def two_layer_configurations():
    return product_configurations([bernoulli_configurations(2, dtype=torch.float64)] * 2)


# ------------------------------------------------------------------------------------------ the protocol
def test_log_prob_is_the_sum_of_the_layers_log_probs_in_the_declared_order():
    inf_net, _ = two_layer()
    points, _ = ref.binary_data("cpu")
    latents, log_q = inf_net(points).sample_and_log_prob(4)
    assert [tuple(z.shape) for z in latents] == [(3, 4, 2), (3, 4, 2)]
    logits0 = inf_net.enc0(points).unsqueeze(1)
    logits1 = inf_net.enc1(torch.cat([points.unsqueeze(1).expand(-1, 4, -1), latents[0]], -1))
    expected = Bernoulli(logits=logits0).log_prob(latents[0]).sum(-1) + Bernoulli(logits=logits1).log_prob(
        latents[1]).sum(-1)
    torch.testing.assert_close(log_q, expected)
    torch.testing.assert_close(inf_net.log_prob(latents), expected)
    assert not any(z.requires_grad for z in latents)


def test_layers_are_drawn_in_layer_order_each_given_the_ones_before():
    seen = []

    class Reversed(TwoLayerQ):
        layer_order = (1, 0)

        def conditional(self, data, layer, latents):
            seen.append((layer, tuple(z is not None for z in latents)))
            if layer == 1:
                return Bernoulli(logits=self.enc0(data).unsqueeze(1))
            x = data.unsqueeze(1).expand(-1, latents[1].shape[1], -1)
            return Bernoulli(logits=self.enc1(torch.cat([x, latents[1]], dim=-1)))

    inf_net = Reversed()
    latents = inf_net(torch.zeros(3, D)).sample(2)
    assert seen == [(1, (False, False)), (0, (False, True))]
    seen.clear()
    inf_net.log_prob(latents)  # scoring too shows each layer only the layers drawn before it
    assert seen == [(0, (False, True))]


def test_one_hot_layers_are_scored_linearly_so_relaxed_samples_keep_their_gradient():
    torch.manual_seed(0)
    inf_net = OneHotQ()
    inf_net(torch.rand(3, D))
    relaxed = inf_net.relaxed_rsample(4, temperature=0.5)
    assert relaxed[0].shape == (3, 4, 2, 3) and not torch.equal(relaxed[0], relaxed[0].round())
    value = relaxed[0].detach().requires_grad_()
    (gradient,) = torch.autograd.grad(inf_net.log_prob((value,)).sum(), value)
    log_pi = torch.log_softmax(inf_net.enc(inf_net.data_).unflatten(-1, (2, 3)), -1).unsqueeze(1)
    torch.testing.assert_close(gradient, log_pi.expand_as(gradient))
    hard = inf_net.relaxed_rsample(4, temperature=0.5, straight_through=True)[0]
    assert torch.equal(hard.sum(-1), torch.ones(3, 4, 2)) and set(hard.unique().tolist()) == {0.0, 1.0}


def test_bernoulli_logits_agree_with_log_prob_and_zgr_draws_are_exact():
    inf_net, _ = two_layer()
    points, _ = ref.binary_data("cpu")
    latents = inf_net(points).sample(5)
    for layer in (0, 1):
        logits = inf_net.bernoulli_logits(latents, layer)
        assert logits.shape == latents[layer].shape
    total = sum(Bernoulli(logits=inf_net.bernoulli_logits(latents, layer)).log_prob(latents[layer]).sum(-1)
                for layer in (0, 1))
    torch.testing.assert_close(total, inf_net.log_prob(latents))
    for z in inf_net.zgr_rsample(5):
        assert set(z.unique().tolist()) <= {0.0, 1.0} and z.requires_grad
    for z, p in zip(inf_net.sample(5), inf_net.bit_probabilities(5)):
        assert p.shape == z.shape and ((0 <= p) & (p <= 1)).all()


def test_capabilities_follow_the_declared_distributions():
    assert OneLayerQ().layer_kinds == ("bernoulli",) and not OneLayerQ().has_rsample
    assert OneHotQ().layer_kinds == ("categorical",) and not OneHotQ().has_bernoulli_logits
    assert TwoLayerQ().layer_kinds is None and TwoLayerQ().has_bernoulli_logits

    class GaussianQ(OneLayerQ):
        layer_distributions = (Normal,)

        def conditional(self, data, layer, latents):
            return Normal(self.enc(data).unsqueeze(1), 1.0)

    q = GaussianQ()
    assert q.has_rsample and q.layer_kinds == ("other",) and not q.has_bit_probabilities
    z = q(torch.zeros(2, D)).rsample(3)[0]
    assert z.shape == (2, 3, ref.LATENT_DIM) and z.requires_grad
    with pytest.raises(TypeError, match="bernoulli_logits"):
        ARMLoss(q, TupleLatents(SBNGenModel(D, ref.LATENT_DIM)), 2)
    ELBOLoss(q, TupleLatents(SBNGenModel(D, ref.LATENT_DIM)), 2)  # the pathwise estimators take it


def test_bad_conditionals_and_latents_get_clear_errors():
    class WrongShape(OneLayerQ):
        def conditional(self, data, layer, latents):
            return Bernoulli(logits=self.enc(data))  # [batch, H]: no sample dimension

    with pytest.raises(ValueError, match=r"layer 0 .*batch_shape \(3, 3\).*\[batch, 1 or K\]"):
        WrongShape()(torch.zeros(3, D)).sample(2)

    class NotADistribution(OneLayerQ):
        def conditional(self, data, layer, latents):
            return self.enc(data)

    with pytest.raises(TypeError, match="conditional .*Distribution"):
        NotADistribution()(torch.zeros(3, D))

    class BadOrder(OneLayerQ):
        layer_order = (1,)

    with pytest.raises(TypeError, match="layer_order.*permutation"):
        BadOrder()(torch.zeros(3, D))
    q = TwoLayerQ()
    with pytest.raises(RuntimeError, match="forward"):
        q.sample(2)
    q(torch.zeros(3, D))
    with pytest.raises(ValueError, match="tuple of 2 tensors"):
        q.log_prob(torch.zeros(3, 2, 2))
    with pytest.raises(NotImplementedError, match="layer 0's distribution is a Bernoulli, not a OneHotCategorical"):
        q.categorical_logits(q.sample(2), 0)


# --------------------------------------------------------------------------------- every estimator, exactly
def _two_layer_elbo_case(build):
    inf_net, gen_model = two_layer()
    points, batch = ref.binary_data("cpu")
    loss = build(inf_net, gen_model)
    exact = exact_elbo(inf_net, gen_model, points, two_layer_configurations())
    return loss, batch, {n: g for n, g in gradients(-exact.mean(), loss).items()
                         if n.startswith(("inf_net.", "gen_model."))}


@pytest.mark.parametrize("build", [
    lambda q, p: ScoreFunctionLoss(q, p, 3, baseline="leave-one-out"),
    lambda q, p: NVILLoss(q, p, 2, baseline_net=NVILBaseline(D, hidden=(4,)).double(), variance_normalization=False),
    lambda q, p: ARMLoss(q, p, 4),  # an antithetic pair at each of the two layers
    lambda q, p: DisARMLoss(q, p, 4),
], ids=["score-function-loo", "nvil", "arm", "disarm"])
def test_two_layer_user_model_elbo_estimators_are_exact(build):
    loss, batch, expected = _two_layer_elbo_case(build)
    assert_unbiased(loss, batch, expected)


def test_two_layer_user_model_vimco_is_exact_for_the_k_sample_bound():
    inf_net, gen_model = two_layer()
    points, batch = ref.binary_data("cpu")
    loss = VIMCOLoss(inf_net, gen_model, 3)
    exact = exact_iwae_bound(inf_net, gen_model, points, two_layer_configurations(), 3)
    assert_unbiased(loss, batch, gradients(-exact.mean(), loss))


def test_two_layer_user_model_rws_is_exact():
    inf_net, gen_model = two_layer()
    points, batch = ref.binary_data("cpu")
    loss = RWSLoss(inf_net, gen_model, 3, phi_update="wake")
    wake_theta, wake_phi = exact_rws_wake_objectives(inf_net, gen_model, points, two_layer_configurations(), 3)
    assert_unbiased(loss, batch, gradients(-(wake_theta.mean() + wake_phi.mean()), loss))


def test_two_layer_user_model_zgr_has_the_layered_darn_half_expectation():
    inf_net, gen_model = two_layer()
    points, batch = ref.binary_data("cpu")
    loss = ZGRLoss(inf_net, gen_model, 2)
    configurations = two_layer_configurations()  # ([M, 2], [M, 2])
    n, m = points.shape[0], configurations[0].shape[0]
    exact = tuple(c[None].expand(n, m, -1) for c in configurations)
    weights = inf_net(points).log_prob(exact).detach().exp()  # q(z|x) [N, M]
    z0 = ref.darn_half(inf_net.enc0(points)[:, None, :].expand(n, m, -1), exact[0])
    z1 = ref.darn_half(inf_net.enc1(torch.cat([points[:, None, :].expand(n, m, -1), z0], -1)), exact[1])
    latents = (z0, z1)
    objective = (weights * (gen_model(points, latents).log_prob(points, latents) - inf_net.log_prob(latents))).sum(1)
    assert_unbiased(loss, batch, gradients(-objective.mean(), loss))


def one_layer():
    torch.manual_seed(4)
    return OneLayerQ(h=2).double(), TupleLatents(SBNGenModel(D, 2)).double()


def test_one_layer_user_model_gumbel_softmax_is_exact_for_the_relaxed_objective():
    inf_net, gen_model = one_layer()
    points, batch = ref.binary_data("cpu")
    loss = GumbelSoftmaxLoss(inf_net, gen_model, n_samples=2, temperature=0.5)
    expected, error = ref.converged_gradients(
        lambda n: -ref.relaxed_bernoulli_objective(TensorView(inf_net), gen_model.inner, points, 0.5, n).mean(),
        loss, 48)
    assert_unbiased(loss, batch, expected, reference_error=error)


def test_one_layer_user_model_straight_through_has_its_exact_expectation():
    inf_net, gen_model = one_layer()
    points, batch = ref.binary_data("cpu")
    loss = GumbelSoftmaxLoss(inf_net, gen_model, n_samples=2, temperature=0.5, straight_through=True)
    expected, error = ref.converged_gradients(
        lambda n: -ref.straight_through_surrogate(TensorView(inf_net), gen_model.inner, points, 0.5, n), loss, 64)
    assert_unbiased(loss, batch, expected, reference_error=error)


@pytest.mark.parametrize("kind", ["rebar", "relax"])
def test_one_layer_user_model_rebar_and_relax_are_exact(kind):
    inf_net, gen_model = one_layer()
    points, batch = ref.binary_data("cpu")
    if kind == "rebar":
        loss = REBARLoss(inf_net, gen_model, 2, temperature=0.3)
    else:
        loss = RELAXLoss(inf_net, gen_model, 2, RELAXControlVariate(D, 2, hidden=(5,)), temperature=0.3)
    loss = loss.double()
    with torch.no_grad():
        loss.eta.fill_(0.7)
    exact = exact_elbo(inf_net, gen_model, points, (bernoulli_configurations(2, dtype=torch.float64),))
    expected = {n: g for n, g in gradients(-exact.mean(), loss).items() if n.startswith(("inf_net.", "gen_model."))}
    assert_unbiased(loss, batch, expected)


@pytest.mark.parametrize("build", [lambda q, p: ARSMLoss(q, p, 2), lambda q, p: UnorderedSetLoss(q, p, 2)],
                         ids=["arsm", "unordered-set"])
def test_one_hot_user_model_arsm_and_unordered_set_are_exact(build):
    torch.manual_seed(3)
    inf_net, gen_model = OneHotQ().double(), OneHotP().double()
    points, batch = ref.binary_data("cpu")
    loss = build(inf_net, gen_model)
    configurations = (categorical_configurations(2, 3, dtype=torch.float64),)
    exact = exact_elbo(inf_net, gen_model, points, configurations)
    assert_unbiased(loss, batch, gradients(-exact.mean(), loss))


# ------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("name, build", [
    ("vimco", lambda q, p: VIMCOLoss(q, p, 3)),
    ("rws", lambda q, p: RWSLoss(q, p, 3)),
    ("nvil", lambda q, p: NVILLoss(q, p, 2, baseline_net=NVILBaseline(784))),
    ("arm", lambda q, p: ARMLoss(q, p, 4)),
    ("disarm", lambda q, p: DisARMLoss(q, p, 4)),
    ("zgr", lambda q, p: ZGRLoss(q, p, 2)),
    ("gumbel-softmax", lambda q, p: GumbelSoftmaxLoss(q, p, 2, temperature=0.5)),
    ("straight-through", lambda q, p: GumbelSoftmaxLoss(q, p, 2, temperature=0.5, straight_through=True)),
])
def test_the_issues_two_layer_model_trains_with_every_estimator(name, build):
    """The protocol's example at its own size (784-200-100): a few steps lower the loss on a fixed batch."""
    torch.manual_seed(0)
    q, p = TwoLayerQ(784, 200, 100), DeepSBNGenModel(784, [200, 100])
    loss = build(q, p)
    data = (torch.rand(16, 784) < 0.2).float()
    optimizer = torch.optim.Adam(loss.parameters(), lr=3e-3)
    values = []
    for _ in range(30):
        optimizer.zero_grad()
        value = loss(data)
        value.backward()
        optimizer.step()
        values.append(value.item())
    assert all(torch.isfinite(torch.tensor(values)))
    assert sum(values[-5:]) / 5 < sum(values[:5]) / 5, name
