"""Checkpoints: everything needed to resume a run exactly, stored with ``torch.save`` and read with
``torch.load(..., weights_only=True)`` (no pickled code is ever unpickled).

The file is a one-line header, ``blackbox-vae checkpoint 2 sha256=<hex digest>``, followed by the
``torch.save`` payload; the digest is of the payload, so a flipped byte anywhere is refused with a clear
message instead of loading a different model. Files of the first format (a bare ``torch.save``, no
checksum) still load.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "CHECKPOINT_NAME", "save_checkpoint", "load_checkpoint"]

CHECKPOINT_NAME = "checkpoint.pt"
_FORMAT = 2
_MAGIC = b"blackbox-vae checkpoint "
_KEYS = ("format", "config", "step", "elapsed", "loss", "optimizer", "rng", "stream", "metrics")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, damaged or incomplete; the message says which file and why."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Writes ``state`` with its checksum, atomically (a crash mid-write leaves the previous checkpoint intact).

    Args:
        path: the checkpoint file.
        state: a dict of tensors, numbers, strings, lists and dicts (what ``weights_only`` loading accepts).
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save({"format": _FORMAT, **state}, buffer)
    payload = buffer.getvalue()
    header = _MAGIC + f"{_FORMAT} sha256={hashlib.sha256(payload).hexdigest()}\n".encode()
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # one per process: writers never share it
    with open(temporary, "wb") as handle:
        handle.write(header + payload)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Reads a checkpoint written by `save_checkpoint`, verifying its checksum.

    Args:
        path: the checkpoint file.
        map_location: where tensors are loaded (``torch.load``'s argument).

    Returns:
        the saved state, with its ``"format"``.

    Raises:
        CheckpointError: if the file is missing, damaged (its checksum does not match), cannot be read as a
            weights-only checkpoint (truncated, or not ours), or lacks an entry.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path.resolve()}: train a run into that directory first "
                              f"(`blackbox-vae train --out {path.parent}`), or check the path.")
    raw = path.read_bytes()
    payload = raw
    if raw.startswith(_MAGIC):
        header, _, payload = raw.partition(b"\n")
        expected = header.rsplit(b"sha256=", 1)[-1].decode(errors="replace").strip()
        actual = hashlib.sha256(payload).hexdigest()
        if actual != expected:
            raise CheckpointError(f"{path} is damaged: its contents do not match the checksum written with it "
                                  f"(sha256 {actual[:12]}... instead of {expected[:12]}...). Resume from a copy, "
                                  "or train again.")
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
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
    return state
