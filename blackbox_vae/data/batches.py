"""Shuffled minibatches drawn on the data's device, with resumable state."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["BatchStream"]


class BatchStream:
    """Minibatches of a training tensor, reshuffled each epoch, all on the tensor's device.

    Each epoch visits every row once in a fresh random order (the last incomplete batch is dropped).
    With ``dynamic_binarization`` the rows are intensities in [0, 1] and every batch is binarized
    afresh, so an image is resampled each time it is drawn (Salakhutdinov & Murray 2008). All
    randomness comes from one ``torch.Generator`` on the device, whose state is part of
    `state_dict`, so a resumed run draws exactly the batches an uninterrupted one would.

    Args:
        data: ``[N, *data_shape]``, already on the device to train on.
        batch_size: rows per batch, at most N.
        dynamic_binarization: binarize each batch by Bernoulli sampling.
        seed: seed of the stream's generator.
    """

    def __init__(self, data: Tensor, batch_size: int, dynamic_binarization: bool = False, seed: int = 0):
        if not 1 <= batch_size <= data.shape[0]:
            raise ValueError(f"BatchStream: `batch_size` must be in [1, {data.shape[0]}] (the number of training "
                             f"rows); got {batch_size}.")
        self.data = data
        self.batch_size = batch_size
        self.dynamic_binarization = dynamic_binarization
        self.generator = torch.Generator(device=data.device).manual_seed(seed)
        self._order: Tensor | None = None
        self._position = 0

    def __iter__(self):
        return self

    def __next__(self) -> Tensor:
        if self._order is None or self._position + self.batch_size > self.data.shape[0]:
            self._order = torch.randperm(self.data.shape[0], generator=self.generator, device=self.data.device)
            self._position = 0
        index = self._order[self._position:self._position + self.batch_size]
        self._position += self.batch_size
        batch = self.data[index]  # [batch_size, *data_shape]
        if self.dynamic_binarization:
            batch = torch.bernoulli(batch, generator=self.generator)
        return batch

    def state_dict(self) -> dict[str, Any]:
        """The stream's position, to save with a checkpoint and restore with `load_state_dict`.

        Returns:
            ``{"generator", "order", "position"}``: the generator's state (a CPU ``uint8`` tensor), the
            current epoch's row order (``[N]`` on the data's device, or ``None`` before the first batch)
            and the index of the next batch's first row in it.
        """
        return {"generator": self.generator.get_state(), "order": self._order, "position": self._position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a position saved by `state_dict`, so the stream continues with the same batches.

        Args:
            state: a dict returned by `state_dict`; its row order is moved to the data's device.
        """
        self.generator.set_state(state["generator"])
        self._order = None if state["order"] is None else state["order"].to(self.data.device)
        self._position = int(state["position"])
