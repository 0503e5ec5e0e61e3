"""Does each speed trick on the hot path pay? Each one timed against its plain version, on the models of
benchmarks/pyro_comparison.py. A trick stays only where it saves >= 3% of a step on some model.

Run:
    python benchmarks/hot_path_tricks.py [--repeats 200] [--only NAME ...] [--out benchmarks/results/hot_path_tricks]

For each trick, a pair of variants (the trick, and the plain code a reader would write) is switched in
by replacing module attributes between steps, never inside the timed region; the two variants' steps
are interleaved (plain, trick, plain, ...) after warm-up, and the median of each is compared. The gain is
``(plain - trick) / plain``: the share of a step that the trick saves. Steps are the library's own, with
validation off (as pyro_comparison.py times them), batch 64, on the CPU with the machine's threads.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import Tensor

import blackbox_vae.gen_model as gen_model_module
import blackbox_vae.inf_net as inf_net_module
import blackbox_vae.latents as latents_module
import blackbox_vae.losses._checks as checks_module
import blackbox_vae.losses._importance as importance_module
import blackbox_vae.losses.base as base_module
import blackbox_vae.models.deep_sbn as deep_sbn_module
import blackbox_vae.models.gaussian_mlp as gaussian_module
from blackbox_vae import ELBOLoss, IWAELoss, RWSLoss, ScoreFunctionLoss, VIMCOLoss
from blackbox_vae.models import DeepSBNGenModel, DeepSBNInfNet, GaussianMLPGenModel, GaussianMLPInfNet


@contextlib.contextmanager
def replaced(*replacements: tuple[object, str, object]) -> Iterator[None]:
    """Sets ``owner.name = value`` for each triple, and restores the originals afterwards."""
    originals = [(owner, name, owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name))
                 for owner, name, _ in replacements]
    try:
        for owner, name, value in replacements:
            setattr(owner, name, value)
        yield
    finally:
        for owner, name, value in originals:
            setattr(owner, name, value)


# ------------------------------------------------------------------------------------ the variants
# Tricks the code no longer has are supplied here, so that their measurement can be repeated.
def _per_call_state_plain():
    """Per-call state stored through nn.Module.__setattr__, and the device check walking parameters() each call."""

    def plain_setattr(module, name, value):
        setattr(module, name, value)

    def check_device(self, data):
        param = next(self.parameters(), None)
        if param is not None and param.device != data.device:
            raise ValueError("device")

    modules = (inf_net_module, gen_model_module, base_module, deep_sbn_module, gaussian_module)
    return replaced(*[(module, "set_call_state", plain_setattr) for module in modules],
                    (base_module.Loss, "_check_device", check_device))


def _bce_functional(logits: Tensor, value: Tensor) -> Tensor:
    """The plain way: broadcast_tensors and F.binary_cross_entropy_with_logits."""
    logits, value = torch.broadcast_tensors(logits, value)
    return -torch.nn.functional.binary_cross_entropy_with_logits(logits, value, reduction="none").sum(-1)


def _rws_separate_wake_terms():
    original = RWSLoss._estimate

    def estimate(self, data):
        if self.phi_update != "wake":
            return original(self, data)
        _, log_q, log_p = self._draw(data)
        log_weights = (log_p - log_q).detach()
        bound = importance_module.log_mean_exp(log_weights)
        normalized_weights = torch.softmax(log_weights, dim=1)
        wake_theta = (normalized_weights * log_p).sum(dim=1).mean()
        wake_phi = (normalized_weights * log_q).sum(dim=1).mean()
        return -bound.mean(), -(wake_theta + wake_phi)
    return replaced((RWSLoss, "_estimate", estimate))


def _rws_bound_from_log_softmax():
    """RWS's reported bound from the log-normalizer log_softmax computes (removed: 2.0% of a step at best)."""
    original = RWSLoss._estimate

    def estimate(self, data):
        if self.phi_update != "wake":
            return original(self, data)
        _, log_q, log_p = self._draw(data)
        log_weights = (log_p - log_q).detach()
        log_normalized = torch.log_softmax(log_weights, dim=1)
        normalized_weights = log_normalized.exp()
        objective = math.log(self.n_samples) - (log_weights - log_normalized).mean()
        return objective, -(normalized_weights * (log_p + log_q)).sum(dim=1).mean()
    return replaced((RWSLoss, "_estimate", estimate))


def _small_k_matrix():
    """VIMCO's log-sum-exp of the other weights by a masked K x K matrix for K <= 8 (prefix/suffix scans above)."""
    scans = importance_module.log_sum_exp_others

    def log_sum_exp_others(log_weights):
        k = log_weights.shape[1]
        if k > 8:
            return scans(log_weights)
        diagonal = torch.eye(k, dtype=torch.bool, device=log_weights.device)
        return torch.logsumexp(log_weights.unsqueeze(1).masked_fill(diagonal, -float("inf")), dim=2)
    return replaced((importance_module, "log_sum_exp_others", log_sum_exp_others))


