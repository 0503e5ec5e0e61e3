"""The NVAE architecture's settings: a small dataclass, checked field by field, and its derived sizes."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Optional

__all__ = ["NVAEArchitecture", "ArchitectureError", "LIKELIHOODS"]

#: p(x|z): Bernoulli (binary images) or the discretized logistic mixture (8-bit images)
LIKELIHOODS = ("bernoulli", "logistic-mixture")


def field_name(name: str) -> str:
    """A field as a config file (``architecture.NAME``) and the command line (``--arch NAME=VALUE``) spell it."""
    return f"`architecture.{name}` (--arch {name}=VALUE)"


class ArchitectureError(ValueError):
    """An NVAE architecture setting is invalid; the message names the field (``architecture.FIELD``)."""


@dataclass
class NVAEArchitecture:
    """The shape of an NVAE (Vahdat & Kautz 2020); the defaults are the ``nvae-tiny`` preset's.

    The encoder tower runs bottom-up: a stem, ``preprocess_blocks`` blocks of ``preprocess_cells`` residual
    cells (the last of each halves the resolution and doubles the channels), then ``scales`` latent scales
    (finest first, halving between them). The decoder runs top-down through the same scales, coarsest first,
    one latent group at a time, then ``postprocess_blocks`` blocks that double the resolution back.
    """

    image_size: Optional[int] = None  # images are zero-padded to this side (None: the data's own; 32 for MNIST)
    scales: int = 2  # latent scales
    groups_per_scale: int = 4  # latent groups at the coarsest scale
    adaptive_groups: bool = True  # halve the groups at each finer scale ...
    min_groups: int = 1  # ... but keep at least this many
    latent_channels: int = 8  # channels of each latent group
    encoder_channels: int = 8  # channels after the stem (doubled at each down-sampling)
    decoder_channels: int = 8  # channels after the last up-sampling (doubled at each coarser level)
    preprocess_blocks: int = 2
    preprocess_cells: int = 1
    postprocess_blocks: int = 2
    postprocess_cells: int = 1
    encoder_cells: int = 1  # residual cells per latent group in the encoder tower
    decoder_cells: int = 1  # inverted-residual cells per latent group in the top-down path
    decoder_expansion: int = 2  # channel expansion inside an inverted-residual cell (the paper: 6)
    squeeze_excitation: bool = True
    likelihood: str = "bernoulli"
    mixtures: int = 10  # components of the logistic mixture

    # --------------------------------------------------------------- checks
    def validate(self, image_shape: Optional[tuple[int, int, int]] = None) -> "NVAEArchitecture":
        """Checks every field (and, given the data's ``(C, H, W)``, that the scales divide the image size).

        Returns:
            ``self``.

        Raises:
            ArchitectureError: naming the first invalid field, its value and what is expected.
        """
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.name == "likelihood":
                if value not in LIKELIHOODS:
                    raise ArchitectureError(f"{field_name('likelihood')} must be one of {', '.join(LIKELIHOODS)}; "
                                            f"got {value!r}.")
            elif spec.name in ("adaptive_groups", "squeeze_excitation"):
                if not isinstance(value, bool):
                    raise ArchitectureError(f"{field_name(spec.name)} must be true or false; got {value!r}.")
            elif spec.name == "image_size" and value is None:
                continue
            else:
                minimum = 0 if spec.name in ("preprocess_blocks", "postprocess_blocks") else 1
                if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                    what = "a positive integer" if minimum else "an integer >= 0"
                    hint = " (a model needs at least one latent group)" if spec.name in (
                        "groups_per_scale", "scales", "min_groups") else ""
                    raise ArchitectureError(f"{field_name(spec.name)} must be {what}{hint}; got {value!r}.")
        if self.preprocess_blocks != self.postprocess_blocks:
            raise ArchitectureError(f"{field_name('postprocess_blocks')} ({self.postprocess_blocks}) must equal "
                                    f"`architecture.preprocess_blocks` ({self.preprocess_blocks}): the decoder "
                                    "up-samples back to the image size the encoder down-sampled from.")
        if image_shape is not None:
            self._validate_image(image_shape)
        return self

    def _validate_image(self, image_shape: tuple[int, int, int]) -> None:
        _, height, width = image_shape
        size = self.image_size if self.image_size is not None else height
        if height != width:
            raise ArchitectureError(f"NVAE models square images; the data's images are {height}x{width}.")
        if size < height:
            raise ArchitectureError(f"{field_name('image_size')} ({size}) is smaller than the data's images "
                                    f"({height}x{width}); give at least {height} (images are padded, never cropped).")
        if size % self.reduction:
            fits = math.ceil(size / self.reduction) * self.reduction
            raise ArchitectureError(
                f"{field_name('image_size')} {size} cannot be divided by the {self.reduction}x down-sampling of "
                f"{self.preprocess_blocks} preprocessing block(s) and {self.scales} latent scale(s); pad the images "
                f"to a multiple of {self.reduction} (e.g. `architecture.image_size: {fits}`), or use fewer blocks "
                "or scales.")

    # --------------------------------------------------------------- derived sizes
    @property
    def reduction(self) -> int:
        """How much the encoder shrinks an image side: 2^(preprocess_blocks + scales - 1)."""
        return 2 ** (self.preprocess_blocks + self.scales - 1)

    def groups(self) -> list[int]:
        """Latent groups per scale, coarsest first (NVAE's "adaptive groups": halved at each finer scale, at
        least ``min_groups``)."""
        counts, n = [], self.groups_per_scale
        for _ in range(self.scales):
            counts.append(n)
            if self.adaptive_groups:
                n = max(self.min_groups, n // 2)
        return counts

    def to_dict(self) -> dict[str, Any]:
        """The fields as a mapping (a config's ``architecture``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Optional[dict[str, Any]]) -> "NVAEArchitecture":
        """From a config's ``architecture`` mapping (keys with ``-`` or ``_``); missing keys take the defaults.

        Raises:
            ArchitectureError: for a key that is not a field, or an invalid value.
        """
        values = {str(key).replace("-", "_"): value for key, value in (values or {}).items()}
        known = {spec.name for spec in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ArchitectureError(f"`architecture` has unknown field(s) {', '.join(unknown)}; known: "
                                    f"{', '.join(sorted(known))}.")
        return cls(**values).validate()
