"""`Trainer`: the training loop of the command line, for any loss object and data.

``Trainer(loss, data, out).fit(steps)`` takes steps on shuffled minibatches and writes into the run
directory ``out`` what ``blackbox-vae train`` writes: ``config.json``, ``checkpoint.pt`` (exact resume),
``metrics.csv`` (with the periodic validation bound), ``bit_information.csv`` for binary latents and
``loss_curve.png``; it shows a progress bar, locks the directory, trains in bf16 or compiled when asked and
data-parallel under ``torchrun``. Each phase is one function below: restore, step, monitor, save.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

import torch
from torch import Tensor

from blackbox_vae.cli.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, save_checkpoint
from blackbox_vae.cli.config import ConfigError, TrainerSettings
from blackbox_vae.cli.files import RunFileError, remove_stale_temporaries, write_text
from blackbox_vae.threads import apply_thread_setting
from blackbox_vae.cli.distributed import Processes
from blackbox_vae.cli.schedules import learning_rate_factor
from blackbox_vae.data import BatchStream, Dataset, load_dataset
from blackbox_vae.evaluation import log_likelihood_bound
from blackbox_vae.losses._checks import NonFiniteError
from blackbox_vae.losses.base import Loss
from blackbox_vae.losses.elbo import ELBOLoss
from blackbox_vae.metrics.information import bit_mutual_information

__all__ = ["Trainer", "Callback", "TrainingError", "resolve_device", "compile_by_default", "METRICS_FIELDS"]

METRICS_FIELDS = ("step", "seconds", "train_bound", "valid_bound", "active_bits", "bit_information")
#: A bit with more mutual information than this (nats) with its input counts in metrics.csv's ``active_bits``.
ACTIVE_BIT_THRESHOLD = 0.01
#: A run has diverged when its training bound falls below the first step's (the model as it started) by more
#: than this many times the larger of that bound's magnitude and the data's dimension (MNIST: from -550 to
#: below -8,390 nats).
DIVERGENCE_FACTOR = 10
#: Validation rows the per-bit information is estimated on (a fixed random subset of them when there are more).
BIT_INFORMATION_ROWS = 1000
BIT_INFORMATION_FILE = "bit_information.csv"
#: Settings a resumed run may change (how far, where, how it is watched); every other one must equal the
#: checkpoint's. ``compile`` and ``threads`` change how a step is computed, not what.
RESUME_MAY_CHANGE = ("steps", "device", "log_every", "eval_every", "eval_k", "eval_size", "checkpoint_every",
                     "compile", "threads", "snapshot_every", "tensorboard")


class TrainingError(RuntimeError):
    """Training stopped because the model's log-probabilities or the training bound became NaN or infinite."""


class Callback:
    """What a `Trainer` calls as it trains; override the methods you need (each does nothing here).

    They run on the main process only (rank 0 under torchrun), after the step, row or checkpoint is complete.
    """

    def on_step(self, trainer: "Trainer", step: int) -> None:
        """After step ``step`` (counting from 1); ``trainer.loss.loss_history_[-1]`` is its objective."""

    def on_evaluation(self, trainer: "Trainer", row: dict) -> None:
        """After a metrics row (``row["valid_bound"]`` is set at an evaluation, ``""`` otherwise)."""

    def on_checkpoint(self, trainer: "Trainer", path: Path) -> None:
        """After ``checkpoint.pt`` (at ``path``) and ``metrics.csv`` are written."""

    def on_fit_end(self, trainer: "Trainer") -> None:
        """After the last step's checkpoint."""


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


def compile_by_default(settings: TrainerSettings, device: torch.device) -> bool:
    """Whether a run compiles its loss when ``compile`` is not given: never, as measured on CPU
    (benchmarks/compile_default.py, benchmarks/results/compile_default.md): compiling costs 4-20 s and saves
    9% of a step on the default job (paid back after 14,000 steps, 5 times the default length), 3% on the
    784-200-200-200 SBN with VIMCO (after 65,000 steps), and makes the Gaussian IWAE step 13% slower. No GPU
    measurement has been made."""
    return False


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
    data_dim: int = 1  # values per data row, the scale of a diverging bound


