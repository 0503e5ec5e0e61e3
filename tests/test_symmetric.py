"""SymmetricLoss: each player's parameters get only its own update, also when q borrows p's modules; its
histories; bad input. (Its expected gradient is checked exactly with every loss: test_loss_registry.py.)"""

import io

import pytest
import torch
from torch import nn

from blackbox_vae import GenModel, InfNet, SymmetricLoss
from blackbox_vae.latents import map_latents
from blackbox_vae.models import HVAEGenModel, HVAELadderInfNet, SBNGenModel, SBNInfNet

DATA_DIM, LATENT_DIM = 6, 3


class BorrowingInfNet(InfNet):
    """q(z|x) = Bernoulli(sigmoid(W x + p's prior logits)): q reuses a parameter of p, not detached (a ladder
    encoder reuses p's layers so); the sleep term would train it unless the loss keeps it p's."""

    def __init__(self, gen_model):
        super().__init__()
        self.encoder = nn.Linear(DATA_DIM, LATENT_DIM)
        self.gen_model = gen_model  # a submodule: its parameters are q's parameters too

    def forward(self, data):
        self.logits = self.encoder(data) + self.gen_model.prior_logits
        return self

    def sample(self, n_samples=1):
        return torch.bernoulli(torch.sigmoid(self.logits).unsqueeze(1).expand(-1, n_samples, -1))

    def log_prob(self, latents):
        return torch.distributions.Bernoulli(logits=self.logits.unsqueeze(1)).log_prob(latents).sum(-1)


def models(borrowing):
    torch.manual_seed(0)
    if borrowing == "ladder":  # the two-layer ladder HVAE: q's z_1 logits are p's p(z_1|z_0) module plus a_1(x)
        gen_model = HVAEGenModel(DATA_DIM, (2, LATENT_DIM), hidden=(5,))
        return HVAELadderInfNet(gen_model, DATA_DIM, hidden=(5,)), gen_model
    gen_model = SBNGenModel(DATA_DIM, LATENT_DIM)
    with torch.no_grad():
        gen_model.prior_logits.normal_()
    return (BorrowingInfNet(gen_model) if borrowing else SBNInfNet(DATA_DIM, LATENT_DIM)), gen_model


def data(n=8):
    return torch.bernoulli(torch.full((n, DATA_DIM), 0.4), generator=torch.Generator().manual_seed(1))


def separate_gradients(inf_net, gen_model, batch, n_samples, dreams, seed):
    """Each utility differentiated on its own, drawing the same random numbers in the same order as the loss
    (the dreams first, then the wake samples): p's gradient from the wake term, q's from the sleep term."""
    torch.manual_seed(seed)
    dreamed_data, dreamed_latents = gen_model.sample(dreams * len(batch))
    sleep = inf_net(dreamed_data).log_prob(map_latents(lambda z: z.unsqueeze(1), dreamed_latents)).mean()
    latents = inf_net(batch).sample(n_samples)
    wake = gen_model(batch, latents).log_prob(batch, latents).mean()
    p_parameters = list(gen_model.parameters())
    q_only = [p for p in inf_net.parameters() if all(p is not other for other in p_parameters)]
    expected = dict(zip(map(id, p_parameters), torch.autograd.grad(-wake, p_parameters)))
    expected.update(zip(map(id, q_only), torch.autograd.grad(-sleep, q_only)))
    return expected


@pytest.mark.parametrize("borrowing", [False, True, "ladder"],
                         ids=["separate-networks", "q-borrows-p's-parameter", "ladder-hvae"])
