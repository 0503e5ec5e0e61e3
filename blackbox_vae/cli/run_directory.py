"""The run directory of `blackbox-vae train`: one writer at a time, and no run replaced by accident.

- A lock file, ``.lock``, holds the writer's process id, host and start time. A second `train` on the same
  directory stops with an error naming that process. A lock whose process no longer runs (a killed run)
  is stale: it is taken over, with a note; two processes taking over one stale lock cannot both win (the
  old lock is renamed away atomically first).
- A directory that holds a run (its ``checkpoint.pt``, ``metrics.csv`` or ``evaluation.json``) is continued
  only with ``--resume`` and replaced only with ``--overwrite``, which deletes the run's files (only the
  files `train`, `evaluate` and `sample` write; anything else in the directory is left alone) once every
  setting of the new run has been checked.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Optional

from blackbox_vae.cli.config import ConfigError
from blackbox_vae.cli.files import RunFileError, describe_os_error

__all__ = ["RunLock", "RUN_FILES", "check_run_directory", "clear_old_run", "raise_if_in_use"]

LOCK_NAME = ".lock"
#: The files a run consists of: what --overwrite deletes.
RUN_FILES = ("checkpoint.pt", "config.json", "metrics.csv", "bit_information.csv", "loss_curve.png", "evaluation.json",
             "samples.png")
#: The files that make a directory hold a run worth protecting (a config.json alone is a run that never
#: reached its first checkpoint: there is nothing to lose).
RUN_KEEPERS = ("checkpoint.pt", "metrics.csv", "evaluation.json")


def _start_time(pid: int) -> str | None:
    """The process's start time (Linux: /proc's clock ticks since boot), to tell a reused process id apart."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[19]  # field 22 of stat, after the command's closing parenthesis
    except (OSError, IndexError):
        return None


def _alive(pid: int, start_time: str | None) -> bool:
    """Whether the process with this id (and start time, when known) runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, under another user
        pass
    return start_time is None or _start_time(pid) in (None, start_time)


class RunLock:
    """Holds ``DIRECTORY/.lock`` while training writes there; a context manager.

    Args:
        directory: the run directory (it must exist).

    Raises:
        ConfigError: on entering, if another live process holds the lock.
        RunFileError: on entering, if the lock file cannot be written (a read-only or full file system).
    """

    def __init__(self, directory: Path):
        self.path = Path(directory) / LOCK_NAME
        self.note = ""  # what entering had to say (a stale lock taken over), for the caller to print

    def __enter__(self) -> "RunLock":
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "start_time": _start_time(os.getpid()),
                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(3):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()  # raises if the holder runs
                continue
            except OSError as error:  # a read-only or vanished directory
                raise RunFileError(f"cannot lock {self.path.parent} for writing (creating {self.path}): "
                                   f"{describe_os_error(error)}.") from error
            try:
                with os.fdopen(descriptor, "w") as handle:
                    json.dump(owner, handle)
            except OSError as error:  # a full disk
                self.path.unlink(missing_ok=True)
                raise RunFileError(f"cannot write {self.path}: {describe_os_error(error)}.") from error
            return self
        raise ConfigError(f"cannot lock {self.path.parent}: other processes keep taking its lock ({self.path}).")

    def _take_over_if_stale(self) -> None:
        if not self.path.exists():
            return  # released meanwhile
        holder, pid, host = _lock_holder(self.path)  # pid None: unreadable, a crash while writing it
        remove = f"If no run is writing there, delete {self.path} and try again."
        if pid is not None and host != socket.gethostname():
            raise ConfigError(f"{self.path.parent} is locked by process {pid} on host {host!r}. {remove}")
        if pid is not None and _alive(pid, holder.get("start_time")):
            raise ConfigError(f"{self.path.parent} is in use: `blackbox-vae train` (process {pid}, started "
                              f"{holder.get('started', '?')}) is writing to it. Wait for it to finish, or train "
                              f"into another --out. {remove}")
        aside = self.path.with_name(f"{LOCK_NAME}.stale.{os.getpid()}")
        try:
            os.rename(self.path, aside)  # atomic: of several processes taking over, one renames it
        except FileNotFoundError:
            return  # another process took it over first; try to create ours again
        aside.unlink(missing_ok=True)
        self.note = f"note: took over a stale lock in {self.path.parent} (process {pid} is gone)"

    def __exit__(self, kind: type | None, error: BaseException | None, traceback: TracebackType | None) -> None:
        try:
            holder = json.loads(self.path.read_text())
            if int(holder.get("pid", -1)) == os.getpid():
                self.path.unlink()
        except (OSError, ValueError):
            pass


def _lock_holder(path: Path) -> tuple[dict, Optional[int], Optional[str]]:
    """The lock file's record, process id and host; ``({}, None, None)`` when it is missing or unreadable."""
    try:
        holder = json.loads(path.read_text())
        return holder, int(holder["pid"]), str(holder["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}, None, None


def raise_if_in_use(directory: Path) -> None:
    """Raises `ConfigError` when a live process on this host holds ``directory``'s lock (a run is training
    there: its first checkpoint may not exist yet); does nothing otherwise."""
    holder, pid, host = _lock_holder(Path(directory) / LOCK_NAME)
    if pid is None:
        return
    if host == socket.gethostname() and pid != os.getpid() and _alive(pid, holder.get("start_time")):
        raise ConfigError(f"{directory} is in use: `blackbox-vae train` (process {pid}, started "
                          f"{holder.get('started', '?')}) is writing to it and has not written its first checkpoint "
                          "yet. Wait for it, or train into another --out.")


def _run_files(directory: Path) -> list[str]:
    """The run files present (`RUN_FILES`, and the grids of post-hoc samplers, ``samples-*.png``)."""
    present = [name for name in RUN_FILES if (Path(directory) / name).exists()]
    return present + sorted(path.name for path in Path(directory).glob("samples-*.png"))


def check_run_directory(directory: Path, resume: bool, overwrite: bool) -> None:
    """Checks that ``directory`` may be trained into (call it while holding the `RunLock`).

    Raises:
        ConfigError: when the directory holds a run and neither ``resume`` nor ``overwrite`` is given, or
            when both are given.
    """
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other: --resume continues the run in --out, "
                          "--overwrite deletes it. Pass one.")
    existing = _run_files(directory)
    if not resume and not overwrite and any(name in existing for name in RUN_KEEPERS):
        raise ConfigError(f"{directory} already holds a run ({', '.join(existing)}). Pass --resume to continue it, "
                          "or --overwrite to delete its files and start afresh, or train into another --out.")


def clear_old_run(directory: Path) -> None:
    """Deletes the run files in ``directory`` (`RUN_FILES`, and leftovers of interrupted writes), with a note."""
    directory = Path(directory)
    existing = _run_files(directory)
    for name in existing:
        (directory / name).unlink()
    for leftover in directory.glob("*.tmp"):
        if leftover.name.split(".")[0] in {name.split(".")[0] for name in RUN_FILES}:
            leftover.unlink()
    if existing:
        print(f"note: --overwrite deleted the old run's files in {directory}: {', '.join(existing)}", file=sys.stderr)
