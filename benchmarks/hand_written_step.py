"""The whole training step, ours against the same step written by hand in eager PyTorch with the default
``torch.optim.Adam``, on the paper models. Milliseconds per step; the goal (issue 30) is ours >= 1.3x faster.

    python benchmarks/hand_written_step.py [--steps 1000] [--repeats 3] [--threads 1 | 0] [--data ../shared/data]
        [--results benchmarks/results/hand_written_step.md]

Ours is `Trainer.fit` with its defaults (fused Adam, the library's estimators and models) and fixed threads,
timed over its loop (``steps`` steps; evaluation and checkpoints pushed past the end, one tiny final
evaluation). ``--threads N`` fixes both ways at N threads; ``--threads 0`` runs each at its default, as a user
meets them: ours at its thread policy (as many threads as idle cores), the hand-written loop at torch's (one
per core). By hand: the loop a user writes — a random batch of the training rows, ``zero_grad``, the
estimator's surrogate on hand-written log-probabilities (``binary_cross_entropy_with_logits``,
``torch.bernoulli``), ``backward``, ``Adam.step()``. VIMCO by hand uses the usual K x K leave-one-out matrix.
Repeats are interleaved (ours, hand; then hand, ours). Nothing else should run on the machine.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.nn.functional import binary_cross_entropy_with_logits, softplus

from blackbox_vae import Trainer
from blackbox_vae.cli.config import TrainConfig
from blackbox_vae.cli.training import build_run

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "784-200 SBN, VIMCO K=5, batch 24": dict(model="sbn", layers=[200], loss="vimco", batch_size=24),
    "784-200-200-200 SBN, VIMCO K=5, batch 24": dict(model="sbn", layers=[200, 200, 200], loss="vimco",
                                                    batch_size=24),
    "784-200-200-200 SBN, RWS K=5, batch 24": dict(model="sbn", layers=[200, 200, 200], loss="rws",
                                                  batch_size=24),
    "Gaussian 784-200-200-50, IWAE k=5, batch 20": dict(model="gaussian", layers=[50], hidden=[200, 200],
                                                        loss="iwae", batch_size=20),
}


def bce_log_prob(logits, value):
    logits, value = torch.broadcast_tensors(logits, value)
    return -binary_cross_entropy_with_logits(logits, value, reduction="none").sum(-1)


def hand_sbn(q, p, k: int, estimator: str):
    """VIMCO or RWS (wake-phi) on a deep SBN, written out: [B, K] log-probabilities, then the surrogate."""
    encoders, decoders, prior = list(q.conditionals), list(p.conditionals), p.prior_logits

    def surrogate(x):
        logits_q = encoders[0](x).unsqueeze(1)  # [B, 1, H]
        z = torch.bernoulli(torch.sigmoid(logits_q.detach()).expand(-1, k, -1))  # [B, K, H]
        log_q = bce_log_prob(logits_q, z)
        log_p = bce_log_prob(decoders[0](z), x.unsqueeze(1))
        for encoder, decoder in zip(encoders[1:], decoders[1:]):
            logits_q = encoder(z)
            z_above = torch.bernoulli(torch.sigmoid(logits_q.detach()))
            log_q = log_q + bce_log_prob(logits_q, z_above)
            log_p = log_p + bce_log_prob(decoder(z_above), z)
            z = z_above
        log_p = log_p + bce_log_prob(prior, z)
        log_w = log_p - log_q  # [B, K]
        if estimator == "rws":
            weights = torch.softmax(log_w.detach(), dim=1)
            return -(weights * (log_p + log_q)).sum(1).mean()
        bound = torch.logsumexp(log_w, 1) - math.log(k)  # VIMCO, leave-one-out by a K x K matrix
        w = log_w.detach()
        geometric = (w.sum(1, keepdim=True) - w) / (k - 1)
        eye = torch.eye(k, dtype=torch.bool)
        replaced = torch.where(eye, geometric.unsqueeze(2), w.unsqueeze(1))  # [B, K, K]: row k has w_k replaced
        without = torch.logsumexp(replaced, 2) - math.log(k)
        return -(bound + ((bound.detach().unsqueeze(1) - without) * log_q).sum(1)).mean()
    return surrogate


def hand_gaussian(q, p, k: int):
    encoder, decoder = q.encoder, p.decoder
    log_2pi = math.log(2 * math.pi)

    def surrogate(x):
        loc, raw = encoder(x).chunk(2, -1)
        scale = softplus(raw) + 1e-4
        eps = torch.randn(x.shape[0], k, loc.shape[-1])
        z = loc.unsqueeze(1) + scale.unsqueeze(1) * eps
        log_q = (-0.5 * eps.pow(2) - scale.log().unsqueeze(1) - 0.5 * log_2pi).sum(-1)
        log_p = (-0.5 * z.pow(2) - 0.5 * log_2pi).sum(-1) + bce_log_prob(decoder(z), x.unsqueeze(1))
        return -(torch.logsumexp(log_p - log_q, 1) - math.log(k)).mean()
    return surrogate


def build(settings: dict, data: Path, steps: int, out: Path):
    config = TrainConfig(data="binarized-mnist", data_dir=str(data / "binarized_mnist"), n_samples=5, steps=steps,
                         eval_every=10 * steps, checkpoint_every=10 * steps, log_every=steps, eval_size=24, eval_k=2,
                         out=str(out), **settings).validate()
    return config, build_run(config)


def ours(settings, data, steps, out, optimizer=None) -> float:
    """Milliseconds per step of `Trainer.fit` (``optimizer``: the Trainer's, None for its default)."""
    config, run = build(settings, data, steps, out)
    trainer = Trainer(run.loss, run.dataset, out, optimizer=optimizer, steps=steps, batch_size=config.batch_size, log_every=steps,
                      eval_every=10 * steps, checkpoint_every=10 * steps, eval_size=24, eval_k=2, progress=False,
                      threads=THREADS["ours"])
    return 1000 * trainer.fit(overwrite=True)["seconds"] / steps


def by_hand(settings, data, steps, out) -> float:
    config, run = build(settings, data, steps, out)
    torch.set_num_threads(THREADS["hand"])  # ours may have changed it (its default adapts to idle cores)
    q, p = run.loss.inf_net, run.loss.gen_model
    surrogate = hand_gaussian(q, p, 5) if settings["model"] == "gaussian" else hand_sbn(q, p, 5, settings["loss"])
    rows = run.dataset.train
    optimizer = torch.optim.Adam([*q.parameters(), *p.parameters()], lr=1e-3)
    started = time.perf_counter()
    for _ in range(steps):
        batch = rows[torch.randint(len(rows), (config.batch_size,))]
        optimizer.zero_grad()
        surrogate(batch).backward()
        optimizer.step()
    return 1000 * (time.perf_counter() - started) / steps


#: threads of each way: fixed by --threads N, or each one's default with --threads 0 (ours: 0, its policy of as
#: many threads as idle cores; by hand: torch's own default, one per core)
THREADS = {"ours": 1, "hand": 1}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="threads of both ways (0: each one's default)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "hand_written_step.md")
    args = parser.parse_args(argv)
    if args.threads:
        THREADS.update(ours=args.threads, hand=args.threads)
    else:
        THREADS.update(ours=0, hand=torch.get_num_threads())
    ways = {"ours": ours, "by hand": by_hand}
    cells: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for model, settings in MODELS.items():
                for name in (ways if repeat % 2 == 0 else reversed(ways)):
                    ms = ways[name](settings, args.data, args.steps, Path(scratch) / "run")
                    cells.setdefault((model, name), []).append(ms)
                    print(f"{model} | {name}: {ms:.2f} ms/step", flush=True)
    lines = [f"<!-- written by benchmarks/hand_written_step.py on {platform.machine()}, torch {torch.__version__}, "
             f"{os.cpu_count()} cores, "
             + (f"{args.threads} thread(s)" if args.threads else
                f"each at its default threads (ours: --threads 0; by hand: torch's {THREADS['hand']})")
             + f", {args.steps} steps, {args.repeats} interleaved repeats -->",
             "| model | ours (ms/step) | by hand, default Adam (ms/step) | hand / ours |",
             "| --- | --- | --- | --- |"]
    for model in MODELS:
        a, b = (statistics.median(cells[(model, name)]) for name in ways)
        lines.append(f"| {model} | {a:.2f} | {b:.2f} | {b / a:.2f} |")
    args.results.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
