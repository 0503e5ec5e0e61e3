"""Whether a ready model fits in memory, asked before its parameters are allocated.

A model is built on PyTorch's ``meta`` device (shapes without storage) to count its parameters; an NVAE
with many latent groups is counted at two small group counts and extrapolated (its parameters grow linearly
with the groups, and building thousands of groups takes minutes even without storage). Training holds each
parameter four times in float32: the value, its gradient and Adam's two moments. Activations are not
counted, so a model that passes may still be too large for its batch; one that fails surely is.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch

__all__ = ["count_parameters", "available_memory", "check_model_fits"]

#: Float32 copies of each parameter that training with Adam holds (value, gradient, two moments).
COPIES_IN_TRAINING = 4
#: Total latent groups up to which an NVAE is counted by building it (above: extrapolated).
_GROUPS_BUILT = 32


def _count(build: Callable[[], tuple[torch.nn.Module, ...]]) -> int:
    with torch.device("meta"):
        modules = build()
    return sum(parameter.numel() for module in modules for parameter in module.parameters())


def count_parameters(model: str, build: Callable[[dict[str, Any] | None], tuple[torch.nn.Module, ...]],
                     architecture: dict[str, Any] | None = None) -> int:
    """The parameters of ``build(architecture)``'s modules, counted without allocating them.

    Args:
        model: the ready model's name (``"nvae"`` is extrapolated over its latent groups when it has many).
        build: builds the models from an architecture mapping (None for the other models).
    """
    if model != "nvae":
        return _count(lambda: build(None))
    from blackbox_vae.models.nvae import NVAEArchitecture

    arch = NVAEArchitecture.from_dict(dict(architecture or {}))
    total = sum(arch.groups())
    if total <= _GROUPS_BUILT:
        return _count(lambda: build(arch.to_dict()))
    small = [dataclasses.replace(arch, groups_per_scale=g) for g in (max(arch.min_groups, 1), 2 * max(arch.min_groups, 1))]
    groups = [sum(a.groups()) for a in small]
    counts = [_count(lambda a=a: build(a.to_dict())) for a in small]
    per_group = (counts[1] - counts[0]) / max(groups[1] - groups[0], 1)
    return int(counts[0] + per_group * (total - groups[0]))


def available_memory(device: torch.device) -> int | None:
    """Bytes free for tensors on ``device`` (CPU: the system's MemAvailable), or None when unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_model_fits(n_parameters: int, device: torch.device, what: str) -> None:
    """Raises ValueError, with the estimate, when training ``n_parameters`` cannot fit in ``device``'s memory."""
    needed = n_parameters * 4 * COPIES_IN_TRAINING
    free = available_memory(device)
    if free is not None and needed > free:
        raise ValueError(f"{what} has about {n_parameters:,} parameters: training needs at least "
                         f"{needed / 2**30:,.1f} GiB for them, their gradients and Adam's state, and {device} has "
                         f"{free / 2**30:,.1f} GiB free. Choose smaller sizes.")
