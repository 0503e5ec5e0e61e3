"""Train the same sigmoid belief network with every applicable estimator for the same wall-clock budget.

Run:
    python examples/estimators_compare.py --seconds 20 --out runs/estimators_compare.png
    python examples/estimators_compare.py --npz ../shared/data/binarized_mnist/binarized_mnist.npz --latents 200

Each estimator starts from the same initialization and trains for ``--seconds``
of wall-clock time (evaluation excluded). The PNG shows the validation bound
(a ``--eval-k``-sample importance-weighted bound) against seconds, and the
variance of the inference network's gradient at the common initial state
(``blackbox_vae.testing.gradient_variance``), measured after the estimator's
own state (NVIL's baseline network, moving averages) has been warmed up on
that state with the models frozen. The table printed at the end
has the same figures. Without ``--npz`` the data are binary vectors drawn from
a random teacher SBN (64 units), so that the script needs no files.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from blackbox_vae import (  # noqa: E402
    GumbelSoftmaxLoss,
    NVILBaseline,
    NVILLoss,
    RWSLoss,
    ScoreFunctionLoss,
    TemperatureSchedule,
    VIMCOLoss,
    log_likelihood_bound,
)
from blackbox_vae.models import SBNGenModel, SBNInfNet  # noqa: E402
from blackbox_vae.testing import gradient_variance  # noqa: E402


def estimators(k: int, data_dim: int) -> dict:
    """name -> (inf_net, gen_model) -> loss; every estimator that applies to Bernoulli latents."""
    return {
        f"score function (K={k})": lambda q, p: ScoreFunctionLoss(q, p, k),
        f"score function, leave-one-out (K={k})": lambda q, p: ScoreFunctionLoss(q, p, k, baseline="leave-one-out"),
        "NVIL (K=1)": lambda q, p: NVILLoss(q, p, 1, baseline_net=NVILBaseline(data_dim)),
        f"VIMCO (K={k})": lambda q, p: VIMCOLoss(q, p, k),
        f"RWS wake (K={k})": lambda q, p: RWSLoss(q, p, k, phi_update="wake"),
        f"RWS wake-sleep (K={k})": lambda q, p: RWSLoss(q, p, k, phi_update="wake-sleep"),
        "Gumbel-softmax (K=1)": lambda q, p: GumbelSoftmaxLoss(q, p, 1, temperature=TemperatureSchedule(
            initial=1.0, minimum=0.5, rate=1e-3, every=100)),
        "Gumbel straight-through (K=1)": lambda q, p: GumbelSoftmaxLoss(q, p, 1, temperature=0.5,
                                                                        straight_through=True),
    }


def load_data(args) -> tuple[torch.Tensor, torch.Tensor]:
    """(train [N, D], valid [M, D]) binary float tensors."""
    if args.npz is not None:
        arrays = np.load(args.npz, allow_pickle=False)
        return (torch.from_numpy(arrays["train"]).float(), torch.from_numpy(arrays["valid"][:args.n_valid]).float())
    generator = torch.Generator().manual_seed(1234)
    teacher_logits = torch.randn(16, 64, generator=generator) * 2  # a random teacher SBN, 16 -> 64
    codes = torch.bernoulli(torch.full((6000, 16), 0.3), generator=generator)
    data = torch.bernoulli(torch.sigmoid(codes @ teacher_logits - 2), generator=generator)
    return data[:5000], data[5000:5000 + args.n_valid]


def warm_up_estimator_state(loss, batch, steps: int, lr: float) -> None:
    """Trains only the estimator's own parameters (e.g. NVIL's baseline network) and settles its moving averages.

    The models stay at the common state, so every estimator's variance is measured on the same model.
    """
    own = [p for n, p in loss.named_parameters() if not n.startswith(("inf_net.", "gen_model."))]
    optimizer = torch.optim.Adam(own, lr=lr) if own else None
    for _ in range(steps):
        loss.zero_grad(set_to_none=True)
        value = loss(batch)
        if optimizer is not None:
            value.backward()
            optimizer.step()
    loss.zero_grad(set_to_none=True)


def train(name, build, initial, train_data, valid_data, args):
    inf_net, gen_model = copy.deepcopy(initial)
    loss = build(inf_net, gen_model)
    optimizer = torch.optim.Adam(loss.parameters(), lr=args.lr)
    generator = torch.Generator().manual_seed(args.seed)
    curve, elapsed, steps, next_eval = [], 0.0, 0, 0.0
    while True:
        if elapsed >= next_eval or elapsed >= args.seconds:
            bound = log_likelihood_bound(inf_net, gen_model, valid_data, n_samples=args.eval_k).mean().item()
            curve.append((elapsed, steps, bound))
            next_eval += args.seconds / args.n_evals
            if elapsed >= args.seconds:
                break
        start = time.perf_counter()
        batch = train_data[torch.randint(len(train_data), (args.batch_size,), generator=generator)]
        optimizer.zero_grad()
        loss(batch).backward()
        optimizer.step()
        elapsed += time.perf_counter() - start
        steps += 1
    print(f"{name:<40} {steps:>7} steps, validation bound {curve[-1][2]:9.3f}")
    return curve


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="training budget per estimator")
    parser.add_argument("--npz", type=Path, default=None, help="binarized MNIST .npz (train/valid/test arrays)")
    parser.add_argument("--latents", type=int, default=32, help="latent units of the one-layer SBN")
    parser.add_argument("--k", type=int, default=5, help="samples for the multi-sample estimators")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--eval-k", type=int, default=100, help="samples of the validation bound")
    parser.add_argument("--n-valid", type=int, default=500)
    parser.add_argument("--n-evals", type=int, default=10, help="evaluations per run")
    parser.add_argument("--variance-draws", type=int, default=100)
    parser.add_argument("--variance-warmup", type=int, default=300,
                        help="calls that train the estimator's own state (baselines) before measuring variance")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/estimators_compare.png"))
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    train_data, valid_data = load_data(args)
    data_dim = train_data.shape[1]
    initial = (SBNInfNet(data_dim, args.latents), SBNGenModel(data_dim, args.latents))
    with torch.no_grad():  # start the decoder's biases at the data's marginals, as is customary
        initial[1].decoder[-1].bias.copy_(torch.logit(train_data.mean(0).clamp(1e-3, 1 - 1e-3)))
    variance_batch = train_data[:args.batch_size]

    results = {}
    for name, build in estimators(args.k, data_dim).items():
        torch.manual_seed(args.seed)
        variance_loss = build(*copy.deepcopy(initial))
        warm_up_estimator_state(variance_loss, variance_batch, args.variance_warmup, args.lr)
        variance = gradient_variance(variance_loss, variance_batch, args.variance_draws, "inf_net")
        curve = train(name, build, initial, train_data, valid_data, args)
        results[name] = {"curve": curve, "inf_net_gradient_variance": variance.total,
                         "variance_standard_error": variance.total_standard_error}

    print(f"\n{'estimator':<40} {'steps':>7} {'valid bound':>12} {'q-grad variance':>16}")
    for name, result in results.items():
        _, steps, bound = result["curve"][-1]
        print(f"{name:<40} {steps:>7} {bound:>12.3f} {result['inf_net_gradient_variance']:>16.4g}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 2]})
    for name, result in results.items():
        seconds, _, bounds = zip(*result["curve"])
        left.plot(seconds, bounds, marker="o", ms=3, label=name)
    left.set(xlabel="training seconds", ylabel=f"validation bound (K={args.eval_k}), nats",
             title=f"same SBN, {args.seconds:g} s per estimator")
    left.legend(fontsize=8)
    names = list(results)
    right.barh(names, [results[n]["inf_net_gradient_variance"] for n in names],
               xerr=[results[n]["variance_standard_error"] for n in names])
    right.set(xscale="log", xlabel="variance of q's gradient (trace), initial state", title="gradient variance")
    right.invert_yaxis()
    right.tick_params(axis="y", labelsize=8)
    figure.tight_layout()
    figure.savefig(args.out, dpi=120)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print(f"saved {args.out} and {args.out.with_suffix('.json')}")
    return results


if __name__ == "__main__":
    main()
