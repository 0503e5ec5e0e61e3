"""Checkpoints: everything needed to resume a run exactly, stored with ``torch.save`` and read with
``torch.load(..., weights_only=True)`` (no pickled code is ever unpickled).

A checkpoint is the dict `train` saves plus ``"sha256"``, a digest of its contents (every tensor's dtype,
shape and bytes, every other value), so a flipped byte in the stored data is refused with a clear message
instead of loading a different model; the file stays a plain ``torch.save`` dict that ``torch.load`` reads.
Files of the first format (no digest) still load.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "CHECKPOINT_NAME", "save_checkpoint", "load_checkpoint"]

CHECKPOINT_NAME = "checkpoint.pt"
_FORMAT = 2
_KEYS = ("format", "config", "step", "elapsed", "loss", "optimizer", "rng", "stream", "metrics")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, damaged or incomplete; the message says which file and why."""


def content_digest(value: Any) -> str:
    """SHA-256 of a state's contents: tensors by dtype, shape and bytes; dicts by sorted key; other values by repr."""
    digest = hashlib.sha256()

    def feed(item: Any) -> None:
        if isinstance(item, torch.Tensor):
            tensor = item.detach().cpu().contiguous()
            digest.update(f"tensor {tensor.dtype} {tuple(tensor.shape)};".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        elif isinstance(item, dict):
            digest.update(f"dict {len(item)};".encode())
            for key in sorted(item, key=repr):
                feed(key)
                feed(item[key])
        elif isinstance(item, (list, tuple)):
            digest.update(f"{type(item).__name__} {len(item)};".encode())
            for element in item:
                feed(element)
        else:
            digest.update(f"{type(item).__name__} {item!r};".encode())

    feed(value)
    return digest.hexdigest()


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Writes ``state`` with the digest of its contents, atomically (a crash mid-write leaves the previous
    checkpoint intact).

    Args:
        path: the checkpoint file.
        state: a dict of tensors, numbers, strings, lists and dicts (what ``weights_only`` loading accepts).
    """
    path = Path(path)
    state = {"format": _FORMAT, **state}
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # one per process: writers never share it
    torch.save({**state, "sha256": content_digest(state)}, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Reads a checkpoint written by `save_checkpoint`, verifying the digest of its contents.

    Args:
        path: the checkpoint file.
        map_location: where tensors are loaded (``torch.load``'s argument).

    Returns:
        the saved state, with its ``"format"`` (and without the digest).

    Raises:
        CheckpointError: if the file is missing, cannot be read as a weights-only checkpoint (truncated, or
            not ours), lacks an entry, or its contents do not match their digest (damaged).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path.resolve()}: train a run into that directory first "
                              f"(`blackbox-vae train --out {path.parent}`), or check the path.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch.load raises several types for damaged files
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else 'no detail'}); it may be truncated or "
                              "corrupted. Delete it and train again, or resume from a copy.") from error
    if not isinstance(state, dict) or any(key not in state for key in _KEYS):
        missing = [k for k in _KEYS if not isinstance(state, dict) or k not in state]
        raise CheckpointError(f"{path} is not a blackbox-vae checkpoint (missing {', '.join(missing)}).")
    if state["format"] not in (1, _FORMAT):
        raise CheckpointError(f"{path} has checkpoint format {state['format']}; this version reads formats 1 and "
                              f"{_FORMAT}.")
    expected = state.pop("sha256", None)
    if state["format"] >= 2 and expected != content_digest(state):
        raise CheckpointError(f"{path} is damaged: its contents do not match the checksum written with them "
                              "(a changed byte in its data). Resume from a copy, or train again.")
    return state