class _Run:
    """What the loop's phases share: settings, loss (and what a step calls), device, processes."""

    def __init__(self, trainer: "Trainer", device: torch.device, processes: Processes):
        self.config: TrainerSettings = trainer.settings
        self.loss: Loss = trainer.loss
        self.inf_net, self.gen_model = trainer.loss.inf_net, trainer.loss.gen_model
        self.regularizer = trainer.regularizer
        self.regularizer_weight = trainer.regularizer_weight
        self.title = trainer.title
        self.device, self.processes = device, processes
        self.stepper: torch.nn.Module = trainer.loss  # the loss, or its DistributedDataParallel / compiled wrapper
        self.base_lrs: list[float] = []


Data = Union[Tensor, Dataset, str, Path, "torch.utils.data.Dataset", "torch.utils.data.DataLoader"]


class Trainer:
    """Trains a loss object (ours, or a user's `Loss` subclass) on data, with everything the command line has.

    Example::

        loss = blackbox_vae.VIMCOLoss(MyInfNet(), MyGenModel(), n_samples=5)
        trainer = blackbox_vae.Trainer(loss, "my_data.npy", out="runs/mine", batch_size=64, lr=1e-3)
        trainer.fit(3000)        # again after an interruption: fit(3000, resume=True) continues it exactly

    Args:
        loss: the loss object; its ``inf_net`` and ``gen_model`` are trained (and any parameters of its own).
        data: the training rows ``[N, *data_shape]`` as a tensor; a `blackbox_vae.data.Dataset` (its
            validation split is used, and a dynamic binarization is applied to every batch); a path (read
            by `blackbox_vae.data.load_dataset`); or a ``torch.utils.data.Dataset`` / ``DataLoader``, whose
            rows (the first element of each item) are stacked into one tensor once. The Trainer draws its
            own shuffled batches, so that a resumed run continues with exactly the batches it would have.
        out: the run directory.
        valid: validation rows for the periodic bound (default: the `Dataset`'s validation split; with a
            tensor, none: metrics.csv then holds training bounds only).
        optimizer: None (Adam with ``lr``), a ``torch.optim.Optimizer`` over the loss's parameters, or a
            function of the parameters returning one (``functools.partial(torch.optim.SGD, lr=0.1)``). The
            learning-rate schedule scales each parameter group's initial rate.
        settings: a `TrainerSettings` (default: one from ``**settings_values``, e.g. ``batch_size=64``).
        callbacks: `Callback` objects.
        progress: show a tqdm progress bar (default: when stderr is a terminal); without one, a line is
            printed at each evaluation.
        record: what ``config.json`` and the checkpoint record as the run's settings, or a function returning
            it when they are written (default: the settings and the loss's class); a resumed run must agree
            with it (see ``check_resumable``).
        check_resumable: ``f(saved_record, path)`` raising `ConfigError` when a checkpoint's record cannot
            be resumed with this one (default: every setting outside `RESUME_MAY_CHANGE` must be equal).
        regularizer: a module whose call returns a penalty added to the objective (e.g. NVAE's spectral
            regularizer); its state is checkpointed.
        regularizer_weight: the penalty's weight.
        title: the run's name in messages and on the loss curve.
        image_shape: the shape of one image, ``(H, W)`` or ``(C, H, W)``, for the snapshot and TensorBoard
            grids (default: the `Dataset`'s).
        settings_values: `TrainerSettings` fields, e.g. ``steps``, ``batch_size``, ``lr``, ``eval_every``,
            ``checkpoint_every``, ``precision="bf16"``, ``compile=True``, ``snapshot_every``, ``tensorboard``.
    """

    def __init__(self, loss: Loss, data: Data, out: Union[str, Path] = "runs/latest", *, valid: Optional[Tensor] = None,
                 optimizer: Union[None, torch.optim.Optimizer, Callable[..., torch.optim.Optimizer]] = None,
                 settings: Optional[TrainerSettings] = None, callbacks: Iterable[Callback] = (),
                 progress: Optional[bool] = None,
                 record: Union[None, dict[str, Any], Callable[[], dict[str, Any]]] = None,
                 check_resumable: Optional[Callable[[dict, Path], None]] = None,
                 regularizer: Optional[torch.nn.Module] = None, regularizer_weight: float = 0.0,
                 title: Optional[str] = None, image_shape: Optional[tuple[int, ...]] = None,
                 **settings_values: Any):
        if not isinstance(loss, Loss):
            raise TypeError(f"Trainer: `loss` must be a blackbox_vae Loss (e.g. VIMCOLoss(inf_net, gen_model)); got "
                            f"{type(loss).__name__}.")
        if settings is not None and settings_values:
            raise TypeError(f"Trainer: give `settings` or settings as keywords ({', '.join(settings_values)}), not both.")
        try:
            self.settings = (settings or TrainerSettings(**settings_values)).validate()
        except TypeError as error:  # an unknown keyword
            known = ", ".join(f.name for f in TrainerSettings.__dataclass_fields__.values())
            raise TypeError(f"Trainer: {error}; the settings are {known}.") from None
        self.loss, self.out = loss, Path(out)
        self.train_rows, dataset_valid, self.dynamic_binarization, self.dataset = _training_data(data)
        self.valid = valid if valid is not None else dataset_valid
        _check_finite(self.train_rows, "data")
        _check_finite(self.valid, "valid")
        self.optimizer_spec = optimizer
        self.callbacks = list(callbacks)
        self.progress = progress
        self.record = record
        self.check_resumable = check_resumable or self._check_against_record
        self.regularizer, self.regularizer_weight = regularizer, regularizer_weight
        self.title = title or f"{type(loss).__name__} (K={getattr(loss, 'n_samples', '?')})"
        self.image_shape = image_shape or getattr(self.dataset, "image_shape", None)
        self.processes = Processes.from_environment()
        self.metrics: list[dict] = []
        if self.settings.snapshot_every and self.image_shape is None:
            raise ConfigError("`snapshot_every` (--snapshot-every) writes grids of images; these data are not images "
                              "(give `image_shape` to the Trainer, or remove it).")
        if self.settings.snapshot_every or self.settings.tensorboard:
            from blackbox_vae.callbacks import SnapshotCallback, TensorBoardCallback

            if self.settings.snapshot_every:
                self.callbacks.append(SnapshotCallback(self.settings.snapshot_every))
            if self.settings.tensorboard:
                self.callbacks.append(TensorBoardCallback())

    # ------------------------------------------------------------------------------------------------ fit
    def fit(self, steps: Optional[int] = None, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
        """Trains to ``steps`` steps in all (default: ``settings.steps``) and returns a summary.

        With ``resume``, continues from the run directory's checkpoint and reproduces an uninterrupted run
        bit for bit on CPU (all randomness comes from saved generators; evaluation draws from a forked one),
        metrics rows included. A directory holding a run is continued only with ``resume`` and replaced only
        with ``overwrite``; it is locked while the run writes there.

        Under ``torchrun`` (its environment names several processes), the processes train the loss wrapped
        in ``DistributedDataParallel``, each on an equal share of every batch (``batch_size`` is the whole
        batch), with the loss's statistics synchronized and its history averaged; the main process alone
        evaluates, prints and writes. A resumed run must have the same number of processes.

        Returns:
            ``{"steps", "seconds", "train_bound", "valid_bound", "eval_k", "out", "rank", "world_size"}`` (the
            bounds on the main process only; ``valid_bound`` is None without validation rows).

        Raises:
            ConfigError: for invalid settings, a run directory in use or holding a run, or a checkpoint that
                cannot be resumed with these settings.
            TrainingError: when the objective became NaN or infinite (the last checkpoint is kept).
        """
        from blackbox_vae.cli.run_directory import RunLock, check_run_directory

        settings, processes = self.settings, self.processes
        if steps is not None:
            settings.steps = steps
        settings.validate()
        settings.world_size = processes.world_size
        device = resolve_device(processes.device(settings.device))
        if settings.batch_size % processes.world_size:
            raise ConfigError(f"`batch_size` (--batch-size) {settings.batch_size} is the whole batch of all "
                              f"{processes.world_size} processes, which each take an equal share: give a multiple "
                              f"of {processes.world_size}.")
        if settings.batch_size > len(self.train_rows):
            raise ConfigError(f"`batch_size` (--batch-size) is {settings.batch_size}, more than the "
                              f"{len(self.train_rows)} training rows of {self.title}; use at most "
                              f"{len(self.train_rows)}.")
        out = self.out
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
                    for leftover in remove_stale_temporaries(out):
                        print(f"note: removed {leftover}, left by a write that was interrupted", file=sys.stderr)
                if not processes.all_agree(failure is None, device):
                    raise failure or ConfigError(f"{out}: the main process (rank 0) refused the run directory; "
                                                 "see its message.")
                try:
                    state, summary = self._fit_in(device, resume, overwrite)
                except RunFileError as error:  # a full disk, a read-only or vanished directory
                    raise RunFileError(f"{error} {self._kept_note()}") from error
        finally:
            processes.leave()
        self.metrics = state.metrics
        if not processes.main:
            return summary
        evaluated = [row for row in state.metrics if row["valid_bound"] != ""]
        return {**summary, "train_bound": state.metrics[-1]["train_bound"] if state.metrics else float("nan"),
                "valid_bound": evaluated[-1]["valid_bound"] if evaluated else None}

    def _fit_in(self, device: torch.device, resume: bool, overwrite: bool) -> tuple[_Progress, dict[str, Any]]:
        """The loop of `fit`, in a run directory already checked (and locked by the main process)."""
        from tqdm.auto import tqdm  # loaded with the trainer, not with the library

        from blackbox_vae.cli.plots import plot_loss_curve
        from blackbox_vae.cli.run_directory import clear_old_run

        settings, processes, out = self.settings, self.processes, self.out
        self.loss.to(device)
        if self.regularizer is not None:
            self.regularizer.to(device)
        run = _Run(self, device, processes)
        self.run = run
        self._saved_step: Optional[int] = None  # the step of the checkpoint this process last wrote or read
        if overwrite and processes.main:
            clear_old_run(out)
        if processes.distributed:
            # Each process draws its own latents, from a generator of its own (the main process keeps the
            # one-process stream). The models start equal everywhere (DDP broadcasts rank 0's).
            if processes.rank:
                torch.manual_seed((settings.seed * 1_000_003 + processes.rank) % 2**63)
            run.loss.synchronize_statistics()
            # Every estimator's step reaches every parameter of the loss (checked for each on the test suite's
            # examples), so DDP need not search the graph for unused ones each step.
            run.stepper = torch.nn.parallel.DistributedDataParallel(
                run.loss, device_ids=[device.index] if device.type == "cuda" else None)
        settings.compile = compile_by_default(settings, device) if settings.compile is None else settings.compile
        if settings.compile:  # the step's module (the loss, or DDP around it): forward and backward are compiled
            run.stepper = torch.compile(run.stepper)
        optimizer = self._optimizer(run)
        run.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.optimizer = optimizer
        stream = BatchStream(self.train_rows.to(device), settings.batch_size,
                             dynamic_binarization=self.dynamic_binarization, seed=settings.seed,
                             shard=(processes.rank, processes.world_size))
        valid = None if self.valid is None else self.valid[:settings.eval_size].to(device)
        state = self._restore(run, optimizer, stream, out / CHECKPOINT_NAME) if resume else _Progress()
        state.data_dim = math.prod(self.train_rows.shape[1:])
        self._saved_step = state.step if resume else None
        processes.barrier()  # every process has read the checkpoint before the main one writes
        if processes.main:
            write_text(out / "config.json", json.dumps(self.record_now(), indent=1) + "\n")

        bar = tqdm(total=settings.steps, initial=state.step, desc=self.title, unit="step",
                   disable=(None if self.progress is None else not self.progress) if processes.main else True,
                   dynamic_ncols=True)
        callbacks = self.callbacks if processes.main else []
        started = time.perf_counter() - state.elapsed
        if resume and state.last_logged < state.step:
            # The row of the checkpoint's own step, if it had one and an evaluation failed before writing it:
            # computed now from the same parameters, history and evaluation seed, as it would have been.
            _monitor(run, state, valid, started)
        threads = apply_thread_setting(settings.threads, device) if not processes.distributed else None
        while state.step < settings.steps:
            if threads is not None:
                threads.update()  # as many threads as idle cores (blackbox_vae/threads.py)
            try:
                _step(run, optimizer, stream, state.step)
            except NonFiniteError as error:  # the losses' check of non-finite log-probabilities
                raise TrainingError(f"training failed at step {state.step + 1} ({error}); lower `lr` (--lr, now "
                                    f"{settings.lr:g}), or check the model. {self._last_checkpoint_note()}") from error
            except ValueError as error:  # the loss refused the model or the data (a contract, a setting)
                raise TrainingError(f"training failed at step {state.step + 1}: {error} "
                                    f"{self._last_checkpoint_note()}") from error
            state.step += 1
            try:
                row = _monitor(run, state, valid, started)
            except FloatingPointError as error:
                # the parameters may be ruined: keep the last checkpoint as it is
                raise TrainingError(f"{error} {self._last_checkpoint_note()}") from error
            except Exception:
                state.elapsed = time.perf_counter() - started
                self._save(run, optimizer, stream, state)  # an evaluation failed: the steps taken are not lost
                raise
            for callback in callbacks:
                callback.on_step(self, state.step)
            if row is not None:
                _report(row, run, bar)
                for callback in callbacks:
                    callback.on_evaluation(self, row)
            bar.update(1)
            if state.step % settings.checkpoint_every == 0 or state.step == settings.steps:
                if row is None:  # between metrics rows: a diverged state must not replace the last good one
                    try:
                        _check_divergence(run, state, _recent_bound(run, state), state.step)
                    except FloatingPointError as error:
                        raise TrainingError(f"{error} {self._last_checkpoint_note()}") from error
                state.elapsed = time.perf_counter() - started
                self._save(run, optimizer, stream, state)
                for callback in callbacks:
                    callback.on_checkpoint(self, out / CHECKPOINT_NAME)
        bar.close()
        for callback in callbacks:
            callback.on_fit_end(self)
        summary = {"steps": state.step, "seconds": round(state.elapsed, 2), "eval_k": settings.eval_k,
                   "out": str(out), "rank": processes.rank, "world_size": processes.world_size}
        if processes.main:
            plot_loss_curve(run.loss.loss_history_, state.metrics, out / "loss_curve.png", self.title)
        return state, summary

    def _last_checkpoint_note(self) -> str:
        """Where the run stands after a failure: the checkpoint that remains (its step), or that there is none."""
        path = self.out / CHECKPOINT_NAME
        step = getattr(self, "_saved_step", None)
        if path.is_file() and step is not None:
            return f"The last checkpoint in {self.out} (step {step}) is from before it."
        if path.is_file():
            return f"The checkpoint in {self.out} is from before it."
        return f"No checkpoint was written in {self.out} before it."

    def _kept_note(self) -> str:
        """After a failed write: what is kept, and how to continue once the cause is gone."""
        path = self.out / CHECKPOINT_NAME
        step = getattr(self, "_saved_step", None)
        if not path.is_file():
            return f"No checkpoint remains in {self.out}."
        return (f"The last good checkpoint in {self.out}{f' (step {step})' if step is not None else ''} is kept: "
                "free space (or make the directory writable) and continue with --resume.")

    def _optimizer(self, run: _Run) -> torch.optim.Optimizer:
        spec = self.optimizer_spec
        if spec is None:
            return default_optimizer(run.loss.parameters(), self.settings.lr)
        if isinstance(spec, torch.optim.Optimizer):
            return spec
        optimizer = spec(run.loss.parameters())
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"Trainer: `optimizer` must be an Optimizer or a function of the parameters returning "
                            f"one; it returned {type(optimizer).__name__}.")
        return optimizer

    def _check_against_record(self, saved: dict[str, Any], path: Path) -> None:
        raise_unless_resumable(saved, self.record_now(), path)

    def record_now(self) -> dict[str, Any]:
        """The run's settings as ``config.json`` records them."""
        if self.record is not None:
            return self.record() if callable(self.record) else self.record
        return {**asdict(self.settings), "loss": type(self.loss).__name__,
                "n_samples": getattr(self.loss, "n_samples", None), "out": str(self.out)}

    # -------------------------------------------------------------------------------------------- restore
    def _restore(self, run: _Run, optimizer: torch.optim.Optimizer, stream: BatchStream, path: Path) -> _Progress:
        """Loads the checkpoint at ``path`` into the loss, optimizer, batch stream and random generators."""
        # To the CPU: RNG states must stay CPU tensors; load_state_dict moves parameters and optimizer state.
        state = load_checkpoint(path, map_location="cpu")
        self.check_resumable(state["config"], path)
        saved_settings = state["loss"].get("_extra_state", {}).get("settings", {})
        if isinstance(run.loss, ELBOLoss) and "kl_warmup_steps" in saved_settings:
            # the warm-up's length was fixed when the run started (a fraction of its steps then)
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
            self._saved_step = progress.step
            raise ConfigError(f"the checkpoint in {path.parent} is already at step {progress.step}; pass --steps "
                              f"above {progress.step} to train further.")
        return progress

    # ----------------------------------------------------------------------------------------------- save
    def _save(self, run: _Run, optimizer: torch.optim.Optimizer, stream: BatchStream, progress: _Progress) -> None:
        """Writes the checkpoint (atomically), ``metrics.csv`` and, for binary latents, ``bit_information.csv``.

        Under torchrun every process takes part (their random generators are gathered) and the main one writes.
        """
        out = self.out
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
            "config": self.record_now(), "step": progress.step, "elapsed": progress.elapsed,
            "loss": run.loss.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng,
            "stream": stream.state_dict(), "metrics": progress.metrics, "last_logged": progress.last_logged,
            "bit_information": bit_information,
            **({"regularizer": run.regularizer.state_dict()} if run.regularizer is not None else {})})
        self._saved_step = progress.step
        # the checkpoint holds every row: a table that fails to be written is written whole at the next save
        table = io.StringIO(newline="")
        writer = csv.DictWriter(table, fieldnames=METRICS_FIELDS)  # rows of older checkpoints: empty bit columns
        writer.writeheader()
        writer.writerows(progress.metrics)
        write_text(out / "metrics.csv", table.getvalue())
        if progress.bit_rows:
            table = io.StringIO(newline="")
            writer = csv.writer(table)
            writer.writerow(["step", *progress.bit_columns])
            writer.writerows([int(row[0]), *row[1:]] for row in progress.bit_rows)
            write_text(out / BIT_INFORMATION_FILE, table.getvalue())


