"""The hierarchical Bernoulli VAEs (blackbox_vae.models.hvae): the contract, the closed-form ELBO, every loss,
bad input. (SymmetricLoss's gradient separation on the ladder: test_symmetric.py; ZGR with the analytic ELBO:
the registry's exact-gradient test.)"""

import pytest
import torch

from blackbox_vae import ELBOLoss, ZGRLoss
from blackbox_vae.losses.registry import LOSSES, build_loss
from blackbox_vae.models import HVAEGenModel, HVAELadderInfNet, HVAEReverseInfNet, SBNGenModel
from blackbox_vae.models.registry import build_models
from blackbox_vae.testing import bernoulli_configurations, check_gen_model, check_inf_net

DATA_DIM = 5


def pair(order, layers=(2, 3), hidden=(4,)):
    torch.manual_seed(0)
    gen_model = HVAEGenModel(DATA_DIM, layers, hidden).double()
    inf_net = (HVAELadderInfNet(gen_model, DATA_DIM, hidden) if order == "ladder"
               else HVAEReverseInfNet(DATA_DIM, layers, hidden)).double()
    return inf_net, gen_model


def data(n=4):
    return torch.bernoulli(torch.full((n, DATA_DIM), 0.5, dtype=torch.float64),
                           generator=torch.Generator().manual_seed(1))


def every_configuration(layers, batch):
    """Each joint configuration of the layers, as latents ``[batch, M, H_l]`` per layer (M = 2^sum(layers))."""
    grids = torch.cartesian_prod(*[torch.arange(2 ** h) for h in layers]).reshape(-1, len(layers))
    tables = [bernoulli_configurations(h, dtype=torch.float64) for h in layers]
    return tuple(table[grids[:, layer]][None].expand(batch, -1, -1) for layer, table in enumerate(tables))


@pytest.mark.parametrize("order", ["ladder", "reverse"])
def test_contract(order):
    inf_net, gen_model = pair(order)
    check_inf_net(inf_net, data())
    check_gen_model(gen_model, data())


@pytest.mark.parametrize("order", ["ladder", "reverse"])
@pytest.mark.parametrize("layers", [(2, 3), (2, 1, 2)], ids=["two-layers", "three-layers"])
def test_analytic_elbo_has_the_elbo_as_its_expectation(order, layers):
    """sum_z q(z|x) analytic(z) = sum_z q(z|x) [log p(x, z) - log q(z|x)], every configuration enumerated."""
    inf_net, gen_model = pair(order, layers)
    x = data()
    latents = every_configuration(layers, len(x))
    with torch.no_grad():
        log_q = inf_net(x).log_prob(latents)
        log_p = gen_model(x, latents).log_prob(x, latents)
        analytic = inf_net.analytic_elbo(gen_model, x, latents)
    q = log_q.exp()
    torch.testing.assert_close(q.sum(1), torch.ones(len(x), dtype=torch.float64))
    elbo = (q * (log_p - log_q)).sum(1)
    torch.testing.assert_close((q * analytic).sum(1), elbo)
    assert (analytic - (log_p - log_q)).abs().max() > 1e-2  # per configuration it is not the plain estimate


