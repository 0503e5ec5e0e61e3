"""A git worktree of an earlier commit, for the benchmarks that time the code before a change against now."""

from __future__ import annotations

import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def baseline_worktree(commit: str) -> Iterator[Path]:
    """The repository at ``commit``, checked out into a temporary folder (run it with PYTHONPATH pointing at it),
    removed afterwards."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), commit], check=True,
                       capture_output=True)
        try:
            yield path
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False)