def _check_latents_fast_path():
    generic = checks_module.check_latents

    def check_latents(latents, batch, n_samples, where):
        if isinstance(latents, Tensor):
            if latents.dim() >= 2 and latents.shape[0] == batch and latents.shape[1] == n_samples:
                return
        elif type(latents) is tuple and all(type(leaf) is Tensor and leaf.dim() >= 2 and leaf.shape[0] == batch
                                            and leaf.shape[1] == n_samples for leaf in latents):
            return
        generic(latents, batch, n_samples, where)
    return replaced((base_module, "check_latents", check_latents))


def _map_latents_fast_path():
    generic = latents_module.map_latents

    def map_latents(fn, latents):
        if type(latents) is tuple and all(type(leaf) is Tensor for leaf in latents):
            return tuple(fn(leaf) for leaf in latents)
        return generic(fn, latents)
    return replaced((base_module, "map_latents", map_latents))


def _normal_log_prob_folded():
    def normal_log_prob(standardized, log_scale_sum):
        normalizer = log_scale_sum + standardized.shape[-1] * gaussian_module._HALF_LOG_2PI  # on the small side
        return -0.5 * standardized.pow(2).sum(-1) - normalizer
    return replaced((gaussian_module, "_normal_log_prob", normal_log_prob))


def _deep_sbn_unfused():
    """DeepSBNInfNet with the default sample_and_log_prob (sample, then log_prob) and a sample of its own."""

    @torch.no_grad()
    def sample(self, n_samples=1):
        z = torch.bernoulli(torch.sigmoid(self.params_).unsqueeze(1).expand(-1, n_samples, -1))
        latents = [z]
        for layer in range(1, len(self.conditionals)):
            latents.append(torch.bernoulli(torch.sigmoid(self._logits_above(layer, latents[-1]))))
        return tuple(latents)

    return replaced((DeepSBNInfNet, "sample", sample),
                    (DeepSBNInfNet, "sample_and_log_prob", inf_net_module.InfNet.sample_and_log_prob))


def _gaussian_unfused():
    return replaced((GaussianMLPInfNet, "rsample_and_log_prob", inf_net_module.InfNet.rsample_and_log_prob))


@dataclass
class Trick:
    name: str
    where: str
    in_code: bool  # whether the library's code has the trick now (else this benchmark supplies it)
    trick: Callable[[], contextlib.AbstractContextManager]
    plain: Callable[[], contextlib.AbstractContextManager]
    cells: tuple[str, ...]  # the benchmark cells it can affect


NOTHING = contextlib.nullcontext
ALL_CELLS = ("sbn-784-200 sf K=1", "sbn-784-200 rws K=2", "sbn-784-200x3 sf K=5", "sbn-100-20 sf K=2",
             "sbn-100-20 rws K=5", "gaussian-784-200 elbo K=1", "gaussian-100-20 elbo K=2", "gaussian-100-20 iwae K=5")
SBN_CELLS = tuple(c for c in ALL_CELLS if c.startswith("sbn"))
GAUSSIAN_CELLS = tuple(c for c in ALL_CELLS if c.startswith("gaussian"))
TRICKS = [
    Trick("per-call state (params_, log_q_/log_p_, the device check's parameter) without nn.Module.__setattr__",
          "_call_state.set_call_state, Loss._check_device", True, NOTHING, _per_call_state_plain, ALL_CELLS),
    Trick("Bernoulli log-likelihood: the ATen BCE kernel below 2^15 values, v.l - softplus(l) from there",
          "_distributions.bernoulli_log_prob (as deep_sbn calls it)", True,
          NOTHING, lambda: replaced((deep_sbn_module, "bernoulli_log_prob", _bce_functional)), SBN_CELLS),
    Trick("RWS wake terms merged into one weighted sum", "RWSLoss._estimate", True, NOTHING, _rws_separate_wake_terms,
          ("sbn-784-200 rws K=2", "sbn-100-20 rws K=5")),
    Trick("RWS's bound from its log-normalizer (log_softmax) instead of logsumexp", "RWSLoss._estimate", False,
          _rws_bound_from_log_softmax, NOTHING, ("sbn-784-200 rws K=2", "sbn-100-20 rws K=5")),
    Trick("VIMCO's K x K leave-one-out matrix for K <= 8", "_importance.log_sum_exp_others", False, _small_k_matrix,
          NOTHING, ("sbn-784-200 vimco K=2", "sbn-784-200 vimco K=5", "sbn-100-20 vimco K=5")),
    Trick("check_latents' fast path for a tensor or a tuple of tensors", "_checks.check_latents", False,
          _check_latents_fast_path, NOTHING, ALL_CELLS),
    Trick("map_latents' fast path for a tuple of tensors", "latents.map_latents", False, _map_latents_fast_path,
          NOTHING, SBN_CELLS),
    Trick("Gaussian log-density constants folded before the [batch, K] subtraction", "gaussian_mlp._normal_log_prob",
          False, _normal_log_prob_folded, NOTHING, GAUSSIAN_CELLS),
    Trick("DeepSBNInfNet's fused sample_and_log_prob", "DeepSBNInfNet.sample_and_log_prob", True, NOTHING,
          _deep_sbn_unfused, SBN_CELLS),
    Trick("GaussianMLPInfNet's fused rsample_and_log_prob", "GaussianMLPInfNet.rsample_and_log_prob", True, NOTHING,
          _gaussian_unfused, GAUSSIAN_CELLS),
]


