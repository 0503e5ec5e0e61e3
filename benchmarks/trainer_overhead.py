"""Steps per second of `blackbox-vae train` before and after the command line was rebuilt on the Trainer,
measured interleaved in one run: the default job (VIMCO on the digits' SBN) and the 784-200-200-200 VIMCO
SBN (K = 5, batch 24) on binarized MNIST.

    python benchmarks/trainer_overhead.py [--baseline ecf916c] [--repeats 5] [--data ../shared/data]
        [--results benchmarks/results/trainer_overhead.md]

The baseline is a git worktree of the commit before the Trainer (checked out into a temporary folder and run
with PYTHONPATH pointing at it); each repeat runs both versions of each job back to back, in alternating
order. The figure is the training time the command reports (the loop, not the start-up), as steps per second.
Nothing else should run on the machine meanwhile.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # baseline_worktree.py, beside this file
from baseline_worktree import baseline_worktree  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
THREADS = None  # --threads
JOBS = {
    "default job (digits, sbn 200, vimco K=5, batch 64)": (["--steps", "6000"], 6000),
    "784-200-200-200 SBN, vimco K=5, batch 24": (
        ["--data", "binarized-mnist", "--data-dir", "{data}/binarized_mnist", "--model", "sbn", "--layers",
         "200,200,200", "--loss", "vimco", "--n-samples", "5", "--batch-size", "24", "--steps", "4000",
         "--eval-every", "4000", "--eval-size", "100"], 4000),
}


def seconds(code: Path | None, flags: list[str], out: Path) -> float:
    """The training time ``blackbox-vae train`` reports, running the package at ``code`` (None: this checkout)."""
    env = {**os.environ, "PYTHONPATH": str(code) if code else str(ROOT)}
    if THREADS:
        env["OMP_NUM_THREADS"] = str(THREADS)
    printed = subprocess.run([sys.executable, "-m", "blackbox_vae", "train", *flags, "--progress", "false",
                              "--overwrite", "--out", str(out)], env=env, check=True, capture_output=True,
                             text=True).stdout
    return float(re.search(r"trained \d+ steps in ([\d.]+) s", printed).group(1))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="ecf916c")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS of the runs (default: torch's, one per core)")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "trainer_overhead.md")
    args = parser.parse_args(argv)
    global THREADS
    THREADS = args.threads
    with baseline_worktree(args.baseline) as baseline, tempfile.TemporaryDirectory() as scratch:
        rows = []
        for job, (flags, steps) in JOBS.items():
            flags = [f.format(data=args.data) for f in flags]
            times = {"before": [], "after": []}
            for repeat in range(args.repeats):
                order = ("before", "after") if repeat % 2 == 0 else ("after", "before")
                for version in order:
                    code = baseline if version == "before" else None
                    times[version].append(seconds(code, flags, Path(scratch) / version))
                print(job, {k: v[-1] for k, v in times.items()}, flush=True)
            before, after = (statistics.median(times[v]) for v in ("before", "after"))
            ratios = [b / a for b, a in zip(times["before"], times["after"])]
            rows.append(f"| {job} | {steps / before:.1f} | {steps / after:.1f} | {before / after:.3f} | "
                        f"{min(ratios):.3f}-{max(ratios):.3f} |")
    text = (f"<!-- written by benchmarks/trainer_overhead.py on {platform.machine()}, torch {torch.__version__}, "
            f"{os.cpu_count()} cores, {args.threads or 'default'} threads, {args.repeats} interleaved repeats; baseline {args.baseline} -->\n"
            "| job | steps/s before (median) | steps/s after (median) | after / before | range of the repeats' ratios |\n"
            "| --- | --- | --- | --- | --- |\n" + "\n".join(rows) + "\n")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