def _training_data(data: Data) -> tuple[Any, Optional[Tensor], bool, Optional[Dataset]]:
    """(training rows, validation rows or None, dynamic binarization, the Dataset if one) from any form of data."""
    if isinstance(data, (str, Path)):
        data = load_dataset(data)
    if isinstance(data, Dataset):
        return data.train, data.valid, data.binarization == "dynamic", data
    if isinstance(data, Tensor):
        return data, None, False, None
    from torch.utils.data import DataLoader
    from torch.utils.data import Dataset as TorchDataset

    if isinstance(data, DataLoader):
        data = data.dataset
    if isinstance(data, TorchDataset) and hasattr(data, "__len__"):
        items = [data[index] for index in range(len(data))]
        rows = [item[0] if isinstance(item, (tuple, list)) else item for item in items]
        if not rows or not all(isinstance(row, Tensor) for row in rows):
            raise TypeError("Trainer: `data`'s items must be tensors (or tuples whose first element is one).")
        return torch.stack(rows), None, False, None
    if hasattr(data, "shape") and hasattr(data, "__getitem__"):  # MappedRows, or another array-like of rows
        return data, None, False, None
    raise TypeError(f"Trainer: `data` must be a tensor of rows, a blackbox_vae Dataset, a path, or a torch Dataset "
                    f"or DataLoader; got {type(data).__name__}.")


