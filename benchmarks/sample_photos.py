"""Real photographs nobody here made, from a folder, through the command line: scikit-learn's two bundled sample
images (`sklearn.datasets.load_sample_images`, offline) cut into 32x32 RGB patches written as PNG files, then
`blackbox-vae train --data FOLDER` with the NVAE preset on their 8-bit levels (a discretized logistic mixture),
`evaluate` (the test bound in bits per dimension) and `sample`.

    OMP_NUM_THREADS=2 python benchmarks/sample_photos.py [--steps 800] [--runs runs/sample_photos]
        [--results benchmarks/results/sample_photos.md] [--figure docs/img/sample_photos.png]

Resumable: a rerun continues the training from its checkpoint.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
PATCH = 32


def write_patches(folder: Path) -> int:
    """Every non-overlapping 32x32 patch of the two photographs, as PNG files in one subfolder per photograph."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    count = 0
    for name, image in zip(bunch.filenames, bunch.images):  # uint8 [427, 640, 3] each
        where = folder / Path(name).stem
        where.mkdir(parents=True, exist_ok=True)
        for top in range(0, image.shape[0] - PATCH + 1, PATCH):
            for left in range(0, image.shape[1] - PATCH + 1, PATCH):
                path = where / f"{top:03d}-{left:03d}.png"
                if not path.is_file():
                    Image.fromarray(image[top:top + PATCH, left:left + PATCH]).save(path)
                count += 1
    return count


def command_line() -> list[str]:
    script = Path(sys.executable).with_name("blackbox-vae")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "blackbox_vae"]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--k", type=int, default=1000, help="importance samples of the test bound")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "sample_photos")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "sample_photos.md")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "img" / "sample_photos.png")
    args = parser.parse_args(argv)
    patches, out = args.runs / "patches", args.runs / "nvae"
    n = write_patches(patches)
    train = command_line() + ["train", "--config", "nvae-tiny", "--data", str(patches), "--binarization", "none",
                              "--arch", "likelihood=logistic-mixture", "--arch", "image_size=32",
                              "--steps", str(args.steps), "--batch-size", "32", "--eval-every", str(max(args.steps // 4, 1)),
                              "--eval-k", "10", "--checkpoint-every", "100", "--progress", "false", "--out", str(out)]
    if (out / "checkpoint.pt").is_file():
        train.append("--resume")
    trained = (out / "checkpoint.pt").is_file() and torch.load(out / "checkpoint.pt", weights_only=True)["step"] >= args.steps
    if not trained:
        subprocess.run(train, check=True)
    subprocess.run(command_line() + ["evaluate", str(out), "--k", str(args.k)], check=True)
    subprocess.run(command_line() + ["sample", str(out), "-n", "36"], check=True)
    result = json.loads((out / "evaluation.json").read_text())[-1]
    config = json.loads((out / "config.json").read_text())
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(out / "samples.png", args.figure)
    metrics = [line.split(",") for line in (out / "metrics.csv").read_text().splitlines()[1:]]
    text = (f"<!-- written by benchmarks/sample_photos.py on {platform.machine()}, torch {torch.__version__} -->\n"
            f"scikit-learn's two sample photographs cut into {n} patches of 32x32x3 (PNG files); split "
            f"{1 - config['valid_fraction'] - config['test_fraction']:.0%} / {config['valid_fraction']:.0%} / "
            f"{config['test_fraction']:.0%} by a permutation of seed {config['split_seed']}. `--config nvae-tiny` on the "
            f"8-bit levels (a discretized logistic mixture), {config['steps']} steps at batch 32 in "
            f"{float(metrics[-1][1]) / 60:.0f} min.\n\n"
            f"| test rows | K | test log-likelihood (nats) | bits per dimension |\n| --- | --- | --- | --- |\n"
            f"| {result['n']} | {result['k']} | {result['log_likelihood']:.1f} ± {result['standard_error']:.1f} | "
            f"{result['bits_per_dim']:.3f} ± {result['standard_error'] / (config_dim(config) * np.log(2)):.3f} |\n")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text)
    print(text)
    return result


def config_dim(config: dict) -> int:
    return 3 * PATCH * PATCH


if __name__ == "__main__":
    main()
