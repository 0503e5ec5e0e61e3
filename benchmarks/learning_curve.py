"""The main job's learning curve before and after issue 30's speed work: ``blackbox-vae train --steps 5000`` (the
README's job, run longer) from several seeds with the code before the work and the code now, each at its own
defaults (threads, optimizer). The speed work may change rounding and the order of random draws, not what is learned:
the bound at 5,000 steps must agree within the run-to-run spread.

    python benchmarks/learning_curve.py [--seeds 0 1 2] [--steps 5000] [--baseline 502c265]
        [--results benchmarks/results/learning_curve.md]

Before is a git worktree of ``--baseline`` run with PYTHONPATH pointing at it (as benchmarks/evaluate_deep_sbn.py
does); now is this checkout. The figure is the last validation bound of each run's metrics.csv (the command line's
own evaluation), and the training time it reports.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # baseline_worktree.py, beside this file
from baseline_worktree import baseline_worktree  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def train(source: Path, out: Path, seed: int, steps: int) -> tuple[float, float]:
    """(last validation bound, training seconds) of one run of the main job from ``source``."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    subprocess.run([sys.executable, "-m", "blackbox_vae", "train", "--steps", str(steps), "--seed", str(seed),
                    "--out", str(out), "--overwrite"], env=env, cwd=source, check=True, capture_output=True)
    with open(out / "metrics.csv") as file:
        rows = [row for row in csv.DictReader(file) if row["valid_bound"]]
    return float(rows[-1]["valid_bound"]), float(rows[-1]["seconds"])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--baseline", default="502c265")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "learning_curve.md")
    args = parser.parse_args(argv)
    cells: dict[str, list[tuple[float, float]]] = {}
    with baseline_worktree(args.baseline) as before, tempfile.TemporaryDirectory() as scratch:
        sources = {f"before ({args.baseline})": before, "now": ROOT}
        for index, seed in enumerate(args.seeds):
            for name in (sources if index % 2 == 0 else reversed(sources)):
                bound, seconds = train(sources[name], Path(scratch) / "run", seed, args.steps)
                cells.setdefault(name, []).append((bound, seconds))
                print(f"seed {seed} | {name}: bound {bound:.3f}, {seconds:.1f} s", flush=True)
    lines = [f"<!-- written by benchmarks/learning_curve.py on {platform.machine()}, torch {torch.__version__}, "
             f"{os.cpu_count()} cores, {args.steps} steps, seeds {args.seeds} -->",
             "| code | validation bound at the last step, per seed | mean | run-to-run spread (sd) | training s "
             "(median) |", "| --- | --- | --- | --- | --- |"]
    for name, results in cells.items():
        bounds = [bound for bound, _ in results]
        lines.append(f"| {name} | {', '.join(f'{b:.3f}' for b in bounds)} | {statistics.fmean(bounds):.3f} | "
                     f"{statistics.stdev(bounds):.3f} | {statistics.median(s for _, s in results):.1f} |")
    args.results.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