def default_optimizer(parameters: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Adam with its fused implementation where torch has one for the parameters (CPU and CUDA, floating
    point): one kernel for all parameters instead of a dozen per tensor, the same update to rounding
    (tests/test_threads.py compares 100 steps), measured faster on the paper models
    (benchmarks/results/optimizer.md)."""
    parameters = list(parameters)
    fused = bool(parameters) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in parameters)
    return torch.optim.Adam(parameters, lr=lr, fused=fused or None)


def _check_finite(rows: Any, argument: str) -> None:
    """Raises ValueError naming the first NaN or infinite value of tensor rows ``[N, ...]`` (row and column, from
    1), which would otherwise surface steps later as non-finite logits of q. Other rows (memory-mapped files)
    were checked when their files were read."""
    if not isinstance(rows, Tensor) or not rows.is_floating_point():
        return
    flat = rows.reshape(len(rows), -1) if rows.dim() else rows.reshape(1, 1)
    bad = ~torch.isfinite(flat)
    if bad.any():
        row, column = (int(i) for i in bad.nonzero()[0])
        raise ValueError(f"Trainer: `{argument}` row {row + 1}, column {column + 1} is {flat[row, column].item()}; "
                         "every value must be finite (fill or drop rows with missing values first).")


def raise_unless_resumable(saved: dict[str, Any], saved_now: dict[str, Any], path: Path,
                           may_change: Iterable[str] = RESUME_MAY_CHANGE, hint: str = "") -> None:
    """Raises `ConfigError` unless every setting outside ``may_change`` equals the checkpoint's."""
    may_change = set(may_change) | {"out"}
    changed = [name for name in saved_now if name not in may_change and saved.get(name) != saved_now[name]]
    if changed:
        details = ", ".join(f"{n}: {saved.get(n)!r} -> {saved_now[n]!r}" for n in changed)
        raise ConfigError(f"cannot resume {path}: these settings differ from the checkpoint's ({details}).{hint} "
                          f"Resume with the same settings (only {', '.join(sorted(may_change))} may change), or "
                          "train into a new directory.")


# ------------------------------------------------------------------------------------------------- step
def _step(run: _Run, optimizer: torch.optim.Optimizer, stream: BatchStream, step: int) -> None:
    """One gradient step on the next batch (``step``: the steps taken before it, for the learning rate)."""
    factor = learning_rate_factor(run.config.lr_schedule or "constant", step, len(stream.data) // stream.batch_size)
    for group, base in zip(optimizer.param_groups, run.base_lrs):
        group["lr"] = base * factor
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.config.precision == "bf16"):
        objective = run.stepper(next(stream))  # the backward pass runs outside autocast, as PyTorch advises
    if run.regularizer is not None:
        objective = objective + run.regularizer_weight * run.regularizer()
    objective.backward()
    if run.config.grad_clip:
        torch.nn.utils.clip_grad_norm_(run.loss.parameters(), run.config.grad_clip)
    optimizer.step()


# ---------------------------------------------------------------------------------------------- monitor
def _validation_bound(run: _Run, data: Tensor, step: int) -> float:
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


def _bit_information(run: _Run, data: Tensor, step: int) -> list[Tensor] | None:
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


def _monitor(run: _Run, progress: _Progress, valid: Optional[Tensor], started: float) -> dict | None:
    """At a logging or evaluation step, appends a metrics row and returns it (else returns None).

    The validation bound is computed last: if it fails, the row is not written, but the training state
    is sound and the caller saves it.

    Raises:
        FloatingPointError: when the training bound became non-finite.
    """
    config, step = run.config, progress.step
    logging = step % config.log_every == 0 or step == config.steps
    evaluating = (step % config.eval_every == 0 or step == config.steps) and valid is not None
    if not (logging or evaluating):
        return None
    _reduce_history(run, progress)
    train_bound = _recent_bound(run, progress)
    _check_divergence(run, progress, train_bound, step)
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


def _recent_bound(run: _Run, progress: _Progress) -> float:
    """The mean training bound of the steps since the last metrics row (NaN when there are none)."""
    step = progress.step
    recent = run.loss.loss_history_[progress.last_logged - step:] if step > progress.last_logged else []
    return -sum(recent) / len(recent) if recent else float("nan")


def _check_divergence(run: _Run, progress: _Progress, train_bound: float, step: int) -> None:
    """Raises FloatingPointError when the training bound is non-finite, or far below the first logged one
    (by more than `DIVERGENCE_FACTOR` times the larger of its magnitude and the data's dimension)."""
    if math.isnan(train_bound) and progress.step <= progress.last_logged:
        return  # no steps since the last row
    advice = f"lower `lr` (--lr, now {run.config.lr:g}), or check the model."
    if not math.isfinite(train_bound):
        raise FloatingPointError(f"the training bound became {train_bound} by step {step} ({run.title}); {advice}")
    history = run.loss.loss_history_
    if not history or not math.isfinite(history[0]):
        return
    first = -history[0]  # the first step's bound: the model as it started
    margin = DIVERGENCE_FACTOR * max(abs(first), progress.data_dim)
    if train_bound < first - margin:
        raise FloatingPointError(f"training diverged by step {step} ({run.title}): the training bound is "
                                 f"{train_bound:.4g} nats, more than {margin:.4g} below the first step's, "
                                 f"{first:.4g}; {advice}")


def _reduce_history(run: _Run, progress: _Progress) -> None:
    """Under torchrun, replaces the loss history's entries since the last call by their mean over the processes:
    each process records its share's objective, and the mean of equal shares' means is the whole batch's."""
    if not run.processes.distributed:
        return
    history = run.loss.loss_history_  # the list itself
    history[progress.reduced:] = run.processes.mean(history[progress.reduced:], run.device)
    progress.reduced = len(history)


def _report(row: dict, run: _Run, bar) -> None:
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
