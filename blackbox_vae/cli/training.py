"""`blackbox-vae train`: the training loop, with periodic evaluation, checkpoints and exact resume."""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from blackbox_vae.cli.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from blackbox_vae.cli.config import RESUME_INVARIANT, ConfigError, TrainConfig
from blackbox_vae.cli.plots import plot_loss_curve
from blackbox_vae.data import BatchStream, Dataset, load_dataset
from blackbox_vae.evaluation import log_likelihood_bound
from blackbox_vae.losses.base import Loss
from blackbox_vae.losses.registry import build_loss
from blackbox_vae.models.registry import build_models

__all__ = ["Run", "build_run", "train", "resolve_device"]

METRICS_FIELDS = ("step", "seconds", "train_bound", "valid_bound")


def resolve_device(name: str) -> torch.device:
    """The torch device named on the command line, with a clear error when CUDA is not there."""
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"`device`: {name!r} is not a device name ({error}).") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"`device` is {name!r} but CUDA is not available here (torch.cuda.is_available() is False); "
                          "use --device cpu.")
    return device


class Run:
    """The objects of one training run, built from its config."""

    def __init__(self, config: TrainConfig, dataset: Dataset, loss: Loss, device: torch.device):
        self.config, self.dataset, self.loss, self.device = config, dataset, loss, device
        self.inf_net, self.gen_model = loss.inf_net, loss.gen_model


def build_run(config: TrainConfig, device: torch.device | None = None) -> Run:
    """Loads the data and builds models and loss as ``config`` says (parameters seeded by ``config.seed``)."""
    device = device or resolve_device(config.device)
    if config.loss in ("elbo", "iwae") and config.model in ("sbn", "categorical"):
        raise ConfigError(f"--loss {config.loss} needs reparameterizable latents, but the {config.model!r} model's are "
                          "discrete; use score-function, nvil, vimco, rws or gumbel-softmax (or --model gaussian).")
    dataset = load_dataset(config.data, Path(config.data_dir) if config.data_dir else None, config.binarization,
                           seed=config.seed)
    torch.manual_seed(config.seed)
    try:
        inf_net, gen_model = build_models(config.model, dataset.data_dim, dataset.likelihood, config.layers,
                                          config.hidden, config.n_classes)
    except ValueError as error:
        raise ConfigError(str(error)) from error
    # On CPU the losses' per-call finiteness check is free; on a GPU it would synchronize every step,
    # so there the loop checks the running bound at each logging interval instead.
    try:
        loss = build_loss(config.loss, inf_net, gen_model, config.n_samples, data_dim=dataset.data_dim,
                          baseline=config.baseline, variance_normalization=config.variance_normalization,
                          phi_update=config.phi_update, temperature=_temperature(config.temperature),
                          straight_through=config.straight_through, gradient=config.gradient,
                          validate=device.type == "cpu")
    except (ValueError, TypeError) as error:  # e.g. n_samples too small, or an estimator the model cannot use
        raise ConfigError(str(error)) from error
    return Run(config, dataset, loss.to(device), device)


def _temperature(value: str) -> float | str:
    if value == "anneal":
        return value
    try:
        return float(value)
    except ValueError as error:
        raise ConfigError(f"`temperature` must be a number or 'anneal'; got {value!r}.") from error


def _validation_bound(run: Run, data: torch.Tensor, step: int) -> float:
    """Mean validation bound; its sampling neither uses nor disturbs the training RNG stream."""
    with torch.random.fork_rng(devices=[run.device] if run.device.type == "cuda" else []):
        torch.manual_seed(run.config.seed * 1_000_003 + step)
        return log_likelihood_bound(run.inf_net, run.gen_model, data, n_samples=run.config.eval_k).mean().item()


def _check_resumable(saved: dict[str, Any], config: TrainConfig, path: Path) -> None:
    changed = [name for name in RESUME_INVARIANT if saved.get(name) != getattr(config, name)]
    if changed:
        details = ", ".join(f"{n}: {saved.get(n)!r} -> {getattr(config, n)!r}" for n in changed)
        raise ConfigError(f"cannot resume {path}: these settings differ from the checkpoint's ({details}). "
                          "Resume with the same settings (only steps and the monitoring intervals may change), "
                          "or train into a new --out directory.")


