"""The training configuration: defaults, a JSON/YAML file, and command-line flags, in that order."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

__all__ = ["TrainConfig", "ConfigError", "load_config_file", "RESUME_INVARIANT"]


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
    model: str = "sbn"  # sbn | categorical | gaussian
    layers: list[int] = field(default_factory=lambda: [200])  # latent units per stochastic layer
    hidden: list[int] = field(default_factory=list)  # deterministic widths inside each conditional
    n_classes: int = 10  # classes per latent of the categorical model
    # estimator
    loss: str = "vimco"  # score-function | nvil | vimco | rws | gumbel-softmax | elbo | iwae
    n_samples: int = 5  # K
    baseline: Optional[str] = None  # score-function: mean | leave-one-out
    variance_normalization: bool = True  # nvil
    phi_update: str = "wake"  # rws: wake | sleep | wake-sleep
    temperature: str = "1.0"  # gumbel-softmax: a number, or "anneal"
    straight_through: bool = False  # gumbel-softmax
    gradient: str = "reparam"  # iwae: reparam | stl | dreg
    # optimization
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    device: str = "cpu"
    # monitoring
    log_every: int = 100  # steps between progress-bar updates and metrics rows
    eval_every: int = 1000  # steps between validation bounds
    eval_k: int = 100  # samples of the validation importance-weighted bound
    eval_size: Optional[int] = None  # validation rows used (default: all)
    checkpoint_every: int = 1000
    out: str = "runs/latest"

    def validate(self) -> "TrainConfig":
        for name in ("steps", "batch_size", "n_samples", "log_every", "eval_every", "eval_k", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"`{name}` must be a positive integer; got {value!r}.")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ConfigError(f"`lr` must be a positive number; got {self.lr!r}.")
        if not self.layers or any(not isinstance(h, int) or h < 1 for h in self.layers):
            raise ConfigError(f"`layers` must be a non-empty list of positive integers; got {self.layers!r}.")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
        return cls(**values).validate()


# Settings a resumed run must share with its checkpoint (the others only steer monitoring, or how far to go).
RESUME_INVARIANT = ("data", "data_dir", "binarization", "model", "layers", "hidden", "n_classes", "loss", "n_samples",
                    "baseline", "variance_normalization", "phi_update", "temperature", "straight_through", "gradient",
                    "batch_size", "lr", "seed")


def load_config_file(path: Path) -> dict[str, Any]:
    """Settings from a ``.json`` or ``.yaml``/``.yml`` file (keys as in `TrainConfig`, ``-`` or ``_``).

    Raises:
        ConfigError: if the file is missing, unparsable, or not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path.resolve()} does not exist.")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text)
        else:
            values = json.loads(text)
    except Exception as error:  # yaml and json raise different types
        raise ConfigError(f"config file {path}: cannot parse it ({error}).") from error
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path}: expected a mapping of settings; got {type(values).__name__}.")
    return {key.replace("-", "_"): value for key, value in values.items()}
