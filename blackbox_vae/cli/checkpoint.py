"""Checkpoints: everything needed to resume a run exactly, stored with ``torch.save`` and read with
``torch.load(..., weights_only=True)`` (no pickled code is ever unpickled)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "CHECKPOINT_NAME", "save_checkpoint", "load_checkpoint"]

CHECKPOINT_NAME = "checkpoint.pt"
_FORMAT = 1
_KEYS = ("format", "config", "step", "elapsed", "loss", "optimizer", "rng", "stream", "metrics")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or incomplete; the message says which file and why."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Writes ``state`` atomically (a crash mid-write leaves the previous checkpoint intact)."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    torch.save({"format": _FORMAT, **state}, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Reads a checkpoint written by `save_checkpoint`.

    Raises:
        CheckpointError: if the file is missing, cannot be read as a weights-only checkpoint (truncated,
            corrupted, or not ours), or lacks an entry.
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
    if state["format"] != _FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {state['format']}; this version reads format {_FORMAT}.")
    return state