@pytest.mark.parametrize("model", ["hvae-ladder", "hvae-reverse"])
@pytest.mark.parametrize("loss_name", sorted(LOSSES))
def test_every_loss_trains_them_or_says_why_not(model, loss_name):
    torch.manual_seed(0)
    inf_net, gen_model = build_models(model, DATA_DIM, layers=[2, 3], hidden=[4])
    x = data(6).float()
    if loss_name in ("elbo", "iwae"):  # reparameterized: discrete latents have no rsample
        with pytest.raises(TypeError, match="rsample"):
            loss = build_loss(loss_name, inf_net, gen_model, 2, data_dim=DATA_DIM)
            loss(x)
        return
    if loss_name == "arsm":  # one-hot latents only
        with pytest.raises(TypeError, match="categorical_logits"):
            build_loss(loss_name, inf_net, gen_model, 2, data_dim=DATA_DIM)
        return
    if loss_name in ("rebar", "relax", "unordered-set"):  # one layer of discrete latents only
        with pytest.raises(ValueError, match="one layer of (Bernoulli )?latents"):
            build_loss(loss_name, inf_net, gen_model, 2, data_dim=DATA_DIM)(x)
        return
    k = 4 if loss_name in ("arm", "disarm") else 2  # an antithetic pair per layer: K a multiple of 2 x 2 layers
    loss = build_loss(loss_name, inf_net, gen_model, k, data_dim=DATA_DIM)
    loss(x).backward()
    grads = [p.grad for p in gen_model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    encoder = [p.grad for name, p in inf_net.named_parameters() if not name.startswith("prior_conditionals")]
    assert any(g is not None and g.abs().sum() > 0 for g in encoder)


def test_sample_shapes_and_values():
    inf_net, gen_model = pair("ladder")
    x, (z0, z1) = gen_model.sample(7)
    assert x.shape == (7, DATA_DIM) and z0.shape == (7, 2) and z1.shape == (7, 3)
    latents = inf_net(data()).sample(3)
    assert [tuple(z.shape) for z in latents] == [(4, 3, 2), (4, 3, 3)]
    assert all(set(z.unique().tolist()) <= {0.0, 1.0} for z in (*latents, x))
    probabilities = inf_net.bit_probabilities(3)
    assert [tuple(p.shape) for p in probabilities] == [(4, 3, 2), (4, 3, 3)]
    zgr = inf_net.zgr_rsample(2)
    assert all(set(z.detach().unique().tolist()) <= {0.0, 1.0} for z in zgr)


def test_convolutional_option():
    torch.manual_seed(0)
    gen_model = HVAEGenModel(784, (3, 4), architecture="conv")
    inf_net = HVAELadderInfNet(gen_model, 784, architecture="conv")
    x = torch.bernoulli(torch.full((2, 784), 0.3))
    loss = ZGRLoss(inf_net, gen_model, 2, analytic_kl=True)
    loss(x).backward()
    assert gen_model.decoder(torch.zeros(2, 5, 4)).shape == (2, 5, 784)
    reverse = HVAEReverseInfNet(784, (3, 4), architecture="conv")
    assert [tuple(z.shape) for z in reverse(x).sample(3)] == [(2, 3, 3), (2, 3, 4)]


def test_bad_input():
    with pytest.raises(TypeError, match="gen_model.*HVAEGenModel.*SBNGenModel"):
        HVAELadderInfNet(SBNGenModel(DATA_DIM, 3), DATA_DIM)
    with pytest.raises(ValueError, match="784"):
        HVAEGenModel(DATA_DIM, architecture="conv")
    with pytest.raises(ValueError, match="architecture"):
        HVAEReverseInfNet(DATA_DIM, architecture="resnet")
    with pytest.raises(ValueError, match="layers"):
        HVAEGenModel(DATA_DIM, layers=[30, 0])
    inf_net, _ = pair("reverse")
    other = HVAEGenModel(DATA_DIM, (3, 3), (4,)).double()
    x = data()
    with pytest.raises(TypeError, match=r"analytic_elbo.*layers \[2, 3\].*layers \[3, 3\]"):
        inf_net(x).analytic_elbo(other, x, inf_net.sample(1))
    with pytest.raises(TypeError, match="analytic_elbo"):
        ZGRLoss(*build_models("sbn", DATA_DIM), analytic_kl=True)
    with pytest.raises(TypeError, match="ELBOLoss needs.*rsample"):
        ELBOLoss(*pair("ladder"))


@pytest.mark.parametrize("order", ["ladder", "reverse"])
def test_zgr_loss_with_analytic_kl_differentiates_the_closed_form_elbo(order):
    """Draw by draw (the same random numbers): ZGRLoss(analytic_kl=True)'s gradient is that of -analytic_elbo
    through the ZGR samples, not the plain estimate's (both have the same expectation here, as ZGR is exact
    for the layers' linear log-masses, so only a draw-by-draw test tells them apart); the value stays plain."""
    inf_net, gen_model = pair(order)
    loss = ZGRLoss(inf_net, gen_model, 3, analytic_kl=True)
    x = data()
    torch.manual_seed(3)
    value = loss(x)
    parameters = list(loss.parameters())
    actual = torch.autograd.grad(value, parameters, allow_unused=True)
    torch.manual_seed(3)
    latents = inf_net(x).zgr_rsample(3)
    analytic = inf_net.analytic_elbo(gen_model, x, latents)
    plain = gen_model(x, latents).log_prob(x, latents) - inf_net.log_prob(latents)
    torch.testing.assert_close(value, -plain.mean().detach())
    expected = torch.autograd.grad(-analytic.mean(), parameters, allow_unused=True, retain_graph=True)
    against = torch.autograd.grad(-plain.mean(), parameters, allow_unused=True)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e)
    assert max((e - o).abs().max() for e, o in zip(expected, against) if e is not None and o is not None) > 1e-3


def test_closed_form_kl_stays_finite_where_sigmoid_rounds_to_0_or_1():
    """A trained encoder reaches logits whose sigmoid is exactly 1 in float32 (torch's kl_divergence then says inf)."""
    from blackbox_vae.models.hvae import _bernoulli_kl

    q_logits = torch.tensor([30.0, -120.0, 0.0, 18.0])
    p_logits = torch.tensor([0.0, 0.0, 3.0, -5.0])
    reference = _bernoulli_kl(q_logits.double(), p_logits.double())
    actual = _bernoulli_kl(q_logits, p_logits)
    assert torch.isfinite(actual).all()
    torch.testing.assert_close(actual.double(), reference)
    by_hand = torch.nn.functional.softplus(-p_logits[2]) * 0.5 + torch.nn.functional.softplus(p_logits[2]) * 0.5 \
        - torch.log(torch.tensor(2.0))  # KL(1/2 || sigmoid(3)) = -H(1/2) - E_{1/2} log p
    torch.testing.assert_close(actual[2], by_hand)
