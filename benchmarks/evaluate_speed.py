"""Speed of the test bound: `blackbox-vae evaluate`'s path against a plain hand-written loop over chunks.

    OMP_NUM_THREADS=1 python benchmarks/evaluate_speed.py [--images 10000] [--k 1000] [--threads 1]

The model is the one-layer 784-200 sigmoid belief network on statically binarized MNIST's test images
(random parameters: the cost does not depend on them). Three ways to compute the same k-sample bound:

- ``library``: `log_likelihood_bound` with its default chunks (what ``evaluate`` runs);
- ``library, 100 x 1000``: the chunks ``evaluate`` used before issue 18 (100 data points x 1000 samples);
- ``plain loop``: hand-written torch, chunks of 100 data points x 100 samples, the issue's reference.

Writes ``benchmarks/results/evaluate_speed.md``.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from blackbox_vae import log_likelihood_bound
from blackbox_vae.models.registry import build_models


@torch.no_grad()
def plain_loop(inf_net, gen_model, data: torch.Tensor, k: int, rows: int = 100, samples: int = 100) -> torch.Tensor:
    """The bound written directly against the SBN's two linear maps, the way a user would by hand."""
    encoder, decoder, prior = inf_net.conditionals[0], gen_model.conditionals[0], gen_model.prior_logits
    bounds = []
    for start in range(0, len(data), rows):
        x = data[start:start + rows]  # [b, D]
        logits = encoder(x).unsqueeze(1)  # [b, 1, H]
        sums = []
        for _ in range(0, k, samples):
            z = torch.bernoulli(torch.sigmoid(logits).expand(-1, samples, -1))  # [b, s, H]
            log_q = -F.binary_cross_entropy_with_logits(logits.expand_as(z), z, reduction="none").sum(-1)
            log_prior = -F.binary_cross_entropy_with_logits(prior.expand_as(z), z, reduction="none").sum(-1)
            x_logits = decoder(z)  # [b, s, D]
            log_lik = -F.binary_cross_entropy_with_logits(x_logits, x.unsqueeze(1).expand_as(x_logits),
                                                          reduction="none").sum(-1)
            sums.append(torch.logsumexp(log_prior + log_lik - log_q, dim=1))
        bounds.append(torch.logsumexp(torch.stack(sums, 1), 1) - math.log(k))
    return torch.cat(bounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/evaluate_speed.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = torch.from_numpy(np.load(args.data / "binarized_mnist" / "binarized_mnist.npz")["test"][:args.images])
    data = data.float().reshape(len(data), -1)
    torch.manual_seed(0)
    inf_net, gen_model = build_models("sbn", 784, layers=[200])
    ways = {
        "library (evaluate's default chunks)": lambda: log_likelihood_bound(inf_net, gen_model, data, args.k),
        "library, 100 x 1000 chunks (before)": lambda: log_likelihood_bound(inf_net, gen_model, data, args.k,
                                                                             batch_size=100, sample_chunk=1000),
        "plain loop, 100 x 100 chunks": lambda: plain_loop(inf_net, gen_model, data, args.k),
    }
    times, bounds = {}, {}
    for name, way in ways.items():
        started = time.perf_counter()
        bounds[name] = way().mean().item()
        times[name] = time.perf_counter() - started
        print(f"{name}: {times[name]:.1f} s, bound {bounds[name]:.3f}", flush=True)
    reference = times["plain loop, 100 x 100 chunks"]
    lines = [f"<!-- written by benchmarks/evaluate_speed.py: {args.images} test images, k = {args.k}, "
             f"{args.threads} thread(s), torch {torch.__version__}, {platform.machine()} -->",
             "| way | seconds | vs plain loop | mean bound |", "| --- | --- | --- | --- |"]
    lines += [f"| {name} | {seconds:.1f} | {seconds / reference:.2f}x | {bounds[name]:.2f} |"
              for name, seconds in times.items()]
    args.results.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
