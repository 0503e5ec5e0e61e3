"""The k = 5000 test bound of the 784-200-200-200 SBN, the code before issue 30 against the code now, interleaved
in one run.

    python benchmarks/evaluate_deep_sbn.py [--run benchmarks/long_runs/state/vimco-k5] [--images 300] [--repeats 2]
        [--baseline 502c265] [--results benchmarks/results/evaluate_deep_sbn.md]

Before is a git worktree of ``--baseline`` (default: the commit before issue 30's first change: ``torch.bernoulli``
draws, log-probabilities by ``Bernoulli.log_prob``-style elementwise passes), checked out into a temporary folder
and run with PYTHONPATH pointing at it; now is this checkout. Both load the same trained model (the long run's VIMCO
SBN, ``--run``) and compute the bound of ``evaluate`` (`log_likelihood_bound`, 100 images a batch) on the first
``--images`` test images, from the same seed, each in a fresh process. Seconds are extrapolated to the 10,000
images of the split, on 1 and 2 threads; medians over repeats in alternating order. The mean bounds of the two
differ only by the Monte Carlo error of k = 5000 (their draws differ), which the table gives as the standard error
of the per-image difference. Nothing else should run on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # baseline_worktree.py, beside this file
from baseline_worktree import baseline_worktree  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

#: what each process runs: load the run with that version's loader, time the bound, print seconds and bounds
MEASURE = """
import json, sys, time, torch
from blackbox_vae.cli.commands import load_run
from blackbox_vae.evaluation import log_likelihood_bound
run_dir, images, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
run = load_run(run_dir, "cpu")[0]
data = run.dataset.test[:images]
torch.manual_seed(0)
started = time.perf_counter()
with torch.no_grad():
    bound = log_likelihood_bound(run.inf_net, run.gen_model, data, 5000, batch_size=100)
print(json.dumps({"seconds": time.perf_counter() - started, "bounds": bound.tolist()}))
"""


def measure(source: Path, run: Path, images: int, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(source), "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-c", MEASURE, str(run), str(images), str(threads)], env=env, cwd=source,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=ROOT / "benchmarks" / "long_runs" / "state" / "vimco-k5")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--baseline", default="502c265")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "evaluate_deep_sbn.md")
    args = parser.parse_args(argv)
    run = args.run.resolve()
    cells: dict[tuple[int, str], list[dict]] = {}
    with baseline_worktree(args.baseline) as before:
        sources = {f"before ({args.baseline})": before, "now": ROOT}
        for threads in (1, 2):
            for repeat in range(args.repeats):
                for name in (sources if repeat % 2 == 0 else reversed(sources)):
                    result = measure(sources[name], run, args.images, threads)
                    cells.setdefault((threads, name), []).append(result)
                    mean = statistics.fmean(result["bounds"])
                    print(f"{threads} thread(s) | {name}: {result['seconds']:.2f} s, bound {mean:.3f}", flush=True)
    first, second = sources
    lines = [f"<!-- written by benchmarks/evaluate_deep_sbn.py on {platform.machine()}, torch {torch.__version__}, "
             f"{os.cpu_count()} cores, {args.images} test images of {args.run.name}, k = 5000, {args.repeats} "
             "repeats -->",
             f"| threads | {first} (s, 10,000 images) | now (s, 10,000 images) | before / now | mean bound before "
             "/ now | standard error of the difference |",
             "| --- | --- | --- | --- | --- | --- |"]
    scale = 10_000 / args.images
    for threads in (1, 2):
        a = statistics.median(r["seconds"] for r in cells[(threads, first)]) * scale
        b = statistics.median(r["seconds"] for r in cells[(threads, second)]) * scale
        x, y = cells[(threads, first)][0]["bounds"], cells[(threads, second)][0]["bounds"]
        differences = [u - v for u, v in zip(x, y)]
        error = statistics.stdev(differences) / len(differences) ** 0.5
        lines.append(f"| {threads} | {a:.0f} | {b:.0f} | {a / b:.2f} | {statistics.fmean(x):.3f} / "
                     f"{statistics.fmean(y):.3f} | {error:.3f} |")
    args.results.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
