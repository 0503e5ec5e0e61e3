"""A plain multilayer perceptron, shared by the reference models."""

from __future__ import annotations

from typing import Sequence, Type

from torch import nn


def mlp(in_features: int, hidden: Sequence[int], out_features: int, activation: Type[nn.Module] = nn.Tanh) -> nn.Sequential:
    """Linear layers of widths ``in -> *hidden -> out`` with ``activation`` between them.

    With ``hidden=()`` this is a single linear map, as in a one-layer sigmoid belief network.
    """
    widths = [in_features, *hidden, out_features]
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        if i > 0:
            layers.append(activation())
        layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)
