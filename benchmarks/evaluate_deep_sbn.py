"""The k = 5000 test bound of the 784-200-200-200 SBN, drawing q's Bernoulli layers with ``torch.bernoulli`` (before)
and with `draw_bernoulli` (1[u < p], now), interleaved in one run.

    python benchmarks/evaluate_deep_sbn.py [--run benchmarks/long_runs/state/vimco-k5] [--images 300] [--repeats 2]
        [--results benchmarks/results/evaluate_deep_sbn.md]

The model is the long run's trained VIMCO SBN when its checkpoint is there (else the same architecture with random
parameters on binarized MNIST). Seconds for ``--images`` test images, extrapolated to the 10,000 of the split, on 1
and 2 threads; medians over repeats in alternating order. Nothing else should run on the machine.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from blackbox_vae.evaluation import log_likelihood_bound
from blackbox_vae.models import deep_sbn

ROOT = Path(__file__).resolve().parents[1]
DRAWS = {"torch.bernoulli (before)": torch.bernoulli, "draw_bernoulli (now)": deep_sbn.draw_bernoulli}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=ROOT / "benchmarks" / "long_runs" / "state" / "vimco-k5")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "evaluate_deep_sbn.md")
    args = parser.parse_args(argv)
    from blackbox_vae.cli.commands import load_run

    run, _ = load_run(args.run, "cpu")
    data = run.dataset.test[:args.images]
    cells: dict[tuple[int, str], list[tuple[float, float]]] = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for repeat in range(args.repeats):
            for name in (DRAWS if repeat % 2 == 0 else reversed(DRAWS)):
                deep_sbn.draw_bernoulli = DRAWS[name]  # what the models call
                torch.manual_seed(0)
                started = time.perf_counter()
                with torch.no_grad():
                    bound = log_likelihood_bound(run.inf_net, run.gen_model, data, 5000, batch_size=100)
                seconds = time.perf_counter() - started
                cells.setdefault((threads, name), []).append((seconds, bound.mean().item()))
                print(f"{threads} thread(s) | {name}: {seconds:.2f} s, bound {bound.mean().item():.3f}", flush=True)
    deep_sbn.draw_bernoulli = DRAWS["draw_bernoulli (now)"]
    before, now = DRAWS
    lines = [f"<!-- written by benchmarks/evaluate_deep_sbn.py on {platform.machine()}, torch {torch.__version__}, "
             f"{args.images} test images of {args.run.name}, k = 5000, {args.repeats} repeats -->",
             "| threads | before (s, 10,000 images) | now (s, 10,000 images) | before / now | mean bound before / now |",
             "| --- | --- | --- | --- | --- |"]
    scale = 10_000 / args.images
    for threads in (1, 2):
        a = statistics.median(s for s, _ in cells[(threads, before)]) * scale
        b = statistics.median(s for s, _ in cells[(threads, now)]) * scale
        bounds = f"{cells[(threads, before)][0][1]:.3f} / {cells[(threads, now)][0][1]:.3f}"
        lines.append(f"| {threads} | {a:.0f} | {b:.0f} | {a / b:.2f} | {bounds} |")
    args.results.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
