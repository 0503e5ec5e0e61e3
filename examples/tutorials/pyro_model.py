"""Tutorial: a Pyro model and guide trained with our losses (VIMCO, which Pyro does not have).

Run: python examples/tutorials/pyro_model.py [--steps 1000]
The page docs/pyro.md shows this file section by section; a test runs it.
"""

from __future__ import annotations

import argparse

# --8<-- [start:programs]
import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn


class Guide(PyroModule):
    """q(z|x): 16 Bernoulli latents from a linear encoder."""

    def __init__(self, data_dim: int = 64, latent_dim: int = 16):
        super().__init__()
        self.encoder = nn.Linear(data_dim, latent_dim)

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):  # the batch plate, at dim -1
            pyro.sample("z", dist.Bernoulli(logits=self.encoder(x)).to_event(1))


class Model(PyroModule):
    """p(z) p(x|z): a one-layer sigmoid belief network."""

    def __init__(self, data_dim: int = 64, latent_dim: int = 16):
        super().__init__()
        self.prior_logits = nn.Parameter(torch.zeros(latent_dim))
        self.decoder = nn.Linear(latent_dim, data_dim)

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Bernoulli(logits=self.prior_logits).expand([x.shape[0], 16]).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)
# --8<-- [end:programs]


def main(steps: int = 1000, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    pyro.clear_param_store()
    # --8<-- [start:train]
    from blackbox_vae import VIMCOLoss, log_likelihood_bound
    from blackbox_vae.data import load_dataset
    from blackbox_vae.pyro import PyroGenModel, PyroInfNet

    digits = load_dataset("digits", binarization="static")
    inf_net, gen_model = PyroInfNet(Guide()), PyroGenModel(Model())
    loss = VIMCOLoss(inf_net, gen_model, n_samples=5)  # latents: {"z": [batch, 5, 16]}
    optimizer = torch.optim.Adam(loss.parameters(), lr=3e-3)  # the PyroModules' parameters
    for _ in range(steps):
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
    parser.add_argument("--steps", type=int, default=1000)
    main(parser.parse_args().steps)
