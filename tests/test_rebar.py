"""REBAR and RELAX beyond their exact-gradient checks (tests/loss_examples.py): the control variate's training,
and what they refuse."""

import math

import pytest
import torch

from blackbox_vae import REBARLoss, RELAXControlVariate, RELAXLoss
from blackbox_vae.cli import main
from blackbox_vae.models import DeepSBNGenModel, DeepSBNInfNet, GaussianMLPGenModel, GaussianMLPInfNet, SBNGenModel, \
    SBNInfNet
from blackbox_vae.testing import gradient_variance
from loss_examples import teacher_data

DATA = torch.bernoulli(torch.full((5, 6), 0.4))


def relax(inf_net, gen_model, k=2, **options):
    return RELAXLoss(inf_net, gen_model, k, RELAXControlVariate(6, 3, hidden=(4,)), **options)


@pytest.mark.parametrize("build", [REBARLoss, relax], ids=["rebar", "relax"])
def test_bad_input_is_named(build):
    with pytest.raises(TypeError, match=r"needs `GaussianMLPInfNet.bernoulli_logits`"):
        build(GaussianMLPInfNet(6, 3), GaussianMLPGenModel(6, 3))
    for temperature in (0.0, -1.0):
        with pytest.raises(ValueError, match=r"`temperature` must be a number > 0; got " + str(temperature)):
            build(SBNInfNet(6, 3), SBNGenModel(6, 3), temperature=temperature)
    with pytest.raises(ValueError, match=r"one layer of latents .* tuple of 2 entries.*DisARMLoss"):
        build(DeepSBNInfNet(6, [3, 2]), DeepSBNGenModel(6, [3, 2]))(DATA)


def test_relax_needs_a_control_variate_of_the_right_shape():
    with pytest.raises(TypeError, match=r"`control_variate` must be an nn.Module .* got NoneType"):
        RELAXLoss(SBNInfNet(6, 3), SBNGenModel(6, 3), 2)

    class PerUnit(torch.nn.Module):
        def forward(self, data, relaxed):
            return relaxed  # [batch, K, H]: one value per unit, not per sample

    with pytest.raises(ValueError, match=r"`control_variate` returned shape \(5, 2, 3\); expected \[batch, n_samples\] "
                                         r"= \(5, 2\)"):
        RELAXLoss(SBNInfNet(6, 3), SBNGenModel(6, 3), 2, PerUnit())(DATA)


@pytest.mark.parametrize("build", [REBARLoss, relax], ids=["rebar", "relax"])
def test_the_loss_owns_the_control_variate(build):
    loss = build(SBNInfNet(6, 3), SBNGenModel(6, 3))
    own = loss.control_variate_parameters()
    models = {id(p) for p in (*loss.inf_net.parameters(), *loss.gen_model.parameters())}
    assert own and not any(id(p) in models for p in own)
    assert {id(p) for p in loss.parameters()} == models | {id(p) for p in own}
    assert math.isclose(loss.log_temperature.exp().item(), 0.5, rel_tol=1e-6)
    loss(DATA).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in own)


@pytest.mark.slow  # about a minute each: 300 steps and 2 x 300 gradient draws with a second-order backward
@pytest.mark.parametrize("build", [REBARLoss, relax], ids=["rebar", "relax"])
def test_training_the_control_variate_lowers_the_gradient_variance(build):
    """The control variate's parameters descend the squared norm of q's gradient estimate: after 300 steps on them
    alone (the models fixed), the variance of q's gradient is lower, by a one-sided z-test at 1e-3."""
    torch.manual_seed(0)
    data, _ = teacher_data(32)
    inf_net, gen_model = SBNInfNet(8, 4), SBNGenModel(8, 4)
    loss = build(inf_net, gen_model, 1) if build is REBARLoss else RELAXLoss(
        inf_net, gen_model, 1, RELAXControlVariate(8, 4, hidden=(16,)))
    with torch.no_grad():
        loss.eta.fill_(0.0)  # no control variate to start from (RELAX's network is random)
    before = gradient_variance(loss, data, 300, parameters="inf_net")
    optimizer = torch.optim.Adam(loss.control_variate_parameters(), lr=3e-2)
    for _ in range(300):
        optimizer.zero_grad()
        loss(data).backward()
        optimizer.step()  # the models' gradients are computed but never applied
    after = gradient_variance(loss, data, 300, parameters="inf_net")
    z = (before.total - after.total) / math.hypot(before.total_standard_error, after.total_standard_error)
    assert z > 3.09, (before.total, after.total)


