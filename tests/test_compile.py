"""Losses under ``torch.compile``: the compiled step is the same estimator (unbiased, same history)."""

import math

import pytest
import torch

from blackbox_vae import RWSLoss, ScoreFunctionLoss
from blackbox_vae.models import DeepSBNGenModel, DeepSBNInfNet, SBNGenModel, SBNInfNet
from blackbox_vae.testing import assert_unbiased, bernoulli_configurations, exact_elbo, gradients

DATA_DIM, LATENT_DIM, REPLICAS = 5, 3, 100

# Warnings from inside torch's compiler stack (it touches torch.jit on import, and reads .grad of the
# tensors it inspects); not ours to fix, and the suite turns warnings into errors.
# Slow (compiling takes tens of seconds): `pytest -m slow` runs them, as .ci/run does.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")]


@pytest.fixture(autouse=True)
def fresh_compiler_caches():
    torch.compiler.reset()
    yield
    torch.compiler.reset()


def test_compiled_score_function_is_unbiased():
    torch.manual_seed(0)
    inf_net, gen_model = SBNInfNet(DATA_DIM, LATENT_DIM).double(), SBNGenModel(DATA_DIM, LATENT_DIM).double()
    points = torch.bernoulli(torch.full((3, DATA_DIM), 0.5, dtype=torch.float64))
    loss = ScoreFunctionLoss(inf_net, gen_model, n_samples=2, baseline="leave-one-out", validate=False)
    configurations = bernoulli_configurations(LATENT_DIM, dtype=torch.float64)
    expected = gradients(-exact_elbo(inf_net, gen_model, points, configurations).mean(), loss)
    loss.compile()  # nn.Module.compile: in place, parameter names unchanged
    assert_unbiased(loss, points.repeat(REPLICAS, 1), expected, n_draws=200)
    assert len(loss.loss_history_) >= 200


def test_compiled_step_records_history_and_log_probs_like_the_eager_one():
    torch.manual_seed(0)
    loss = RWSLoss(DeepSBNInfNet(DATA_DIM, [4, 3]), DeepSBNGenModel(DATA_DIM, [4, 3]), n_samples=3)
    compiled = torch.compile(loss)
    data = torch.bernoulli(torch.full((8, DATA_DIM), 0.5))
    for batch in (data, data, data[:5]):  # a smaller last batch recompiles, and is recorded all the same
        compiled(batch).backward()
    assert len(loss.loss_history_) == 3 and loss.log_p_.shape == loss.log_q_.shape == (5, 3)
    log_weights = (loss.log_p_ - loss.log_q_).double()
    bound = torch.logsumexp(log_weights, 1) - torch.log(torch.tensor(3.0))
    assert loss.loss_history_[-1] == pytest.approx(-bound.mean().item(), rel=1e-5)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in loss.parameters())


def test_command_line_compiles_the_step_when_asked(tmp_path, monkeypatch):
    import json

    from blackbox_vae.cli import main, training

    compiled = []
    real_compile = torch.compile
    monkeypatch.setattr(training.torch, "compile", lambda module: compiled.append(module) or real_compile(module))
    out = tmp_path / "compiled"
    assert main(["train", "--steps", "30", "--eval-every", "30", "--eval-k", "5", "--compile", "true", "--out",
                 str(out), "--progress", "false"]) == 0
    assert len(compiled) == 1 and json.loads((out / "config.json").read_text())["compile"] is True


def test_compiled_loss_still_refuses_non_finite_log_probabilities():
    """Under compilation the finiteness check runs after the graph (at the history's record), not inside it."""
    torch.manual_seed(0)
    gen_model = SBNGenModel(DATA_DIM, LATENT_DIM)
    loss = ScoreFunctionLoss(SBNInfNet(DATA_DIM, LATENT_DIM), gen_model, n_samples=4)
    loss.compile()
    data = torch.bernoulli(torch.full((8, DATA_DIM), 0.5))
    loss(data).backward()  # finite: no complaint
    with torch.no_grad():
        gen_model.prior_logits[0] = -math.inf  # z_0 = 1 now has probability 0
    with pytest.raises(ValueError, match=r"`SBNGenModel.log_prob` returned a non-finite log-probability"):
        loss(data)
