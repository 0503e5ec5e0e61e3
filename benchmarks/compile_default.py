"""Does ``blackbox-vae train --compile true`` pay for itself? The measurement behind `compile_by_default`.

    OMP_NUM_THREADS=1 python benchmarks/compile_default.py [--steps 3000] [--device cpu]
        [--data ../shared/data] [--results benchmarks/results/compile_default.md]

Each case is trained twice through the command line, eagerly and compiled, with the same seed, one after
the other; the table gives the training wall time (compilation included: it happens in the first steps)
and the steady step time (the slope of metrics.csv's clock over the second half of the run), and the
number of steps after which compiling starts to win.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

CASES = {
    "default job (digits, SBN 64-200, VIMCO K=5, batch 64)": [],
    "SBN 784-200-200-200, VIMCO K=5, batch 24": ["--data", "binarized-mnist", "--data-dir", "{data}/binarized_mnist",
                                                 "--model", "sbn", "--layers", "200,200,200", "--batch-size", "24"],
    "Gaussian 784-200-200-50, IWAE k=5, batch 20": ["--data", "binarized-mnist", "--data-dir",
                                                    "{data}/binarized_mnist", "--model", "gaussian", "--layers", "50",
                                                    "--hidden", "200,200", "--loss", "iwae", "--batch-size", "20"],
}


def train(flags: list[str], out: Path) -> tuple[float, float]:
    """``(training seconds, steady seconds per step)`` of one run."""
    script = Path(sys.executable).with_name("blackbox-vae")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "blackbox_vae"]
    subprocess.run(command + ["train", *flags, "--out", str(out), "--progress", "false"], check=True,
                   stdout=subprocess.DEVNULL)
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    half = [row for row in rows if int(row["step"]) > int(rows[-1]["step"]) // 2 and row["valid_bound"] == ""]
    per_step = (float(half[-1]["seconds"]) - float(half[0]["seconds"])) / (int(half[-1]["step"]) - int(half[0]["step"]))
    return float(rows[-1]["seconds"]), per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/compile_default.md"))
    args = parser.parse_args()
    lines = [f"<!-- written by benchmarks/compile_default.py: {args.steps} steps, device {args.device}, torch "
             f"{torch.__version__}, {platform.machine()}, OMP_NUM_THREADS={__import__('os').environ.get('OMP_NUM_THREADS')} -->",
             "| case | eager: total s | compiled: total s | eager ms/step | compiled ms/step | compiled wins after |",
             "| --- | --- | --- | --- | --- | --- |"]
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for case, (name, flags) in enumerate(CASES.items()):
            flags = [f.format(data=args.data) for f in flags] + ["--steps", str(args.steps), "--log-every", "100",
                                                                 "--eval-every", str(args.steps), "--eval-size", "100",
                                                                 "--device", args.device, "--seed", "0"]
            eager = train(flags + ["--compile", "false"], Path(folder) / f"eager-{case}")
            compiled = train(flags + ["--compile", "true"], Path(folder) / f"compiled-{case}")
            saving = eager[1] - compiled[1]
            overhead = compiled[0] - compiled[1] * args.steps - (eager[0] - eager[1] * args.steps)
            wins = f"{overhead / saving:,.0f} steps" if saving > 0 else "never (slower per step)"
            results[name] = {"eager": eager, "compiled": compiled}
            lines.append(f"| {name} | {eager[0]:.1f} | {compiled[0]:.1f} | {eager[1] * 1e3:.2f} | "
                         f"{compiled[1] * 1e3:.2f} | {wins} |")
            print(lines[-1], flush=True)
    args.results.write_text("\n".join(lines) + "\n")
    args.results.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
