"""Gradient variance of every estimator at one fixed, trained model state (the bias-variance-cost table).

    python benchmarks/reproduce/variance.py [--run runs/reproduce/reduced/sbn-200/vimco-k5]
        [--gaussian-run runs/reproduce/reduced/gaussian-50/iwae-k5] [--draws 100] [--results docs/results.md]

The models come from a trained run (loaded with ``blackbox_vae.cli.commands.load_run``) and stay frozen. Each
estimator is built on them with the loss registry; estimator-owned state (NVIL's baseline network, the
moving averages of the baselines) is first warmed up for ``--warmup`` steps on training batches with only
that state learning. Then ``blackbox_vae.testing.gradient_variance`` draws ``--draws`` gradients of the
inference network on one fixed batch of 24 training images, and the median step time is measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from blackbox_vae.cli.commands import load_run
from blackbox_vae.losses.registry import build_loss
from blackbox_vae.testing import gradient_variance

SBN_ESTIMATORS = (  # (label, registry name, options, Ks)
    ("score function", "score-function", {}, (1, 5, 50)),
    ("score function, mean baseline", "score-function", {"baseline": "mean"}, (1, 5, 50)),
    ("score function, leave-one-out", "score-function", {"baseline": "leave-one-out"}, (5, 50)),
    ("NVIL", "nvil", {}, (1, 5, 50)),
    ("VIMCO", "vimco", {}, (5, 50)),
    ("RWS (wake)", "rws", {"phi_update": "wake"}, (5, 50)),
    ("RWS (wake-sleep)", "rws", {"phi_update": "wake-sleep"}, (5, 50)),
    ("Gumbel-softmax (temperature 0.5)", "gumbel-softmax", {"temperature": 0.5}, (1, 5, 50)),
    ("Gumbel-softmax, straight-through", "gumbel-softmax", {"temperature": 0.5, "straight_through": True},
     (1, 5, 50)),
)
GAUSSIAN_ESTIMATORS = (
    ("VAE (ELBO, reparameterized)", "elbo", {}, (1, 5, 50)),
    ("IWAE, reparameterized", "iwae", {}, (5, 50)),
    ("IWAE, STL", "iwae", {"gradient": "stl"}, (5, 50)),
    ("IWAE, DReG", "iwae", {"gradient": "dreg"}, (5, 50)),
)


def warm_up(loss, train, steps: int, batch_size: int) -> None:
    """Trains only what the estimator owns (baselines); the models' parameters stay as loaded."""
    own = [p for name, p in loss.named_parameters() if not name.startswith(("inf_net.", "gen_model."))]
    optimizer = torch.optim.Adam(own, lr=1e-3) if own else None
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        batch = train[torch.randint(len(train), (batch_size,), generator=generator)]
        value = loss(batch)
        if optimizer is not None:
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
    loss.zero_grad()


def median_step_seconds(loss, data, repeats: int = 20) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        loss(data).backward()
        times.append(time.perf_counter() - start)
    loss.zero_grad()
    return statistics.median(times)


def variance_table(run_dir: Path, estimators, draws: int, warmup: int) -> list[dict]:
    run, state = load_run(run_dir)
    for parameter in list(run.inf_net.parameters()) + list(run.gen_model.parameters()):
        parameter.requires_grad_(True)
    train = run.dataset.split("train")
    torch.manual_seed(0)
    batch = train[torch.randperm(len(train))[:24]]
    rows = []
    for label, name, options, ks in estimators:
        for k in ks:
            torch.manual_seed(0)
            loss = build_loss(name, run.inf_net, run.gen_model, k, data_dim=train.shape[1], validate=False, **options)
            warm_up(loss, train, warmup, 24)
            report = gradient_variance(loss, batch, draws, parameters="inf_net")
            rows.append({"estimator": label, "K": k, "variance": report.total,
                         "standard_error": report.total_standard_error,
                         "mean_log_variance": report.mean_log_variance,
                         "ms_per_step": median_step_seconds(loss, batch) * 1e3, "run": str(run_dir),
                         "step": state["step"]})
            print(f"{run_dir.name}: {label} K={k}: {report.total:.4g} ± {report.total_standard_error:.2g}",
                  flush=True)
    return rows


def markdown(rows: list[dict], title: str) -> str:
    # No mean log-variance column here: MNIST's always-blank border pixels give the encoder weights from
    # them exactly zero gradient, whose log-variance would swamp the mean.
    lines = [f"#### {title}", "",
             "| estimator | K | variance of q's gradient (trace ± s.e.) | ms / step |",
             "| --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row['estimator']} | {row['K']} | {row['variance']:.4g} ± {row['standard_error']:.2g} | "
                     f"{row['ms_per_step']:.2f} |")
    return "\n".join(lines)


def replace_section(path: Path, text: str) -> None:
    start, end = "<!-- variance start -->", "<!-- variance end -->"
    current = path.read_text() if path.is_file() else "# Results\n"
    if start in current:
        before, rest = current.split(start, 1)
        after = rest.split(end, 1)[1]
        current = f"{before}{start}\n{text}\n{end}{after}"
    else:
        current = current.rstrip("\n") + f"\n\n{start}\n{text}\n{end}\n"
    path.write_text(current)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/reproduce/reduced/sbn-200/vimco-k5"))
    parser.add_argument("--gaussian-run", type=Path, default=Path("runs/reproduce/reduced/gaussian-50/iwae-k5"))
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--results", type=Path, default=Path("docs/results.md"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/reproduce_variance.json"))
    parser.add_argument("--from-json", action="store_true", help="rewrite the docs table from --out, no measuring")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(True)
    if args.from_json:  # only rewrite the docs section from earlier figures
        saved = json.loads(args.out.read_text())
        sbn, gaussian, header = saved["sbn"], saved["gaussian"], saved["setup"]
    else:
        sbn = variance_table(args.run, SBN_ESTIMATORS, args.draws, args.warmup)
        gaussian = variance_table(args.gaussian_run, GAUSSIAN_ESTIMATORS, args.draws, args.warmup)
        header = (f"{args.draws} gradient draws per cell on one batch of 24 training images; estimator-owned "
                  f"state warmed up for {args.warmup} steps with the models frozen; torch {torch.__version__}, "
                  f"{torch.get_num_threads()} CPU threads.")
    text = "\n\n".join([header,
                        markdown(sbn, f"Discrete latents: the SBN 784-200 trained by `{args.run}`"),
                        markdown(gaussian, f"Gaussian latents: the model trained by `{args.gaussian_run}`")])
    replace_section(args.results, text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"setup": header, "sbn": sbn, "gaussian": gaussian}, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
