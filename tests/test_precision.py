"""bfloat16 autocast (``--precision bf16``): the networks in bf16, log-probabilities and weights in float32."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from blackbox_vae import GenModel, InfNet, VIMCOLoss
from blackbox_vae.cli import main
from blackbox_vae.models import SBNGenModel, SBNInfNet

#: bfloat16's unit roundoff: 8 significant bits.
UNIT_ROUNDOFF = 2.0**-8


def logit_error_sd(linear: nn.Linear, inputs: torch.Tensor) -> torch.Tensor:
    """The standard deviation of bf16 logits - fp32 logits of ``linear(inputs)`` under CPU autocast, per unit,
    in the probabilistic model of rounding errors (Higham & Mary 2019: independent, zero-mean, each at most
    the unit roundoff u in relative size, so of variance at most u^2 / 3 when uniform).

    The product rounds each input and each weight to bf16 (two roundoffs on every product w v), accumulates
    in float32 (negligible), adds the bias rounded to bf16 and rounds the result to bf16:
    var <= (4u^2 / 3) sum_j (w_j v_j)^2 + (u^2 / 3) (b^2 + l^2).
    """
    weights, bias = linear.weight.detach(), linear.bias.detach()
    exact = inputs @ weights.T + bias
    variance = (4 * UNIT_ROUNDOFF**2 / 3) * (inputs.pow(2) @ weights.pow(2).T) \
        + (UNIT_ROUNDOFF**2 / 3) * (bias.pow(2) + exact.pow(2))
    return variance.sqrt()


def test_the_bound_under_bf16_autocast_is_within_its_rounding_error():
    """For fixed latents, the bf16 bound of each data point is within 5 standard deviations of its rounding
    error of the float32 one.

    Each log-probability term x l - softplus(l) moves by (x - sigmoid(l)) delta_l when its logit moves by
    delta_l (of standard deviation `logit_error_sd`), and is then computed and summed in float32, so
    Delta log w_k has variance sum over the units of ((x - sigmoid(l)) sd_l)^2; the bound, a logsumexp of the
    log w_k, moves by at most max_k |Delta log w_k|. A log-probability summed in bf16 instead would be off by
    about u |log p|, tenths of a nat to nats here. Logits by linear maps (SBN 784-200).
    """
    torch.manual_seed(0)
    data_dim, latent_dim, k = 784, 200, 20
    inf_net, gen_model = SBNInfNet(data_dim, latent_dim), SBNGenModel(data_dim, latent_dim)
    data = torch.bernoulli(torch.full((16, data_dim), 0.13))
    latents = inf_net(data).sample(k)  # [16, K, H], fixed for both precisions

    def bound(autocast: bool) -> torch.Tensor:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            log_q = inf_net(data).log_prob(latents)
            log_p = gen_model(data, latents).log_prob(data, latents)
        assert log_q.dtype == log_p.dtype == torch.float32  # Bernoulli log-probabilities: float32 under autocast
        return torch.logsumexp(log_p - log_q, 1) - math.log(k)

    with torch.no_grad():
        encoder, decoder = inf_net.encoder[-1], gen_model.decoder[-1]
        q_terms = (latents - torch.sigmoid(encoder(data)).unsqueeze(1)) * logit_error_sd(encoder, data).unsqueeze(1)
        p_terms = (data.unsqueeze(1) - torch.sigmoid(decoder(latents))) * logit_error_sd(decoder, latents)
        spread = (q_terms.pow(2).sum(-1) + p_terms.pow(2).sum(-1)).sqrt()  # [16, K]
    tolerance = 5 * spread.max(1).values + 1e-4  # + float32 accumulation over 784 + 200 terms
    difference = (bound(True) - bound(False)).abs()
    assert (difference <= tolerance).all(), (difference, tolerance)
    assert 0 < difference.max() and tolerance.max() < 0.2, tolerance  # autocast acted; the check has teeth


class HalfPrecisionInfNet(InfNet):
    """One-hot latents whose log_prob comes out in the logits' dtype (log_softmax runs in bf16 under autocast)."""

    def __init__(self, data_dim: int):
        super().__init__()
        self.net = nn.Linear(data_dim, 4 * 3)

    def forward(self, data):
        self.params_ = torch.log_softmax(self.net(data).unflatten(-1, (4, 3)), -1)  # [batch, 4, 3]
        return self

    def sample(self, n_samples=1):
        with torch.no_grad():
            draws = torch.distributions.OneHotCategorical(logits=self.params_.float()).sample((n_samples,))
        return draws.movedim(0, 1).to(self.params_.dtype)

    def log_prob(self, latents):
        return (latents * self.params_.unsqueeze(1)).sum((-2, -1))


class HalfPrecisionGenModel(GenModel):
    def __init__(self, data_dim: int):
        super().__init__()
        self.net = nn.Linear(12, data_dim)

    def forward(self, data, latents):
        self.params_ = self.net(latents.flatten(-2))
        return self

    def log_prob(self, data, latents):
        logits = self.params_
        return (data.unsqueeze(1) * logits - nn.functional.softplus(logits)).sum(-1)  # bf16 under autocast

    def sample(self, n_samples=1):
        raise NotImplementedError


def test_the_loss_keeps_log_probabilities_and_its_objective_in_float32():
    torch.manual_seed(0)
    loss = VIMCOLoss(HalfPrecisionInfNet(10), HalfPrecisionGenModel(10), n_samples=4)
    data = torch.bernoulli(torch.full((8, 10), 0.5))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert loss.inf_net(data).log_prob(loss.inf_net.sample(2)).dtype == torch.bfloat16  # the models' own
        objective = loss(data)
    assert loss.log_q_.dtype == loss.log_p_.dtype == objective.dtype == torch.float32
    objective.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in loss.parameters())


def test_command_line_trains_in_bf16_and_records_it(tmp_path, monkeypatch):
    from blackbox_vae import trainer as training

    seen = []
    real_step = training._step

    def recording(run, *args):
        handle = run.inf_net.register_forward_hook(lambda module, inputs, output: seen.append(module.params_.dtype))
        try:
            real_step(run, *args)
        finally:
            handle.remove()

    monkeypatch.setattr(training, "_step", recording)
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        seen.clear()
        out = tmp_path / precision
        assert main(["train", "--steps", "20", "--eval-every", "20", "--log-every", "10", "--eval-k", "5",
                     "--precision", precision, "--out", str(out), "--progress", "false"]) == 0
        assert seen and set(seen) == {dtype}  # the networks ran in bf16 only when asked
        assert json.loads((out / "config.json").read_text())["precision"] == precision
        bound = float((out / "metrics.csv").read_text().splitlines()[-1].split(",")[3])
        assert math.isfinite(bound)
    with pytest.raises(SystemExit):
        main(["train", "--precision", "fp16", "--out", str(tmp_path / "x")])
