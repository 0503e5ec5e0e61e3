"""What starting p(x|z)'s output biases at the data's mean buys: the same command-line run with and without it.

Run:
    python benchmarks/output_bias.py [--steps 5000] [--data ../shared/data] [--runs runs/output_bias]

One-layer SBN (784-200) trained with VIMCO, K = 5, on statically binarized MNIST (the reproduction's reduced
settings: batch 24, Adam 1e-3, seed 0), ``--output-bias true`` against ``false``; each scored with
``blackbox-vae evaluate --k 1000 --limit 1000`` (the same 1,000 test images). Both runs train at once, one
thread each. Writes ``benchmarks/results/output_bias.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "reproduce"))
from run import command_line  # noqa: E402


def train_command(output_bias: bool, steps: int, data: Path, out: Path) -> list[str]:
    return command_line() + [
        "train", "--data", "binarized-mnist", "--data-dir", str(data / "binarized_mnist"), "--model", "sbn",
        "--layers", "200", "--loss", "vimco", "--n-samples", "5", "--steps", str(steps), "--batch-size", "24",
        "--lr", "0.001", "--eval-every", str(steps), "--eval-k", "100", "--eval-size", "1000",
        "--log-every", str(steps), "--checkpoint-every", str(steps), "--seed", "0", "--progress", "false",
        "--output-bias", str(output_bias).lower(), "--out", str(out), "--overwrite"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--runs", type=Path, default=Path("runs/output_bias"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/output_bias"))
    args = parser.parse_args(argv)
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    outs = {bias: args.runs / f"output-bias-{str(bias).lower()}" for bias in (True, False)}
    jobs = [subprocess.Popen(train_command(bias, args.steps, args.data, out), env=environment,
                             stdout=subprocess.DEVNULL) for bias, out in outs.items()]
    if any(job.wait() for job in jobs):
        raise SystemExit("a training run failed")
    rows = []
    for bias, out in outs.items():
        subprocess.run(command_line() + ["evaluate", str(out), "--k", "1000", "--limit", "1000"], check=True,
                       env=environment, stdout=subprocess.DEVNULL)
        test = [e for e in json.loads((out / "evaluation.json").read_text()) if e["split"] == "test"][-1]
        rows.append({"output_bias": bias, "steps": args.steps, "test_log_likelihood": test["log_likelihood"],
                     "standard_error": test["standard_error"], "k": test["k"], "n": test["n"]})
    lines = [f"One-layer SBN 784-200, VIMCO K = 5, static binarized MNIST, batch 24, Adam 1e-3, seed 0, "
             f"{args.steps} steps; test bound k = 1000 on 1,000 test images", "",
             "| --output-bias | test log-likelihood |", "| --- | --- |"]
    lines += [f"| {str(r['output_bias']).lower()} | {r['test_log_likelihood']:.2f} ± {r['standard_error']:.2f} |"
              for r in rows]
    gap = rows[0]["test_log_likelihood"] - rows[1]["test_log_likelihood"]
    lines += ["", f"Difference (true - false): {gap:+.2f} nats, one seed, on the same test images."]
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(markdown)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
