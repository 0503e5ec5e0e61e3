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

    For data-parallel training, ``shard=(rank, world_size)`` makes the stream yield process ``rank``'s
    share of each batch: rows ``[rank * b, (rank + 1) * b)`` of the batch, ``b = batch_size / world_size``.
    Every process draws the same whole batches (same seed, same generator), so the shares together are
    exactly the batches of one process. (`torch.utils.data.DistributedSampler` shards each epoch's order
    instead; its batches differ from one process's, so a run could not match its single-process twin.)

    Args:
        data: ``[N, *data_shape]``, already on the device to train on.
        batch_size: rows per batch (the whole batch, over all processes), at most N.
        dynamic_binarization: binarize each batch by Bernoulli sampling.
        seed: seed of the stream's generator.
        shard: ``(rank, world_size)``: yield this process's share of each batch (default: all of it).
    """

    def __init__(self, data: Tensor, batch_size: int, dynamic_binarization: bool = False, seed: int = 0,
                 shard: tuple[int, int] = (0, 1)):
        if not 1 <= batch_size <= data.shape[0]:
            raise ValueError(f"BatchStream: `batch_size` must be in [1, {data.shape[0]}] (the number of training "
                             f"rows); got {batch_size}.")
        rank, world_size = shard
        if world_size < 1 or not 0 <= rank < world_size or batch_size % world_size:
            raise ValueError(f"BatchStream: `shard` must be (rank, world_size) with 0 <= rank < world_size and "
                             f"world_size dividing batch_size {batch_size}; got {shard}.")
        share = batch_size // world_size
        self._rows = slice(rank * share, (rank + 1) * share)
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
        if self.dynamic_binarization:  # the whole batch, so that every process's generator advances alike
            batch = torch.bernoulli(batch, generator=self.generator)
        return batch[self._rows]

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
