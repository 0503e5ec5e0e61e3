"""`blackbox-vae train`: the training loop, with periodic evaluation, checkpoints and exact resume.

A run is built from its config (`build_run`); `train` then restores it from its checkpoint when resuming,
takes steps, monitors them (metrics rows, the validation bound, the progress bar) and saves checkpoints.
Each phase is one function below.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from blackbox_vae.cli.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, save_checkpoint
from blackbox_vae.cli.config import RESUME_MAY_CHANGE, ConfigError, TrainConfig
from blackbox_vae.cli.distributed import Processes
from blackbox_vae.cli.schedules import learning_rate_factor
from blackbox_vae.data import BatchStream, Dataset, load_dataset
from blackbox_vae.evaluation import log_likelihood_bound
from blackbox_vae.losses.base import Loss
from blackbox_vae.losses.elbo import ELBOLoss
from blackbox_vae.losses.registry import LOSSES, build_loss
from blackbox_vae.metrics.information import bit_mutual_information
from blackbox_vae.models.output_bias import initialize_output_bias
from blackbox_vae.models.registry import MODELS, build_models

__all__ = ["Run", "build_run", "train", "resolve_device", "TrainingError"]

METRICS_FIELDS = ("step", "seconds", "train_bound", "valid_bound", "active_bits", "bit_information")
#: A bit with more mutual information than this (nats) with its input counts in metrics.csv's ``active_bits``.
ACTIVE_BIT_THRESHOLD = 0.01
#: Validation rows the per-bit information is estimated on (a fixed random subset of them when there are more).
BIT_INFORMATION_ROWS = 1000
BIT_INFORMATION_FILE = "bit_information.csv"


class TrainingError(RuntimeError):
    """Training stopped because the model's log-probabilities or the training bound became NaN or infinite."""


def resolve_device(name: str) -> torch.device:
    """The torch device named on the command line, with a clear error when it cannot be used here.

    Raises:
        ConfigError: for a name torch does not know, CUDA where it is not available, or a device that cannot
            hold a tensor here (probed).
    """
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f"`device` (--device): {name!r} is not a device name ({error}).") from error
    if device.type not in ("cpu", "cuda"):  # the loop saves and restores the random generators of these two
        raise ConfigError(f"`device` (--device) must be cpu or cuda (cuda:N); got {name!r}.")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"`device` is {name!r} but CUDA is not available here (torch.cuda.is_available() is False); "
                          "use --device cpu.")
    try:
        torch.empty(1, device=device) + 1  # e.g. cuda:3 on a machine with two GPUs
    except (RuntimeError, AssertionError) as error:
        raise ConfigError(f"`device` (--device) {name!r} cannot be used here ({str(error).splitlines()[0]}); use "
                          "--device cpu.") from error
    return device


class Run:
    """The objects of one training run, built from its config.

    Attributes:
        regularizer: the spectral regularizer of the models' convolutions and linear maps (a module whose
            call returns the sum of their largest singular values), or None when ``config.spectral_reg`` is 0.
    """

    def __init__(self, config: TrainConfig, dataset: Dataset, loss: Loss, device: torch.device,
                 regularizer: torch.nn.Module | None = None):
        self.config, self.dataset, self.loss, self.device = config, dataset, loss, device
        self.inf_net, self.gen_model = loss.inf_net, loss.gen_model
        self.regularizer = regularizer
        self.stepper: torch.nn.Module = loss  # what a step calls: the loss, or its DistributedDataParallel wrapper
        self.processes = Processes()


