"""Codes: a model's latents for a batch of data, flattened to one row per data point, and back.

A sampler models the distribution of codes ``[N, D]``. `CodeLayout` records how the latents (a tensor, or a
tuple/dict of them, one per stochastic layer) map to the ``D`` columns, and what kind of values each
latent holds: ``"real"``, ``"binary"`` (0/1 values) or ``"one-hot"`` (0/1 values whose last dimension sums
to one: categorical latents). Hierarchical latents are modeled jointly, as one code per data point, and
decoded whole. Discrete codes also convert to category indices ``[N, V]`` (a bit is a variable of two
categories; a one-hot vector one of C), which is what the discrete samplers model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from blackbox_vae.latents import Latents

__all__ = ["CodeLayout", "LeafLayout", "code_kind"]


def code_kind(values: Tensor) -> str:
    """``"one-hot"``, ``"binary"`` or ``"real"``: what the values ``[N, *shape]`` of one latent are."""
    if not bool(((values == 0) | (values == 1)).all()):
        return "real"
    if values.dim() >= 2 and values.shape[-1] >= 2 and bool((values.sum(-1) == 1).all()):
        return "one-hot"
    return "binary"


@dataclass
class LeafLayout:
    """One latent tensor's place in the code: its shape after the batch axis, kind and first column."""

    shape: tuple[int, ...]
    kind: str
    start: int

    @property
    def size(self) -> int:
        return math.prod(self.shape)


class CodeLayout:
    """How latents map to codes ``[N, D]`` and back.

    Args:
        structure: the latents' container, with each tensor replaced by its index in ``leaves``
            (an int, or a tuple/list/dict of such).
        leaves: one `LeafLayout` per latent tensor.
    """

    def __init__(self, structure: Any, leaves: list[LeafLayout]):
        self.structure, self.leaves = structure, leaves

    @classmethod
    def of(cls, latents: Latents) -> "CodeLayout":
        """The layout of latents with leading dimension ``[N]`` (one code per row)."""
        leaves: list[LeafLayout] = []

        def visit(value: Any) -> Any:
            if isinstance(value, Tensor):
                start = leaves[-1].start + leaves[-1].size if leaves else 0
                leaves.append(LeafLayout(tuple(value.shape[1:]), code_kind(value), start))
                return len(leaves) - 1
            if isinstance(value, dict):
                return {key: visit(item) for key, item in value.items()}
            if isinstance(value, (tuple, list)):
                return type(value)(visit(item) for item in value)
            raise TypeError(f"latents must be tensors, or tuples/lists/dicts of them; got {type(value).__name__}.")

        structure = visit(latents)
        return cls(structure, leaves)

    @property
    def dim(self) -> int:
        """D, the length of a code."""
        return sum(leaf.size for leaf in self.leaves)

    @property
    def kinds(self) -> set[str]:
        """The kinds of the latents: a subset of {"real", "binary", "one-hot"}."""
        return {leaf.kind for leaf in self.leaves}

    def flatten(self, latents: Latents) -> Tensor:
        """Latents with leading dimension ``[N]`` -> codes ``[N, D]``."""
        tensors: list[Tensor] = []

        def visit(value: Any) -> None:
            if isinstance(value, Tensor):
                tensors.append(value.reshape(value.shape[0], -1))
            elif isinstance(value, dict):
                for item in value.values():
                    visit(item)
            else:
                for item in value:
                    visit(item)

        visit(latents)
        return torch.cat(tensors, dim=1)

    def unflatten(self, codes: Tensor) -> Latents:
        """Codes ``[N, D]`` -> latents with leading dimension ``[N]``, in the layout's container."""
        n = codes.shape[0]

        def build(node: Any) -> Any:
            if isinstance(node, int):
                leaf = self.leaves[node]
                return codes[:, leaf.start:leaf.start + leaf.size].reshape(n, *leaf.shape)
            if isinstance(node, dict):
                return {key: build(item) for key, item in node.items()}
            return type(node)(build(item) for item in node)

        return build(self.structure)

    # --------------------------------------------------------------- discrete codes as categories
    @property
    def cardinalities(self) -> list[int]:
        """The number of categories of each discrete variable (2 per bit, C per one-hot vector)."""
        counts: list[int] = []
        for leaf in self.leaves:
            if leaf.kind == "one-hot":
                counts += [leaf.shape[-1]] * (leaf.size // leaf.shape[-1])
            else:
                counts += [2] * leaf.size
        return counts

    def to_categories(self, codes: Tensor) -> Tensor:
        """Discrete codes ``[N, D]`` -> category indices ``[N, V]`` (long)."""
        columns = []
        for leaf in self.leaves:
            block = codes[:, leaf.start:leaf.start + leaf.size]
            if leaf.kind == "one-hot":
                columns.append(block.reshape(codes.shape[0], -1, leaf.shape[-1]).argmax(-1))
            else:
                columns.append(block.round().long())
        return torch.cat(columns, dim=1).long()

    def from_categories(self, categories: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """Category indices ``[N, V]`` -> codes ``[N, D]``."""
        blocks, column = [], 0
        for leaf in self.leaves:
            if leaf.kind == "one-hot":
                classes = leaf.shape[-1]
                count = leaf.size // classes
                one_hot = torch.nn.functional.one_hot(categories[:, column:column + count], classes)
                blocks.append(one_hot.reshape(categories.shape[0], -1).to(dtype))
            else:
                count = leaf.size
                blocks.append(categories[:, column:column + count].to(dtype))
            column += count
        return torch.cat(blocks, dim=1)

    # ------------------------------------------------------------------ saving and restoring
    def to_dict(self) -> dict[str, Any]:
        """A plain-data description (for ``state_dict``'s extra state)."""
        return {"structure": _encode(self.structure),
                "leaves": [{"shape": list(leaf.shape), "kind": leaf.kind, "start": leaf.start} for leaf in self.leaves]}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "CodeLayout":
        """The layout `to_dict` described."""
        leaves = [LeafLayout(tuple(leaf["shape"]), leaf["kind"], leaf["start"]) for leaf in values["leaves"]]
        return cls(_decode(values["structure"]), leaves)


def _encode(node: Any) -> Any:
    if isinstance(node, int):
        return node
    if isinstance(node, dict):
        return {"dict": {key: _encode(item) for key, item in node.items()}}
    return {type(node).__name__: [_encode(item) for item in node]}


def _decode(node: Any) -> Any:
    if isinstance(node, int):
        return node
    (kind, items), = node.items()
    if kind == "dict":
        return {key: _decode(item) for key, item in items.items()}
    return (tuple if kind == "tuple" else list)(_decode(item) for item in items)
