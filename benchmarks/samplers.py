"""Post-hoc samplers on MNIST: FID, precision and recall of every applicable sampler against the prior's samples.

    python benchmarks/samplers.py [--data-dir ../shared/data/mnist] [--runs runs/samplers] [--steps 50000]
        [--n 10000] [--draws 3] [--device cpu] [--only gaussian sbn] [--force LABEL ...]

1. The feature network (FID-MNIST): loaded from the cache, trained by ``blackbox-vae train-classifier`` if absent.
2. Two models, trained by the command line on dynamically binarized MNIST: a Gaussian-latent VAE (16
   latents, ELBO) and a two-layer sigmoid belief network (200-200, VIMCO with K=5). An interrupted training
   resumes from its checkpoint (``--resume``); a finished one is kept. Each is scored by ``blackbox-vae
   evaluate --k 1000 --limit 1000``.
3. For each model and each sampler that applies to its codes: the sampler is fitted on the training split
   (the code path of ``blackbox-vae sample --sampler``), and ``--draws`` sets of ``--n`` latents are
   decoded two ways and scored against the 10,000 test images on the feature network's features:
   binary images x ~ p(x|z) against the binarized test images (what the model models, and what
   ``blackbox-vae evaluate --fid`` scores), and the means E[x|z] against the grey-level test images (the
   usual choice of pythae's and the papers' tables). Each sampler's figures are cached in
   ``RUNS/MODEL/samplers/LABEL.json`` so an interrupted benchmark resumes where it stopped.
4. Writes ``benchmarks/results/samplers.{json,md}`` and ``docs/img/samplers-MODEL.png`` (36 decoded means per
   sampler).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from blackbox_vae.cli.checkpoint import load_checkpoint
from blackbox_vae.cli.commands import fitted_sampler, load_run
from blackbox_vae.metrics import labelled_images, load_feature_network, sample_quality

ROOT = Path(__file__).resolve().parents[1]

#: model -> the flags of `blackbox-vae train` that define it.
MODELS = {
    "gaussian": ["--model", "gaussian", "--layers", "16", "--hidden", "512,256", "--loss", "elbo", "--n-samples", "1"],
    "sbn": ["--model", "sbn", "--layers", "200,200", "--loss", "vimco", "--n-samples", "5"],
}
MODEL_TITLES = {"gaussian": "Gaussian-latent VAE (16 latents, MLP 784-512-256, ELBO)",
                "sbn": "Sigmoid belief network (two layers of 200 binary units, VIMCO K=5)"}

#: model -> (label, sampler, command-line options) for each sampler that applies to its codes.
SAMPLER_RUNS = {
    "gaussian": [("prior", "prior", {}), ("gmm-10", "gmm", {"components": 10}), ("flow-maf", "flow", {"flow": "maf"}),
                 ("flow-iaf", "flow", {"flow": "iaf", "fit_epochs": 20}), ("two-stage", "two-stage", {}),
                 ("markov-chain", "markov-chain", {"chain_steps": 100})],
    "sbn": [("prior", "prior", {}), ("bernoulli-mixture-10", "bernoulli-mixture", {"components": 10}),
            ("bernoulli-mixture-100", "bernoulli-mixture", {"components": 100}),
            ("autoregressive", "autoregressive", {"fit_epochs": 30}), ("markov-chain", "markov-chain", {"chain_steps": 100})],
}


def command_line() -> list[str]:
    """The installed ``blackbox-vae`` script beside this interpreter, else ``python -m blackbox_vae``."""
    script = Path(sys.executable).with_name("blackbox-vae")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "blackbox_vae"]


def ensure_feature_network(data_dir: Path):
    try:
        return load_feature_network("mnist")
    except FileNotFoundError:
        subprocess.run(command_line() + ["train-classifier", "--data", "mnist", "--data-dir", str(data_dir)], check=True)
        return load_feature_network("mnist")


def train_model(model: str, out: Path, data_dir: Path, steps: int, device: str) -> list[str]:
    """Trains (or resumes, or keeps) the run; returns the training command."""
    flags = ["--data", "mnist", "--data-dir", str(data_dir), *MODELS[model], "--steps", str(steps), "--batch-size",
             "100", "--lr", "1e-3", "--eval-every", "5000", "--eval-k", "100", "--eval-size", "1000", "--log-every",
             "1000", "--checkpoint-every", "2000", "--progress", "false", "--seed", "0", "--device", device,
             "--out", str(out)]
    checkpoint = out / "checkpoint.pt"
    if checkpoint.is_file() and load_checkpoint(checkpoint)["step"] >= steps:
        return flags
    resume = ["--resume", "--out", str(out), "--steps", str(steps), "--device", device] if checkpoint.is_file() else []
    print(f"[{model}] blackbox-vae train {' '.join(resume or flags)}", flush=True)
    subprocess.run(command_line() + ["train"] + (resume or flags), check=True)
    return flags


def test_log_likelihood(out: Path, device: str) -> dict:
    entries = json.loads((out / "evaluation.json").read_text()) if (out / "evaluation.json").is_file() else []
    matching = [e for e in entries if e["split"] == "test" and e["k"] == 1000 and e["n"] == 1000 and "sampler" not in e]
    if not matching:
        subprocess.run(command_line() + ["evaluate", str(out), "--k", "1000", "--limit", "1000", "--device", device],
                       check=True, stdout=subprocess.DEVNULL)
        entries = json.loads((out / "evaluation.json").read_text())
        matching = [e for e in entries if e["split"] == "test" and e["k"] == 1000 and e["n"] == 1000
                    and "sampler" not in e]
    return {key: matching[-1][key] for key in ("log_likelihood", "standard_error", "k", "n", "step")}


@torch.no_grad()
def decoded(run, sampler, n: int, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` latents from the sampler, decoded to their means and to binary samples: ``([n, 784], [n, 784])``."""
    means = torch.cat([run.gen_model.likelihood_mean(sampler.sample_latents(min(batch_size, n - start))).cpu()
                       for start in range(0, n, batch_size)]).reshape(n, -1)
    return means, torch.bernoulli(means)