def build_run(config: TrainConfig, device: torch.device | None = None) -> Run:
    """Loads the data and builds models and loss as ``config`` says (parameters seeded by ``config.seed``).

    Raises:
        ConfigError: when the model or the loss cannot be built as configured (e.g. a reparameterized
            estimator on discrete latents: the loss's own construction-time error, passed on).
    """
    device = device or resolve_device(config.device)
    dataset = load_dataset(config.data, Path(config.data_dir) if config.data_dir else None, config.binarization,
                           seed=config.seed)
    torch.manual_seed(config.seed)
    try:
        inf_net, gen_model = build_models(config.model, dataset.data_dim, dataset.likelihood, config.layers,
                                          config.hidden, config.n_classes or 10, image_shape=dataset.image_shape,
                                          architecture=config.architecture)
    except ValueError as error:
        raise ConfigError(str(error)) from error
    applied = False
    if config.output_bias is not False and dataset.likelihood == "bernoulli":
        applied = initialize_output_bias(gen_model, dataset.train)
    if config.output_bias and not applied:
        raise ConfigError(f"`output_bias` (--output-bias) true: --model {config.model} on --data {config.data} has no "
                          "Bernoulli output layer whose bias to set (the convolutional HVAE, NVAE and real-valued "
                          "data have none); remove the flag.")
    config.output_bias = applied  # recorded in config.json as what took effect
    # On CPU the losses' per-call finiteness check is free; on a GPU it would synchronize every step,
    # so there the loop checks the running bound at each logging interval instead.
    try:
        if config.kl_warmup_steps():  # a training option of the ELBO: its length in steps depends on --steps
            loss = ELBOLoss(inf_net, gen_model, config.n_samples, kl_warmup_steps=config.kl_warmup_steps(),
                            kl_balancing=bool(config.kl_balancing), validate=device.type == "cpu")
        else:
            loss = build_loss(config.loss, inf_net, gen_model, config.n_samples, data_dim=dataset.data_dim,
                              options=config.estimator_options(), validate=device.type == "cpu")
    except (ValueError, TypeError) as error:  # e.g. n_samples too small, or an estimator the model cannot use
        hint = ""
        if any(not getattr(inf_net, f"has_{hook}") for hook in LOSSES[config.loss].loss_class.needs):
            hint = f" Models that --loss {config.loss} can train: {', '.join(_models_for(config.loss))}."
        raise ConfigError(f"--model {config.model} with --loss {config.loss}: {error}{hint}") from error
    regularizer = None
    if config.spectral_reg:
        from blackbox_vae.models.nvae.spectral import SpectralRegularizer

        regularizer = SpectralRegularizer(loss).to(device)
    return Run(config, dataset, loss.to(device), device, regularizer)


def compile_by_default(config: TrainConfig, device: torch.device) -> bool:
    """Whether a run compiles its loss when ``--compile`` is not given: never, as measured on CPU
    (benchmarks/compile_default.py, benchmarks/results/compile_default.md): compiling costs 4-20 s and saves
    9% of a step on the default job (paid back after 14,000 steps, 5 times the default length), 3% on the
    784-200-200-200 SBN with VIMCO (after 65,000 steps), and makes the Gaussian IWAE step 13% slower. No GPU
    measurement has been made."""
    return False


def _models_for(loss: str) -> list[str]:
    """The ready models whose inference network has every hook the loss needs (asked of tiny instances)."""
    needs = LOSSES[loss].loss_class.needs

    def tiny(model: str):
        if model == "nvae":  # images: 4x4, one group at one scale
            return build_models(model, 16, architecture={"scales": 1, "preprocess_blocks": 1, "postprocess_blocks": 1,
                                                         "groups_per_scale": 1, "latent_channels": 1,
                                                         "encoder_channels": 1, "decoder_channels": 1})[0]
        return build_models(model, 2, layers=[1], hidden=[1])[0]

    return [model for model in MODELS if all(getattr(tiny(model), f"has_{hook}") for hook in needs)]


@dataclass
class _Progress:
    """Where a run stands: the step reached, the training time so far, and the metrics rows written."""

    step: int = 0
    elapsed: float = 0.0
    metrics: list[dict] = field(default_factory=list)
    last_logged: int = 0
    bit_columns: list[str] = field(default_factory=list)  # bit_information.csv's columns after "step"
    bit_rows: list[list[float]] = field(default_factory=list)  # [step, information of each bit]
    reduced: int = 0  # loss-history entries already averaged over the processes (torchrun)


