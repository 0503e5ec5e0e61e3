"""Tutorial: a two-layer sigmoid belief network trained with VIMCO, against the plain score function.

Run: python examples/tutorials/sbn_vimco.py [--steps 1500]
The page docs/tutorials/sbn_vimco.md shows this file section by section; a test runs it.
"""

from __future__ import annotations

import argparse

import torch


def main(steps: int = 1500, seed: int = 0) -> dict:
    # --8<-- [start:models]
    from blackbox_vae.data import load_dataset
    from blackbox_vae.models import DeepSBNGenModel, DeepSBNInfNet

    digits = load_dataset("digits", binarization="static")  # [N, 64] binary rows

    def fresh_models():
        torch.manual_seed(seed)
        # layers from the data up: z_1 has 32 units, z_2 16; latents are a tuple (z_1, z_2)
        return DeepSBNInfNet(64, [32, 16]), DeepSBNGenModel(64, [32, 16])
    # --8<-- [end:models]

    # --8<-- [start:train]
    from blackbox_vae import ScoreFunctionLoss, VIMCOLoss, log_likelihood_bound

    def test_bound(inf_net, gen_model):
        return log_likelihood_bound(inf_net, gen_model, digits.test, n_samples=500).mean().item()

    def train(loss):
        optimizer = torch.optim.Adam(loss.parameters(), lr=3e-3)
        for _ in range(steps):
            batch = digits.train[torch.randint(len(digits.train), (64,))]
            optimizer.zero_grad()
            loss(batch).backward()  # its value: the negative K-sample bound of this batch
            optimizer.step()
        return test_bound(loss.inf_net, loss.gen_model)

    results = {"untrained": test_bound(*fresh_models())}
    print(f"untrained: test log-likelihood >= {results['untrained']:.2f} nats")
    for name, make in {"VIMCO, K=5": lambda q, p: VIMCOLoss(q, p, n_samples=5),
                       "score function, K=5": lambda q, p: ScoreFunctionLoss(q, p, n_samples=5)}.items():
        loss = make(*fresh_models())
        results[name] = train(loss)
        print(f"{name}: final training bound {-loss.loss_history_[-1]:.2f}, "
              f"test log-likelihood >= {results[name]:.2f} nats")
    # --8<-- [end:train]
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    main(parser.parse_args().steps)
