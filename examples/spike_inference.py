"""Spike inference from calcium imaging: amortized inference through a simulator that has no gradient.

Run:
    python examples/spike_inference.py [--steps 1500] [--estimators vimco score-function nvil disarm]
        [--noise gaussian|poisson] [--out runs/spike_inference]

Binary spike trains s_t (the latents, one per time bin) drive a calcium concentration c_t = gamma c_{t-1} + A s_t,
seen through a saturating indicator, F_t = baseline + alpha c_t / (c_t + k_d), with Gaussian noise or Poisson
photon counts. The simulator is plain NumPy: `CalciumGenModel.log_prob` computes log p(F, s) outside autograd
and declares ``differentiable = False``, so only the estimators that score samples can train the inference
network (a small 1-D convolutional network over the trace, outputting one spike logit per bin); the
reparameterized and relaxed ones are refused when they are built, with a message that says why.

Each estimator trains the same network, amortized, on freshly simulated traces (known spikes are never used
in training), at the same K. On held-out traces it is scored by spike detection (a spike counts as found when
q(s_t = 1 | F) > 1/2 within one bin of it: precision, recall, F1) and by the correlation of q's spike
probabilities with the true train, against the classic non-amortized baseline: invert the saturation,
deconvolve the calcium decay (s_t ~ c_t - gamma c_{t-1}) and threshold, the threshold tuned on training traces
for the best F1. Writes ``OUT/results.{md,json}``; adapt `Simulator` to your own indicator.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent

from blackbox_vae import DistributionInfNet, GenModel
from blackbox_vae.losses.registry import build_loss


# --8<-- [start:simulator]
@dataclass
class Simulator:
    """The forward model, in NumPy. Replace it with yours: only `log_likelihood` and `simulate` are used."""

    bins: int = 200
    rate: float = 0.04  # spike probability per bin
    gamma: float = 0.9  # calcium decay per bin
    amplitude: float = 1.0  # calcium added by one spike
    k_d: float = 2.0  # indicator saturation: F rises as c / (c + k_d)
    alpha: float = 1.0
    baseline: float = 0.2
    noise: str = "gaussian"  # gaussian | poisson
    sigma: float = 0.08  # Gaussian noise
    photons: float = 40.0  # Poisson: expected photon count per unit of fluorescence

    def fluorescence(self, spikes: np.ndarray) -> np.ndarray:
        """Noise-free F for spike trains ``[..., bins]``. An explicit loop over time: the recursion is sequential
        (scipy.signal.lfilter would do it too, but the library does not depend on SciPy)."""
        calcium = np.zeros(spikes.shape[:-1])
        mean = np.empty(spikes.shape)
        for t in range(spikes.shape[-1]):
            calcium = self.gamma * calcium + self.amplitude * spikes[..., t]
            mean[..., t] = self.baseline + self.alpha * calcium / (calcium + self.k_d)
        return mean

    def simulate(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(traces [n, bins], spikes [n, bins])``."""
        spikes = (rng.random((n, self.bins)) < self.rate).astype(float)
        mean = self.fluorescence(spikes)
        if self.noise == "gaussian":
            return mean + self.sigma * rng.standard_normal(mean.shape), spikes
        return rng.poisson(self.photons * mean).astype(float), spikes

    def log_likelihood(self, traces: np.ndarray, spikes: np.ndarray) -> np.ndarray:
        """log p(F | s) summed over bins: traces ``[B, bins]``, spikes ``[B, K, bins]`` -> ``[B, K]``."""
        mean = self.fluorescence(spikes)
        observed = traces[:, None, :]
        if self.noise == "gaussian":
            terms = -0.5 * ((observed - mean) / self.sigma) ** 2 - math.log(self.sigma * math.sqrt(2 * math.pi))
        else:
            rate = self.photons * mean
            terms = observed * np.log(rate) - rate - np.vectorize(math.lgamma)(observed + 1)
        return terms.sum(-1)
# --8<-- [end:simulator]


