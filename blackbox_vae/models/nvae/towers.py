"""NVAE's two towers: the bottom-up encoder (q's features of x) and the top-down decoder (p's path).

The decoder walks the latent groups coarsest first. At each group it computes the prior's parameters from its
state ``h``, lets a *chooser* supply that group's latent (q's posterior draw, a prior draw, or given latents),
and merges the latent into ``h``. The same walk serves p (scoring given latents), q (the residual posterior
needs the prior's parameters at every group) and ancestral sampling.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn
import torch.nn.functional as F

from blackbox_vae.models.nvae.architecture import NVAEArchitecture
from blackbox_vae.models.nvae.cells import DecoderCell, EncoderCell, soft_clamp
from blackbox_vae.models.nvae.likelihoods import logistic_mixture_channels

__all__ = ["EncoderTower", "TopDownDecoder", "Normal", "GroupChooser", "pad", "crop"]

#: A floor on every standard deviation (as NVAE's): a vanishing scale would make log-densities explode.
MIN_SCALE = 1e-2
_LOG_2PI = math.log(2 * math.pi)


class Normal(NamedTuple):
    """A diagonal Normal of one latent group, ``[N, C, H, W]`` each, from unconstrained parameters.

    ``raw_mean`` and ``raw_log_scale`` are the parameters before the soft clamp: q's residual posterior adds
    its offsets to the prior's raw parameters (as NVAE does), so zero offsets give exactly the prior.
    """

    mean: Tensor
    scale: Tensor
    raw_mean: Tensor
    raw_log_scale: Tensor

    @classmethod
    def from_raw(cls, mean: Tensor, log_scale: Tensor) -> "Normal":
        return cls(soft_clamp(mean), torch.exp(soft_clamp(log_scale)) + MIN_SCALE, mean, log_scale)

    @classmethod
    def standard(cls, like: Tensor) -> "Normal":
        """N(0, 1) shaped like ``like``."""
        zeros = torch.zeros_like(like)
        return cls(zeros, torch.ones_like(like), zeros, zeros)

    def log_prob(self, z: Tensor) -> Tensor:
        """Summed over the group: ``[N]``. Written out rather than torch.distributions.Normal, whose argument
        checks and broadcasting cost more than the arithmetic here (the walk calls it per group)."""
        standardized = (z - self.mean) / self.scale
        log_density = -0.5 * standardized.square() - torch.log(self.scale) - 0.5 * _LOG_2PI
        return log_density.flatten(1).sum(1)

    def rsample(self, temperature: float = 1.0) -> Tensor:
        """``mean + temperature * scale * eps``: temperature 0 gives the mean."""
        return self.mean + temperature * self.scale * torch.randn_like(self.mean)

    def kl(self, other: "Normal") -> Tensor:
        """KL(self || other) in closed form, summed over the group: ``[N]``."""
        ratio = (self.scale / other.scale).square()
        kl = 0.5 * (ratio + ((self.mean - other.mean) / other.scale).square() - 1 - torch.log(ratio))
        return kl.flatten(1).sum(1)


#: chooser(group, decoder state h [N, C, H, W], prior) -> the group's latent [N, C_z, H, W]
GroupChooser = Callable[[int, Tensor, Normal], Tensor]


class EncoderTower(nn.Module):
    """x -> the features of each latent group's posterior, bottom-up.

    Args:
        arch: the architecture.
        image_channels: C of the images.

    ``forward(x [B, C, S, S])`` returns one feature map per group, in the decoder's (top-down) order: the
    top group's ``[B, C_e, s_0, s_0]`` first.
    """

    def __init__(self, arch: NVAEArchitecture, image_channels: int):
        super().__init__()
        se, channels = arch.squeeze_excitation, arch.encoder_channels
        self.stem = nn.Conv2d(image_channels, channels, 3, padding=1)
        preprocess = []
        for _ in range(arch.preprocess_blocks):
            for cell in range(arch.preprocess_cells):
                last = cell == arch.preprocess_cells - 1
                preprocess.append(EncoderCell(channels, 2 * channels if last else channels,
                                              "down" if last else "same", se))
                channels = 2 * channels if last else channels
        self.preprocess = nn.Sequential(*preprocess)
        # the tower: per group (finest scale first) its cells; between scales a down-sampling cell
        self.group_cells, self.downs = nn.ModuleList(), nn.ModuleList()
        groups = list(reversed(arch.groups()))  # finest first
        for scale, count in enumerate(groups):
            for _ in range(count):
                self.group_cells.append(nn.Sequential(*(EncoderCell(channels, channels, "same", se)
                                                        for _ in range(arch.encoder_cells))))
            if scale < len(groups) - 1:
                self.downs.append(EncoderCell(channels, 2 * channels, "down", se))
                channels *= 2
        self.scale_of_cell = [scale for scale, count in enumerate(groups) for _ in range(count)]
        self.top = nn.Sequential(nn.ELU(), nn.Conv2d(channels, channels, 1), nn.ELU())  # NVAE's enc0

    def forward(self, images: Tensor) -> list[Tensor]:
        h = self.preprocess(self.stem(2 * images - 1))
        features = []
        for index, cells in enumerate(self.group_cells):
            if index > 0 and self.scale_of_cell[index] != self.scale_of_cell[index - 1]:
                h = self.downs[self.scale_of_cell[index] - 1](h)
            h = cells(h)
            features.append(h)
        features[-1] = self.top(h)  # the top group reads the tower's end
        return features[::-1]  # top-down order


class TopDownDecoder(nn.Module):
    """p's top-down path: a learned initial state, then per latent group its cells, the prior's parameters
    and the merge of the latent; finally the post-processing cells and the likelihood's parameters.

    Args:
        arch: the architecture.
        image_shape: ``(C, H, W)`` of the (unpadded) images.
    """

    def __init__(self, arch: NVAEArchitecture, image_shape: tuple[int, int, int]):
        super().__init__()
        self.arch, self.image_shape = arch, tuple(image_shape)
        se, size = arch.squeeze_excitation, arch.image_size or image_shape[1]
        groups = arch.groups()  # coarsest first
        channels = arch.decoder_channels * 2 ** (arch.preprocess_blocks + arch.scales - 1)
        side = size // arch.reduction
        self.h0 = nn.Parameter(torch.rand(channels, side, side))
        self.group_cells, self.prior_heads, self.merges, self.ups = (nn.ModuleList() for _ in range(4))
        #: per group: (its scale, the latent's shape [C_z, s, s], the decoder's channels there)
        self.group_shapes: list[tuple[int, int, int]] = []
        self.group_channels: list[int] = []
        self.scale_of_group: list[int] = []
        for scale, count in enumerate(groups):
            for _ in range(count):
                first = not self.group_shapes
                self.group_cells.append(nn.Sequential(*(
                    () if first else (DecoderCell(channels, channels, "same", arch.decoder_expansion, se)
                                      for _ in range(arch.decoder_cells)))))
                self.prior_heads.append(nn.Identity() if first else nn.Sequential(
                    nn.ELU(), nn.Conv2d(channels, 2 * arch.latent_channels, 1)))
                self.merges.append(nn.Conv2d(channels + arch.latent_channels, channels, 1))
                self.group_shapes.append((arch.latent_channels, side, side))
                self.group_channels.append(channels)
                self.scale_of_group.append(scale)
            if scale < len(groups) - 1:
                self.ups.append(DecoderCell(channels, channels // 2, "up", arch.decoder_expansion, se))
                channels, side = channels // 2, side * 2
        postprocess = []
        for _ in range(arch.postprocess_blocks):
            for cell in range(arch.postprocess_cells):
                first = cell == 0
                postprocess.append(DecoderCell(channels, channels // 2 if first else channels, "up" if first else "same",
                                               arch.decoder_expansion, se))
                channels = channels // 2 if first else channels
        self.postprocess = nn.Sequential(*postprocess)
        out = image_shape[0] if arch.likelihood == "bernoulli" else logistic_mixture_channels(arch.mixtures,
                                                                                              image_shape[0])
        self.output = nn.Sequential(nn.ELU(), nn.Conv2d(channels, out, 3, padding=1))

    @property
    def n_groups(self) -> int:
        return len(self.group_shapes)

    def walk(self, n: int, choose: GroupChooser) -> tuple[list[Tensor], list[Normal], Tensor]:
        """Runs the path for ``n`` rows; ``choose`` supplies each group's latent.

        Returns:
            ``(latents, priors, h)``: each group's latent ``[n, C_z, s, s]`` and prior, and the final state.
        """
        h = self.h0.expand(n, *self.h0.shape)
        latents, priors = [], []
        for group in range(self.n_groups):
            if group > 0 and self.scale_of_group[group] != self.scale_of_group[group - 1]:
                h = self.ups[self.scale_of_group[group] - 1](h)
            h = self.group_cells[group](h)
            if group == 0:  # the top prior is a fixed standard Normal
                prior = Normal.standard(h.new_empty(n, *self.group_shapes[0]))
            else:
                prior = Normal.from_raw(*self.prior_heads[group](h).chunk(2, dim=1))
            z = choose(group, h, prior)
            latents.append(z)
            priors.append(prior)
            h = self.merges[group](torch.cat([h, z], dim=1))
        return latents, priors, h

    def likelihood_parameters(self, h: Tensor) -> Tensor:
        """The likelihood's parameters from the final state, cropped to the images: ``[n, P, H, W]``."""
        out = self.output(self.postprocess(h))
        return crop(out, self.image_shape[1:])


def pad(images: Tensor, size: int) -> Tensor:
    """Zero-pads ``[N, C, H, W]`` images to ``size`` x ``size``, centred (as NVAE pads MNIST to 32)."""
    height, width = images.shape[-2:]
    top, left = (size - height) // 2, (size - width) // 2
    return F.pad(images, (left, size - width - left, top, size - height - top))


def crop(maps: Tensor, shape: tuple[int, int]) -> Tensor:
    """The centre ``shape`` of ``[N, P, S, S]`` maps (undoes `pad`)."""
    size, (height, width) = maps.shape[-1], shape
    top, left = (size - height) // 2, (size - width) // 2
    return maps[..., top:top + height, left:left + width]