def _validation_bound(run: Run, data: torch.Tensor, step: int) -> float:
    """Mean validation bound; its sampling neither uses nor disturbs the training RNG stream."""
    with torch.random.fork_rng(devices=[run.device] if run.device.type == "cuda" else []), _evaluating(run.loss):
        torch.manual_seed((run.config.seed * 1_000_003 + step) % 2**63)
        return log_likelihood_bound(run.inf_net, run.gen_model, data, n_samples=run.config.eval_k).mean().item()


class _evaluating:
    """Puts the models in eval mode (batch norm uses its running statistics and leaves them alone) and back."""

    def __init__(self, module: torch.nn.Module):
        self.module, self.was_training = module, module.training

    def __enter__(self) -> None:
        self.module.eval()

    def __exit__(self, *exc_info: Any) -> None:
        self.module.train(self.was_training)


def _bit_information(run: Run, data: torch.Tensor, step: int) -> list[torch.Tensor] | None:
    """Each layer's per-bit mutual information (nats) on at most `BIT_INFORMATION_ROWS` validation rows, or
    None when the inference network has no `bit_probabilities` hook; drawn from a forked RNG, like the bound."""
    inf_net = run.inf_net
    if inf_net.has_bit_probabilities:
        with torch.no_grad():
            inf_net(data[:1])  # a DistributionInfNet knows whether its latents are bits only after a forward
    if not inf_net.has_bit_probabilities:
        return None
    if len(data) > BIT_INFORMATION_ROWS:  # the same rows at every evaluation
        rows = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:BIT_INFORMATION_ROWS]
        data = data[rows.sort().values.to(data.device)]
    with torch.random.fork_rng(devices=[run.device] if run.device.type == "cuda" else []), _evaluating(run.loss):
        torch.manual_seed(((run.config.seed * 1_000_003 + step) % 2**63) ^ 0x5EED)  # not the bound's seed
        return list(bit_mutual_information(inf_net, data, batch_size=run.config.batch_size))


def _check_resumable(saved: dict[str, Any], config: TrainConfig, path: Path) -> None:
    """Raises unless every setting outside `RESUME_MAY_CHANGE` equals the checkpoint's (effective values)."""
    saved = TrainConfig.from_saved(saved, f"{path} (its config)").effective()
    current = config.effective()
    changed = [name for name in current if name not in RESUME_MAY_CHANGE and saved.get(name) != current[name]]
    if changed:
        details = ", ".join(f"{n}: {saved.get(n)!r} -> {current[n]!r}" for n in changed)
        hint = ""
        if "world_size" in changed:
            hint = (f" It was trained by {saved.get('world_size')} process(es): resume it with torchrun "
                    f"--nproc-per-node {saved.get('world_size')} (each process's random generator is in the checkpoint).")
        raise ConfigError(f"cannot resume {path}: these settings differ from the checkpoint's ({details}).{hint} "
                          f"Resume with the same settings (only {', '.join(RESUME_MAY_CHANGE)} may change), "
                          "or train into a new --out directory.")