# ----------------------------------------------------------------------------------------- the cells
def build_cell(cell: str, batch: int):
    """``(loss, data)`` for a cell such as ``"sbn-784-200x3 sf K=5"`` (model, estimator, K)."""
    model, estimator, k = cell.split()
    k = int(k.removeprefix("K="))
    family, data_dim, layer = model.split("-")
    data_dim = int(data_dim)
    width, _, depth = layer.partition("x")
    layers = [int(width)] * int(depth or 1)
    torch.manual_seed(0)
    data = torch.bernoulli(torch.full((batch, data_dim), 0.13))
    if family == "sbn":
        q, p = DeepSBNInfNet(data_dim, layers), DeepSBNGenModel(data_dim, layers)
        loss_class = {"sf": ScoreFunctionLoss, "rws": RWSLoss, "vimco": VIMCOLoss}[estimator]
        return loss_class(q, p, k, validate=False), data
    q = GaussianMLPInfNet(data_dim, layers[0], hidden=())
    p = GaussianMLPGenModel(data_dim, layers[0], hidden=(), likelihood="bernoulli")
    return {"elbo": ELBOLoss, "iwae": IWAELoss}[estimator](q, p, k, validate=False), data


def time_pair(trick: Trick, cell: str, batch: int, repeats: int) -> dict:
    loss, data = build_cell(cell, batch)
    variants = {"plain": trick.plain, "trick": trick.trick}

    def one(variant):
        with variants[variant]():
            loss.zero_grad(set_to_none=True)
            start = time.perf_counter()
            loss(data).backward()
            return time.perf_counter() - start

    for variant in variants:
        for _ in range(5):
            one(variant)
    times = {variant: [] for variant in variants}
    for _ in range(repeats):
        for variant in variants:
            times[variant].append(one(variant))
    plain, with_trick = statistics.median(times["plain"]), statistics.median(times["trick"])
    return {"cell": cell, "plain ms": plain * 1e3, "trick ms": with_trick * 1e3, "gain": (plain - with_trick) / plain}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--only", nargs="+", help="substrings of trick names")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/hot_path_tricks"))
    args = parser.parse_args(argv)
    tricks = [t for t in TRICKS if not args.only or any(s in t.name for s in args.only)]
    kept = {}  # with --only, the other tricks' rows of the results file stay as they were measured
    if args.only and args.out.with_suffix(".json").exists():
        kept = {r["trick"]: r for r in json.loads(args.out.with_suffix(".json").read_text())["tricks"]}
    results = []
    for trick in tricks:
        rows = [time_pair(trick, cell, args.batch_size, args.repeats) for cell in trick.cells]
        best = max(rows, key=lambda r: r["gain"])
        results.append({"trick": trick.name, "where": trick.where, "in_code": trick.in_code, "rows": rows,
                        "best_gain": best["gain"], "best_cell": best["cell"], "pays": best["gain"] >= 0.03})
        print(f"{trick.name}: best {best['gain'] * 100:+.1f}% ({best['cell']}); "
              + ", ".join(f"{r['cell']} {r['gain'] * 100:+.1f}%" for r in rows), flush=True)
    measured = {r["trick"]: r for r in results}
    results = [measured.get(t.name) or kept[t.name] for t in TRICKS if t.name in measured or t.name in kept]
    setup = (f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads, CPU; batch "
             f"{args.batch_size}; median of {args.repeats} interleaved steps per variant")
    lines = [setup, "", "| trick | where | best gain (cell) | all cells | in the code? |", "| --- | --- | --- | --- | --- |"]
    for r in results:
        cells = "; ".join(f"{row['cell']}: {row['gain'] * 100:+.1f}%" for row in r["rows"])
        verdict = ("kept" if r["in_code"] else "would pay: restore it") if r["pays"] else (
            "remove it (< 3%)" if r["in_code"] else "removed (< 3%)")
        lines.append(f"| {r['trick']} | `{r['where']}` | {r['best_gain'] * 100:+.1f}% ({r['best_cell']}) | {cells} | "
                     f"{verdict} |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps({"setup": setup, "tricks": results}, indent=1))


if __name__ == "__main__":
    main()
