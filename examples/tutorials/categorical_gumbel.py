"""Tutorial: a categorical VAE trained with the Gumbel-softmax (Concrete) estimator, and its straight-through variant.

Run: python examples/tutorials/categorical_gumbel.py [--steps 1500]
The page docs/tutorials/categorical_gumbel.md shows this file section by section; a test runs it.
"""

from __future__ import annotations

import argparse

import torch


def main(steps: int = 1500, seed: int = 0) -> dict:
    # --8<-- [start:models]
    from blackbox_vae.data import load_dataset
    from blackbox_vae.models import CategoricalGenModel, CategoricalInfNet

    digits = load_dataset("digits", binarization="static")  # [N, 64] binary rows, no download
    torch.manual_seed(seed)
    inf_net = CategoricalInfNet(64, n_latents=8, n_classes=4, hidden=(128,))  # latents [batch, K, 8, 4]
    gen_model = CategoricalGenModel(64, n_latents=8, n_classes=4, hidden=(128,))
    # --8<-- [end:models]

    # --8<-- [start:loss]
    from blackbox_vae import GumbelSoftmaxLoss, TemperatureSchedule

    # Jang et al.'s annealing: tau = max(0.5, exp(-r t)), updated every 100 steps here
    temperature = TemperatureSchedule(initial=1.0, minimum=0.5, rate=1e-3, every=100)
    loss = GumbelSoftmaxLoss(inf_net, gen_model, n_samples=1, temperature=temperature)
    # --8<-- [end:loss]

    # --8<-- [start:train]
    from blackbox_vae import log_likelihood_bound

    def train(loss, steps):
        optimizer = torch.optim.Adam(loss.parameters(), lr=3e-3)
        for _ in range(steps):
            batch = digits.train[torch.randint(len(digits.train), (64,))]
            optimizer.zero_grad()
            loss(batch).backward()
            optimizer.step()
        # the relaxed objective is not a bound on log p(x): score with discrete samples instead
        return log_likelihood_bound(loss.inf_net, loss.gen_model, digits.test, n_samples=200).mean().item()

    relaxed = train(loss, steps)
    print(f"Gumbel-softmax: test log-likelihood >= {relaxed:.2f} nats (temperature now "
          f"{loss.current_temperature:.2f})")
    # --8<-- [end:train]

    # --8<-- [start:straight_through]
    torch.manual_seed(seed)
    inf_net = CategoricalInfNet(64, n_latents=8, n_classes=4, hidden=(128,))
    gen_model = CategoricalGenModel(64, n_latents=8, n_classes=4, hidden=(128,))
    straight = GumbelSoftmaxLoss(inf_net, gen_model, n_samples=1, temperature=0.5, straight_through=True)
    hard = train(straight, steps)
    print(f"straight-through: test log-likelihood >= {hard:.2f} nats")
    # --8<-- [end:straight_through]
    return {"relaxed": relaxed, "straight_through": hard, "history": loss.loss_history_}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    main(parser.parse_args().steps)
