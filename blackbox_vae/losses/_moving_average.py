"""A bias-corrected exponential moving average kept in buffers."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MovingAverage(nn.Module):
    """Exponential moving average with Adam-style bias correction.

    ``value`` is ``sum_s decay^(t-s) x_s / sum_s decay^(t-s)`` over the updates
    so far (zero before the first), so early values are not pulled towards
    zero. The state lives in buffers: it follows ``.to(device)`` and
    round-trips through ``state_dict()``. Reading and updating need no host
    synchronization.

    Args:
        decay: in [0, 1).
        device: where the buffers are created; the losses pass their models' device, so that a loss built
            from models already on a GPU works there without a ``.to()`` of its own.
    """

    def __init__(self, decay: float, device: torch.device | str | None = None):
        super().__init__()
        self.decay = float(decay)
        self.register_buffer("total", torch.zeros((), device=device))
        self.register_buffer("weight", torch.zeros((), device=device))  # 1 - decay^t

    def value(self) -> Tensor:
        """The current average (a 0-d tensor; zero before any update)."""
        return torch.where(self.weight > 0, self.total / self.weight.clamp_min(1e-30), torch.zeros_like(self.total))

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        """Folds in ``x`` (a 0-d tensor)."""
        self.total.mul_(self.decay).add_((1 - self.decay) * x.to(self.total.dtype))
        self.weight.mul_(self.decay).add_(1 - self.decay)

    @staticmethod
    def device_of(*modules: nn.Module) -> torch.device:
        """The device of the first parameter or buffer of ``modules`` (the CPU when they hold none)."""
        for module in modules:
            for tensor in (*module.parameters(), *module.buffers()):
                return tensor.device
        return torch.device("cpu")

    def extra_repr(self) -> str:
        return f"decay={self.decay}"