# ------------------------------------------------------------------------------------------- restore
def _restore(run: Run, optimizer: torch.optim.Optimizer, stream: BatchStream, path: Path) -> _Progress:
    """Loads the checkpoint at ``path`` into the run's loss, optimizer, batch stream and random generators."""
    # To the CPU: RNG states must stay CPU tensors; load_state_dict moves parameters and optimizer state.
    state = load_checkpoint(path, map_location="cpu")
    _check_resumable(state["config"], run.config, path)
    run.config.output_bias = TrainConfig.from_saved(state["config"], f"{path} (its config)").output_bias
    saved_settings = state["loss"].get("_extra_state", {}).get("settings", {})
    if isinstance(run.loss, ELBOLoss) and "kl_warmup_steps" in saved_settings:
        # the warm-up's length was fixed when the run started (a fraction of its --steps then)
        run.loss.kl_warmup_steps = saved_settings["kl_warmup_steps"]
    if run.regularizer is not None and "regularizer" in state:
        run.regularizer.load_state_dict(state["regularizer"])
    try:
        run.loss.load_state_dict(state["loss"])
    except (RuntimeError, ValueError) as error:  # parameters of other shapes; a loss of other settings
        raise CheckpointError(f"{path}: its state does not fit the model and loss its config describes "
                              f"({str(error).splitlines()[0]}).") from error
    optimizer.load_state_dict(state["optimizer"])
    stream.load_state_dict(state["stream"])
    rank = run.processes.rank
    torch.set_rng_state(state["rng"]["ranks"][rank] if "ranks" in state["rng"] else state["rng"]["torch"])
    if run.device.type == "cuda" and "cuda_ranks" in state["rng"]:
        torch.cuda.set_rng_state(state["rng"]["cuda_ranks"][rank], run.device)
    elif run.device.type == "cuda" and state["rng"]["cuda"]:
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    # the step of the last metrics row, so that the next row averages the same steps as without the interruption
    last_logged = state.get("last_logged", state["step"])  # checkpoints of format 1 did not record it
    progress = _Progress(state["step"], state["elapsed"], list(state["metrics"]), last_logged,
                         reduced=len(run.loss.loss_history_))  # saved after reducing
    if "bit_information" in state:  # checkpoints from before per-bit information have none
        progress.bit_columns = list(state["bit_information"]["columns"])
        progress.bit_rows = state["bit_information"]["rows"].tolist()
    if progress.step >= run.config.steps:
        raise ConfigError(f"the checkpoint in {path.parent} is already at step {progress.step}; pass --steps above "
                          f"{progress.step} to train further.")
    return progress


# ---------------------------------------------------------------------------------------------- step
def _step(run: Run, optimizer: torch.optim.Optimizer, stream: BatchStream, step: int) -> None:
    """One gradient step on the next batch (``step``: the steps taken before it, for the learning rate)."""
    rate = run.config.lr * learning_rate_factor(run.config.lr_schedule or "constant", step,
                                                len(stream.data) // stream.batch_size)
    for group in optimizer.param_groups:
        group["lr"] = rate
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.config.precision == "bf16"):
        objective = run.stepper(next(stream))  # the backward pass runs outside autocast, as PyTorch advises
    if run.regularizer is not None:
        objective = objective + run.config.spectral_reg * run.regularizer()
    objective.backward()
    if run.config.grad_clip:
        torch.nn.utils.clip_grad_norm_(run.loss.parameters(), run.config.grad_clip)
    optimizer.step()


# ------------------------------------------------------------------------------------------- monitor
def _monitor(run: Run, progress: _Progress, valid: torch.Tensor, started: float) -> dict | None:
    """At a logging or evaluation step, appends a metrics row and returns it (else returns None).

    The validation bound is computed last: if it fails, the row is not written, but the training state
    is sound and the caller saves it.

    Raises:
        FloatingPointError: when the training bound became non-finite.
    """
    config, step = run.config, progress.step
    logging = step % config.log_every == 0 or step == config.steps
    evaluating = step % config.eval_every == 0 or step == config.steps
    if not (logging or evaluating):
        return None
    _reduce_history(run, progress)
    recent = run.loss.loss_history_[progress.last_logged - step:] if step > progress.last_logged else []
    train_bound = -sum(recent) / len(recent) if recent else float("nan")
    if recent and not math.isfinite(train_bound):
        raise FloatingPointError(f"the training bound became {train_bound} by step {step} "
                                 f"({config.loss} on {config.data}); lower --lr, or check the model.")
    if not run.processes.main:  # the others do not evaluate or keep rows
        progress.last_logged = step
        return None
    elapsed = time.perf_counter() - started
    row = {"step": step, "seconds": round(elapsed, 3), "train_bound": train_bound, "valid_bound": "",
           "active_bits": "", "bit_information": ""}
    bits = None
    if evaluating:
        bits = _bit_information(run, valid, step)
        row["valid_bound"] = _validation_bound(run, valid, step)
    if bits is not None:
        values = torch.cat([layer.flatten() for layer in bits]).cpu()  # [n_bits], layer by layer
        row["active_bits"] = int((values > ACTIVE_BIT_THRESHOLD).sum())
        row["bit_information"] = values.sum().item()
        progress.bit_columns = [f"z{layer}_{bit}" for layer, info in enumerate(bits) for bit in range(info.numel())]
        progress.bit_rows.append([float(step), *values.tolist()])
    progress.last_logged, progress.elapsed = step, elapsed
    progress.metrics.append(row)
    return row


