"""Reproduce the binarized-MNIST experiments through the public command line.

    python benchmarks/reproduce/run.py sbn-200 [sbn-200-200-200 gaussian-50 gaussian-50-dynamic | all]
        [--budget reduced|full] [--device cpu|cuda] [--only LABEL-kK ...] [--data ../shared/data]
        [--runs runs/reproduce] [--results docs/results.md]

Each run is ``blackbox-vae train`` then ``blackbox-vae evaluate`` (test split), as a user would type them.
Per run it writes ``RUNS/EXPERIMENT/NAME/results.json``; per experiment a row per run in the table of
``docs/results.md`` (a rerun replaces its row) and a plot of the validation bound against steps and
seconds, ``docs/img/reproduce-EXPERIMENT.png``. Runs that already have ``results.json`` are skipped
(``--force`` reruns them).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from experiments import BUDGETS, EXPERIMENTS, Budget, Experiment, Run  # noqa: E402
from report import plot_experiment, update_results_table  # noqa: E402


def command_line() -> list[str]:
    """The installed ``blackbox-vae`` script beside this interpreter, else ``python -m blackbox_vae``."""
    script = Path(sys.executable).with_name("blackbox-vae")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "blackbox_vae"]


def train_flags(experiment: Experiment, run: Run, budget: Budget, out: Path, data: Path, device: str) -> list[str]:
    flags = [flag.format(data=data) for flag in experiment.data_flags] + list(experiment.model_flags) + list(run.flags)
    flags += ["--n-samples", str(run.n_samples), "--steps", str(budget.steps), "--batch-size", str(budget.batch_size),
              "--lr", str(budget.lr), "--eval-every", str(budget.eval_every), "--eval-k", str(budget.eval_k),
              "--log-every", str(budget.eval_every), "--checkpoint-every", str(budget.steps),
              "--device", device, "--out", str(out), "--progress", "false", "--seed", "0"]
    # The table's protocol is PyTorch's default initialization: every row was measured so, before --output-bias
    # existed (a rerun must reproduce its row).
    flags += ["--output-bias", "false"]
    if budget.eval_size is not None:
        flags += ["--eval-size", str(budget.eval_size)]
    return flags


def evaluate(out: Path, k: int, limit: int | None, device: str) -> dict:
    flags = ["evaluate", str(out), "--k", str(k), "--device", device]
    if limit is not None:
        flags += ["--limit", str(limit)]
    subprocess.run(command_line() + flags, check=True, stdout=subprocess.DEVNULL)
    entries = json.loads((out / "evaluation.json").read_text())
    return [e for e in entries if e["split"] == "test" and e["k"] == k][-1]  # the newest is last


def learning_curve(out: Path) -> list[dict]:
    with open(out / "metrics.csv") as file:
        return [{"step": int(row["step"]), "seconds": float(row["seconds"]), "valid_bound": float(row["valid_bound"])}
                for row in csv.DictReader(file) if row["valid_bound"]]


def committed_result(experiment: str, budget: str, run: str) -> dict | None:
    """A run's results as committed in ``benchmarks/results/reproduce-EXPERIMENT-BUDGET.json``, if there."""
    path = Path("benchmarks/results") / f"reproduce-{experiment}-{budget}.json"
    entries = json.loads(path.read_text()) if path.is_file() else []
    return next((entry for entry in entries if entry["run"] == run), None)


def reproduce(experiment: Experiment, run: Run, budget_name: str, runs_dir: Path, data: Path, device: str,
              force: bool) -> dict:
    budget = BUDGETS[budget_name]
    out = runs_dir / budget_name / experiment.name / run.name
    results_path = out / "results.json"
    if results_path.is_file() and not force:
        return json.loads(results_path.read_text())
    committed = committed_result(experiment.name, budget_name, run.name)
    if committed is not None and not force:  # measured earlier, its run directory since deleted
        return committed
    if out.exists():
        shutil.rmtree(out)
    flags = train_flags(experiment, run, budget, out, data, device)
    print(f"[{experiment.name}] {run.name}: blackbox-vae train {' '.join(flags)}", flush=True)
    started = time.perf_counter()
    subprocess.run(command_line() + ["train"] + flags, check=True)
    train_seconds = time.perf_counter() - started
    curve = learning_curve(out)
    test = evaluate(out, budget.test_k, budget.test_limit, device)
    headline = None
    if run.headline and budget.headline_test_k and budget.headline_test_k != budget.test_k:
        headline = evaluate(out, budget.headline_test_k, budget.test_limit, device)
    device_name = torch.cuda.get_device_name(device) if device.startswith("cuda") else (
        f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)")
    results = {
        "experiment": experiment.name, "title": experiment.title, "run": run.name, "estimator": run.label,
        "n_samples": run.n_samples, "budget": budget_name, "budget_settings": asdict(budget),
        "steps": budget.steps, "train_seconds": round(train_seconds, 1),
        "training_seconds_in_loop": curve[-1]["seconds"] if curve else None, "device": device_name,
        "test": test, "test_headline": headline, "final_valid_bound": curve[-1]["valid_bound"] if curve else None,
        "curve": curve, "published": run.published, "source": run.source,
        "command": "blackbox-vae train " + " ".join(flags),
    }
    results_path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"[{experiment.name}] {run.name}: test {test['log_likelihood']:.2f} ± {test['standard_error']:.2f} "
          f"(K={test['k']}, n={test['n']}) in {train_seconds:.0f} s", flush=True)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="+", help=f"'all' or any of {', '.join(EXPERIMENTS)}")
    parser.add_argument("--budget", choices=tuple(BUDGETS), default="reduced")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", nargs="*", help="run names (e.g. vimco-k5) to run; default all")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="folder with the data sets")
    parser.add_argument("--runs", type=Path, default=Path("runs/reproduce"))
    parser.add_argument("--results", type=Path, default=Path("docs/results.md"))
    parser.add_argument("--force", action="store_true", help="rerun runs that already have results")
    args = parser.parse_args(argv)
    names = list(EXPERIMENTS) if args.experiments == ["all"] else args.experiments
    unknown = [name for name in names if name not in EXPERIMENTS]
    if unknown:
        parser.error(f"unknown experiment(s) {unknown}; known: {', '.join(EXPERIMENTS)}")
    for name in names:
        experiment = EXPERIMENTS[name]
        results = []
        for run in experiment.runs:
            if args.only and run.name not in args.only:
                # kept in the summary and the plot when measured before
                committed = committed_result(experiment.name, args.budget, run.name)
                if committed is not None:
                    results.append(committed)
                continue
            results.append(reproduce(experiment, run, args.budget, args.runs, args.data, args.device, args.force))
            update_results_table(args.results, results[-1])
        if results:
            plot_experiment(experiment, results, args.results.parent / "img" / f"reproduce-{name}-{args.budget}.png")
            # the runs' results.json files, collected where the repository keeps measured figures
            summary = Path("benchmarks/results") / f"reproduce-{name}-{args.budget}.json"
            summary.parent.mkdir(parents=True, exist_ok=True)
            summary.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
