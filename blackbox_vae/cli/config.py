"""The training configuration: defaults, a JSON/YAML file, and command-line flags, in that order."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from blackbox_vae.losses.registry import ESTIMATOR_OPTIONS  # the registry defines them

__all__ = ["TrainConfig", "ConfigError", "load_config_file", "ESTIMATOR_OPTIONS", "RESUME_MAY_CHANGE"]


class ConfigError(ValueError):
    """A configuration value or file is invalid; the message names it."""


@dataclass
class TrainConfig:
    """Everything ``blackbox-vae train`` needs; saved as ``config.json`` in the run directory."""

    # data
    data: str = "digits"  # digits | mnist | fashion-mnist | binarized-mnist | gaussian-2d
    data_dir: Optional[str] = None  # directory (or .npz file) holding the data files
    binarization: Optional[str] = None  # static | dynamic (default: dynamic; binarized-mnist is static)
    # model
    model: str = "sbn"  # sbn | categorical | gaussian | hvae-ladder | hvae-reverse | nvae
    layers: Optional[list[int]] = None  # latent units per stochastic layer (default: the model's, see default_layers)
    hidden: list[int] = field(default_factory=list)  # deterministic widths inside each conditional
    n_classes: Optional[int] = None  # classes per latent of the categorical model (default 10)
    architecture: Optional[dict[str, Any]] = None  # nvae: NVAEArchitecture's fields (default: nvae-tiny's)
    # estimator: a name of blackbox_vae.losses.registry.LOSSES, K, and the options of ESTIMATOR_OPTIONS, each
    # None when not given (the loss's own default applies; its choices are the loss class's `choices`)
    loss: str = "vimco"
    n_samples: int = 5
    baseline: Optional[str] = None
    variance_normalization: Optional[bool] = None
    phi_update: Optional[str] = None
    temperature: Optional[str | float] = None
    straight_through: Optional[bool] = None
    gradient: Optional[str] = None
    dreams: Optional[int] = None
    flip_noise: Optional[float] = None
    analytic_kl: Optional[bool] = None
    # training aids (NVAE's; each off by default)
    kl_warmup: Optional[float] = None  # elbo: fraction of --steps over which the KL coefficient rises to 1
    kl_balancing: Optional[bool] = None  # elbo with kl_warmup: NVAE's KL balancing during the warm-up
    spectral_reg: float = 0.0  # coefficient of the spectral regularization of every convolution and linear map
    grad_clip: Optional[float] = None  # clip the gradient's global norm to this (None or 0: no clipping)
    # p(x|z)'s output biases start at the logits of the training data's mean (None: wherever the likelihood is
    # Bernoulli and the model has such a bias; the run's config.json records what took effect)
    output_bias: Optional[bool] = None
    # torch.compile the loss (None: the measured default, see blackbox_vae.cli.training.compile_by_default; the
    # run's config.json records what took effect)
    compile: Optional[bool] = None
    # fp32, or bf16: the loss's forward under bfloat16 autocast (matrix products in bf16; log-probabilities,
    # weights and the validation bound in float32)
    precision: str = "fp32"
    # optimization
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    lr_schedule: Optional[str] = None  # constant | iwae (None: constant); see blackbox_vae.cli.schedules
    seed: int = 0
    device: str = "cpu"
    # processes training together (set from torchrun's environment, not a flag; each sees batch_size / world_size
    # rows of every batch)
    world_size: int = 1
    # monitoring
    log_every: int = 100  # steps between progress-bar updates and metrics rows
    eval_every: int = 1000  # steps between validation bounds
    eval_k: int = 100  # samples of the validation importance-weighted bound
    eval_size: Optional[int] = None  # validation rows used (default: all)
    checkpoint_every: int = 1000
    out: str = "runs/latest"

    def validate(self) -> "TrainConfig":
        """Checks every setting (before any data is read or any step taken) and returns ``self``.

        Numbers given as text (``lr: 1e-3`` in YAML, which PyYAML reads as a string) become numbers.

        Raises:
            ConfigError: naming the first invalid setting, its flag, the value and what is expected.
        """
        for name, optional in (("data", False), ("data_dir", True), ("binarization", True), ("model", False),
                               ("loss", False), ("device", False), ("out", False)):
            value = getattr(self, name)
            if not (isinstance(value, str) or (optional and value is None)):
                raise ConfigError(f"{_name(name)} must be text; got {value!r}.")
        for name in ("steps", "batch_size", "n_samples", "log_every", "eval_every", "eval_k", "checkpoint_every",
                     "seed", "world_size"):
            setattr(self, name, _integer(name, getattr(self, name), minimum=0 if name == "seed" else 1))
        from blackbox_vae.models.registry import MODELS, default_layers

        if self.model not in MODELS:
            raise ConfigError(f"{_name('model')} must be one of {', '.join(MODELS)}; got {self.model!r}.")
        if self.layers is None:
            self.layers = default_layers(self.model)
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
        if self.seed >= 2**32:
            raise ConfigError(f"{_name('seed')} must be below 2**32; got {self.seed}.")
        if self.eval_size is not None:
            self.eval_size = _integer("eval_size", self.eval_size, 1, "or leave it out to use every validation row")
        self.lr = _number("lr", self.lr)
        if not self.lr > 0:
            raise ConfigError(f"{_name('lr')} must be a positive, finite learning rate; got {self.lr!r}.")
        from blackbox_vae.cli.schedules import LR_SCHEDULES

        if self.lr_schedule is not None and self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"{_name('lr_schedule')} must be one of {', '.join(LR_SCHEDULES)}; "
                              f"got {self.lr_schedule!r}.")
        for name, allow_empty in (("layers", self.model == "nvae"), ("hidden", True)):
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
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"{_name('precision')} must be fp32 or bf16; got {self.precision!r}.")
        for name in ("output_bias", "compile"):
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
        if self.grad_clip is not None:
            self.grad_clip = _number("grad_clip", self.grad_clip)
            if not self.grad_clip >= 0:
                raise ConfigError(f"{_name('grad_clip')} must be a gradient norm > 0, or 0 for no clipping; got "
                                  f"{self.grad_clip!r}.")

    def kl_warmup_steps(self) -> int:
        """The KL warm-up in training steps: ``kl_warmup`` (a fraction) of ``steps``."""
        return round((self.kl_warmup or 0.0) * self.steps)

    def _validate_data(self) -> None:
        from blackbox_vae.data import DATASETS

        if self.data not in DATASETS:
            raise ConfigError(f"{_name('data')} must be one of {', '.join(DATASETS)}; got {self.data!r}.")
        if self.data in _NEEDS_DATA_DIR and not self.data_dir:
            raise ConfigError(f"--data {self.data} needs --data-dir: {_NEEDS_DATA_DIR[self.data]} (nothing is "
                              "downloaded).")
        if self.data not in _NEEDS_DATA_DIR and self.data_dir is not None:
            raise ConfigError(f"--data {self.data} reads no files ({'scikit-learn bundles it' if self.data == 'digits' else 'it is generated'}); "
                              "remove --data-dir.")
        allowed = {"binarized-mnist": ("static",), "gaussian-2d": ("none",), "mnist": ("static", "dynamic", "none"),
                   "fashion-mnist": ("static", "dynamic", "none")}.get(self.data, ("static", "dynamic"))
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
        values["binarization"] = effective_binarization(self.data, self.binarization)
        values["lr_schedule"] = self.lr_schedule or "constant"
        if self.model == "categorical" and self.n_classes is None:
            values["n_classes"] = 10
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
    """A setting as the user wrote it: its config key and its flag."""
    return f"`{setting}` (--{setting.replace('_', '-')})"


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


# The settings a resumed run may change: how far to train, where, and how it is monitored. Every other
# setting (a new one too, unless it is added here) must equal the checkpoint's.
#: Settings a resumed run may change. ``output_bias`` acts on the initial parameters only, which the checkpoint
#: replaces: a resumed run keeps (and records) the checkpoint's value. ``compile`` changes how a step is
#: computed, not what: a run may be resumed compiled or not (its random draws then differ from an uninterrupted
#: run's, as a compiled step draws with the compiler's generator).
RESUME_MAY_CHANGE = ("steps", "device", "log_every", "eval_every", "eval_k", "eval_size", "checkpoint_every", "out",
                     "output_bias", "compile")


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