def _reduce_history(run: Run, progress: "_Progress") -> None:
    """Under torchrun, replaces the loss history's entries since the last call by their mean over the processes:
    each process records its share's objective, and the mean of equal shares' means is the whole batch's."""
    if not run.processes.distributed:
        return
    history = run.loss.loss_history_  # the list itself
    history[progress.reduced:] = run.processes.mean(history[progress.reduced:], run.device)
    progress.reduced = len(history)


def _report(row: dict, run: Run, bar) -> None:
    """Shows a metrics row: on the progress bar, or, when there is none (no terminal), as a printed line."""
    if not bar.disable:
        postfix = {"bound": f"{row['train_bound']:.3f}"}
        if row["valid_bound"] != "":
            postfix["valid"] = f"{row['valid_bound']:.3f}"
        bar.set_postfix(postfix)
    elif row["valid_bound"] != "":
        bits = "" if row["active_bits"] == "" else (f"; {row['active_bits']} active bits, "
                                                     f"{row['bit_information']:.2f} nats of bit information")
        print(f"step {row['step']}/{run.config.steps} ({row['seconds']:.1f} s): training bound {row['train_bound']:.4f}, "
              f"validation bound (K={run.config.eval_k}) {row['valid_bound']:.4f} nats{bits}", flush=True)


# ---------------------------------------------------------------------------------------------- save
def _save(run: Run, optimizer: torch.optim.Optimizer, stream: BatchStream, progress: _Progress, out: Path) -> None:
    """Writes the checkpoint (atomically), ``metrics.csv`` and, for binary latents, ``bit_information.csv``.

    Under torchrun every process takes part (their random generators are gathered) and the main one writes.
    """
    rng = {"torch": torch.get_rng_state(),
           "cuda": torch.cuda.get_rng_state_all() if run.device.type == "cuda" else []}
    processes = run.processes
    if processes.distributed:
        _reduce_history(run, progress)
        rng["ranks"] = processes.gather_states(rng["torch"], run.device)
        if run.device.type == "cuda":
            rng["cuda_ranks"] = processes.gather_states(torch.cuda.get_rng_state(run.device), run.device)
        if not processes.main:
            return
    bit_information = {"columns": progress.bit_columns,
                       "rows": torch.tensor(progress.bit_rows, dtype=torch.float64).reshape(
                           len(progress.bit_rows), 1 + len(progress.bit_columns))}
    save_checkpoint(out / CHECKPOINT_NAME, {
        "config": run.config.to_dict(), "step": progress.step, "elapsed": progress.elapsed,
        "loss": run.loss.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng,
        "stream": stream.state_dict(), "metrics": progress.metrics, "last_logged": progress.last_logged,
        "bit_information": bit_information,
        **({"regularizer": run.regularizer.state_dict()} if run.regularizer is not None else {})})
    with open(out / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=METRICS_FIELDS)  # rows of older checkpoints: empty bit columns
        writer.writeheader()
        writer.writerows(progress.metrics)
    if progress.bit_rows:
        with open(out / BIT_INFORMATION_FILE, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["step", *progress.bit_columns])
            writer.writerows([int(row[0]), *row[1:]] for row in progress.bit_rows)