def _write_metrics(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=METRICS_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def train(config: TrainConfig, resume: bool = False, progress: bool | None = None) -> dict[str, Any]:
    """Trains as ``config`` says, writing into ``config.out``; returns a summary.

    Writes ``config.json``, ``checkpoint.pt`` (every ``checkpoint_every`` steps and at the end),
    ``metrics.csv`` (a row per ``log_every`` steps; the validation bound every ``eval_every``) and
    ``loss_curve.png``. With ``resume``, continues from ``checkpoint.pt`` in ``config.out`` and
    reproduces an uninterrupted run bit for bit on CPU (all randomness comes from saved generators;
    evaluation draws from a forked one).

    Args:
        config: the settings.
        resume: continue from the run directory's checkpoint.
        progress: show a tqdm progress bar (default: when stderr is a terminal).
    """
    config.validate()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    run = build_run(config)
    optimizer = torch.optim.Adam(run.loss.parameters(), lr=config.lr)
    stream = BatchStream(run.dataset.train.to(run.device), config.batch_size,
                         dynamic_binarization=run.dataset.binarization == "dynamic", seed=config.seed)
    valid = run.dataset.valid[:config.eval_size].to(run.device)
    step, elapsed, metrics = 0, 0.0, []
    checkpoint_path = out / CHECKPOINT_NAME
    if resume:
        # On the CPU: RNG states must stay CPU tensors; load_state_dict moves parameters and optimizer state.
        state = load_checkpoint(checkpoint_path, map_location="cpu")
        _check_resumable(state["config"], config, checkpoint_path)
        run.loss.load_state_dict(state["loss"])
        optimizer.load_state_dict(state["optimizer"])
        stream.load_state_dict(state["stream"])
        torch.set_rng_state(state["rng"]["torch"])
        if run.device.type == "cuda" and state["rng"]["cuda"]:
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        step, elapsed, metrics = state["step"], state["elapsed"], list(state["metrics"])
        if step >= config.steps:
            raise ConfigError(f"the checkpoint in {out} is already at step {step}; pass --steps above {step} to "
                              "train further.")
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=1) + "\n")

    def save() -> None:
        rng = {"torch": torch.get_rng_state(),
               "cuda": torch.cuda.get_rng_state_all() if run.device.type == "cuda" else []}
        save_checkpoint(checkpoint_path, {"config": config.to_dict(), "step": step, "elapsed": elapsed,
                                          "loss": run.loss.state_dict(), "optimizer": optimizer.state_dict(),
                                          "rng": rng, "stream": stream.state_dict(), "metrics": metrics})
        _write_metrics(metrics, out / "metrics.csv")

    bar = tqdm(total=config.steps, initial=step, desc=f"{config.loss} on {config.data}", unit="step",
               disable=None if progress is None else not progress, dynamic_ncols=True)
    last_logged = step
    started = time.perf_counter() - elapsed
    while step < config.steps:
        batch = next(stream)
        optimizer.zero_grad(set_to_none=True)
        run.loss(batch).backward()
        optimizer.step()
        step += 1
        logging = step % config.log_every == 0 or step == config.steps
        evaluating = step % config.eval_every == 0 or step == config.steps
        if logging or evaluating:
            recent = run.loss.loss_history_[last_logged - step:] if step > last_logged else []
            train_bound = -sum(recent) / len(recent) if recent else float("nan")
            if recent and not math.isfinite(train_bound):
                raise FloatingPointError(f"the training bound became {train_bound} by step {step} "
                                         f"({config.loss} on {config.data}); lower --lr, or check the model.")
            last_logged = step
            elapsed = time.perf_counter() - started
            row = {"step": step, "seconds": round(elapsed, 3), "train_bound": train_bound, "valid_bound": ""}
            if evaluating:
                row["valid_bound"] = _validation_bound(run, valid, step)
            metrics.append(row)
            postfix = {"bound": f"{train_bound:.3f}"}
            if evaluating:
                postfix["valid"] = f"{row['valid_bound']:.3f}"
            bar.set_postfix(postfix)
        bar.update(1)
        if step % config.checkpoint_every == 0 or step == config.steps:
            elapsed = time.perf_counter() - started
            save()
    bar.close()
    plot_loss_curve(run.loss.loss_history_, metrics, out / "loss_curve.png",
                    f"{config.loss} (K={config.n_samples}), {config.model} on {config.data}")
    final = next(row for row in reversed(metrics) if row["valid_bound"] != "")
    summary = {"steps": step, "seconds": round(elapsed, 2), "train_bound": metrics[-1]["train_bound"],
               "valid_bound": final["valid_bound"], "eval_k": config.eval_k, "out": str(out)}
    return summary
