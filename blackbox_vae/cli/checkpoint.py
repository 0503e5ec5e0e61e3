"""Checkpoints: everything needed to resume a run exactly, stored with ``torch.save`` and read with
``torch.load(..., weights_only=True)`` (no pickled code is ever unpickled).

A checkpoint is the dict `train` saves plus ``"sha256"``, a digest of its contents (every tensor's dtype,
shape and bytes, every other value), so a flipped byte in the stored data is refused with a clear message
instead of loading a different model; the file stays a plain ``torch.save`` dict that ``torch.load`` reads.
Files of the first format (no digest) still load.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from blackbox_vae.cli.files import write_bytes_of

__all__ = ["CheckpointError", "CHECKPOINT_NAME", "save_checkpoint", "load_checkpoint", "check_against_run_config"]

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
    """Writes ``state`` with the digest of its contents, atomically (a crash, a full disk or a read-only
    directory mid-write leaves the previous checkpoint intact).

    Args:
        path: the checkpoint file.
        state: a dict of tensors, numbers, strings, lists and dicts (what ``weights_only`` loading accepts).

    Raises:
        RunFileError: naming the file and the cause when it cannot be written (its temporary file removed).
    """
    path = Path(path)
    state = {"format": _FORMAT, **state}
    write_bytes_of(path, lambda buffer: torch.save({**state, "sha256": content_digest(state)}, buffer))


def check_against_run_config(path: Path, saved_config: dict[str, Any], may_differ: tuple[str, ...] = ()) -> None:
    """Refuses a checkpoint whose config disagrees with the ``config.json`` beside it (a checkpoint of another
    run dropped into the directory would otherwise train or be scored beside the run's stale files).

    Raises:
        CheckpointError: naming the settings that differ; nothing is checked without a readable config.json.
    """
    import json

    config_path = Path(path).with_name("config.json")
    try:
        recorded = json.loads(config_path.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(recorded, dict) or not isinstance(saved_config, dict):
        return
    ignored = set(may_differ) | {"out", "device"}
    differing = [name for name in recorded if name in saved_config and name not in ignored
                 and recorded[name] != saved_config[name]]
    if differing:
        details = ", ".join(f"{n}: {recorded[n]!r} in config.json, {saved_config[n]!r} in the checkpoint"
                            for n in differing[:4])
        raise CheckpointError(f"{path} is not the checkpoint of the run {config_path} describes ({details}); it "
                              "may have been copied in from another run. Put it back in its own directory, or "
                              "train this one again.")


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
