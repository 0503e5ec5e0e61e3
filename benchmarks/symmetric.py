"""Symmetric equilibrium learning vs the ELBO (ZGR) on hierarchical Bernoulli VAEs: random-code and limiting-chain FID.

    python benchmarks/symmetric.py [--data-root ../shared/data] [--runs runs/symmetric] [--steps 8000]
        [--jobs 2] [--n 10000] [--draws 2] [--chain-steps 100] [--only mnist-ladder ...] [--export DIR]

Flach, Schlesinger & Shekhovtsov (AISTATS 2024) train a two-layer Bernoulli VAE, z0 (30 bits, uniform) ->
z1 (100 bits) -> x, by maximizing the ELBO (closed-form KLs, ZGR gradient) or by symmetric equilibrium
learning, and score samples from random codes (ancestral) and from the limiting distribution of the chain
x -> z ~ q(z|x) -> x ~ p(x|z). Their claim: symmetric learning keeps the limiting-chain FID close to the
random-code FID, while the ELBO's grows several-fold.

1. Trains, by the command line, each experiment (MNIST with the ladder and the reverse encoder, then
   Fashion-MNIST with the ladder) with both methods at equal steps, ``--jobs`` runs at a time (one thread
   each). An interrupted training resumes from its checkpoint; a finished one is kept.
2. Scores each run: the IWAE bound of the test log-likelihood (``blackbox-vae evaluate --k 1000 --limit
   1000``), and FID / precision / recall on the data set's cached feature network (FID-MNIST or its
   Fashion-MNIST twin: a small CNN classifier, *not* Inception) of ``--n`` images per draw from random codes
   (``--sampler prior``) and from the limiting chain (``--chain limiting --steps N``, chains from uniform
   noise), decoded two ways (binary x ~ p(x|z) against the binarized test images, and E[x|z] against the
   grey-level test images). Figures are cached per run in ``RUN/samplers/``.
3. Writes ``benchmarks/results/symmetric.{json,md}`` and ``docs/img/symmetric-EXPERIMENT.png``.

With ``--export DIR`` it instead writes ``--n`` PNGs per trained run from random codes and from the limiting
chain, and the test images (`blackbox-vae export-samples`), and prints the pytorch-fid command for each folder.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

from blackbox_vae.cli.checkpoint import load_checkpoint
from blackbox_vae.cli.commands import load_run
from blackbox_vae.metrics import labelled_images, load_feature_network

ROOT = Path(__file__).resolve().parents[1]


def _load_samplers_benchmark():
    """benchmarks/samplers.py's scoring helpers (one copy of the FID protocol for both benchmarks)."""
    spec = importlib.util.spec_from_file_location("samplers_benchmark", Path(__file__).with_name("samplers.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_samplers_benchmark()

#: experiment -> (data set, its folder under --data-root, encoder order, bits per layer). The repository's
#: README runs 30/100 bits everywhere; its paper used 50/200 for Fashion-MNIST (the last row).
EXPERIMENTS = {"mnist-ladder": ("mnist", "mnist", "ladder", "30,100"),
               "mnist-reverse": ("mnist", "mnist", "reverse", "30,100"),
               "fashion-mnist-ladder": ("fashion-mnist", "fashion_mnist", "ladder", "30,100"),
               "fashion-mnist-ladder-50-200": ("fashion-mnist", "fashion_mnist", "ladder", "50,200")}
#: method -> the flags of `blackbox-vae train` that select it
METHODS = {
    "elbo-zgr": ["--loss", "zgr", "--analytic-kl", "true", "--n-samples", "1"],
    "symmetric": ["--loss", "symmetric", "--n-samples", "1", "--dreams", "1", "--flip-noise", "0.001"],
}
MODEL_FLAGS = ["--hidden", "256"]


def train_flags(experiment: str, method: str, data_root: Path, steps: int, out: Path) -> list[str]:
    data, folder, order, layers = EXPERIMENTS[experiment]
    return ["--data", data, "--data-dir", str(data_root / folder), "--model", f"hvae-{order}", "--layers", layers,
            *MODEL_FLAGS,
            *METHODS[method], "--steps", str(steps), "--batch-size", "128", "--lr", "1e-3", "--eval-every",
            str(max(steps // 4, 1)), "--eval-k", "100", "--eval-size", "1000", "--log-every", "500",
            "--checkpoint-every", "2000", "--progress", "false", "--seed", "0", "--out", str(out)]


def train_all(jobs: list[tuple[str, str, Path, list[str]]], parallel: int, steps: int) -> None:
    """Runs the trainings that are not finished, ``parallel`` at a time, each on one thread."""
    pending = []
    for experiment, method, out, flags in jobs:
        checkpoint = out / "checkpoint.pt"
        if checkpoint.is_file() and load_checkpoint(checkpoint)["step"] >= steps:
            continue
        arguments = (["--resume", "--out", str(out), "--steps", str(steps)] if checkpoint.is_file() else flags)
        pending.append((f"{experiment}/{method}", bench.command_line() + ["train"] + arguments))
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    running: list[tuple[str, subprocess.Popen]] = []
    while pending or running:
        while pending and len(running) < parallel:
            label, command = pending.pop(0)
            print(f"[{label}] {' '.join(command[1:])}", flush=True)
            running.append((label, subprocess.Popen(command, env=environment)))
        label, process = running[0]
        if process.wait() != 0:
            raise SystemExit(f"[{label}] training failed (exit {process.returncode})")
        running.pop(0)


def test_log_likelihood(out: Path) -> dict:
    entries = json.loads((out / "evaluation.json").read_text()) if (out / "evaluation.json").is_file() else []
    matching = [e for e in entries if e["split"] == "test" and e["k"] == 1000 and e["n"] == 1000 and "sampler" not in e]
    if not matching:
        subprocess.run(bench.command_line() + ["evaluate", str(out), "--k", "1000", "--limit", "1000"], check=True,
                       stdout=subprocess.DEVNULL)
        return test_log_likelihood(out)
    return {key: matching[-1][key] for key in ("log_likelihood", "standard_error", "k", "n", "step")}


def last_metrics(out: Path) -> dict:
    """The last row of metrics.csv that has the per-bit information columns (and its training time)."""
    with open(out / "metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("active_bits")]
    row = rows[-1]
    return {"active_bits": int(float(row["active_bits"])), "bit_information": float(row["bit_information"]),
            "seconds": float(row["seconds"]) if row.get("seconds") else None}


def save_grids(experiment: str, runs: dict, path: Path) -> None:
    from blackbox_vae.cli.plots import save_image_grids

    panels = [(f"{method}: {'random codes' if kind == 'random' else 'limiting chain'}",
               torch.load(runs[method] / "samplers" / f"{kind}-grid.pt", weights_only=True))
              for method in METHODS for kind in ("random", "limiting")]
    save_image_grids(panels, (28, 28), path, title=f"{experiment}: E[x|z] of 36 samples", panel_size=(3.2, 3.6))


def markdown(results: dict) -> str:
    lines = [f"{results['steps']:,} Adam steps (batch 128, lr 1e-3) per run on {results['device']}; models: z0 = uniform bits -> "
             "z1 -> x (30 -> 100 bits unless an experiment's name says otherwise), tanh MLPs with one hidden layer of 256 units. FID on the data set's own small CNN classifier "
             f"(not Inception features), {results['n']:,} images per draw against the 10,000 test images, mean ± "
             f"standard deviation over {results['draws']} draws; limiting chain: {results['chain_steps']} steps of "
             "x -> z ~ q(z|x) -> x ~ p(x|z) from uniform noise. Test log-likelihood: IWAE bound, k = 1000, on a fixed "
             "random 1,000 test images. Active bits: latent bits whose mutual information with (x, their sampled "
             "parents) under q exceeds 0.01 nats.", ""]
    for experiment, entry in results["experiments"].items():
        lines += [f"- {experiment}: {EXPERIMENTS[experiment][3].replace(',', ' -> ')} bits"]
    lines += [""]
    for experiment, entry in results["experiments"].items():
        reference = entry["reference"]
        lines += [f"### {experiment}", "",
                  f"Training images themselves: FID {reference['binary']['fid']:.2f} (binary), "
                  f"{reference['means']['fid']:.2f} (grey).", "",
                  "| method | FID random codes (binary) | FID limiting chain (binary) | ratio | FID random (E[x\\|z]) | "
                  "FID limiting (E[x\\|z]) | ratio | test log-likelihood | active bits | train (s) |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for method, row in entry["methods"].items():
            random, limiting = row["random"], row["limiting"]

            def cell(figures):
                return f"{figures['fid']:.2f} ± {figures['fid_sd']:.2f}"

            ratio_binary = limiting["binary"]["fid"] / random["binary"]["fid"]
            ratio_means = limiting["means"]["fid"] / random["means"]["fid"]
            test = row["test"]
            seconds = f"{row['metrics']['seconds']:.0f}" if row["metrics"].get("seconds") else ""
            lines.append(f"| {method} | {cell(random['binary'])} | {cell(limiting['binary'])} | {ratio_binary:.2f} | "
                         f"{cell(random['means'])} | {cell(limiting['means'])} | {ratio_means:.2f} | "
                         f"{test['log_likelihood']:.2f} ± {test['standard_error']:.2f} | "
                         f"{row['metrics']['active_bits']} | {seconds} |")
        lines += ["", f"Samples: `docs/img/symmetric-{experiment}.png` (shown on the symmetric-learning docs page).", ""]
    lines.append(f"torch {results['torch']}.")
    return "\n".join(lines) + "\n"


def export_all(args) -> None:
    """``EXPORT/EXPERIMENT/METHOD/{random,limiting}/`` (``--n`` samples of each run, binary as the test images) and
    ``EXPORT/DATA-test/`` (the binary test images), with the pytorch-fid commands that score them."""
    from blackbox_vae.cli.export import export_samples

    commands = []
    for experiment in args.only:
        data = EXPERIMENTS[experiment][0]
        for method in METHODS:
            out = args.runs / experiment / method
            test = args.export / f"{data}-test"
            if not (test / "export.json").is_file():
                export_samples(out, min(args.n, 10000), test, from_data=True, overwrite=True, progress=False)
            for label, name, options in (("random", "prior", {}),
                                         ("limiting", "markov-chain", {"chain_steps": args.chain_steps})):
                folder = args.export / experiment / method / label
                if not (folder / "export.json").is_file():  # an interrupted export is redone; a finished one kept
                    export_samples(out, args.n, folder, sampler=name, sampler_options=options, overwrite=True,
                                   progress=False)
                print(f"exported {folder}", flush=True)
                commands.append(f"python -m pytorch_fid {folder} {test}")
    print("Inception FID (pip install pytorch-fid; it downloads its weights once):\n" + "\n".join(commands))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "symmetric")
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--jobs", type=int, default=2, help="trainings at a time")
    parser.add_argument("--n", type=int, default=10000, help="generated images per draw")
    parser.add_argument("--draws", type=int, default=2)
    parser.add_argument("--chain-steps", type=int, default=100)
    parser.add_argument("--only", nargs="*", choices=tuple(EXPERIMENTS), default=list(EXPERIMENTS))
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--export", type=Path, help="instead of scoring: write --n PNGs per trained run and sampler "
                        "(and the test images) under EXPORT, for pytorch-fid")
    args = parser.parse_args(argv)
    if args.export is not None:
        return export_all(args)

    jobs = [(experiment, method, args.runs / experiment / method,
             train_flags(experiment, method, args.data_root, args.steps, args.runs / experiment / method))
            for experiment in args.only for method in METHODS]
    train_all(jobs, args.jobs, args.steps)

    results = {"steps": args.steps, "n": args.n, "draws": args.draws, "chain_steps": args.chain_steps,
               "device": f"CPU ({platform.machine()}), one thread per run", "torch": torch.__version__,
               "experiments": {}}
    samplers = [("random", "prior", {}), ("limiting", "markov-chain", {"chain_steps": args.chain_steps})]
    for experiment in args.only:
        data, folder, _, _ = EXPERIMENTS[experiment]
        network, info = load_feature_network(data)
        images = labelled_images(data, args.data_root / folder)
        generator = torch.Generator().manual_seed(0)
        train = {"grey": images["train"][0][:args.n]}
        train["binary"] = torch.bernoulli(train["grey"], generator=generator)
        entry = {"feature_network": info.name, "methods": {}}
        runs = {}
        for method in METHODS:
            out = args.runs / experiment / method
            runs[method] = out
            run, _ = load_run(out)
            references = {"binary": run.dataset.test, "grey": images["test"][0]}
            if "reference" not in entry:
                entry["reference"] = bench.reference_row(references, train, network, info, args.n)
            cache = out / "samplers"
            cache.mkdir(parents=True, exist_ok=True)
            row = {"test": test_log_likelihood(out), "metrics": last_metrics(out),
                   "train_flags": [f if not f.startswith(str(args.data_root)) else "DIR" for f in
                                   train_flags(experiment, method, args.data_root, args.steps, out)
                                   if f != str(out)]}
            print(f"[{experiment}/{method}] test log-likelihood {row['test']['log_likelihood']:.2f}", flush=True)
            for label, name, options in samplers:
                row[label] = bench.run_sampler(run, label, name, options, references, network, info, args.n,
                                               args.draws, cache)
            entry["methods"][method] = row
        save_grids(experiment, runs, ROOT / "docs" / "img" / f"symmetric-{experiment}.png")
        results["experiments"][experiment] = entry
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / "symmetric.json").write_text(json.dumps(results, indent=1) + "\n")
        (args.results / "symmetric.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    sys.exit(main())
