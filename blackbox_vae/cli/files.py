"""Writing a run's files so that a fault loses nothing: each file is written whole or not at all.

`write_atomically` writes into ``NAME.PID.tmp`` beside the file and renames it over the file only once it
is complete, so a full disk, a read-only directory or a kill -9 mid-write leaves the previous file as it
was; on failure the temporary file is removed and `RunFileError` says, in one line, which path could not
be written and why (no space left on the device, a read-only file system, ...). Temporary files of
processes that no longer run (killed mid-write) are removed by `remove_stale_temporaries` at the next start.
"""

from __future__ import annotations

import errno
import io
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Union

__all__ = ["RunFileError", "write_atomically", "write_text", "write_bytes_of", "writing", "make_directory",
           "describe_os_error", "remove_stale_temporaries"]

#: The causes users meet, said plainly (others: the system's own message).
_CAUSES = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is exceeded",
           errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
           errno.EPERM: "permission denied", errno.ENOENT: "its directory no longer exists",
           errno.ENOTDIR: "a part of its path is not a directory"}
_TEMPORARY = re.compile(r"^(?P<name>.+)\.(?P<pid>\d+)\.tmp$")


class RunFileError(RuntimeError):
    """A run's file could not be written (or locked); the message names the path and the cause."""


def describe_os_error(error: OSError) -> str:
    """The cause of an ``OSError`` in words, with its errno name (e.g. ``no space left on the device (ENOSPC)``)."""
    if error.errno in _CAUSES:
        return f"{_CAUSES[error.errno]} ({errno.errorcode[error.errno]})"
    return error.strerror or str(error) or type(error).__name__


def _temporary_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")  # one per process: writers never share one


def write_atomically(path: Union[str, Path], write: Callable[[io.BufferedIOBase], None]) -> None:
    """Writes a file whole or not at all: ``write(handle)`` fills a temporary file, which then replaces ``path``.

    Args:
        path: the file.
        write: writes the contents into a binary file handle.

    Raises:
        RunFileError: when the file cannot be written (its temporary file is removed; ``path`` is unchanged).
    """
    path = Path(path)
    temporary = _temporary_path(path)
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())  # the rename must not reach the disk before the contents
        os.replace(temporary, path)
    except OSError as error:
        try:
            temporary.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only or vanished directory: nothing was left there either
        raise RunFileError(f"cannot write {path}: {describe_os_error(error)}.") from error


def write_text(path: Union[str, Path], text: str) -> None:
    """`write_atomically` for text (UTF-8)."""
    write_atomically(path, lambda handle: handle.write(text.encode()))


def write_bytes_of(path: Union[str, Path], serialize: Callable[[io.BytesIO], None]) -> None:
    """`write_atomically` for writers that do not report I/O errors as ``OSError`` (``torch.save`` raises an
    opaque RuntimeError on a full disk): ``serialize`` fills memory first, then Python writes the bytes."""
    buffer = io.BytesIO()
    serialize(buffer)
    write_atomically(path, lambda handle: handle.write(buffer.getbuffer()))


@contextmanager
def writing(path: Union[str, Path]) -> Iterator[None]:
    """Turns an ``OSError`` raised inside into `RunFileError` naming ``path`` and the cause: for writers that
    own their files (TensorBoard's event files) and for folders a run creates."""
    try:
        yield
    except OSError as error:
        raise RunFileError(f"cannot write {path}: {describe_os_error(error)}.") from error


def make_directory(path: Union[str, Path]) -> Path:
    """``path.mkdir(parents=True, exist_ok=True)``, failing as `RunFileError`."""
    path = Path(path)
    with writing(path):
        path.mkdir(parents=True, exist_ok=True)
    return path


def remove_stale_temporaries(directory: Union[str, Path]) -> list[Path]:
    """Removes ``NAME.PID.tmp`` files in ``directory`` whose process no longer runs (a write it never finished).

    Returns:
        the files removed (none when the directory cannot be read or written).
    """
    from blackbox_vae.cli.run_directory import _alive

    removed = []
    try:
        candidates = list(Path(directory).iterdir())
    except OSError:
        return removed
    for path in candidates:
        match = _TEMPORARY.match(path.name)
        if match is None or _alive(int(match["pid"]), None):
            continue
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed
