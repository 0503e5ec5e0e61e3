"""The run directory of `blackbox-vae train`: one writer at a time, and no run replaced by accident.

- A lock file, ``.lock``, holds the writer's process id and host. A second `train` on the same directory
  stops with an error naming that process. A lock whose process no longer runs (a killed run) is stale:
  it is taken over, with a note.
- A directory that holds a run (its ``checkpoint.pt`` or ``config.json``) is continued only with
  ``--resume`` and replaced only with ``--overwrite``, which first deletes the run's files (only the
  files `train`, `evaluate` and `sample` write; anything else in the directory is left alone).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

from blackbox_vae.cli.config import ConfigError

__all__ = ["RunLock", "RUN_FILES", "prepare_run_directory"]

LOCK_NAME = ".lock"
#: The files a run consists of: what --overwrite deletes.
RUN_FILES = ("checkpoint.pt", "config.json", "metrics.csv", "loss_curve.png", "evaluation.json", "samples.png")


def _alive(pid: int) -> bool:
    """Whether a process with this id runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, under another user
        return True
    return True


class RunLock:
    """Holds ``DIRECTORY/.lock`` while training writes there; a context manager.

    Args:
        directory: the run directory (it must exist).

    Raises:
        ConfigError: on entering, if another live process holds the lock.
    """

    def __init__(self, directory: Path):
        self.path = Path(directory) / LOCK_NAME
        self.note = ""  # what entering had to say (a stale lock taken over), for the caller to print

    def __enter__(self) -> "RunLock":
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._check_holder()  # raises if the holder runs; else the stale lock is gone: try once more
                continue
            with os.fdopen(descriptor, "w") as handle:
                json.dump(owner, handle)
            return self
        raise ConfigError(f"cannot lock {self.path.parent}: another process took its lock ({self.path}) just now.")

    def _check_holder(self) -> None:
        try:
            holder = json.loads(self.path.read_text())
            pid, host = int(holder["pid"]), str(holder["host"])
        except (OSError, ValueError, KeyError, TypeError):
            holder, pid, host = {}, None, None  # unreadable: a crash while writing it
        if pid is not None and host == socket.gethostname() and _alive(pid) and pid != os.getpid():
            raise ConfigError(f"{self.path.parent} is in use: `blackbox-vae train` (process {pid}, started "
                              f"{holder.get('started', '?')}) is writing to it. Wait for it to finish, or train "
                              "into another --out.")
        if pid is not None and host != socket.gethostname():
            raise ConfigError(f"{self.path.parent} is locked by process {pid} on host {host!r} ({self.path}). If no "
                              "run is writing there any more, delete the lock file and try again.")
        self.note = f"note: took over a stale lock in {self.path.parent} (process {pid} is gone)"
        self.path.unlink(missing_ok=True)

    def __exit__(self, kind: type | None, error: BaseException | None, traceback: TracebackType | None) -> None:
        try:
            holder = json.loads(self.path.read_text())
            if int(holder.get("pid", -1)) == os.getpid():
                self.path.unlink()
        except (OSError, ValueError):
            pass


def prepare_run_directory(directory: Path, resume: bool, overwrite: bool) -> None:
    """Checks that ``directory`` may be trained into, and deletes an old run's files with ``overwrite``.

    Call it while holding the `RunLock`.

    Raises:
        ConfigError: when the directory holds a run and neither ``resume`` nor ``overwrite`` is given, when
            ``resume`` is given but there is no run, or when both are given.
    """
    directory = Path(directory)
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other: --resume continues the run in --out, "
                          "--overwrite deletes it. Pass one.")
    existing = [name for name in RUN_FILES if (directory / name).exists()]
    holds_run = any(name in existing for name in ("checkpoint.pt", "config.json"))
    if resume:
        return  # the checkpoint's own checks follow (missing, unreadable, other settings)
    if holds_run and not overwrite:
        raise ConfigError(f"{directory} already holds a run ({', '.join(existing)}). Pass --resume to continue it, "
                          "or --overwrite to delete its files and start afresh, or train into another --out.")
    if overwrite:
        for name in existing:
            (directory / name).unlink()
        for leftover in directory.glob("checkpoint.pt.*.tmp"):  # interrupted writes
            leftover.unlink()
        if existing:
            print(f"note: --overwrite deleted the old run's files in {directory}: {', '.join(existing)}", file=sys.stderr)
