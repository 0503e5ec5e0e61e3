"""Training speed by thread setting, on a quiet machine and beside one busy single-threaded process.

    python benchmarks/threads.py [--repeats 3] [--data ../shared/data] [--results benchmarks/results/threads.md]

Each cell is the training time `blackbox-vae train` reports (the loop, not the start-up), as steps per second,
for the default job and the 784-200-200-200 SBN (VIMCO, K = 5, batch 24) under three settings: torch's default
(one OpenMP thread per core), ``--threads 1``, and ``--threads 0`` (the command line's default policy). "busy"
runs a second process that spins one core (``while True: pass``) for the whole measurement, as a user's other
training or test run would. Repeats are interleaved (every setting once per repeat, in rotating order); the
table gives medians. Nothing else should run on the machine meanwhile.
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

ROOT = Path(__file__).resolve().parents[1]
JOBS = {
    "default job (digits, sbn 200, vimco K=5, batch 64)": ["--steps", "1500"],
    "784-200-200-200 SBN, vimco K=5, batch 24": [
        "--data", "binarized-mnist", "--data-dir", "{data}/binarized_mnist", "--model", "sbn", "--layers",
        "200,200,200", "--loss", "vimco", "--n-samples", "5", "--batch-size", "24", "--steps", "1000",
        "--eval-every", "1000", "--eval-size", "100"],
}
#: name -> (extra flags, environment): torch's default threads (the flag's "all cores"), one thread, the policy.
SETTINGS = {
    "torch's default (threads = cores)": (["--threads", str(os.cpu_count())], {}),
    "--threads 1": (["--threads", "1"], {}),
    "default policy (--threads 0)": ([], {}),
}


def steps_per_second(flags: list[str], env: dict[str, str], out: Path) -> float:
    printed = subprocess.run([sys.executable, "-m", "blackbox_vae", "train", *flags, "--progress", "false",
                              "--overwrite", "--out", str(out)], env={**os.environ, **env}, check=True,
                             capture_output=True, text=True).stdout
    steps, seconds = re.search(r"trained (\d+) steps in ([\d.]+) s", printed).groups()
    return int(steps) / float(seconds)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "threads.md")
    args = parser.parse_args(argv)
    cells: dict[tuple[str, str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for condition in ("quiet", "busy"):
                spinner = (subprocess.Popen([sys.executable, "-c", "while True: pass"]) if condition == "busy"
                           else None)
                try:
                    names = list(SETTINGS)
                    names = names[repeat % len(names):] + names[:repeat % len(names)]  # rotating order
                    for job, flags in JOBS.items():
                        for name in names:
                            extra, env = SETTINGS[name]
                            job_flags = [f.format(data=args.data) for f in flags] + extra
                            rate = steps_per_second(job_flags, env, Path(scratch) / "run")
                            cells.setdefault((job, name, condition), []).append(rate)
                            print(f"{job} | {name} | {condition}: {rate:.1f} steps/s", flush=True)
                finally:
                    if spinner is not None:
                        spinner.kill()
                        spinner.wait()
    lines = [f"<!-- written by benchmarks/threads.py on {platform.machine()}, torch {torch.__version__}, "
             f"{os.cpu_count()} cores, {args.repeats} interleaved repeats -->",
             "| job | threads | quiet (steps/s) | beside a busy process (steps/s) | busy / quiet |",
             "| --- | --- | --- | --- | --- |"]
    for job in JOBS:
        for name in SETTINGS:
            quiet = statistics.median(cells[(job, name, "quiet")])
            busy = statistics.median(cells[(job, name, "busy")])
            lines.append(f"| {job} | {name} | {quiet:.1f} | {busy:.1f} | {busy / quiet:.2f} |")
    args.results.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