def test_the_command_line_trains_with_relax(tmp_path):
    assert main(["train", "--data", "digits", "--model", "sbn", "--layers", "10", "--loss", "relax",
                 "--n-samples", "1", "--steps", "20", "--eval-every", "20", "--eval-k", "4", "--log-every", "10",
                 "--progress", "false", "--out", str(tmp_path / "run")]) == 0


def test_the_command_line_refuses_several_layers_before_training(tmp_path, capsys):
    assert main(["train", "--data", "digits", "--model", "sbn", "--layers", "10,5", "--loss", "rebar", "--steps", "2",
                 "--progress", "false", "--out", str(tmp_path / "run")]) == 2
    assert "`layers` (--layers) is 10,5: --loss rebar takes one stochastic layer" in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize("kind", ["rebar", "relax"])
def test_the_control_variate_gets_the_gradient_of_its_variance_objective(kind, monkeypatch):
    """The control variate's parameters (eta, the temperature, RELAX's network) receive the gradient of the
    variance objective mean_{n,k} sum_units g^2, recomputed here independently with torch.func (g itself a
    derivative in the logits, so its gradient needs the pathwise term's graph), on the loss's own noise.
    A pathwise term computed without a graph gets eta's gradient wrong; an ascending objective its sign."""
    from torch.func import functional_call, grad
    from torch.nn.functional import binary_cross_entropy_with_logits

    torch.manual_seed(0)
    data_dim, latent_dim, k = 5, 3, 2
    inf_net, gen_model = SBNInfNet(data_dim, latent_dim).double(), SBNGenModel(data_dim, latent_dim).double()
    with torch.no_grad():
        gen_model.prior_logits.normal_()
    network = RELAXControlVariate(data_dim, latent_dim, hidden=(4,)).double() if kind == "relax" else None
    loss = (REBARLoss(inf_net, gen_model, k, temperature=0.3) if kind == "rebar"
            else RELAXLoss(inf_net, gen_model, k, network, temperature=0.3)).double()
    with torch.no_grad():
        loss.eta.fill_(0.7)
    data = torch.bernoulli(torch.full((4, data_dim), 0.5, dtype=torch.float64))

    drawn, rand_like = [], torch.rand_like  # the loss's uniform noise, u then v, recorded as it is drawn

    def recorded(*args, **kwargs):
        drawn.append(rand_like(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(torch, "rand_like", recorded)
    loss(data).backward()
    monkeypatch.undo()
    tuned = dict((name, p) for name, p in loss.named_parameters() if not name.startswith(("inf_net.", "gen_model.")))
    got = {name: p.grad.clone() for name, p in tuned.items()}

    with torch.no_grad():  # q's logits: SBNInfNet's linear encoder
        logits = inf_net.encoder(data).unsqueeze(1).expand(len(data), k, latent_dim)
    assert len(drawn) == 2
    u, v = (noise.clamp(torch.finfo(logits.dtype).tiny, 1 - 1e-7) for noise in drawn)
    b = (logits + u.log() - (-u).log1p() > 0).double()
    with torch.no_grad():
        signal = gen_model(data, b).log_prob(data, b) + binary_cross_entropy_with_logits(
            logits, b, reduction="none").sum(2)  # f(b) = log p(x, b) - log q(b|x)

    def conditional(a):  # u given b (z~ ~ p(z | b) by v), a function of the logits
        p = torch.sigmoid(a)
        return torch.where(b > 0, 1 - p + v * p, v * (1 - p)).clamp(torch.finfo(a.dtype).tiny, 1 - 1e-7)

    def control(theta, a, noise):  # c at the relaxed latents of logits a and uniform noise: [batch, K]
        relaxed = torch.sigmoid((a + noise.log() - (-noise).log1p()) / theta["log_temperature"].exp())
        f = gen_model(data, relaxed).log_prob(data, relaxed) + binary_cross_entropy_with_logits(
            a, relaxed, reduction="none").sum(2)
        value = theta["eta"] * f
        if network is not None:
            value = value + functional_call(network, {n[len("control_variate."):]: t for n, t in theta.items()
                                                      if n.startswith("control_variate.")}, (data, relaxed))
        return value

    def estimate(theta, a):  # g: [batch, K, units]
        pathwise = grad(lambda a_: (control(theta, a_, u) - control(theta, a_, conditional(a_))).sum())(a)
        return (signal - control(theta, a, conditional(a))).unsqueeze(-1) * (b - torch.sigmoid(a)) + pathwise

    variance = lambda theta: estimate(theta, logits).pow(2).sum(2).mean()  # noqa: E731
    expected = grad(variance)({name: p.detach() for name, p in tuned.items()})
    assert set(expected) == set(got) and "eta" in got
    for name in got:
        assert torch.allclose(got[name], expected[name], rtol=1e-8, atol=1e-10), (name, got[name], expected[name])
