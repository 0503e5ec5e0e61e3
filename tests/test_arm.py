"""ARM and DisARM beyond their exact-gradient checks (tests/loss_examples.py): what they refuse, and how."""

import pytest
import torch
from torch.distributions import Independent, Normal

from blackbox_vae import ARMLoss, DisARMLoss, DistributionInfNet, RelaxedCategoricalInfNet
from blackbox_vae.cli import main
from blackbox_vae.models import CategoricalGenModel, DeepSBNGenModel, DeepSBNInfNet, GaussianMLPGenModel, \
    GaussianMLPInfNet, SBNGenModel, SBNInfNet

LOSSES = [ARMLoss, DisARMLoss]
DATA = torch.bernoulli(torch.full((5, 6), 0.4))


@pytest.mark.parametrize("loss_class", LOSSES)
def test_gaussian_codes_are_refused_when_the_loss_is_built(loss_class):
    with pytest.raises(TypeError, match=r"needs `GaussianMLPInfNet.bernoulli_logits`.*VIMCOLoss"):
        loss_class(GaussianMLPInfNet(6, 2), GaussianMLPGenModel(6, 2), 2)


@pytest.mark.parametrize("loss_class", LOSSES)
def test_one_hot_codes_are_refused_when_the_loss_is_built(loss_class):
    class OneHot(RelaxedCategoricalInfNet):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(6, 6)

        def logits(self, data):
            return self.linear(data).view(-1, 2, 3)

    with pytest.raises(TypeError, match="bernoulli_logits"):
        loss_class(OneHot(), CategoricalGenModel(6, 2, 3), 2)


@pytest.mark.parametrize("loss_class", LOSSES)
def test_a_distribution_that_turns_out_not_bernoulli_is_refused_at_the_call(loss_class):
    class NormalInfNet(DistributionInfNet):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(6, 2)

        def distribution(self, data):
            return Independent(Normal(self.linear(data), 1.0), 1)

    loss = loss_class(NormalInfNet(), GaussianMLPGenModel(6, 2), 2)  # not known before the first forward
    with pytest.raises(TypeError, match=r"`has_bernoulli_logits` is False"):
        loss(DATA)


@pytest.mark.parametrize("loss_class", LOSSES)
def test_k_must_cover_a_pair_per_layer(loss_class):
    with pytest.raises(ValueError, match=r"needs `n_samples` >= 2 \(each antithetic pair"):
        loss_class(SBNInfNet(6, 3), SBNGenModel(6, 3), 1)
    loss = loss_class(DeepSBNInfNet(6, [3, 2, 2]), DeepSBNGenModel(6, [3, 2, 2]), 4)
    with pytest.raises(ValueError, match=r"multiple of 2 x 3 layers = 6 .*got 4"):
        loss(DATA)
    assert loss_class(DeepSBNInfNet(6, [3, 2, 2]), DeepSBNGenModel(6, [3, 2, 2]), 6)(DATA).isfinite()


def test_logits_of_the_wrong_shape_are_named():
    class WrongShape(SBNInfNet):
        def bernoulli_logits(self, latents, layer=0):
            return super().bernoulli_logits(latents, layer)[..., :2]

    with pytest.raises(ValueError, match=r"WrongShape.bernoulli_logits` returned shape \(5, 1, 2\) for layer 0; "
                                         r"expected .* \(5, 1, 3\)"):
        DisARMLoss(WrongShape(6, 3), SBNGenModel(6, 3), 2)(DATA)


@pytest.mark.parametrize("loss_class", LOSSES)
def test_the_call_records_k_samples_and_the_negative_elbo(loss_class):
    torch.manual_seed(0)
    loss = loss_class(DeepSBNInfNet(6, [3, 2]), DeepSBNGenModel(6, [3, 2]), 8)
    value = loss(DATA)
    assert loss.log_p_.shape == loss.log_q_.shape == (5, 8)
    assert value.item() == pytest.approx(-(loss.log_p_ - loss.log_q_).mean().item(), rel=1e-6)


def test_the_pair_is_antithetic():
    """DisARM's pair: b = 1[u < p] and b' = 1[u > 1 - p] from one u, so with p = 1/2 they are complements,
    and the mean of each member is p."""
    inf_net, gen_model = SBNInfNet(6, 3), SBNGenModel(6, 3)
    with torch.no_grad():
        for parameter in inf_net.parameters():
            parameter.zero_()  # every logit 0: p = 1/2
    loss = DisARMLoss(inf_net, gen_model, 2)
    captured = []
    score = loss._score
    loss._score = lambda data, latents: (captured.append(latents), score(data, latents))[1]
    for _ in range(50):
        loss(DATA)
    latents = torch.stack(captured)  # [50, batch, 2, 3]: member b, then member b'
    assert torch.equal(latents[:, :, 0] + latents[:, :, 1], torch.ones_like(latents[:, :, 0]))


def test_the_command_line_trains_with_disarm(tmp_path):
    assert main(["train", "--data", "digits", "--model", "sbn", "--layers", "10,5", "--loss", "disarm",
                 "--n-samples", "4", "--steps", "20", "--eval-every", "20", "--eval-k", "4", "--log-every", "10",
                 "--progress", "false", "--out", str(tmp_path / "run")]) == 0
    assert main(["train", "--data", "digits", "--model", "gaussian", "--loss", "arm", "--steps", "2",
                 "--progress", "false", "--out", str(tmp_path / "refused")]) == 2
