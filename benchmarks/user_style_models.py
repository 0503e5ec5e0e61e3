"""A sigmoid belief network written the way users write one, and the same arithmetic by hand.

`UserSBNInfNet` / `UserSBNGenModel` subclass InfNet / GenModel with only ``forward``, ``sample`` and
``log_prob`` (no fused ``sample_and_log_prob``, no library helpers): the library's draw path then checks
their samples and log-probabilities, and stores its per-call state, at every step. `hand_step` does what a
training step with these models computes (sample under ``no_grad``, score under q and p, the RWS or VIMCO
surrogate) as plain torch, so the ratio of the two times is the library's own cost on a user's model.
Used by ``benchmarks/pyro_comparison.py --only user``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.functional import binary_cross_entropy_with_logits

from blackbox_vae import GenModel, InfNet


def bernoulli_log_prob(logits: Tensor, value: Tensor) -> Tensor:
    """sum over the last dimension of log Bernoulli(value; sigmoid(logits)), broadcasting the two."""
    logits, value = torch.broadcast_tensors(logits, value)
    return -binary_cross_entropy_with_logits(logits, value, reduction="none").sum(-1)


class UserSBNInfNet(InfNet):
    """q(z_1|x) q(z_2|z_1) ...: Bernoulli layers with linear logits. Latents: a tuple of ``[batch, n, H_l]``."""

    def __init__(self, data_dim: int, layers: list[int]):
        super().__init__()
        widths = [data_dim, *layers]
        self.nets = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, data: Tensor) -> "UserSBNInfNet":
        self.params_ = self.nets[0](data)  # [batch, H_1]
        return self

    def sample(self, n_samples: int = 1) -> tuple[Tensor, ...]:
        with torch.no_grad():
            z = torch.bernoulli(torch.sigmoid(self.params_).unsqueeze(1).expand(-1, n_samples, -1))
            latents = [z]
            for net in self.nets[1:]:
                z = torch.bernoulli(torch.sigmoid(net(z)))
                latents.append(z)
        return tuple(latents)

    def log_prob(self, latents: tuple[Tensor, ...]) -> Tensor:
        log_q = bernoulli_log_prob(self.params_.unsqueeze(1), latents[0])
        for net, below, z in zip(self.nets[1:], latents[:-1], latents[1:]):
            log_q = log_q + bernoulli_log_prob(net(below), z)
        return log_q


class UserSBNGenModel(GenModel):
    """p(z_L) p(z_{L-1}|z_L) ... p(x|z_1), Bernoulli layers with linear logits."""

    def __init__(self, data_dim: int, layers: list[int]):
        super().__init__()
        widths = [data_dim, *layers]
        self.prior_logits = nn.Parameter(torch.zeros(layers[-1]))
        self.nets = nn.ModuleList(nn.Linear(b, a) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, data: Tensor, latents: tuple[Tensor, ...]) -> "UserSBNGenModel":
        self.params_ = [net(z) for net, z in zip(self.nets, latents)]  # logits of x, z_1, ..., z_{L-1}
        return self

    def log_prob(self, data: Tensor, latents: tuple[Tensor, ...]) -> Tensor:
        log_p = bernoulli_log_prob(self.prior_logits, latents[-1]) + bernoulli_log_prob(self.params_[0],
                                                                                         data.unsqueeze(1))
        for logits, below in zip(self.params_[1:], latents[:-1]):
            log_p = log_p + bernoulli_log_prob(logits, below)
        return log_p

    def sample(self, n_samples: int = 1):
        raise NotImplementedError("not needed by RWS's wake update or VIMCO")


def hand_step(q: UserSBNInfNet, p: UserSBNGenModel, k: int, estimator: str):
    """A training step's forward and backward with the models' networks, as plain torch ("rws": the wake
    update of q and p; "vimco": VIMCO with the geometric-mean leave-one-out baselines, O(K))."""

    def step(x: Tensor) -> None:
        logits = q.nets[0](x)
        with torch.no_grad():
            z = torch.bernoulli(torch.sigmoid(logits).unsqueeze(1).expand(-1, k, -1))
            latents = [z]
            for net in q.nets[1:]:
                z = torch.bernoulli(torch.sigmoid(net(z)))
                latents.append(z)
        log_q = bernoulli_log_prob(logits.unsqueeze(1), latents[0])
        for net, below, z in zip(q.nets[1:], latents[:-1], latents[1:]):
            log_q = log_q + bernoulli_log_prob(net(below), z)
        p_logits = [net(z) for net, z in zip(p.nets, latents)]
        log_p = bernoulli_log_prob(p.prior_logits, latents[-1]) + bernoulli_log_prob(p_logits[0], x.unsqueeze(1))
        for logits_below, below in zip(p_logits[1:], latents[:-1]):
            log_p = log_p + bernoulli_log_prob(logits_below, below)
        log_w = log_p - log_q
        if estimator == "rws":
            weights = torch.softmax(log_w.detach(), 1)
            bound = torch.logsumexp(log_w.detach(), 1) - math.log(k)  # the bound, to report (as ours records)
            surrogate = -(weights * (log_p + log_q)).sum(1).mean()
            step.bound = bound.mean()
        else:
            w = log_w.detach()
            bound = torch.logsumexp(log_w, 1) - math.log(k)
            geometric = (w.sum(1, keepdim=True) - w) / (k - 1)  # each sample replaced by the others' mean
            top = w.max(1, keepdim=True).values
            total = (w - top).exp().sum(1, keepdim=True)
            without = (total - (w - top).exp() + (geometric - top).exp()).log() + top - math.log(k)
            surrogate = -(bound + ((bound.detach().unsqueeze(1) - without) * log_q).sum(1)).mean()
            step.bound = bound.detach().mean()
        surrogate.backward()

    return step
