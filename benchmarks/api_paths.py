"""Is the distribution convenience path as fast as a hand-written InfNet/GenModel?

The same one-layer sigmoid belief network (784-200, batch 64) is written three ways:

- ``fused``: directly against InfNet/GenModel, log-probs by ``binary_cross_entropy_with_logits``
  summed before negating;
- ``direct``: directly against InfNet/GenModel, log-probs by ``torch.distributions.Bernoulli``
  objects built inside ``forward`` (the same arithmetic as the convenience path);
- ``convenience``: DistributionInfNet/DistributionGenModel (the library's SBNInfNet/SBNGenModel).

Each is trained with ScoreFunctionLoss; we report the median time of a
gradient step (forward + backward), interleaving the variants so that drifts
in machine load hit all of them. ``convenience / direct`` is the cost of the
base classes' vectorization; ``direct / fused`` is the cost of the generic
distribution object (``Bernoulli.log_prob`` negates the whole
``[batch, K, D]`` tensor before the sum).

Run:
    python benchmarks/api_paths.py [--device cuda] [--repeats 200]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.distributions import Bernoulli
from torch.nn.functional import binary_cross_entropy_with_logits

from blackbox_vae import GenModel, InfNet, ScoreFunctionLoss
from blackbox_vae.models import SBNGenModel, SBNInfNet


def bernoulli_log_prob(logits, value):  # sums over the last dim; broadcasts logits against value
    logits, value = torch.broadcast_tensors(logits, value)
    return -binary_cross_entropy_with_logits(logits, value, reduction="none").sum(-1)


class DirectInfNet(InfNet):
    def __init__(self, data_dim, latent_dim):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(data_dim, latent_dim))

    def forward(self, data):
        self.params_ = self.encoder(data).unsqueeze(1)  # [batch, 1, H]
        return self

    def sample(self, n_samples=1):
        probs = torch.sigmoid(self.params_).expand(-1, n_samples, -1)
        return torch.bernoulli(probs)  # [batch, K, H]

    def log_prob(self, latents):
        return bernoulli_log_prob(self.params_, latents)


class DirectGenModel(GenModel):
    def __init__(self, data_dim, latent_dim):
        super().__init__()
        self.prior_logits = nn.Parameter(torch.zeros(latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, data_dim))

    def forward(self, data, latents):
        self.params_ = self.decoder(latents)  # [batch, K, D]
        return self

    def log_prob(self, data, latents):
        return bernoulli_log_prob(self.prior_logits, latents) + bernoulli_log_prob(self.params_, data.unsqueeze(1))

    def sample(self, n_samples=1):
        z = torch.bernoulli(torch.sigmoid(self.prior_logits).expand(n_samples, -1))
        return torch.bernoulli(torch.sigmoid(self.decoder(z))), z


class DistributionsInfNet(DirectInfNet):
    def log_prob(self, latents):
        return Bernoulli(logits=self.params_, validate_args=False).log_prob(latents).sum(-1)


class DistributionsGenModel(DirectGenModel):
    def log_prob(self, data, latents):
        prior = Bernoulli(logits=self.prior_logits, validate_args=False).log_prob(latents).sum(-1)
        return prior + Bernoulli(logits=self.params_, validate_args=False).log_prob(data.unsqueeze(1)).sum(-1)


def step_time(loss, data, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    loss.zero_grad(set_to_none=True)
    loss(data).backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    data = torch.bernoulli(torch.full((args.batch_size, 784), 0.13, device=device))

    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch_size}")
    print(f"{'K':>4} {'fused ms':>9} {'direct ms':>10} {'convenience ms':>15} {'convenience/direct':>19} "
          f"{'direct/fused':>13}")
    for k in (1, 5, 50):
        losses = {
            "fused": ScoreFunctionLoss(DirectInfNet(784, 200), DirectGenModel(784, 200), k, validate=False),
            "direct": ScoreFunctionLoss(DistributionsInfNet(784, 200), DistributionsGenModel(784, 200), k,
                                        validate=False),
            "convenience": ScoreFunctionLoss(SBNInfNet(784, 200), SBNGenModel(784, 200), k, validate=False),
        }
        times = {name: [] for name in losses}
        for name, loss in losses.items():
            loss.to(device)
            for _ in range(10):  # warm-up
                step_time(loss, data, device)
        for _ in range(args.repeats):  # interleaved
            for name, loss in losses.items():
                times[name].append(step_time(loss, data, device))
        fused, direct, convenience = (statistics.median(times[n]) * 1e3 for n in ("fused", "direct", "convenience"))
        print(f"{k:>4} {fused:>9.3f} {direct:>10.3f} {convenience:>15.3f} {convenience / direct:>19.3f} "
              f"{direct / fused:>13.3f}")


if __name__ == "__main__":
    main()
