"""Rows of an array on disk, read by batches: a training split larger than memory."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["MappedRows"]

#: Rows converted at a time when a pass over all of them is needed (a mean, a scan).
_CHUNK_ROWS = 4096


class MappedRows:
    """The rows ``rows`` of a memory-mapped array ``[N, *shape]``, flattened to ``[n, D]`` float32 when read.

    Indexing reads only the rows asked for (the operating system pages them in and may drop them again),
    so a `BatchStream` over it holds one batch in memory, not the file. The values read are
    ``(array[row] - shift) * scale``, e.g. ``scale = 1/255`` for 8-bit images.

    It has what the training loop asks of a training split: ``shape``, ``len``, ``device``, ``dtype``,
    indexing by a tensor of row numbers or a slice (returning a ``Tensor``), ``to(device)`` (a CPU
    device keeps it mapped; another reads it whole onto that device) and `mean`.

    Args:
        array: a ``numpy.memmap`` (``np.load(path, mmap_mode="r")``), ``[N, ...]``.
        rows: the row numbers of this split, ``[n]`` int64 (default: all N).
        scale: the conversion's factor (a number, or ``[D]`` per column).
        shift: what is subtracted first (a number, or ``[D]``: with ``scale``, a standardization).
    """

    def __init__(self, array: np.ndarray, rows: np.ndarray | None = None, scale: Any = 1.0, shift: Any = 0.0):
        self.array = array.reshape(len(array), -1)  # a view: nothing is read
        self.rows = np.arange(len(array)) if rows is None else np.asarray(rows, dtype=np.int64)
        self.scale, self.shift = np.float32(scale) if np.isscalar(scale) else np.asarray(scale, np.float32), \
            np.float32(shift) if np.isscalar(shift) else np.asarray(shift, np.float32)
        self.device = torch.device("cpu")
        self.dtype = torch.float32

    @property
    def shape(self) -> torch.Size:
        """``[n, D]``: the rows of this split and the values of each (flattened)."""
        return torch.Size((len(self.rows), self.array.shape[1]))

    def __len__(self) -> int:
        return len(self.rows)

    def dim(self) -> int:
        """2, as for a ``[n, D]`` tensor."""
        return 2

    def __getitem__(self, index: Any) -> Tensor:
        if isinstance(index, Tensor):
            index = index.cpu().numpy()
        rows = self.rows[index]
        # sorted reads are sequential on disk; the rows are put back in the order asked for
        order = np.argsort(rows, kind="stable")
        values = np.empty((len(rows), self.array.shape[1]), dtype=np.float32)
        values[order] = self.array[rows[order]]
        if self._converts:
            values = (values - self.shift) * self.scale
        return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))

    @property
    def _converts(self) -> bool:
        return not (np.isscalar(self.scale) and self.scale == 1 and np.isscalar(self.shift) and self.shift == 0)

    def to(self, device: Any) -> "MappedRows | Tensor":
        """Itself on the CPU (still mapped); on another device, every row read onto it."""
        device = torch.device(device)
        return self if device.type == "cpu" else self[:].to(device)

    def mean(self, dim: int = 0) -> Tensor:
        """The mean row ``[D]`` (float64), read in chunks."""
        if dim != 0:
            raise ValueError(f"MappedRows.mean: only the mean over rows (dim 0) is supported; got dim={dim}.")
        total = torch.zeros(self.array.shape[1], dtype=torch.float64)
        for start in range(0, len(self), _CHUNK_ROWS):
            total += self[start:start + _CHUNK_ROWS].double().sum(0)
        return total / max(len(self), 1)

    def __repr__(self) -> str:
        return f"MappedRows({len(self)} of {len(self.array)} rows of {self.array.shape[1]} values, {self.array.dtype})"
