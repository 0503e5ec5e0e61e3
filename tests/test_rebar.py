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
