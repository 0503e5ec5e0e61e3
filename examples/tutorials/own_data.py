"""Your data, your model: train on an .npy of binary vectors, a CSV of real values and a folder of RGB images,
and train a model of your own, through the command line and through the Trainer.

    python examples/tutorials/own_data.py [--steps 300] [--folder own_data]

The test suite runs it (tests/test_tutorials.py) with fewer steps.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def write_data(folder: Path) -> None:
    """Three data sets to stand in for yours."""
    # --8<-- [start:data]
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    # binary vectors: 2,000 rows of 64 correlated bits (blocks of 8 share a coin)
    coins = rng.random((2000, 8)) < 0.5
    bits = np.repeat(coins, 8, axis=1) ^ (rng.random((2000, 64)) < 0.05)
    np.save(folder / "bits.npy", bits.astype(np.uint8))
    # real values with a header row: 1,000 points near a noisy circle, in metres
    angle = rng.uniform(0, 2 * np.pi, 1000)
    points = np.stack([np.cos(angle), np.sin(angle)], 1) * 3 + rng.normal(0, 0.2, (1000, 2)) + 10
    np.savetxt(folder / "points.csv", points, delimiter=",", header="x_m,y_m", comments="")
    # RGB images: 300 small 12x12 PNGs of coloured squares, in two subfolders
    for index in range(300):
        image = np.zeros((12, 12, 3), dtype=np.uint8)
        top, left, size = rng.integers(0, 6), rng.integers(0, 6), rng.integers(3, 7)
        image[top:top + size, left:left + size] = rng.integers(64, 256, 3)
        where = folder / "squares" / ("train-a" if index % 2 else "train-b")
        where.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(where / f"{index:03d}.png")
    # --8<-- [end:data]


# --8<-- [start:factory]
# my_models.py: a model of your own, built by a factory the command line imports (--model my_models:build)
MY_MODELS = '''
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent
from blackbox_vae import DistributionGenModel, DistributionInfNet


class Encoder(DistributionInfNet):
    def __init__(self, data_dim, latents, hidden):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(data_dim, hidden), nn.Tanh(), nn.Linear(hidden, latents))

    def distribution(self, x):
        return Independent(Bernoulli(logits=self.net(x)), 1)


class Decoder(DistributionGenModel):
    def __init__(self, data_dim, latents, hidden):
        super().__init__()
        self.prior_logits = nn.Parameter(torch.zeros(latents))
        self.net = nn.Sequential(nn.Linear(latents, hidden), nn.Tanh(), nn.Linear(hidden, data_dim))

    def prior(self):
        return Independent(Bernoulli(logits=self.prior_logits), 1)

    def likelihood(self, z):
        return Independent(Bernoulli(logits=self.net(z)), 1)

    def likelihood_mean(self, z):  # for the image grids of `blackbox-vae sample`
        return torch.sigmoid(self.net(z))


def build(data_dim, image_shape, likelihood, latents=16, hidden=64):
    assert likelihood == "bernoulli", "this model is for binary data"
    return Encoder(data_dim, latents, hidden), Decoder(data_dim, latents, hidden)
'''
# --8<-- [end:factory]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--folder", type=Path, default=Path("own_data"))
    args = parser.parse_args(argv)
    folder, steps = args.folder, str(args.steps)
    write_data(folder)
    (folder / "my_models.py").write_text(MY_MODELS)
    sys.path.insert(0, str(folder))  # as running from the folder would: `my_models` is importable
    from blackbox_vae.cli import main as blackbox_vae

    def run(*flags: str) -> None:
        assert blackbox_vae([*flags]) == 0, flags

    # --8<-- [start:command_line]
    # binary vectors: a Bernoulli likelihood, valid and test rows cut by a seeded permutation
    run("train", "--data", f"{folder}/bits.npy", "--model", "sbn", "--layers", "16", "--loss", "vimco",
        "--steps", steps, "--out", f"{folder}/runs/bits", "--progress", "false")
    run("evaluate", f"{folder}/runs/bits", "--k", "100")
    # real values: a Gaussian likelihood, each column standardized (samples.csv is in metres again)
    run("train", "--data", f"{folder}/points.csv", "--standardize", "true", "--model", "gaussian", "--layers", "2",
        "--loss", "iwae", "--steps", steps, "--out", f"{folder}/runs/points", "--progress", "false")
    run("sample", f"{folder}/runs/points", "-n", "500")
    # RGB images: 8-bit levels binarized afresh at every draw; grids of samples every few steps
    run("train", "--data", f"{folder}/squares", "--model", "gaussian", "--layers", "8", "--loss", "iwae",
        "--steps", steps, "--snapshot-every", steps, "--out", f"{folder}/runs/squares", "--progress", "false")
    run("sample", f"{folder}/runs/squares", "-n", "36")
    # your own model: imported by its path, options as KEY=VALUE; evaluate, sample and resume work as for ours
    run("train", "--data", f"{folder}/bits.npy", "--model", "my_models:build", "--model-option", "latents=8",
        "--loss", "vimco", "--steps", steps, "--out", f"{folder}/runs/mine", "--progress", "false")
    run("evaluate", f"{folder}/runs/mine", "--k", "100")
    # --8<-- [end:command_line]

    # --8<-- [start:trainer]
    import torch

    import my_models
    from blackbox_vae import Trainer, VIMCOLoss
    from blackbox_vae.data import load_dataset

    torch.manual_seed(0)
    loss = VIMCOLoss(*my_models.build(64, None, "bernoulli", latents=8), n_samples=5)
    trainer = Trainer(loss, load_dataset(folder / "bits.npy"), out=folder / "runs/trainer", batch_size=64,
                      lr=1e-3, eval_every=100, progress=False)
    summary = trainer.fit(int(steps))  # again with resume=True after an interruption: it continues exactly
    # --8<-- [end:trainer]

    evaluations = {name: json.loads((folder / "runs" / name / "evaluation.json").read_text())[0]
                   for name in ("bits", "mine")}
    return {"bits": evaluations["bits"]["log_likelihood"], "mine": evaluations["mine"]["log_likelihood"],
            "trainer": summary["valid_bound"], "points": np.loadtxt(folder / "runs/points/samples.csv", delimiter=","),
            "squares": folder / "runs/squares/samples.png"}


if __name__ == "__main__":
    results = main()
    print({key: value for key, value in results.items() if key != "points"})