def score(scores: list[dict]) -> dict:
    """Mean and standard deviation over draws of each figure."""
    summary = {}
    for key in ("fid", "precision", "recall"):
        values = torch.tensor([s[key] for s in scores], dtype=torch.float64)
        summary[key] = values.mean().item()
        summary[f"{key}_sd"] = values.std().item() if len(values) > 1 else 0.0
    return summary


def run_sampler(run, label: str, name: str, options: dict, references: dict, network, info, n: int, draws: int,
                cache: Path) -> dict:
    """Fits one sampler, scores ``draws`` draws of ``n`` images each way, and caches the figures."""
    path = cache / f"{label}.json"
    if path.is_file():
        return json.loads(path.read_text())
    started = time.perf_counter()
    sampler = fitted_sampler(run, name, options)
    fit_seconds = time.perf_counter() - started
    binary_scores, mean_scores, sample_seconds = [], [], []
    for draw in range(draws):
        torch.manual_seed(draw)
        started = time.perf_counter()
        means, binary = decoded(run, sampler, n)
        sample_seconds.append(time.perf_counter() - started)
        binary_scores.append(sample_quality(references["binary"], binary, network, info))
        mean_scores.append(sample_quality(references["grey"], means, network, info))
        if draw == 0:
            torch.save(means[:36].clone(), cache / f"{label}-grid.pt")
    result = {"label": label, "sampler": name, "options": options, "binary": score(binary_scores),
              "means": score(mean_scores), "fit_seconds": round(fit_seconds, 1),
              "sample_seconds_per_draw": round(sum(sample_seconds) / len(sample_seconds), 1),
              "fit_report": {k: float(v) for k, v in getattr(sampler, "fit_report_", {}).items()},
              "command": f"blackbox-vae sample RUN --sampler {name}" + "".join(
                  f" --{k.replace('_', '-')} {v}" for k, v in options.items())}
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"  {label}: FID {result['binary']['fid']:.2f} (binary), {result['means']['fid']:.2f} (means); "
          f"fit {fit_seconds:.0f} s", flush=True)
    return result


def reference_row(references: dict, train: dict, network, info, n: int) -> dict:
    """The training images themselves: the figures a perfect sampler would get."""
    binary = sample_quality(references["binary"], train["binary"][:n], network, info)
    grey = sample_quality(references["grey"], train["grey"][:n], network, info)
    return {"label": "training images", "sampler": None, "options": {},
            "binary": score([binary]), "means": score([grey])}