def train(config: TrainConfig, resume: bool = False, progress: bool | None = None,
          overwrite: bool = False) -> dict[str, Any]:
    """Trains as ``config`` says, writing into ``config.out``; returns a summary.

    Writes ``config.json`` (the settings that took effect), ``checkpoint.pt`` (every ``checkpoint_every``
    steps and at the end; each replaces the last), ``metrics.csv`` (a row per ``log_every`` steps; the
    validation bound every ``eval_every``, with the summary of the per-bit information for binary latents:
    ``active_bits`` and ``bit_information``), ``bit_information.csv`` (for binary latents: every bit's
    mutual information with its input at each evaluation) and ``loss_curve.png``. Every setting is checked
    before the data are read; the run directory is locked while training writes there (`RunLock`), and a
    directory that holds a run is continued only with ``resume`` and replaced only with ``overwrite``. With
    ``resume``, continues from ``checkpoint.pt`` and reproduces an uninterrupted run bit for bit on CPU (all
    randomness comes from saved generators; evaluation draws from a forked one), metrics rows and bit
    information included.

    Under ``torchrun`` (its environment names a world of several processes), the processes train the loss
    wrapped in `torch.nn.parallel.DistributedDataParallel`, each on its equal share of every batch
    (``batch_size`` is the whole batch), with the loss's statistics synchronized
    (`Loss.synchronize_statistics`), the loss history averaged over them, and the main process (rank 0)
    alone evaluating, printing and writing; ``config.json`` records ``world_size``. A resumed run must
    have the same world size (its processes' random generators are in the checkpoint).

    Args:
        config: the settings.
        resume: continue from the run directory's checkpoint.
        progress: show a tqdm progress bar (default: when stderr is a terminal). Without one, a line is
            printed at every evaluation.
        overwrite: delete the run directory's old run files first.

    Returns:
        ``{"steps", "seconds", "train_bound", "valid_bound", "eval_k", "out", "rank", "world_size"}`` (the bounds
        on the main process only).

    Raises:
        ConfigError: for invalid settings, a run directory in use or holding a run, or a checkpoint that
            cannot be resumed with these settings.
    """
    from blackbox_vae.cli.run_directory import RunLock, check_run_directory

    config.validate()
    processes = Processes.from_environment()
    config.world_size = processes.world_size
    device = resolve_device(processes.device(config.device))  # a setting too: checked before the directory
    if config.batch_size % processes.world_size:
        raise ConfigError(f"`batch_size` (--batch-size) {config.batch_size} is the whole batch of all "
                          f"{processes.world_size} processes, which each take an equal share: give a multiple of "
                          f"{processes.world_size}.")
    out = Path(config.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"`out` (--out) {str(out)!r}: cannot create the run directory there ({error}).") from error
    processes.join(device)
    try:
        with RunLock(out) if processes.main else contextlib.nullcontext() as lock:
            failure = None
            if processes.main:
                if lock.note:
                    print(lock.note, file=sys.stderr)
                try:
                    check_run_directory(out, resume, overwrite)
                except ConfigError as error:
                    failure = error
            if not processes.all_agree(failure is None, device):
                raise failure or ConfigError(f"{out}: the main process (rank 0) refused the run directory; see "
                                             "its message.")
            state, summary = _train_in(config, device, processes, out, resume, progress, overwrite)
    finally:
        processes.leave()
    if not processes.main:
        return summary
    final = next(row for row in reversed(state.metrics) if row["valid_bound"] != "")
    return {**summary, "train_bound": state.metrics[-1]["train_bound"], "valid_bound": final["valid_bound"]}


