"""A registry of loss examples: every loss class exported by blackbox_vae has at least one.

Generic tests (tests/test_loss_registry.py) run each example; a test fails
when a Loss subclass has no example, so nothing is added untested.
"""

from dataclasses import dataclass
from typing import Callable

import torch

from blackbox_vae import (
    ELBOLoss,
    GumbelSoftmaxLoss,
    IWAELoss,
    NVILBaseline,
    NVILLoss,
    RelaxedBernoulliInfNet,
    RWSLoss,
    ScoreFunctionLoss,
    TemperatureSchedule,
    VIMCOLoss,
)
from blackbox_vae.models import GaussianMLPGenModel, GaussianMLPInfNet, SBNGenModel, SBNInfNet
from blackbox_vae.models._mlp import mlp

DATA_DIM, LATENT_DIM = 8, 4


class TinyRelaxedInfNet(RelaxedBernoulliInfNet):
    def __init__(self):
        super().__init__()
        self.encoder = mlp(DATA_DIM, (), LATENT_DIM)

    def logits(self, data):
        return self.encoder(data)


def sbn_pair():
    return SBNInfNet(DATA_DIM, LATENT_DIM), SBNGenModel(DATA_DIM, LATENT_DIM)


def relaxed_pair():
    return TinyRelaxedInfNet(), SBNGenModel(DATA_DIM, LATENT_DIM)


def gaussian_pair():
    return (GaussianMLPInfNet(DATA_DIM, LATENT_DIM, hidden=(16,)),
            GaussianMLPGenModel(DATA_DIM, LATENT_DIM, hidden=(16,), likelihood="bernoulli"))


@dataclass
class LossExample:
    name: str
    loss_class: type
    models: Callable  # () -> (inf_net, gen_model)
    build: Callable  # (inf_net, gen_model) -> loss
    discrete: bool  # latents enumerable (exact log p(x) available)

    def make(self):
        inf_net, gen_model = self.models()
        return self.build(inf_net, gen_model)


EXAMPLES = [
    LossExample("score-function", ScoreFunctionLoss, sbn_pair, lambda q, p: ScoreFunctionLoss(q, p, 4), True),
    LossExample("score-function-mean", ScoreFunctionLoss, sbn_pair,
                lambda q, p: ScoreFunctionLoss(q, p, 4, baseline="mean"), True),
    LossExample("score-function-loo", ScoreFunctionLoss, sbn_pair,
                lambda q, p: ScoreFunctionLoss(q, p, 4, baseline="leave-one-out"), True),
    LossExample("vimco", VIMCOLoss, sbn_pair, lambda q, p: VIMCOLoss(q, p, 4), True),
    LossExample("nvil", NVILLoss, sbn_pair, lambda q, p: NVILLoss(q, p, 1, baseline_net=NVILBaseline(DATA_DIM)), True),
    LossExample("nvil-no-normalization", NVILLoss, sbn_pair,
                lambda q, p: NVILLoss(q, p, 2, baseline_net=NVILBaseline(DATA_DIM), variance_normalization=False), True),
    LossExample("rws-wake", RWSLoss, sbn_pair, lambda q, p: RWSLoss(q, p, 4, "wake"), True),
    LossExample("rws-sleep", RWSLoss, sbn_pair, lambda q, p: RWSLoss(q, p, 4, "sleep"), True),
    LossExample("rws-wake-sleep", RWSLoss, sbn_pair, lambda q, p: RWSLoss(q, p, 4, "wake-sleep"), True),
    LossExample("gumbel-softmax", GumbelSoftmaxLoss, relaxed_pair,
                lambda q, p: GumbelSoftmaxLoss(q, p, 1, temperature=TemperatureSchedule(1.0, 0.5, 1e-3, 50)), True),
    LossExample("gumbel-straight-through", GumbelSoftmaxLoss, relaxed_pair,
                lambda q, p: GumbelSoftmaxLoss(q, p, 1, temperature=0.5, straight_through=True), True),
    LossExample("elbo", ELBOLoss, gaussian_pair, lambda q, p: ELBOLoss(q, p, 1), False),
    LossExample("iwae-reparam", IWAELoss, gaussian_pair, lambda q, p: IWAELoss(q, p, 5), False),
    LossExample("iwae-stl", IWAELoss, gaussian_pair, lambda q, p: IWAELoss(q, p, 5, gradient="stl"), False),
    LossExample("iwae-dreg", IWAELoss, gaussian_pair, lambda q, p: IWAELoss(q, p, 5, gradient="dreg"), False),
]


def teacher_data(n=512, seed=0):
    """Binary data from a random sigmoid belief network with strong weights: [n, DATA_DIM]."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    teacher = SBNGenModel(DATA_DIM, LATENT_DIM)
    with torch.no_grad():
        for parameter in teacher.parameters():
            parameter.mul_(3)
        data, _ = teacher.sample(n)
    torch.random.set_rng_state(generator_state)
    return data, teacher