def save_grids(model: str, labels: list[str], cache: Path, path: Path) -> None:
    from blackbox_vae.cli.plots import save_image_grids

    panels = [(label, torch.load(cache / f"{label}-grid.pt", weights_only=True)) for label in labels]
    save_image_grids(panels, (28, 28), path, columns=3, title=f"{MODEL_TITLES[model]}: E[x|z] of 36 sampled latents",
                     panel_size=(3.2, 3.5))


def markdown(results: dict) -> str:
    lines = [f"Feature network: {results['feature_network']}. {results['n']:,} generated images per draw against "
             f"the {results['n_test']:,} MNIST test images; mean ± standard deviation over {results['draws']} draws "
             f"(one fit per sampler). Lower FID is better; precision (fidelity) and recall (diversity) are "
             f"Kynkäänniemi et al.'s with k = 3.", ""]
    for model, entry in results["models"].items():
        test = entry["test"]
        lines += [f"### {MODEL_TITLES[model]}", "",
                  f"Trained by `blackbox-vae train {' '.join(entry['train_flags'])}`; test log-likelihood "
                  f"{test['log_likelihood']:.2f} ± {test['standard_error']:.2f} nats (K={test['k']}, "
                  f"{test['n']} test images).", "",
                  "| sampler | FID, x ~ p(x\\|z) vs binarized test | precision | recall | FID, E[x\\|z] vs grey test "
                  "| precision | recall | fit (s) |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for row in entry["rows"]:
            binary, means = row["binary"], row["means"]

            def cell(figures, key, digits):
                spread = f" ± {figures[f'{key}_sd']:.{digits}f}" if round(figures[f"{key}_sd"], digits) else ""
                return f"{figures[key]:.{digits}f}{spread}"

            fit = f"{row['fit_seconds']:.0f}" if row.get("fit_seconds") is not None else ""
            label = f"*{row['label']}*" if row["sampler"] is None else f"`{row['label']}`"
            lines.append(f"| {label} | {cell(binary, 'fid', 2)} | {cell(binary, 'precision', 3)} | "
                         f"{cell(binary, 'recall', 3)} | {cell(means, 'fid', 2)} | {cell(means, 'precision', 3)} | "
                         f"{cell(means, 'recall', 3)} | {fit} |")
        lines.append("")
    lines.append(f"Measured on {results['device']}, torch {results['torch']}.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "samplers")
    parser.add_argument("--steps", type=int, default=50000)
    parser.add_argument("--n", type=int, default=10000, help="generated images per draw")
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", nargs="*", choices=tuple(MODELS), default=list(MODELS))
    parser.add_argument("--force", nargs="*", default=[], help="sampler labels to refit and rescore")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)

    network, info = ensure_feature_network(args.data_dir)
    images = labelled_images("mnist", args.data_dir)
    results = {"feature_network": info.name, "n": args.n, "draws": args.draws, "steps": args.steps,
               "device": f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)" if args.device == "cpu"
               else torch.cuda.get_device_name(args.device), "torch": torch.__version__, "models": {}}
    for model in args.only:
        out = args.runs / model
        flags = train_model(model, out, args.data_dir, args.steps, args.device)
        test = test_log_likelihood(out, args.device)
        run, _ = load_run(out, args.device)
        references = {"binary": run.dataset.test, "grey": images["test"][0]}
        results["n_test"] = len(references["grey"])
        generator = torch.Generator().manual_seed(0)
        train = {"grey": images["train"][0][:args.n]}
        train["binary"] = torch.bernoulli(train["grey"], generator=generator)
        cache = out / "samplers"
        cache.mkdir(parents=True, exist_ok=True)
        for label in args.force:
            (cache / f"{label}.json").unlink(missing_ok=True)
        print(f"[{model}] test log-likelihood {test['log_likelihood']:.2f}; samplers:", flush=True)
        rows = [reference_row(references, train, network, info, args.n)]
        for label, name, options in SAMPLER_RUNS[model]:
            rows.append(run_sampler(run, label, name, options, references, network, info, args.n, args.draws, cache))
        image_path = ROOT / "docs" / "img" / f"samplers-{model}.png"
        save_grids(model, [label for label, _, _ in SAMPLER_RUNS[model]], cache, image_path)
        shown = [flag if flag != str(args.data_dir) else "DIR" for flag in flags if flag != str(out)]
        results["models"][model] = {"train_flags": [f for f in shown if f != "--out"], "test": test, "rows": rows}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "samplers.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.results / "samplers.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
