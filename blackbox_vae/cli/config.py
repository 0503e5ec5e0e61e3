"""The training configuration: defaults, a JSON/YAML file, and command-line flags, in that order."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from blackbox_vae.cli.schedules import LR_SCHEDULES
from blackbox_vae.data.datasets import BINARIZATIONS, DATASETS
from blackbox_vae.data.user_files import LIKELIHOODS
from blackbox_vae.losses.registry import ESTIMATOR_OPTIONS, LOSSES  # the registry defines them
from blackbox_vae.models.registry import DEFAULT_N_CLASSES, MODELS

__all__ = ["TrainerSettings", "TrainConfig", "ConfigError", "load_config_file", "ESTIMATOR_OPTIONS", "RESUME_MAY_CHANGE"]


class ConfigError(ValueError):
    """A configuration value or file is invalid; the message names it."""


# ------------------------------------------------------------------------------ one declaration per setting
# Each setting is declared once, below, as a dataclass field whose metadata holds its flag's help, type and
# choices and whether a resumed run may change it (as Hugging Face's HfArgumentParser reads dataclasses):
# `blackbox_vae.cli.build_parser` makes the flags from it, `RESUME_MAY_CHANGE` the resume rule, and the
# config file takes the field names.
def setting(default: Any = None, help: str = "", *, default_factory: Any = None, flag: Optional[str] = None,
            resume: bool = False, **argparse_options: Any) -> Any:
    """A `TrainConfig` field: its default, its flag's help (``{default}`` in it is filled in), the argparse
    options of its flag (``type``, ``choices``, ``metavar``, ``action``, ``dest``), the flag's name if not
    ``--field-name`` (``flag=""``: no flag), and ``resume=True`` where a resumed run may change it."""
    metadata = {"help": help, "flag": flag, "resume": resume, "argparse": argparse_options}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def int_list(text: str) -> list[int]:
    """A flag's comma-separated positive integers, e.g. ``200,200,200``."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 200,200,200; got {text!r}") from error
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers like 200,200,200; got {text!r}")
    return values


def positive_int(text: str) -> int:
    """A flag's positive integer."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return value


def boolean(text: str) -> bool:
    """A flag's true or false (also 1/0, yes/no, on/off)."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false; got {text!r}")


def key_value(text: str) -> tuple[str, object]:
    """``FIELD=VALUE`` with the value read as YAML (``8`` an int, ``true`` a bool, ``null`` None)."""
    import yaml

    field_name, equals, value = text.partition("=")
    if not equals or not field_name.strip():
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE like groups_per_scale=8; got {text!r}")
    try:
        return field_name.strip().replace("-", "_"), yaml.safe_load(value)
    except yaml.YAMLError as error:
        raise argparse.ArgumentTypeError(f"cannot read the value of {text!r} ({error})") from error


BOOL = {"type": boolean, "metavar": "{true,false}"}


