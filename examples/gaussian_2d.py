"""The classic first VAE: learn a 2-D correlated Gaussian with an MLP VAE and the reparameterized ELBO.

Run:
    python examples/gaussian_2d.py --steps 3000 --out runs/gaussian_2d.png

Prints the loss (the negative ELBO) as it trains and the correlation of the
generated points, and saves a PNG with true vs. generated samples and the
loss curve.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from blackbox_vae import ELBOLoss  # noqa: E402
from blackbox_vae.data import correlated_gaussian_2d  # noqa: E402
from blackbox_vae.models import GaussianMLPGenModel, GaussianMLPInfNet  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--n-samples", type=int, default=1, help="K, latent samples per data point")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/gaussian_2d.png"), help="where to save the PNG")
    return parser.parse_args(argv)


def main(argv=None) -> float:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    data = correlated_gaussian_2d(10_000, correlation=0.8, seed=args.seed)  # [N, 2]

    inf_net = GaussianMLPInfNet(data_dim=2, latent_dim=2, hidden=(64, 64))
    gen_model = GaussianMLPGenModel(data_dim=2, latent_dim=2, hidden=(64, 64), likelihood="gaussian")
    loss = ELBOLoss(inf_net, gen_model, n_samples=args.n_samples)
    optimizer = torch.optim.Adam(loss.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.steps)

    for step in range(1, args.steps + 1):
        batch = data[torch.randint(len(data), (args.batch_size,))]  # [B, 2]
        optimizer.zero_grad()
        loss(batch).backward()
        optimizer.step()
        scheduler.step()
        if step % max(1, args.steps // 10) == 0:
            recent = loss.loss_history_[-100:]
            print(f"step {step:6d}  loss (negative ELBO, mean of last {len(recent)}) {sum(recent) / len(recent):.4f}")

    generated, _ = gen_model.sample(len(data))  # [N, 2]
    true_corr = torch.corrcoef(data.T)[0, 1].item()
    generated_corr = torch.corrcoef(generated.T)[0, 1].item()
    recent = loss.loss_history_[-100:]
    final_loss = sum(recent) / len(recent)
    # The best achievable loss is the data's entropy, -E[log N(x)] = log(2 pi e) + log det(cov) / 2.
    entropy = (torch.log(torch.tensor(2 * torch.pi * torch.e)) + 0.5 * torch.logdet(torch.cov(data.T))).item()
    print(f"final loss {final_loss:.4f} (optimum: the data's entropy {entropy:.4f}); "
          f"correlation true {true_corr:.3f}, generated {generated_corr:.3f}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5))
    left.scatter(*data[:2000].T, s=3, alpha=0.4, label="true")
    left.scatter(*generated[:2000].T, s=3, alpha=0.4, label="generated")
    left.set(title="samples", xlabel="$x_1$", ylabel="$x_2$", aspect="equal")
    left.legend(markerscale=4)
    history = torch.tensor(loss.loss_history_)
    window = max(1, min(50, len(history) // 10))
    smoothed = history.unfold(0, window, 1).mean(1)  # moving average over `window` steps
    right.plot(history, lw=0.3, alpha=0.4, label="per step")
    right.plot(torch.arange(window - 1, len(history)), smoothed, lw=1.2, label=f"mean of {window}")
    right.axhline(entropy, color="k", ls="--", lw=1, label="optimum (data entropy)")
    right.set(title="training loss", xlabel="step", ylabel="negative ELBO (nats)",
              ylim=(entropy - 0.5, max(entropy + 2.0, smoothed[len(smoothed) // 10:].max().item() + 0.2)))
    right.legend()
    figure.tight_layout()
    figure.savefig(args.out, dpi=120)
    print(f"saved {args.out}")
    return final_loss


if __name__ == "__main__":
    main()
