"""Tutorial: an InfNet for discrete latents written from scratch, checked, then trained with VIMCO.

Run: python examples/tutorials/custom_inf_net.py [--steps 2000]
The page docs/tutorials/custom_inf_net.md shows this file section by section; a test runs it.
"""

from __future__ import annotations

import argparse

import torch
from torch import Tensor, nn
from torch.distributions import OneHotCategorical

# --8<-- [start:inf_net]
from blackbox_vae import InfNet


class OneHotInfNet(InfNet):
    """q(z|x) = prod_l OneHotCategorical(z_l; softmax(f(x)_l)): L latents of C classes each.

    Shapes: data ``[batch, D]``; latents ``[batch, n_samples, L, C]`` (one-hot); log-probs
    ``[batch, n_samples]``.
    """

    def __init__(self, data_dim: int, n_latents: int, n_classes: int):
        super().__init__()
        self.n_latents, self.n_classes = n_latents, n_classes
        self.net = nn.Sequential(nn.Linear(data_dim, 128), nn.ReLU(), nn.Linear(128, n_latents * n_classes))

    def forward(self, data: Tensor) -> "OneHotInfNet":
        logits = self.net(data).unflatten(-1, (self.n_latents, self.n_classes))  # [batch, L, C]
        self.params_ = torch.log_softmax(logits, dim=-1)  # normalized: log q of each class
        return self  # so that inf_net(x).sample(5) reads naturally

    def sample(self, n_samples: int = 1) -> Tensor:
        # torch puts the sample dimension first: [n, batch, L, C] -> [batch, n, L, C]
        draws = OneHotCategorical(logits=self.params_).sample((n_samples,))
        return draws.movedim(0, 1).contiguous()

    def log_prob(self, latents: Tensor) -> Tensor:
        # one-hot latents pick their class's log-probability; sum over latents and classes
        return (latents * self.params_.unsqueeze(1)).sum(dim=(-2, -1))  # [batch, n_samples]
# --8<-- [end:inf_net]


# --8<-- [start:gen_model]
from blackbox_vae import GenModel  # noqa: E402
from blackbox_vae.models.deep_sbn import bernoulli_log_prob  # noqa: E402


class OneHotGenModel(GenModel):
    """p(z) = prod_l Categorical(z_l; uniform), p(x|z) = prod_i Bernoulli(x_i; sigmoid(g(z)_i))."""

    def __init__(self, data_dim: int, n_latents: int, n_classes: int):
        super().__init__()
        self.n_latents, self.n_classes = n_latents, n_classes
        self.net = nn.Sequential(nn.Flatten(-2), nn.Linear(n_latents * n_classes, 128), nn.ReLU(),
                                 nn.Linear(128, data_dim))

    def forward(self, data: Tensor, latents: Tensor) -> "OneHotGenModel":
        self.params_ = self.net(latents)  # [batch, n_samples, D] logits of p(x|z)
        return self

    def log_prob(self, data: Tensor, latents: Tensor) -> Tensor:
        log_prior = -self.n_latents * torch.log(torch.tensor(float(self.n_classes)))  # uniform, a constant
        return log_prior + bernoulli_log_prob(self.params_, data.unsqueeze(1))  # [batch, n_samples]

    def sample(self, n_samples: int = 1) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            classes = torch.randint(self.n_classes, (n_samples, self.n_latents))
            latents = nn.functional.one_hot(classes, self.n_classes).float()  # [n, L, C]
            data = torch.bernoulli(torch.sigmoid(self.net(latents)))
        return data, latents
# --8<-- [end:gen_model]


def main(steps: int = 2000, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    # --8<-- [start:check]
    from blackbox_vae.data import load_dataset
    from blackbox_vae.testing import check_gen_model, check_inf_net

    digits = load_dataset("digits", binarization="static")  # scikit-learn's 8x8 digits, no download
    inf_net, gen_model = OneHotInfNet(64, n_latents=8, n_classes=4), OneHotGenModel(64, n_latents=8, n_classes=4)
    check_inf_net(inf_net, digits.train[:16])  # shapes, batching, and sample frequencies against log_prob
    check_gen_model(gen_model, digits.train[:16], inf_net(digits.train[:16]).sample(3))
    # --8<-- [end:check]

    # --8<-- [start:train]
    from blackbox_vae import VIMCOLoss, log_likelihood_bound

    loss = VIMCOLoss(inf_net, gen_model, n_samples=5)
    optimizer = torch.optim.Adam(loss.parameters(), lr=3e-3)
    for step in range(steps):
        batch = digits.train[torch.randint(len(digits.train), (64,))]
        optimizer.zero_grad()
        loss(batch).backward()
        optimizer.step()
    bound = log_likelihood_bound(inf_net, gen_model, digits.test, n_samples=200).mean().item()
    print(f"training bound {-loss.loss_history_[-1]:.2f}, test log-likelihood >= {bound:.2f} nats")
    # --8<-- [end:train]
    return {"history": loss.loss_history_, "test_bound": bound}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    main(parser.parse_args().steps)
