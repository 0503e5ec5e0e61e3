"""ARSM beyond its exact-gradient checks (tests/loss_examples.py): what it refuses, what it records; and the checks
it shares with the unordered set estimator."""

import pytest
import torch

from blackbox_vae import ARSMLoss, UnorderedSetLoss
from blackbox_vae.cli import main
from blackbox_vae.models import (CategoricalGenModel, CategoricalInfNet, GaussianMLPGenModel, GaussianMLPInfNet,
                                 SBNGenModel, SBNInfNet)

DATA = torch.bernoulli(torch.full((5, 6), 0.4))


@pytest.mark.parametrize("pair", [(SBNInfNet, SBNGenModel), (GaussianMLPInfNet, GaussianMLPGenModel)])
def test_latents_without_class_logits_are_refused_when_the_loss_is_built(pair):
    """The advice names the estimators that fit the model: ARM and DisARM for Bernoulli latents, not for Gaussian."""
    inf_class, gen_class = pair
    with pytest.raises(TypeError, match=rf"needs `{inf_class.__name__}.categorical_logits`.*Estimators that fit "
                                        rf"`{inf_class.__name__}`: VIMCOLoss") as refusal:
        ARSMLoss(inf_class(6, 3), gen_class(6, 3), 1)
    assert ("ARMLoss, DisARMLoss" in str(refusal.value)) == (inf_class is SBNInfNet)


@pytest.mark.parametrize("loss_class", [ARSMLoss, UnorderedSetLoss])
def test_logits_of_the_wrong_shape_are_named(loss_class):
    """Both one-layer categorical estimators read q's class logits (`categorical_logits`) and check their shape."""
    class WrongShape(CategoricalInfNet):
        def categorical_logits(self, latents, layer=0):
            return super().categorical_logits(latents, layer)[..., :2]

    with pytest.raises(ValueError, match=r"WrongShape.categorical_logits` returned shape \(5, 1, 2, 2\); "
                                         r"expected .* \(5, 1, 2, 3\)"):
        loss_class(WrongShape(6, 2, 3, hidden=(4,)), CategoricalGenModel(6, 2, 3, hidden=(4,)), 2)(DATA)


def test_each_draw_scores_every_distinct_pseudo_action_and_records_the_exact_draws():
    """C = 4: 1 + 4 * 3 / 2 = 7 evaluations of p per draw, in one batched call; log_p_ / log_q_ keep the K exact
    draws, and the value is their negative ELBO."""
    torch.manual_seed(0)
    inf_net, gen_model = CategoricalInfNet(6, 2, 4, hidden=(4,)), CategoricalGenModel(6, 2, 4, hidden=(4,))
    seen = []
    log_prob = gen_model.log_prob
    gen_model.log_prob = lambda data, latents: (seen.append(latents.shape), log_prob(data, latents))[1]
    loss = ARSMLoss(inf_net, gen_model, 3)
    value = loss(DATA)
    assert seen == [(5, 3 * 7, 2, 4)]
    assert loss.log_p_.shape == loss.log_q_.shape == (5, 3)
    assert value.item() == pytest.approx(-(loss.log_p_ - loss.log_q_).mean().item(), rel=1e-6)


@pytest.mark.parametrize("loss_class", [ARSMLoss, UnorderedSetLoss])
def test_the_recorded_log_q_is_q_s_own_on_unnormalized_class_logits(loss_class):
    """`InfNet.categorical_logits` may be unnormalized: the log q recorded for each draw (and so the reported
    objective) must still be log q of one of the latents' configurations, normalized."""
    from blackbox_vae.testing import categorical_configurations

    class Unnormalized(CategoricalInfNet):
        def categorical_logits(self, latents, layer=0):
            logits = super().categorical_logits(latents, layer)
            return logits + 2.0 + logits[..., :1]

    torch.manual_seed(0)
    inf_net, gen_model = Unnormalized(6, 2, 3, hidden=(4,)).double(), CategoricalGenModel(6, 2, 3, hidden=(4,)).double()
    loss = loss_class(inf_net, gen_model, 2)
    loss(DATA.double())
    configurations = categorical_configurations(2, 3, dtype=torch.float64)  # [9, 2, 3]
    every = inf_net(DATA.double()).log_prob(configurations.expand(len(DATA), -1, -1, -1))  # [batch, 9]
    distance = (loss.log_q_.unsqueeze(-1) - every.unsqueeze(1)).abs().min(-1).values  # [batch, K]
    assert distance.max().item() < 1e-9, loss.log_q_


@pytest.mark.slow  # 20 training steps and an evaluation: seconds
@pytest.mark.parametrize("loss, k", [("arsm", 2), ("unordered-set", 4)])
def test_the_command_line_trains_the_categorical_model_with(tmp_path, loss, k):
    assert main(["train", "--data", "digits", "--model", "categorical", "--layers", "4", "--n-classes", "3",
                 "--loss", loss, "--n-samples", str(k), "--steps", "20", "--eval-every", "20", "--eval-k", "4",
                 "--log-every", "10", "--progress", "false", "--out", str(tmp_path / "run")]) == 0


def test_the_command_line_refuses_latents_it_cannot_handle_for_arsm(tmp_path):
    assert main(["train", "--data", "digits", "--model", "sbn", "--loss", "arsm", "--steps", "2",
                 "--progress", "false", "--out", str(tmp_path / "refused")]) == 2