def test_each_player_gets_only_its_own_update(borrowing):
    inf_net, gen_model = models(borrowing)
    loss = SymmetricLoss(inf_net, gen_model, 3, dreams=2)
    batch = data()
    expected = separate_gradients(inf_net, gen_model, batch, 3, 2, seed=5)
    torch.manual_seed(5)
    loss(batch).backward()
    parameters = {id(p): p for p in loss.parameters()}
    assert set(parameters) == set(expected)
    for key, parameter in parameters.items():
        torch.testing.assert_close(parameter.grad, expected[key])
    if borrowing:  # the shared parameters are used by q, so without the projection they would get a sleep gradient
        torch.manual_seed(5)
        dreamed_data, dreamed_latents = gen_model.sample(2 * len(batch))
        sleep = inf_net(dreamed_data).log_prob(map_latents(lambda z: z.unsqueeze(1), dreamed_latents)).mean()
        shared = [gen_model.prior_logits] if borrowing is True else list(gen_model.conditionals.parameters())
        leak = torch.autograd.grad(sleep, shared)
        assert max(g.abs().max() for g in leak) > 1e-3  # so the test above could fail


def test_value_and_histories():
    inf_net, gen_model = models(False)
    loss = SymmetricLoss(inf_net, gen_model, 4)
    batch = data()
    value = loss(batch)
    assert value.item() == pytest.approx(-(loss.log_p_ - loss.log_q_).mean().item(), rel=1e-6)
    assert loss.loss_history_ == [pytest.approx(value.item())]
    assert loss.wake_utility_history_ == [pytest.approx(loss.log_p_.mean().item(), rel=1e-6)]
    assert len(loss.sleep_utility_history_) == 1 and loss.sleep_utility_history_[0] < 0
    loss(batch)
    buffer = io.BytesIO()
    torch.save(loss.state_dict(), buffer)
    buffer.seek(0)
    restored = SymmetricLoss(*models(False), 4)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.wake_utility_history_ == loss.wake_utility_history_
    assert restored.sleep_utility_history_ == loss.sleep_utility_history_
    assert loss.inf_net.params_ is not None  # q holds the data's parameters after a call (the sleep phase first)


def test_flip_noise_flips_bits_at_its_rate():
    inf_net, gen_model = models(False)
    loss = SymmetricLoss(inf_net, gen_model, flip_noise=0.1)
    batch = torch.zeros(20000, DATA_DIM)
    torch.manual_seed(0)
    flipped = loss._flipped(batch)
    assert flipped.mean().item() == pytest.approx(0.1, abs=5 * (0.1 * 0.9 / flipped.numel()) ** 0.5)


class WrongDreams(GenModel):
    def __init__(self, sample):
        super().__init__()
        self.inner = SBNGenModel(DATA_DIM, LATENT_DIM)
        self._sample = sample

    def forward(self, data, latents):
        self.inner(data, latents)
        return self

    def log_prob(self, data, latents):
        return self.inner.log_prob(data, latents)

    def sample(self, n_samples=1):
        return self._sample(self.inner, n_samples)


@pytest.mark.parametrize("sample, message", [
    (lambda inner, n: (inner.sample(n)[0][:1], inner.sample(n)[1]), r"returned data of shape \(1, 6\); expected"),
    (lambda inner, n: (inner.sample(n)[0], inner.sample(n)[1][:, :2]), "latents"),
    (lambda inner, n: tuple(t.to("meta") for t in inner.sample(n)), "returned data on meta, but the data are on cpu"),
])
def test_bad_dreams_are_named(sample, message):
    loss = SymmetricLoss(SBNInfNet(DATA_DIM, LATENT_DIM), WrongDreams(sample))
    with pytest.raises(ValueError, match=message):
        loss(data())


@pytest.mark.parametrize("options, message", [
    ({"dreams": 0}, "`dreams`"), ({"dreams": 1.5}, "`dreams`"), ({"flip_noise": 0.5}, "`flip_noise`"),
    ({"flip_noise": -0.1}, "`flip_noise`"), ({"flip_noise": True}, "`flip_noise`"),
])
def test_bad_options_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        SymmetricLoss(*models(False), **options)


def test_flip_noise_needs_binary_data():
    loss = SymmetricLoss(*models(False), flip_noise=0.01)
    with pytest.raises(ValueError, match="must be binary"):
        loss(data() * 0.5)