# --8<-- [start:gen_model]
class CalciumGenModel(GenModel):
    """p(F, s) = prod_t Bernoulli(s_t; rate) p(F | s): the simulator's log-density, computed outside autograd."""

    differentiable = False

    def __init__(self, simulator: Simulator):
        super().__init__()
        self.simulator = simulator

    def forward(self, data, latents):
        return self

    def log_prob(self, data, latents):
        spikes = latents.detach().cpu().double().numpy()  # [B, K, bins]
        prior = spikes * math.log(self.simulator.rate) + (1 - spikes) * math.log1p(-self.simulator.rate)
        log_p = prior.sum(-1) + self.simulator.log_likelihood(data.detach().cpu().double().numpy(), spikes)
        return torch.as_tensor(log_p, dtype=latents.dtype, device=latents.device)

    def sample(self, n_samples=1):
        traces, spikes = self.simulator.simulate(n_samples, np.random.default_rng(int(torch.randint(2**31, ()))))
        return torch.as_tensor(traces, dtype=torch.float32), torch.as_tensor(spikes, dtype=torch.float32)
# --8<-- [end:gen_model]


# --8<-- [start:inf_net]
class SpikeInfNet(DistributionInfNet):
    """q(s | F) = prod_t Bernoulli(s_t; sigmoid(g(F)_t)), g a 1-D convolutional network over the whole trace."""

    def __init__(self, scale: float, channels: int = 32, width: int = 9):
        super().__init__()
        self.scale = scale  # traces are divided by it, so the network sees values of order 1
        self.net = nn.Sequential(
            nn.Conv1d(1, channels, width, padding=width // 2), nn.Tanh(),
            nn.Conv1d(channels, channels, width, padding=width // 2), nn.Tanh(),
            nn.Conv1d(channels, 1, 1))
        with torch.no_grad():
            self.net[-1].bias.fill_(-3.0)  # start near the prior's rate

    def distribution(self, data):
        logits = self.net(data.unsqueeze(1) / self.scale).squeeze(1)  # [B, bins]
        return Independent(Bernoulli(logits=logits, validate_args=False), 1)
# --8<-- [end:inf_net]


def detection_scores(probabilities: np.ndarray, spikes: np.ndarray, tolerance: int = 1) -> dict:
    """Precision, recall and F1 of spike detection (a detection within ``tolerance`` bins of a true spike counts
    as found, each true spike at most once), and the correlation of ``probabilities`` with the true train."""
    found = probabilities > 0.5
    true_positive = detections = truths = 0
    for detected, truth in zip(found, spikes.astype(bool)):
        positions, targets = list(np.flatnonzero(detected)), list(np.flatnonzero(truth))
        detections, truths = detections + len(positions), truths + len(targets)
        unmatched = set(targets)
        for position in positions:
            match = next((t for t in sorted(unmatched, key=lambda t: abs(t - position)) if abs(t - position) <= tolerance),
                         None)
            if match is not None:
                unmatched.discard(match)
                true_positive += 1
    precision = true_positive / max(detections, 1)
    recall = true_positive / max(truths, 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    correlation = float(np.corrcoef(probabilities.ravel(), spikes.ravel())[0, 1])
    return {"precision": precision, "recall": recall, "f1": f1, "correlation": correlation}


def deconvolution_baseline(simulator: Simulator, traces: np.ndarray) -> np.ndarray:
    """The classic non-amortized estimate: invert the saturation, then the calcium decay. ``[n, bins]``."""
    fluorescence = traces if simulator.noise == "gaussian" else traces / simulator.photons
    level = np.clip((fluorescence - simulator.baseline) / simulator.alpha, 0.0, 0.95)
    calcium = simulator.k_d * level / (1 - level)
    previous = np.concatenate([np.zeros((len(calcium), 1)), calcium[:, :-1]], axis=1)
    return (calcium - simulator.gamma * previous) / simulator.amplitude


def tuned_baseline(simulator: Simulator, rng: np.random.Generator) -> float:
    """The deconvolution's threshold with the best F1 on simulated training traces."""
    traces, spikes = simulator.simulate(200, rng)
    estimate = deconvolution_baseline(simulator, traces)
    thresholds = np.linspace(0.05, 1.5, 30)
    scores = [detection_scores((estimate > threshold).astype(float), spikes)["f1"] for threshold in thresholds]
    return float(thresholds[int(np.argmax(scores))])


# --8<-- [start:train]
def train(name: str, simulator: Simulator, args, seed: int = 0) -> tuple[SpikeInfNet, list[float], float]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    scale = simulator.alpha + simulator.baseline if simulator.noise == "gaussian" else simulator.photons
    inf_net, gen_model = SpikeInfNet(scale), CalciumGenModel(simulator)
    options = {"baseline": "leave-one-out"} if name == "score-function" else None
    loss = build_loss(name, inf_net, gen_model, args.k, data_dim=simulator.bins, options=options)
    optimizer = torch.optim.Adam(loss.parameters(), lr=args.lr)
    started = time.perf_counter()
    for step in range(args.steps):
        traces, _ = simulator.simulate(args.batch_size, rng)
        optimizer.zero_grad(set_to_none=True)
        loss(torch.as_tensor(traces, dtype=torch.float32)).backward()
        optimizer.step()
        if (step + 1) % max(args.steps // 5, 1) == 0:
            recent = loss.loss_history_[-max(args.steps // 5, 1):]
            print(f"[{name}] step {step + 1}: ELBO {-sum(recent) / len(recent):.2f} nats per trace", flush=True)
    return inf_net, loss.loss_history_, time.perf_counter() - started
# --8<-- [end:train]


def refusals(simulator: Simulator) -> dict:
    """What the estimators that need p's gradient say about this model."""
    messages = {}
    for name in ("elbo", "gumbel-softmax", "rebar"):
        try:
            build_loss(name, SpikeInfNet(1.0), CalciumGenModel(simulator), 2, data_dim=simulator.bins)
        except TypeError as error:
            messages[name] = str(error)
    return messages


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--estimators", nargs="+", default=["vimco", "score-function", "nvil", "disarm"])
    parser.add_argument("--k", type=int, default=8, help="samples (evaluations of p) per trace and step")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--noise", choices=("gaussian", "poisson"), default="gaussian")
    parser.add_argument("--test", type=int, default=200, help="held-out traces")
    parser.add_argument("--out", type=Path, default=Path("runs/spike_inference"))
    args = parser.parse_args(argv)
    simulator = Simulator(noise=args.noise)
    rng = np.random.default_rng(1234)
    test_traces, test_spikes = simulator.simulate(args.test, rng)
    threshold = tuned_baseline(simulator, rng)
    baseline = detection_scores((deconvolution_baseline(simulator, test_traces) > threshold).astype(float), test_spikes)
    baseline["correlation"] = float(np.corrcoef(deconvolution_baseline(simulator, test_traces).ravel(),
                                                test_spikes.ravel())[0, 1])
    rows = {"deconvolution + threshold (tuned)": {**baseline, "threshold": threshold}}
    for name in args.estimators:
        inf_net, history, seconds = train(name, simulator, args)
        with torch.no_grad():
            probabilities = torch.sigmoid(inf_net(torch.as_tensor(test_traces, dtype=torch.float32)).params_.base_dist
                                          .logits).numpy()
        rows[name] = {**detection_scores(probabilities, test_spikes), "seconds": round(seconds, 1),
                      "final_elbo": -float(np.mean(history[-max(args.steps // 10, 1):]))}
        print(f"[{name}] {rows[name]}", flush=True)
    results = {"simulator": asdict(simulator), "settings": {k: str(v) for k, v in vars(args).items()},
               "rows": rows, "refused": refusals(simulator)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = ["| method | precision | recall | F1 | correlation |", "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {name} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['correlation']:.3f} |"
              for name, r in rows.items()]
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    for name, message in results["refused"].items():
        print(f"{name}: refused: {message}")
    return results


if __name__ == "__main__":
    main()