@dataclass
class TrainerSettings:
    """How a `blackbox_vae.Trainer` trains: the settings of the training loop, whatever the model and data.

    `TrainConfig` (the command line's) extends it with the data, the model and the estimator.
    """

    # optimization
    steps: int = setting(3000, "steps in all (default {default})", type=int, resume=True)
    batch_size: int = setting(64, "default {default}; under torchrun the whole batch of all processes", type=int)
    lr: float = setting(1e-3, "Adam learning rate (default {default})", type=float)
    lr_schedule: Optional[str] = setting(None, "constant (default), or iwae: Burda et al.'s rate x 10^(-i/7) in "
                                         "stages i = 0..7 of 3^i epochs", choices=LR_SCHEDULES)
    grad_clip: Optional[float] = setting(None, "clip the gradient's global norm to this (default and 0: no "
                                         "clipping)", type=float)
    seed: int = setting(0, "default {default}", type=int)
    device: str = setting("cpu", "cpu, cuda, cuda:1, ... (default {default})", resume=True)
    # processes training together (set from torchrun's environment, not a flag; each sees batch_size / world_size
    # rows of every batch)
    world_size: int = setting(1, flag="")
    # torch.compile the loss (None: the measured default, see blackbox_vae.trainer.compile_by_default; the
    # run's config.json records what took effect). It changes how a step is computed, not what: a run may be
    # resumed compiled or not (its random draws then differ from an uninterrupted run's).
    compile: Optional[bool] = setting(None, "torch.compile the loss (default: off; measured in "
                                      "docs/command_line.md)", resume=True, **BOOL)
    # CPU threads (None or 0: as many as the cores other processes leave idle, re-measured every 2 s; see
    # blackbox_vae/threads.py). A run may be resumed with other threads: only the speed changes.
    threads: Optional[int] = setting(None, "CPU threads of a step (default 0: the cores other processes leave idle, "
                                     "adapted as they come and go; N: exactly N)", type=int, resume=True)
    precision: str = setting("fp32", "bf16: the networks under bfloat16 autocast, log-probabilities and weights in "
                             "float32 (default {default})", choices=("fp32", "bf16"))
    # monitoring
    log_every: int = setting(100, "steps between progress-bar updates and metrics rows (default {default})",
                             type=int, resume=True)
    eval_every: int = setting(1000, "steps between validation bounds (default {default})", type=int, resume=True)
    eval_k: int = setting(100, "samples of the validation bound (default {default})", type=int, resume=True)
    eval_size: Optional[int] = setting(None, "validation rows to evaluate on (default all)", type=int, resume=True)
    checkpoint_every: int = setting(1000, "default {default}", type=int, resume=True)
    snapshot_every: Optional[int] = setting(None, "every N steps, write a grid of samples and reconstructions into "
                                            "RUN/snapshots/ (image data)", type=positive_int, metavar="N",
                                            resume=True)
    tensorboard: Optional[bool] = setting(None, "also write scalars (bounds, loss, learning rate, gradient norm) and "
                                          "image grids into RUN/tensorboard/ (pip install "
                                          "'blackbox_vae[tensorboard]')", resume=True, **BOOL)

    def validate(self) -> "TrainerSettings":
        """Checks the loop's settings and returns ``self`` (numbers given as text become numbers).

        Raises:
            ConfigError: naming the first invalid setting, its flag, the value and what is expected.
        """
        if not isinstance(self.device, str):
            raise ConfigError(f"{_name('device')} must be text; got {self.device!r}.")
        for name in ("steps", "batch_size", "log_every", "eval_every", "eval_k", "checkpoint_every", "seed",
                     "world_size"):
            setattr(self, name, _integer(name, getattr(self, name), minimum=0 if name == "seed" else 1))
        if self.threads is not None:
            self.threads = _integer("threads", self.threads, 0, "or 0 for the adaptive default")
        if self.seed >= 2**32:
            raise ConfigError(f"{_name('seed')} must be below 2**32; got {self.seed}.")
        if self.eval_size is not None:
            self.eval_size = _integer("eval_size", self.eval_size, 1, "or leave it out to use every validation row")
        if self.snapshot_every is not None:
            self.snapshot_every = _integer("snapshot_every", self.snapshot_every, 1, "or leave it out for none")
        self.lr = _number("lr", self.lr)
        if not self.lr > 0:
            raise ConfigError(f"{_name('lr')} must be a positive, finite learning rate; got {self.lr!r}.")
        if self.lr_schedule is not None and self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"{_name('lr_schedule')} must be one of {', '.join(LR_SCHEDULES)}; "
                              f"got {self.lr_schedule!r}.")
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"{_name('precision')} must be fp32 or bf16; got {self.precision!r}.")
        for name in ("compile", "tensorboard"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{_name(name)} must be true or false; got {getattr(self, name)!r}.")
        if self.grad_clip is not None:
            self.grad_clip = _number("grad_clip", self.grad_clip)
            if not self.grad_clip >= 0:
                raise ConfigError(f"{_name('grad_clip')} must be a gradient norm > 0, or 0 for no clipping; got "
                                  f"{self.grad_clip!r}.")
        return self

    def settings(self) -> "TrainerSettings":
        """The loop's settings alone (a `TrainConfig` holds more)."""
        return TrainerSettings(**{f.name: getattr(self, f.name) for f in fields(TrainerSettings)})


@dataclass
class TrainConfig(TrainerSettings):
    """Everything ``blackbox-vae train`` needs; saved as ``config.json`` in the run directory."""

    # data: a bundled data set, or the path of a data file or image folder (see blackbox_vae.data.load_data_file)
    data: str = setting("digits", "a bundled data set (default {default}), or your own: an .npy (memory-mapped), "
                        ".npz (arrays train and optionally valid, test), .csv or .tsv file (numeric; a header row is "
                        "detected), or a folder of PNG, JPEG or BMP images (subfolders too)",
                        metavar="{" + ",".join(DATASETS) + "} or PATH")
    data_dir: Optional[str] = setting(None, "the bundled data set's directory (or .npz file) with its files")
    binarization: Optional[str] = setting(None, "8-bit images: default dynamic (binarized-mnist: static); none keeps "
                                          "the levels k/255 (for --model nvae's logistic mixture)",
                                          choices=BINARIZATIONS)
    # a data file's or image folder's (None: the data's own; a run's config.json records what took effect)
    likelihood: Optional[str] = setting(None, "your data: override the likelihood the values imply ({0, 1}: "
                                        "bernoulli; 8-bit images: bernoulli after --binarization, or 8-bit with "
                                        "--binarization none; other values: gaussian)", choices=LIKELIHOODS)
    standardize: Optional[bool] = setting(None, "your Gaussian data: standardize each column with the training "
                                          "split's mean and standard deviation (samples are mapped back)", **BOOL)
    image_size: Optional[int] = setting(None, "an image folder: centre-crop every image to a square (its shorter "
                                        "side) and resize it to N x N (needed when sizes differ)",
                                        type=positive_int, metavar="N")
    channels: Optional[int] = setting(None, "an image folder: convert to greyscale (1) or RGB (3) (default: 1 if "
                                      "every image is greyscale, else 3)", type=int, choices=(1, 3))
    valid_fraction: Optional[float] = setting(None, "your data without a valid split: the fraction of rows cut for "
                                              "it (default 0.1)", type=float)
    test_fraction: Optional[float] = setting(None, "your data without a test split: the fraction of rows cut for "
                                             "it (default 0.1)", type=float)
    split_seed: Optional[int] = setting(None, "the seed of the permutation that cuts those splits (default 0; "
                                        "recorded, so that evaluate scores the same rows)", type=int)
    # model: a ready one, or a user's factory "package.module:function" (see blackbox_vae.models.factory)
    model: str = setting("sbn", "a ready model (default {default}), or your factory function(data_dim, image_shape, "
                         "likelihood, **options) -> (inf_net, gen_model)",
                         metavar="{" + ",".join(MODELS) + "} or package.module:function")
    model_options: Optional[dict[str, Any]] = setting(
        None, "an option of your model factory, read as YAML (repeatable; over the --config file's "
        "`model_options`)", flag="--model-option", action="append", type=key_value, metavar="KEY=VALUE",
        dest="model_option")
    layers: Optional[list[int]] = setting(None, "latent units per stochastic layer, e.g. 200,200,200 (default 200; "
                                          "30,100 for the hvae models, top layer first)", type=int_list)
    hidden: list[int] = setting(default_factory=list, help="deterministic hidden widths, e.g. 200,200",
                                type=int_list)
    n_classes: Optional[int] = setting(None, f"categorical: classes per latent (default {DEFAULT_N_CLASSES})",
                                       type=int)
    architecture: Optional[dict[str, Any]] = setting(
        None, "nvae: set one architecture field, e.g. --arch groups_per_scale=8 (repeatable; over the --config "
        "file's `architecture`)", flag="--arch", action="append", type=key_value, metavar="FIELD=VALUE", dest="arch")
    # estimator: a name of blackbox_vae.losses.registry.LOSSES, K, and the options of ESTIMATOR_OPTIONS, each
    # None when not given (the loss's own default applies; its flags, choices and defaults come from the loss
    # classes: blackbox_vae.cli.build_parser)
    loss: str = setting("vimco", "estimator (default {default})", choices=tuple(LOSSES))
    n_samples: int = setting(5, "K (default {default})", type=int)
    baseline: Optional[str] = setting(flag="")
    variance_normalization: Optional[bool] = setting(flag="")
    phi_update: Optional[str] = setting(flag="")
    temperature: Optional[str | float] = setting(flag="")
    straight_through: Optional[bool] = setting(flag="")
    gradient: Optional[str] = setting(flag="")
    dreams: Optional[int] = setting(flag="")
    flip_noise: Optional[float] = setting(flag="")
    analytic_kl: Optional[bool] = setting(flag="")
    # training aids (NVAE's; each off by default)
    kl_warmup: Optional[float] = setting(None, "elbo: the fraction of --steps over which the KL coefficient rises "
                                         "linearly to 1 (default 0: none)", type=float)
    kl_balancing: Optional[bool] = setting(None, "elbo with --kl-warmup: NVAE's per-group KL balancing during the "
                                           "warm-up (default false)", **BOOL)
    spectral_reg: float = setting(0.0, "coefficient of the spectral regularization of every convolution and linear "
                                  "map (default 0: off)", type=float)
    # p(x|z)'s output biases start at the logits of the training data's mean (None: wherever the likelihood is
    # Bernoulli and the model has such a bias; the run's config.json records what took effect). It acts on the
    # initial parameters only, which a checkpoint replaces: a resumed run keeps (and records) the checkpoint's.
    output_bias: Optional[bool] = setting(None, "start p(x|z)'s output biases at the logits of the training data's "
                                          "mean, as the papers do (default true for binary data and models with "
                                          "such a bias)", resume=True, **BOOL)
    out: str = setting("runs/latest", "run directory (default {default})", resume=True)

    def validate(self) -> "TrainConfig":
        """Checks every setting (before any data is read or any step taken) and returns ``self``.

        Numbers given as text (``lr: 1e-3`` in YAML, which PyYAML reads as a string) become numbers.

        Raises:
            ConfigError: naming the first invalid setting, its flag, the value and what is expected.
        """
        for name, optional in (("data", False), ("data_dir", True), ("binarization", True), ("model", False),
                               ("loss", False), ("out", False)):
            value = getattr(self, name)
            if not (isinstance(value, str) or (optional and value is None)):
                raise ConfigError(f"{_name(name)} must be text; got {value!r}.")
        super().validate()
        self.n_samples = _integer("n_samples", self.n_samples, 1)
        from blackbox_vae.models.registry import MODELS, default_layers

        if self.is_factory_model:
            self._validate_factory_model()
        elif self.model not in MODELS:
            raise ConfigError(f"{_name('model')} must be one of {', '.join(MODELS)}, or a factory of your own as "
                              f"package.module:function; got {self.model!r}.")
        elif self.model_options is not None:
            raise ConfigError(f"{_name('model_options')} are the keyword options of a model factory "
                              f"(--model package.module:function), not of --model {self.model}; remove them.")
        if self.layers is None:
            self.layers = [] if self.is_factory_model else default_layers(self.model)
        if self.loss in ("rebar", "relax", "unordered-set") and self.model in ("sbn", "hvae-ladder", "hvae-reverse") \
                and isinstance(self.layers, list) and len(self.layers) > 1:
            why = ("it draws distinct values of one layer" if self.loss == "unordered-set"
                   else "its control variate is built for one")
            raise ConfigError(f"{_name('layers')} is {','.join(map(str, self.layers))}: --loss {self.loss} takes one "
                              f"stochastic layer ({why}); give one layer, or use --loss disarm for several.")
        self._validate_architecture()
        if self.n_classes is not None:
            if self.model != "categorical":
                raise ConfigError(f"{_name('n_classes')} applies to --model categorical, not to --model {self.model}; "
                                  "remove it.")
            self.n_classes = _integer("n_classes", self.n_classes, minimum=2)
        for name, allow_empty in (("layers", self.model == "nvae" or self.is_factory_model), ("hidden", True)):
            values = getattr(self, name)
            if not isinstance(values, list) or (not values and not allow_empty) or any(
                    isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in values):
                what = "a list of positive integers (e.g. 200,200)" + ("" if allow_empty else ", not empty")
                raise ConfigError(f"{_name(name)} must be {what}; got {values!r}.")
        self._validate_data()
        self._validate_estimator_options()
        self._validate_training_aids()
        out = Path(self.out)
        if out.exists() and not out.is_dir():
            raise ConfigError(f"{_name('out')} {str(out)!r} is a file; it must be a directory for the run's files "
                              "(give another path).")
        return self

    @property
    def is_factory_model(self) -> bool:
        """Whether ``model`` names a user's factory (``package.module:function``) rather than a ready model."""
        return isinstance(self.model, str) and ":" in self.model

    @property
    def is_data_file(self) -> bool:
        """Whether ``data`` names a file or folder of one's own rather than a bundled data set."""
        from blackbox_vae.data import DATASETS

        return self.data not in DATASETS

    def _validate_factory_model(self) -> None:
        module, _, function = self.model.partition(":")
        if not module or not function or not all(part.isidentifier() for part in (*module.split("."), *function.split("."))):
            raise ConfigError(f"{_name('model')} {self.model!r}: a factory is named package.module:function (as "
                              "uvicorn names an app), e.g. my_models:build.")
        if self.model_options is not None and not (isinstance(self.model_options, dict)
                                                   and all(isinstance(k, str) for k in self.model_options)):
            raise ConfigError(f"{_name('model_options')} must be a mapping of option names to values; got "
                              f"{self.model_options!r}.")
        for name in ("hidden", "n_classes", "architecture"):
            if getattr(self, name) not in (None, []):
                raise ConfigError(f"{_name(name)} shapes the ready models, not the factory {self.model}; pass your "
                                  f"factory's own settings with --model-option KEY=VALUE.")
        if self.layers not in (None, []):
            raise ConfigError(f"{_name('layers')} shapes the ready models, not the factory {self.model}; pass your "
                              "factory's own settings with --model-option KEY=VALUE.")

    def _validate_architecture(self) -> None:
        if self.model != "nvae":
            if self.architecture is not None:
                raise ConfigError(f"{_name('architecture')} shapes --model nvae, not --model {self.model}; remove it.")
            return
        for name in ("layers", "hidden"):
            if getattr(self, name):
                raise ConfigError(f"{_name(name)} does not apply to --model nvae: its latent groups and widths are "
                                  f"set by `architecture` (e.g. --arch groups_per_scale=4); got {getattr(self, name)!r}.")
        self.layers = []
        if self.architecture is not None and not isinstance(self.architecture, dict):
            raise ConfigError(f"`architecture` must be a mapping of NVAE settings; got {self.architecture!r}.")
        from blackbox_vae.models.nvae.architecture import ArchitectureError, NVAEArchitecture

        try:
            self.architecture = NVAEArchitecture.from_dict(self.architecture).to_dict()
        except ArchitectureError as error:
            raise ConfigError(str(error)) from error

    def _validate_training_aids(self) -> None:
        if self.kl_warmup is not None:
            if self.loss != "elbo":
                raise ConfigError(f"{_name('kl_warmup')} warms up the KL term of --loss elbo, not of --loss "
                                  f"{self.loss}; remove it.")
            self.kl_warmup = _number("kl_warmup", self.kl_warmup)
            if not 0 <= self.kl_warmup <= 1:
                raise ConfigError(f"{_name('kl_warmup')} must be a fraction of --steps in [0, 1] (0: no warm-up); got "
                                  f"{self.kl_warmup!r}.")
        for name in ("output_bias",):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{_name(name)} must be true or false; got {getattr(self, name)!r}.")
        if self.kl_balancing is not None:
            if not isinstance(self.kl_balancing, bool):
                raise ConfigError(f"{_name('kl_balancing')} must be true or false; got {self.kl_balancing!r}.")
            if self.kl_balancing and not self.kl_warmup:
                raise ConfigError(f"{_name('kl_balancing')} acts during the KL warm-up only; give --kl-warmup (a "
                                  "fraction of --steps > 0), or remove it.")
        self.spectral_reg = _number("spectral_reg", self.spectral_reg)
        if self.spectral_reg < 0:
            raise ConfigError(f"{_name('spectral_reg')} must be >= 0 (0: off); got {self.spectral_reg!r}.")

    def kl_warmup_steps(self) -> int:
        """The KL warm-up in training steps: ``kl_warmup`` (a fraction) of ``steps``."""
        return round((self.kl_warmup or 0.0) * self.steps)

    def _validate_data(self) -> None:
        from blackbox_vae.data import DATASETS, LIKELIHOODS

        file_settings = ("likelihood", "standardize", "image_size", "channels", "valid_fraction", "test_fraction",
                         "split_seed")
        if self.is_data_file:
            path = Path(self.data)
            if not path.exists():
                raise ConfigError(f"{_name('data')} {self.data!r} is neither a data set ({', '.join(DATASETS)}) nor "
                                  "an existing file or folder (.npy, .npz, .csv, .tsv, or a folder of images).")
            if self.data_dir is not None:
                raise ConfigError(f"--data {self.data} is read itself; --data-dir applies to the bundled data sets. "
                                  "Remove --data-dir.")
            if self.likelihood is not None and self.likelihood not in LIKELIHOODS:
                raise ConfigError(f"{_name('likelihood')} must be one of {', '.join(LIKELIHOODS)}; got "
                                  f"{self.likelihood!r}.")
            if self.standardize is not None and not isinstance(self.standardize, bool):
                raise ConfigError(f"{_name('standardize')} must be true or false; got {self.standardize!r}.")
            for name in ("valid_fraction", "test_fraction"):
                if getattr(self, name) is not None:
                    setattr(self, name, _number(name, getattr(self, name)))
                    if not 0 < getattr(self, name) < 1:
                        raise ConfigError(f"{_name(name)} must be a fraction in (0, 1); got {getattr(self, name)!r}.")
            if self.image_size is not None:
                self.image_size = _integer("image_size", self.image_size, 1)
            if self.channels is not None and (isinstance(self.channels, bool) or self.channels not in (1, 3)):
                raise ConfigError(f"{_name('channels')} must be 1 (greyscale) or 3 (RGB); got {self.channels!r}.")
            if self.split_seed is not None:
                self.split_seed = _integer("split_seed", self.split_seed, 0)
            if (self.image_size is not None or self.channels is not None) and not path.is_dir():
                raise ConfigError(f"--image-size and --channels convert the images of a folder; {self.data} is a "
                                  "file. Remove them.")
            if self.binarization not in (None, *BINARIZATIONS):
                raise ConfigError(f"{_name('binarization')} must be static, dynamic or none; got "
                                  f"{self.binarization!r}.")
            return
        given = [name for name in file_settings if getattr(self, name) is not None]
        if given:
            raise ConfigError(f"{_name(given[0])} applies to data files and image folders, not to the bundled "
                              f"--data {self.data}; remove it.")
        if self.data in _NEEDS_DATA_DIR and not self.data_dir:
            raise ConfigError(f"--data {self.data} needs --data-dir: {_NEEDS_DATA_DIR[self.data]} (nothing is "
                              "downloaded).")
        if self.data not in _NEEDS_DATA_DIR and self.data_dir is not None:
            raise ConfigError(f"--data {self.data} reads no files ({'scikit-learn bundles it' if self.data == 'digits' else 'it is generated'}); "
                              "remove --data-dir.")
        allowed = {"binarized-mnist": ("static",), "gaussian-2d": ("none",), "mnist": BINARIZATIONS,
                   "fashion-mnist": BINARIZATIONS}.get(self.data, BINARIZATIONS[:2])
        if self.binarization is not None and self.binarization not in allowed:
            hint = f"one of {', '.join(allowed)}" if allowed != ("none",) else "'none' or left out (real-valued data)"
            raise ConfigError(f"{_name('binarization')} must be {hint} for --data {self.data}; "
                              f"got {self.binarization!r}.")

    def _validate_estimator_options(self) -> None:
        from blackbox_vae.losses.registry import LOSSES, option_choices

        if self.loss not in LOSSES:
            raise ConfigError(f"`loss` must be one of {', '.join(LOSSES)}; got {self.loss!r}.")
        takes = LOSSES[self.loss].options
        for option in ESTIMATOR_OPTIONS:
            value = getattr(self, option)
            if value is None:
                continue
            if option not in takes:
                owners = [name for name, spec in LOSSES.items() if option in spec.options]
                raise ConfigError(f"`{option}` is an option of {' and '.join(owners)}, not of --loss {self.loss} "
                                  f"({'its options: ' + ', '.join(takes) if takes else 'it takes none'}); remove it.")
            if option == "temperature":
                self.temperature = _temperature(value)
                continue
            if option == "dreams":
                self.dreams = _integer("dreams", value, 1)
                continue
            if option == "flip_noise":
                self.flip_noise = _number("flip_noise", value)
                if not 0 <= self.flip_noise < 0.5:
                    raise ConfigError(f"{_name('flip_noise')} must be a probability in [0, 0.5); got {value!r}.")
                continue
            choices = option_choices(self.loss, option)
            if choices is not None and not any(value is c or (type(value) is type(c) and value == c) for c in choices):
                raise ConfigError(f"`{option}` of --loss {self.loss} must be one of "
                                  f"{', '.join(map(repr, choices))}; got {value!r}.")

    def estimator_options(self) -> dict[str, Any]:
        """The options given for the loss (those left at None take the loss's defaults)."""
        return {option: getattr(self, option) for option in ESTIMATOR_OPTIONS if getattr(self, option) is not None}

    def effective(self) -> dict[str, Any]:
        """Every setting with the value it takes effect with: the binarization the data set uses, and the loss's
        options filled in with its defaults."""
        from blackbox_vae.data import effective_binarization
        from blackbox_vae.losses.registry import LOSSES, option_default

        values = asdict(self)
        if self.is_data_file:  # build_run records the likelihood, binarization and split fractions that took effect
            values["data"] = str(Path(self.data).resolve())  # evaluate and sample may run from another folder
            values["split_seed"] = self.split_seed or 0
            values["standardize"] = bool(self.standardize)
        else:
            values["binarization"] = effective_binarization(self.data, self.binarization)
        values["lr_schedule"] = self.lr_schedule or "constant"
        if self.model == "categorical" and self.n_classes is None:
            values["n_classes"] = DEFAULT_N_CLASSES
        if self.loss == "elbo":
            values["kl_warmup"] = self.kl_warmup or 0.0
            values["kl_balancing"] = bool(self.kl_balancing)
        for option in LOSSES[self.loss].options:
            if values[option] is None:
                values[option] = option_default(self.loss, option)
        return values

    def to_dict(self) -> dict[str, Any]:
        """The settings as saved in ``config.json``: the effective ones."""
        return self.effective()

    @classmethod
    def from_saved(cls, values: dict[str, Any], source: str) -> "TrainConfig":
        """A config saved in a run (``config.json``, a checkpoint), also by earlier versions that recorded every
        estimator option, the loss's or not: those of other losses are dropped."""
        from blackbox_vae.losses.registry import LOSSES

        values = dict(values)
        takes = LOSSES[values["loss"]].options if values.get("loss") in LOSSES else ESTIMATOR_OPTIONS
        for option in ESTIMATOR_OPTIONS:
            if option not in takes:
                values[option] = None
        if values.get("model") != "categorical":
            values["n_classes"] = None  # earlier versions recorded its default for every model
        values.setdefault("output_bias", False)  # runs saved before the setting existed started from zero biases
        values.setdefault("world_size", 1)  # and before data-parallel training, in one process
        values.setdefault("compile", False)  # and before --compile, eagerly
        values.setdefault("precision", "fp32")
        return cls.from_dict(values, source)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
        return cls(**values).validate()


# Where the files of the data sets that need them are (their loaders read these).
_NEEDS_DATA_DIR = {"mnist": "the directory with MNIST's four IDX files",
                   "fashion-mnist": "the directory with Fashion-MNIST's four IDX files",
                   "binarized-mnist": "the .npz file (or the directory of the .amat files) of binarized MNIST"}


def _name(setting: str) -> str:
    """A setting as the user wrote it: its config key and its flag (the field's own, e.g. ``--arch`` for
    ``architecture``; the estimators' options have flags of the loss registry's, named after the field)."""
    declared = TrainConfig.__dataclass_fields__.get(setting)
    flag = (declared.metadata.get("flag") if declared is not None else None) or "--" + setting.replace("_", "-")
    if declared is not None and declared.metadata["argparse"].get("action") == "append":  # one entry per flag
        flag = f"{flag} {declared.metadata['argparse']['metavar']}"
    return f"`{setting}` ({flag})"


def _number(setting: str, value: Any) -> float:
    """A finite number, also from text such as YAML's ``1e-3`` (which PyYAML reads as a string)."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{_name(setting)} must be a finite number; got {value!r}.")
    return float(value)


def _integer(setting: str, value: Any, minimum: int, hint: str = "") -> int:
    """An integer >= ``minimum``, also from text or from an integral float (``1e4`` in YAML)."""
    number = value
    if isinstance(value, (str, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except ValueError:
            number = None
        number = int(number) if number is not None and math.isfinite(number) and number == int(number) else None
    if isinstance(number, bool) or not isinstance(number, int) or number < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{_name(setting)} must be {what}{' (' + hint + ')' if hint else ''}; got {value!r}.")
    return number


#: Settings a resumed run may change (their fields say ``resume=True``): how far to train, where, how it is
#: monitored, and ``output_bias`` and ``compile`` (see their fields). Every other setting, a new one too unless it
#: says otherwise, must equal the checkpoint's.
RESUME_MAY_CHANGE = tuple(f.name for f in fields(TrainConfig) if f.metadata.get("resume"))


def _temperature(value: Any) -> float | str:
    """A temperature setting: ``"anneal"``, or a number > 0 (also given as text)."""
    if value == "anneal":
        return value
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not number > 0 or math.isinf(number):
        raise ConfigError(f"`temperature` must be a number > 0 or 'anneal'; got {value!r}.")
    return number


def load_config_file(path: Path) -> dict[str, Any]:
    """Settings from a ``.json`` or ``.yaml``/``.yml`` file (keys as in `TrainConfig`, ``-`` or ``_``).

    Raises:
        ConfigError: if the file is missing, unparsable, or not a mapping.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"`config` (--config) {path} is a directory; give the settings file.")
    if not path.is_file():
        raise ConfigError(f"config file {path.resolve()} does not exist.")
    try:
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text)
        else:
            values = json.loads(text)
    except Exception as error:  # yaml and json raise different types
        raise ConfigError(f"config file {path}: cannot parse it ({error}).") from error
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path}: expected a mapping of settings; got {type(values).__name__}.")
    keys = [key for key in values if not isinstance(key, str)]
    if keys:
        raise ConfigError(f"config file {path}: setting names must be text; got {keys[0]!r}.")
    return {key.replace("-", "_"): value for key, value in values.items()}