def _train_in(config: TrainConfig, device: torch.device, processes: Processes, out: Path, resume: bool,
              progress: bool | None, overwrite: bool) -> tuple[_Progress, dict[str, Any]]:
    """The training loop of `train`, in a run directory already checked (and locked by the main process)."""
    from tqdm.auto import tqdm  # the command line's dependencies load with the command line, not the library

    from blackbox_vae.cli.plots import plot_loss_curve
    from blackbox_vae.cli.run_directory import clear_old_run

    run = build_run(config, device)  # every setting is checked before an old run is deleted
    run.processes = processes
    if config.batch_size > len(run.dataset.train):
        raise ConfigError(f"`batch_size` (--batch-size) is {config.batch_size}, more than the "
                          f"{len(run.dataset.train)} training rows of --data {config.data}; use at most "
                          f"{len(run.dataset.train)}.")
    if overwrite and processes.main:
        clear_old_run(out)
    if processes.distributed:
        # Each process draws its own latents, from a generator of its own (the main process keeps the one-process
        # stream). The models start equal everywhere: build_run seeded them alike (and DDP broadcasts rank 0's).
        if processes.rank:
            torch.manual_seed((config.seed * 1_000_003 + processes.rank) % 2**63)
        run.loss.synchronize_statistics()
        # Every estimator's step reaches every parameter of the loss (checked for each on the test suite's
        # examples), so DDP need not search the graph for unused ones each step.
        run.stepper = torch.nn.parallel.DistributedDataParallel(
            run.loss, device_ids=[device.index] if device.type == "cuda" else None)
    config.compile = compile_by_default(config, device) if config.compile is None else config.compile
    if config.compile:  # the step's module (the loss, or DDP around it): forward and backward are compiled
        run.stepper = torch.compile(run.stepper)
    optimizer = torch.optim.Adam(run.loss.parameters(), lr=config.lr)
    stream = BatchStream(run.dataset.train.to(run.device), config.batch_size,
                         dynamic_binarization=run.dataset.binarization == "dynamic", seed=config.seed,
                         shard=(processes.rank, processes.world_size))
    valid = run.dataset.valid[:config.eval_size].to(run.device)
    state = _restore(run, optimizer, stream, out / CHECKPOINT_NAME) if resume else _Progress()
    processes.barrier()  # every process has read the checkpoint before the main one writes
    if processes.main:
        (out / "config.json").write_text(json.dumps(config.to_dict(), indent=1) + "\n")

    bar = tqdm(total=config.steps, initial=state.step, desc=f"{config.loss} on {config.data}", unit="step",
               disable=(None if progress is None else not progress) if processes.main else True,
               dynamic_ncols=True)
    started = time.perf_counter() - state.elapsed
    if resume and state.last_logged < state.step:
        # The row of the checkpoint's own step, if it had one and an evaluation failed before writing it:
        # computed now from the same parameters, history and evaluation seed, as it would have been.
        _monitor(run, state, valid, started)
    while state.step < config.steps:
        try:
            _step(run, optimizer, stream, state.step)
        except ValueError as error:  # the losses' check of non-finite log-probabilities
            raise TrainingError(f"training failed at step {state.step + 1} ({error}); lower --lr, or check the "
                                f"model. The last checkpoint in {out} is from before it.") from error
        state.step += 1
        try:
            row = _monitor(run, state, valid, started)
        except FloatingPointError as error:
            # the parameters may be ruined: keep the last checkpoint as it is
            raise TrainingError(f"{error} The last checkpoint in {out} is from before it.") from error
        except Exception:
            state.elapsed = time.perf_counter() - started
            _save(run, optimizer, stream, state, out)  # an evaluation failed: the steps taken are not lost
            raise
        if row is not None:
            _report(row, run, bar)
        bar.update(1)
        if state.step % config.checkpoint_every == 0 or state.step == config.steps:
            state.elapsed = time.perf_counter() - started
            _save(run, optimizer, stream, state, out)
    bar.close()
    summary = {"steps": state.step, "seconds": round(state.elapsed, 2), "eval_k": config.eval_k, "out": str(out),
               "rank": processes.rank, "world_size": processes.world_size}
    if processes.main:
        plot_loss_curve(run.loss.loss_history_, state.metrics, out / "loss_curve.png",
                        f"{config.loss} (K={config.n_samples}), {config.model} on {config.data}")
    return state, summary
