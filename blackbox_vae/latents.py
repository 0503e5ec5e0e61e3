"""Opaque latents: a tensor, or a tuple or dict of them (one entry per layer).

Losses never look inside latents; they only need to move them around
(detach them, check their leading ``[batch, n_samples]`` dimensions). These
helpers do that for every supported container. We do not use
``torch.utils._pytree`` because it is private API that changes between
releases.
"""

from __future__ import annotations

from typing import Callable, Mapping, Tuple, Union

from torch import Tensor

Latents = Union[Tensor, Tuple["Latents", ...], Mapping[str, "Latents"]]

__all__ = ["Latents", "latent_leaves", "map_latents"]


def map_latents(fn: Callable[[Tensor], Tensor], latents: Latents) -> Latents:
    """Applies ``fn`` to every tensor in ``latents``, keeping the container.

    Raises:
        TypeError: if ``latents`` holds something other than tensors,
            tuples/lists and dicts.
    """
    if isinstance(latents, Tensor):
        return fn(latents)
    if isinstance(latents, Mapping):
        return {key: map_latents(fn, value) for key, value in latents.items()}
    if isinstance(latents, (tuple, list)):
        return type(latents)(map_latents(fn, value) for value in latents)
    raise TypeError(
        f"Latents must be a Tensor, or a tuple, list or dict of Tensors; got {type(latents).__name__}."
    )


def latent_leaves(latents: Latents, prefix: str = "latents") -> list[tuple[str, Tensor]]:
    """Returns ``(path, tensor)`` pairs for every tensor in ``latents``.

    The path (``latents['z1']``, ``latents[0]``) is used in error messages.

    Args:
        latents: a tensor, or a tuple, list or dict of them, nested to any depth.
        prefix: the path of ``latents`` itself, to which keys and indices are appended.

    Raises:
        TypeError: if ``latents`` holds something other than tensors, tuples/lists and dicts.
    """
    if isinstance(latents, Tensor):
        return [(prefix, latents)]
    if isinstance(latents, Mapping):
        return [leaf for key, value in latents.items() for leaf in latent_leaves(value, f"{prefix}[{key!r}]")]
    if isinstance(latents, (tuple, list)):
        return [leaf for i, value in enumerate(latents) for leaf in latent_leaves(value, f"{prefix}[{i}]")]
    raise TypeError(
        f"Latents must be a Tensor, or a tuple, list or dict of Tensors; got {type(latents).__name__} at `{prefix}`."
    )
