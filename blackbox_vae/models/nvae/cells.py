"""NVAE's residual cells: the encoder's BN-Swish cell, the decoder's inverted residual, squeeze-and-excitation.

Every cell maps ``[N, C_in, H, W]`` to ``[N, C_out, H', W']`` and returns ``skip(x) + 0.1 * branch(x)``: the
small residual scale keeps a deep stack close to the identity at initialization, as in the paper.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["SqueezeExcitation", "EncoderCell", "DecoderCell", "soft_clamp"]

Resample = Literal["same", "down", "up"]
_RESIDUAL_SCALE = 0.1


class SqueezeExcitation(nn.Module):
    """Channel gating by globally pooled features (Hu et al. 2018): ``x * sigmoid(MLP(mean_hw(x)))``."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.gate = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x.mean(dim=(2, 3)))[:, :, None, None]  # [N, C, H, W]


def _skip(c_in: int, c_out: int, resample: Resample) -> nn.Module:
    """The shortcut: identity, or a 1x1 convolution after nearest up-sampling / with stride 2."""
    if resample == "same" and c_in == c_out:
        return nn.Identity()
    if resample == "up":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 1))
    return nn.Conv2d(c_in, c_out, 1, stride=2 if resample == "down" else 1)


class EncoderCell(nn.Module):
    """Residual cell: BN - Swish - conv3x3 - BN - Swish - conv3x3 - squeeze-excitation.

    ``resample="down"`` halves the resolution (the first convolution has stride 2).
    """

    def __init__(self, c_in: int, c_out: int, resample: Resample = "same", squeeze_excitation: bool = True):
        super().__init__()
        if resample == "up":
            raise ValueError("EncoderCell: `resample` must be 'same' or 'down'; got 'up'.")
        self.skip = _skip(c_in, c_out, resample)
        self.branch = nn.Sequential(
            nn.BatchNorm2d(c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, stride=2 if resample == "down" else 1, padding=1),
            nn.BatchNorm2d(c_out), nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1),
            SqueezeExcitation(c_out) if squeeze_excitation else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + _RESIDUAL_SCALE * self.branch(x)


class DecoderCell(nn.Module):
    """Inverted residual (MobileNetV2): BN - conv1x1 (expand) - BN - Swish - depthwise conv5x5 - BN - Swish -
    conv1x1 - BN - squeeze-excitation.

    ``resample="up"`` doubles the resolution first (nearest neighbour), as NVAE's up-sampling cells do.
    """

    def __init__(self, c_in: int, c_out: int, resample: Resample = "same", expansion: int = 6,
                 squeeze_excitation: bool = True):
        super().__init__()
        if resample == "down":
            raise ValueError("DecoderCell: `resample` must be 'same' or 'up'; got 'down'.")
        wide = c_in * expansion
        self.skip = _skip(c_in, c_out, resample)
        self.branch = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest") if resample == "up" else nn.Identity(),
            nn.BatchNorm2d(c_in), nn.Conv2d(c_in, wide, 1),
            nn.BatchNorm2d(wide), nn.SiLU(), nn.Conv2d(wide, wide, 5, padding=2, groups=wide),
            nn.BatchNorm2d(wide), nn.SiLU(), nn.Conv2d(wide, c_out, 1), nn.BatchNorm2d(c_out),
            SqueezeExcitation(c_out) if squeeze_excitation else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + _RESIDUAL_SCALE * self.branch(x)


def soft_clamp(x: Tensor, bound: float = 5.0) -> Tensor:
    """``bound * tanh(x / bound)``: a smooth clamp of means and log-scales, which keeps a deep hierarchy's first
    steps from producing huge KL terms (NVAE's stabilizer)."""
    return bound * torch.tanh(x / bound)
