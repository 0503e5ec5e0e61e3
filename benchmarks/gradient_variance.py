"""Gradient variance of the inference network's gradient, per estimator and K, with time per step.

Run:
    python benchmarks/gradient_variance.py [--draws 200] [--threads 1] [--out benchmarks/results/gradient_variance]

Three tables, each at a fixed model state and a fixed batch of 64:

1. discrete latents: a one-layer SBN (64 binary units from a random teacher,
   32 latents), score function, score function with leave-one-out baseline,
   VIMCO, RWS (wake-phi), ARM, DisARM, the unordered set estimator (K distinct samples), REBAR and RELAX,
   at K in {2, 6, 50} (K evaluations of p for each:
   ARM and DisARM use K / 2 antithetic pairs, REBAR and RELAX K // 3 samples of three evaluations each,
   their control variates first trained for 300 steps at the fixed model state);
2. categorical latents: the same data, 8 one-hot latents of 4 classes (MLPs of 64 units), leave-one-out
   score function, VIMCO, ARSM and the unordered set estimator at 7 and 49 evaluations of p (ARSM: 1 and 7
   draws of 7 pseudo-actions each);
3. continuous latents: a linear Gaussian model (8 observed, 4 latent), IWAE with
   reparameterized, STL and DReG gradients, at K in {1, 10, 50}.

Columns: total variance (trace of the covariance, ± its standard error),
mean log-variance over elements, and median seconds per step. Written as
Markdown and JSON under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from blackbox_vae import (ARMLoss, ARSMLoss, DisARMLoss, IWAELoss, REBARLoss, RELAXControlVariate, RELAXLoss, RWSLoss,
                          ScoreFunctionLoss, UnorderedSetLoss, VIMCOLoss)
from blackbox_vae.models import CategoricalGenModel, CategoricalInfNet, SBNGenModel, SBNInfNet
from blackbox_vae.testing import LinearGaussianGenModel, LinearGaussianInfNet, gradient_variance


def median_step_seconds(loss, data, repeats=30):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        loss.zero_grad(set_to_none=True)
        loss(data).backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def trained_control_variate(loss, data, steps=300):
    """REBAR's / RELAX's control variate trained on its variance objective at this model state (models fixed)."""
    optimizer = torch.optim.Adam(loss.control_variate_parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss(data).backward()
        optimizer.step()
    loss.zero_grad(set_to_none=True)
    return loss


def discrete_setup():
    generator = torch.Generator().manual_seed(1234)
    teacher = torch.randn(16, 64, generator=generator) * 2
    codes = torch.bernoulli(torch.full((64, 16), 0.3), generator=generator)
    data = torch.bernoulli(torch.sigmoid(codes @ teacher - 2), generator=generator)
    torch.manual_seed(0)
    inf_net, gen_model = SBNInfNet(64, 32), SBNGenModel(64, 32)
    estimators = {
        "score function": lambda k: ScoreFunctionLoss(inf_net, gen_model, k),
        "score function, leave-one-out": lambda k: ScoreFunctionLoss(inf_net, gen_model, k, baseline="leave-one-out"),
        "VIMCO": lambda k: VIMCOLoss(inf_net, gen_model, k),
        "RWS (wake-phi)": lambda k: RWSLoss(inf_net, gen_model, k),
        "ARM": lambda k: ARMLoss(inf_net, gen_model, k),
        "DisARM": lambda k: DisARMLoss(inf_net, gen_model, k),
        "unordered set": lambda k: UnorderedSetLoss(inf_net, gen_model, k),
        # three evaluations of p per sample (b, z, z~): K // 3 samples; the control variate trained first
        "REBAR (trained)": lambda k: trained_control_variate(REBARLoss(inf_net, gen_model, k // 3), data),
        "RELAX (trained)": lambda k: trained_control_variate(
            RELAXLoss(inf_net, gen_model, k // 3, RELAXControlVariate(64, 32)), data),
    }
    return data, estimators, (2, 6, 50)  # even K: ARM and DisARM spend K evaluations on K / 2 pairs


def categorical_setup():
    """The SBN table's data, encoded by 8 one-hot latents of 4 classes. ARSM evaluates p at 1 + 4 * 3 / 2 = 7
    pseudo-actions per draw, so K counts evaluations (7 and 49): ARSM makes K / 7 draws."""
    data = discrete_setup()[0]
    torch.manual_seed(0)
    inf_net, gen_model = CategoricalInfNet(64, 8, 4, hidden=(64,)), CategoricalGenModel(64, 8, 4, hidden=(64,))
    estimators = {
        "score function, leave-one-out": lambda k: ScoreFunctionLoss(inf_net, gen_model, k, baseline="leave-one-out"),
        "VIMCO": lambda k: VIMCOLoss(inf_net, gen_model, k),
        "ARSM": lambda k: ARSMLoss(inf_net, gen_model, k // 7),
        "unordered set": lambda k: UnorderedSetLoss(inf_net, gen_model, k),
    }
    return data, estimators, (7, 49)


def continuous_setup():
    torch.manual_seed(0)
    inf_net, gen_model = LinearGaussianInfNet(8, 4), LinearGaussianGenModel(8, 4)
    data = torch.randn(64, 8)
    estimators = {f"IWAE, {g}": (lambda g: lambda k: IWAELoss(inf_net, gen_model, k, gradient=g))(g)
                  for g in ("reparam", "stl", "dreg")}
    return data, estimators, (1, 10, 50)


def run_table(title, setup, draws):
    data, estimators, ks = setup()
    rows = []
    for k in ks:
        for name, build in estimators.items():
            if name.startswith(("score function, leave", "VIMCO", "RWS")) and k < 2:
                continue
            if name.startswith(("REBAR", "RELAX")) and k < 3:
                continue
            loss = build(k)
            report = gradient_variance(loss, data, draws, parameters="inf_net")
            rows.append({"estimator": name, "K": k, "total_variance": report.total,
                         "standard_error": report.total_standard_error,
                         "mean_log_variance": report.mean_log_variance,
                         "seconds_per_step": median_step_seconds(loss, data)})
    lines = [f"### {title}", "", "| estimator | K | variance of q's gradient (trace) | mean log-variance | ms / step |",
             "| --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row['estimator']} | {row['K']} | {row['total_variance']:.4g} ± {row['standard_error']:.2g} | "
                     f"{row['mean_log_variance']:.2f} | {row['seconds_per_step'] * 1e3:.2f} |")
    return rows, "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gradient_variance"))
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: the timings of small models, undisturbed by a thread pool)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    header = (f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; "
              f"{args.draws} gradient draws per cell, batch 64")
    discrete_rows, discrete_md = run_table("Discrete latents: one-layer SBN, 64-32", discrete_setup, args.draws)
    categorical_rows, categorical_md = run_table("Categorical latents: 8 one-hot latents of 4 classes, MLPs of 64",
                                                 categorical_setup, args.draws)
    continuous_rows, continuous_md = run_table("Continuous latents: linear Gaussian, 8-4", continuous_setup, args.draws)
    markdown = "\n\n".join([header, discrete_md, categorical_md, continuous_md]) + "\n"
    print(markdown)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(markdown)
    args.out.with_suffix(".json").write_text(json.dumps({"setup": header, "discrete": discrete_rows,
                                                         "categorical": categorical_rows,
                                                         "continuous": continuous_rows}, indent=1))


if __name__ == "__main__":
    main()
