"""Loss state: loss_history_, log_p_/log_q_, and the state_dict round trip."""

import io

import pytest
import torch

from blackbox_vae import ELBOLoss, ScoreFunctionLoss
from blackbox_vae.models import GaussianMLPGenModel, GaussianMLPInfNet, SBNGenModel, SBNInfNet

DATA = torch.bernoulli(torch.full((8, 6), 0.5))


def make_loss(**kwargs):
    return ScoreFunctionLoss(SBNInfNet(6, 3), SBNGenModel(6, 3), n_samples=3, **kwargs)


def test_history_is_one_float_per_call_and_equals_the_negative_bound():
    loss = make_loss()
    for _ in range(3):
        loss(DATA)
    assert len(loss.loss_history_) == 3 and all(type(v) is float for v in loss.loss_history_)
    negative_elbo = -(loss.log_p_ - loss.log_q_).mean().item()
    assert loss.loss_history_[-1] == pytest.approx(negative_elbo, rel=1e-6)


def test_history_survives_more_calls_than_the_flush_interval():
    loss = make_loss()
    for _ in range(600):
        loss(DATA[:1])
    assert len(loss.loss_history_) == 600 and len(set(loss.loss_history_)) > 1


def test_last_log_probs_are_kept_detached(device):
    loss = ELBOLoss(GaussianMLPInfNet(3, 2, hidden=(8,)), GaussianMLPGenModel(3, 2, hidden=(8,)), n_samples=4)
    loss.to(device)(torch.randn(5, 3, device=device))
    for kept in (loss.log_p_, loss.log_q_):
        assert kept.shape == (5, 4) and not kept.requires_grad and kept.device.type == device.type


def round_trip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("baseline", [None, "mean", "leave-one-out"])
def test_state_dict_round_trip_restores_history_and_baseline(baseline):
    loss = make_loss(baseline=baseline)
    for _ in range(4):
        loss(DATA)
    restored = make_loss(baseline=baseline)
    restored.load_state_dict(round_trip(loss.state_dict()))
    assert restored.loss_history_ == loss.loss_history_
    for name, tensor in loss.state_dict().items():
        if isinstance(tensor, torch.Tensor):
            torch.testing.assert_close(restored.state_dict()[name], tensor)
    # The restored loss continues exactly where the original was.
    torch.manual_seed(7)
    expected = loss(DATA)
    torch.manual_seed(7)
    torch.testing.assert_close(restored(DATA), expected)


def test_mean_baseline_is_a_bias_corrected_moving_average():
    loss = make_loss(baseline="mean", baseline_decay=0.5)
    signals = []
    for _ in range(3):
        loss(DATA)
        signals.append((loss.log_p_ - loss.log_q_).mean())
    expected = (0.25 * signals[0] + 0.5 * signals[1] + signals[2]) / 1.75  # weights decay^(t-s), normalized
    torch.testing.assert_close(loss._baseline(loss.log_p_), expected)
