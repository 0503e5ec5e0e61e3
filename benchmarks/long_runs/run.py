"""The two headline cells at (close to) the papers' length, resumable: IWAE k = 5 on the one-layer Gaussian model
and VIMCO K = 5 on the three-layer SBN, both on statically binarized MNIST.

    OMP_NUM_THREADS=1 python benchmarks/long_runs/run.py [iwae-k5 vimco-k5] [--steps 300000]
        [--data ../shared/data] [--runs runs/long] [--results benchmarks/results/long_runs.md]

Each run is ``blackbox-vae train`` (continued with ``--resume`` when its directory holds a checkpoint, so an
interrupted session loses at most ``--checkpoint-every`` steps) and then ``blackbox-vae evaluate --k 5000`` on
all 10,000 test images. Runs in the background: ``nohup python benchmarks/long_runs/run.py > long.log &``.
The results table is rewritten after each evaluation; a rerun with more ``--steps`` trains further.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import subprocess
import sys
from pathlib import Path

import torch

STATIC = ["--data", "binarized-mnist", "--data-dir", "{data}/binarized_mnist"]

#: name: (flags, published test log-likelihood, source). Both use Burda et al.'s learning-rate schedule
#: (1e-3 x 10^(-i/7) over stages of 3^i epochs); VIMCO's own rate could not be checked here.
RUNS = {
    "iwae-k5": (["--model", "gaussian", "--layers", "50", "--hidden", "200,200", "--loss", "iwae", "--n-samples", "5",
                 "--batch-size", "20"], -87.63, "Burda et al. (2016), Appendix D, Table 3 (static binarization)"),
    "vimco-k5": (["--model", "sbn", "--layers", "200,200,200", "--loss", "vimco", "--n-samples", "5",
                  "--batch-size", "24"], -93.6, "Mnih & Rezende (2016), SBN 200-200-200, K = 5 (as quoted)"),
}
TEST_K = 5000


def command_line() -> list[str]:
    script = Path(sys.executable).with_name("blackbox-vae")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "blackbox_vae"]


def train(name: str, steps: int, data: Path, out: Path) -> None:
    flags, _, _ = RUNS[name]
    resume = (out / "checkpoint.pt").is_file()
    if resume and json.loads((out / "config.json").read_text())["steps"] >= steps and _step_reached(out) >= steps:
        return
    command = command_line() + ["train", *[f.format(data=data) for f in STATIC], *flags, "--lr", "1e-3",
                                "--lr-schedule", "iwae", "--steps", str(steps), "--eval-every", "10000",
                                "--log-every", "1000", "--eval-k", "100", "--eval-size", "1000",
                                "--checkpoint-every", "5000", "--seed", "0", "--progress", "false", "--out", str(out)]
    if resume:
        command.append("--resume")
    subprocess.run(command, check=True)


def _step_reached(out: Path) -> int:
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    return int(rows[-1]["step"]) if rows else 0


def evaluate(out: Path) -> dict:
    step = _step_reached(out)
    entries = json.loads((out / "evaluation.json").read_text()) if (out / "evaluation.json").is_file() else []
    done = [e for e in entries if e["k"] == TEST_K and e["n"] == 10_000 and e["step"] == step]
    if not done:
        subprocess.run(command_line() + ["evaluate", str(out), "--k", str(TEST_K)], check=True)
        entries = json.loads((out / "evaluation.json").read_text())
        done = [e for e in entries if e["k"] == TEST_K and e["n"] == 10_000 and e["step"] == step]
    return done[-1]


def write_table(results: dict[str, dict], path: Path) -> None:
    lines = ["| run | steps | epochs | training time | test log-likelihood (k = 5000, 10,000 images) | published | "
             "difference |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, entry in results.items():
        _, published, source = RUNS[name]
        batch = int(RUNS[name][0][RUNS[name][0].index("--batch-size") + 1])
        lines.append(f"| {name} | {entry['step']:,} | {entry['step'] * batch / 50_000:.0f} | "
                     f"{entry['training_seconds'] / 60:.0f} min | {entry['log_likelihood']:.2f} ± "
                     f"{entry['standard_error']:.2f} | {published} | {entry['log_likelihood'] - published:+.2f} |")
    sources = "; ".join(f"{name}: {RUNS[name][2]}" for name in results)
    path.write_text(f"<!-- written by benchmarks/long_runs/run.py on {platform.machine()}, torch "
                    f"{torch.__version__}; training time is the runs' wall clock, however they shared the machine "
                    "-->\n" + "\n".join(lines)
                    + f"\n\nPublished figures: {sources}.\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--steps", type=int, default=300_000)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data")
    parser.add_argument("--runs", type=Path, default=Path("runs/long"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/long_runs.md"))
    parser.add_argument("--train-only", action="store_true", help="skip the evaluation")
    args = parser.parse_args()
    results = {}
    for name in args.names:
        out = args.runs / name
        train(name, args.steps, args.data.resolve(), out)
        if args.train_only:
            continue
        entry = evaluate(out)
        rows = list(csv.DictReader((out / "metrics.csv").open()))
        results[name] = {**entry, "training_seconds": float(rows[-1]["seconds"])}
        (out / "long_run.json").write_text(json.dumps(results[name], indent=1) + "\n")
    if results:
        existing = {}
        for name in RUNS:
            saved = args.runs / name / "long_run.json"
            if name not in results and saved.is_file():
                existing[name] = json.loads(saved.read_text())
        merged = {**existing, **results}
        write_table({name: merged[name] for name in RUNS if name in merged}, args.results)  # in RUNS order


if __name__ == "__main__":
    main()
