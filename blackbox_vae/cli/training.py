"""`blackbox-vae train`: a run built from its config and trained by `blackbox_vae.Trainer`.

`build_run` reads the data and builds the models and the loss as the config says; `train` checks every
setting, builds the run and hands it to the `Trainer`, which holds the one training loop of the code base.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from blackbox_vae.cli.config import RESUME_MAY_CHANGE, ConfigError, TrainConfig
from blackbox_vae.data import Dataset, load_dataset
from blackbox_vae.losses.base import Loss
from blackbox_vae.losses.elbo import ELBOLoss
from blackbox_vae.losses.registry import LOSSES, build_loss
from blackbox_vae.models.output_bias import initialize_output_bias
from blackbox_vae.models.registry import MODELS, build_models
from blackbox_vae.cli.distributed import Processes
from blackbox_vae.trainer import Trainer, TrainingError, compile_by_default, resolve_device

__all__ = ["Run", "build_run", "load_data", "train", "resolve_device", "TrainingError", "compile_by_default"]


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


def load_data(config: TrainConfig) -> Dataset:
    """The data ``config`` names; for a data file or image folder, records in ``config`` the likelihood,
    binarization and split fractions that took effect (config.json then says them, and `evaluate` reads the
    same rows again).

    Raises:
        DataFileError: one line naming the file and what is wrong with it.
    """
    if not config.is_data_file:
        return load_dataset(config.data, Path(config.data_dir) if config.data_dir else None, config.binarization,
                            seed=config.seed)
    dataset = load_dataset(Path(config.data), binarization=config.binarization, seed=config.seed,
                           likelihood=config.likelihood, valid_fraction=config.valid_fraction,
                           test_fraction=config.test_fraction, split_seed=config.split_seed or 0,
                           image_size=config.image_size, channels=config.channels,
                           standardize=bool(config.standardize))
    config.binarization, config.likelihood = dataset.binarization, dataset.likelihood
    config.valid_fraction = dataset.cut_fractions.get("valid")
    config.test_fraction = dataset.cut_fractions.get("test")
    config.split_seed = config.split_seed or 0
    config.standardize = bool(config.standardize)
    return dataset


def build_run(config: TrainConfig, device: torch.device | None = None, dataset: Dataset | None = None,
              check_models: bool = False) -> Run:
    """Loads the data (unless given) and builds models and loss as ``config`` says (parameters seeded by
    ``config.seed``).

    Args:
        check_models: run the contract checks (`blackbox_vae.testing.check_inf_net`, `check_gen_model`) on
            one batch of the models of a factory (``--model package.module:function``).

    Raises:
        ConfigError: when the model or the loss cannot be built as configured (e.g. a reparameterized
            estimator on discrete latents: the loss's own construction-time error, passed on).
    """
    device = device or resolve_device(config.device)
    dataset = dataset if dataset is not None else load_data(config)
    torch.manual_seed(config.seed)
    if config.is_factory_model:
        from blackbox_vae.models.factory import ModelFactoryError, build_factory_models

        try:
            if check_models:  # on a copy of its own (a forward may change batch-norm statistics), drawing from a
                with torch.random.fork_rng():  # forked generator: the run's models and draws are as without it
                    build_factory_models(config.model, dataset.data_dim, dataset.image_shape, dataset.likelihood,
                                         config.model_options, example=dataset.valid[:8])
            inf_net, gen_model = build_factory_models(config.model, dataset.data_dim, dataset.image_shape,
                                                      dataset.likelihood, config.model_options)
        except ModelFactoryError as error:
            raise ConfigError(str(error)) from error
    else:
        _check_model_size(config, dataset, device)
        try:
            inf_net, gen_model = build_models(config.model, dataset.data_dim, dataset.likelihood, config.layers,
                                              config.hidden, config.n_classes or 10, image_shape=dataset.image_shape,
                                              architecture=config.architecture)
        except ValueError as error:
            raise ConfigError(str(error)) from error
    applied = False
    if config.output_bias is not False and dataset.likelihood == "bernoulli":
        # a memory-mapped split is read in chunks for its mean row, which gives the same bias as all rows
        train = dataset.train if isinstance(dataset.train, torch.Tensor) else dataset.train.mean(0)[None]
        applied = initialize_output_bias(gen_model, train)
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
        if not config.is_factory_model and any(not getattr(inf_net, f"has_{hook}")
                                                for hook in LOSSES[config.loss].loss_class.needs):
            hint = f" Models that --loss {config.loss} can train: {', '.join(_models_for(config.loss))}."
        raise ConfigError(f"--model {config.model} with --loss {config.loss}: {error}{hint}") from error
    if check_models:
        _check_one_batch(config, loss, dataset.valid[:config.batch_size].to(device))
    regularizer = None
    if config.spectral_reg:
        from blackbox_vae.models.nvae.spectral import SpectralRegularizer

        regularizer = SpectralRegularizer(loss).to(device)
    return Run(config, dataset, loss.to(device), device, regularizer)


def _check_model_size(config: TrainConfig, dataset: Dataset, device: torch.device) -> None:
    """Refuses, before any allocation, sizes whose parameters cannot fit in memory (`blackbox_vae.models.size`).

    Raises:
        ConfigError: with the estimate.
    """
    from blackbox_vae.models.size import check_model_fits, count_parameters

    def build(architecture):
        return build_models(config.model, dataset.data_dim, dataset.likelihood, config.layers, config.hidden,
                            config.n_classes or 10, image_shape=dataset.image_shape,
                            architecture=architecture if architecture is not None else config.architecture)

    try:
        n_parameters = count_parameters(config.model, build, config.architecture)
        check_model_fits(n_parameters, device, f"--model {config.model} with these sizes (--layers, --hidden, --arch)")
    except ValueError as error:
        raise ConfigError(str(error)) from error


def _check_one_batch(config: TrainConfig, loss: Loss, batch: torch.Tensor) -> None:
    """Calls a copy of the loss on one batch (from a forked generator), so that a loss the models cannot serve
    fails here, before the run directory is touched, rather than at step 1.

    Raises:
        ConfigError: naming the model, the loss and the loss's own error.
    """
    import copy

    with torch.random.fork_rng(devices=[batch.device] if batch.device.type == "cuda" else []):
        try:
            copy.deepcopy(loss)(batch)
        except (TypeError, ValueError, NotImplementedError) as error:
            raise ConfigError(f"--model {config.model} with --loss {config.loss} fails on one batch of the data: "
                              f"{(str(error).splitlines() or [''])[0]}") from error


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


def _check_resumable(saved: dict[str, Any], config: TrainConfig, path: Path) -> None:
    """Raises unless every setting outside `RESUME_MAY_CHANGE` equals the checkpoint's (effective values); the
    resumed run then records the checkpoint's ``output_bias`` (it acted on the initial parameters only)."""
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
    config.output_bias = TrainConfig.from_saved(saved, f"{path} (its config)").output_bias


def train(config: TrainConfig, resume: bool = False, progress: bool | None = None,
          overwrite: bool = False, callbacks: tuple = ()) -> dict[str, Any]:
    """Trains as ``config`` says, writing into ``config.out``; returns a summary.

    Every setting is checked, the data read and the models and loss built (a factory's models checked on one
    batch) before the run directory is touched; `Trainer.fit` then trains and writes ``config.json`` (the
    settings that took effect), ``checkpoint.pt``, ``metrics.csv`` (the validation bound every
    ``eval_every``, with the summary of the per-bit information for binary latents: ``active_bits`` and
    ``bit_information``), ``bit_information.csv`` and ``loss_curve.png``; see `blackbox_vae.Trainer` for
    resume, the run lock and torchrun. A data file's one-line description is printed to stderr first.

    Args:
        config: the settings.
        resume: continue from the run directory's checkpoint.
        progress: show a tqdm progress bar (default: when stderr is a terminal). Without one, a line is
            printed at every evaluation.
        overwrite: delete the run directory's old run files first.
        callbacks: `blackbox_vae.Callback` objects for the Trainer.

    Returns:
        ``{"steps", "seconds", "train_bound", "valid_bound", "eval_k", "out", "rank", "world_size"}`` (the bounds
        on the main process only).

    Raises:
        ConfigError: for invalid settings, a run directory in use or holding a run, or a checkpoint that
            cannot be resumed with these settings.
        DataFileError: for data that cannot be read or modelled as asked.
    """
    config.validate()
    processes = Processes.from_environment()
    config.world_size = processes.world_size
    device = resolve_device(processes.device(config.device))  # a setting too: checked before the data are read
    dataset = load_data(config)
    if dataset.description and processes.main:
        print(dataset.description, file=sys.stderr)
    run = build_run(config, device, dataset, check_models=not resume)
    trainer = Trainer(run.loss, dataset, config.out, settings=config, callbacks=callbacks, progress=progress,
                      record=config.to_dict, check_resumable=lambda saved, path: _check_resumable(saved, config, path),
                      regularizer=run.regularizer, regularizer_weight=config.spectral_reg,
                      title=f"{config.loss} (K={config.n_samples}), {config.model} on {config.data}")
    return trainer.fit(config.steps, resume=resume, overwrite=overwrite)
