"""`blackbox-vae evaluate` and `blackbox-vae sample`: load a trained run and use it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from blackbox_vae.cli.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint
from blackbox_vae.cli.config import TrainConfig
from blackbox_vae.cli.plots import save_image_grids, save_scatter
from blackbox_vae.cli.training import Run, build_run, resolve_device
from blackbox_vae.evaluation import log_likelihood_bound

__all__ = ["load_run", "evaluate", "sample"]


def load_run(run_dir: Path, device: str = "cpu") -> tuple[Run, dict[str, Any]]:
    """The trained run in ``run_dir`` (its config and last checkpoint), on ``device``."""
    run_dir = Path(run_dir)
    resolve_device(device)  # a clear error before any work if the device is not there
    state = load_checkpoint(run_dir / CHECKPOINT_NAME, map_location="cpu")
    config = TrainConfig.from_saved(state["config"], f"{run_dir / CHECKPOINT_NAME} (its config)")
    config.device = device
    run = build_run(config)
    try:
        run.loss.load_state_dict(state["loss"])
    except (RuntimeError, ValueError) as error:  # parameters of other shapes; a loss of other settings
        raise CheckpointError(f"{run_dir / CHECKPOINT_NAME}: its state does not fit the model and loss its config "
                              f"describes ({str(error).splitlines()[0]}).") from error
    run.loss.eval()
    return run, state


def evaluate(run_dir: Path, k: int = 5000, split: str = "test", batch_size: int = 100, sample_chunk: int = 1000,
             device: str = "cpu", seed: int = 0, limit: int | None = None) -> dict[str, Any]:
    """The K-sample importance-weighted bound of log p(x) on a split, with the trained inference network.

    Prints and returns the mean over the split and its standard error, and records them in
    ``RUN_DIR/evaluation.json`` (one entry per split, K and number of data points).

    Args:
        limit: evaluate on a fixed random subset of ``limit`` data points (default: all of them). The
            subset depends only on the split's size, so every run is scored on the same points; it is
            random rather than the first rows because some splits are ordered (binarized MNIST's test
            rows are sorted by digit).
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"evaluate: `limit` must be a positive integer or None; got {limit!r}.")
    run, state = load_run(run_dir, device)
    data = run.dataset.split(split)
    if limit is not None and limit < len(data):
        rows = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:limit].sort().values
        data = data[rows]
    data = data.to(run.device)
    torch.manual_seed(seed)
    bounds = log_likelihood_bound(run.inf_net, run.gen_model, data, n_samples=k, batch_size=batch_size,
                                  sample_chunk=sample_chunk).double()
    result = {"split": split, "k": k, "n": len(bounds), "log_likelihood": bounds.mean().item(),
              "standard_error": (bounds.std() / math.sqrt(len(bounds))).item() if len(bounds) > 1 else 0.0,
              "step": state["step"], "data": run.config.data, "model": run.config.model, "loss": run.config.loss,
              "n_samples": run.config.n_samples, "device": str(run.device), "seed": seed}
    path = Path(run_dir) / "evaluation.json"
    entries = json.loads(path.read_text()) if path.is_file() else []
    key = (split, k, len(bounds))
    entries = [e for e in entries if (e.get("split"), e.get("k"), e.get("n")) != key] + [result]
    path.write_text(json.dumps(entries, indent=1) + "\n")
    return result


@torch.no_grad()
def sample(run_dir: Path, n: int = 64, out: Path | None = None, device: str = "cpu", seed: int = 0) -> Path:
    """A PNG of ``n`` generated images (means of p(x|z), z ~ p(z)) beside test images and their reconstructions
    (means of p(x|z), z ~ q(z|x)); for 2-D data, a scatter plot of samples and data."""
    run, _ = load_run(run_dir, device)
    torch.manual_seed(seed)
    out = Path(out) if out is not None else Path(run_dir) / "samples.png"
    generated_x, generated_z = run.gen_model.sample(n)
    if run.dataset.image_shape is None:
        save_scatter([("data (test)", run.dataset.test[:max(n, 1000)]),
                      ("generated", run.gen_model.sample(max(n, 1000))[0])], out)
        return out
    test = run.dataset.test[:n].to(run.device)
    latents = run.inf_net(test).sample(1)  # leading [n, 1]
    reconstructions = run.gen_model.likelihood_mean(latents)[:, 0]
    save_image_grids([("generated (means of p(x|z))", run.gen_model.likelihood_mean(generated_z)),
                      ("test images", test), ("reconstructions", reconstructions)], run.dataset.image_shape, out)
    return out
