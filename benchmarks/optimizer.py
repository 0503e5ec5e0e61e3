"""The Trainer's step with torch's default Adam and with the fused Adam it now uses, on the paper models.

    python benchmarks/optimizer.py [--steps 600] [--repeats 3] [--data ../shared/data]
        [--results benchmarks/results/optimizer.md]

Each cell is the median, over interleaved repeats (default Adam, then fused, in alternating order), of the
training loop's milliseconds per step as `Trainer.fit` reports them, on 1 and on 2 threads (fixed with
``torch.set_num_threads``; the adaptive policy is off here). Nothing else should run on the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from hand_written_step import MODELS, ours  # noqa: E402  (the same models, built the same way)

ROOT = Path(__file__).resolve().parents[1]
OPTIMIZERS = {
    "torch.optim.Adam (default)": lambda parameters: torch.optim.Adam(parameters, lr=1e-3),
    "fused Adam (the Trainer's default)": None,
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "optimizer.md")
    args = parser.parse_args(argv)
    cells: dict[tuple[str, int, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for repeat in range(args.repeats):
                names = list(OPTIMIZERS) if repeat % 2 == 0 else list(reversed(OPTIMIZERS))
                for model, settings in MODELS.items():
                    for name in names:
                        ms = ours(settings, args.data, args.steps, Path(scratch) / "run", OPTIMIZERS[name])
                        cells.setdefault((model, threads, name), []).append(ms)
                        print(f"{model} | {threads} thread(s) | {name}: {ms:.2f} ms/step", flush=True)
    default, fused = OPTIMIZERS
    lines = [f"<!-- written by benchmarks/optimizer.py on {platform.machine()}, torch {torch.__version__}, "
             f"{os.cpu_count()} cores, {args.steps} steps, {args.repeats} interleaved repeats -->",
             "| model | threads | default Adam (ms/step) | fused Adam (ms/step) | default / fused |",
             "| --- | --- | --- | --- | --- |"]
    for model in MODELS:
        for threads in (1, 2):
            a = statistics.median(cells[(model, threads, default)])
            b = statistics.median(cells[(model, threads, fused)])
            lines.append(f"| {model} | {threads} | {a:.2f} | {b:.2f} | {a / b:.2f} |")
    args.results.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
