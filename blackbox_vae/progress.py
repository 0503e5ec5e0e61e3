"""Progress of long operations: a tqdm bar on a terminal, plain lines in a log.

A bar redrawn in place is unreadable in a log file or a CI console, and nothing at all leaves a user of a
minutes-long fit wondering whether it hangs. ``progress_bar(..., enabled=None)`` therefore draws tqdm's bar
when stderr is a terminal and otherwise prints a plain line at most every ``PLAIN_LINE_SECONDS`` (none for
an operation shorter than that). Library calls default to ``enabled=False``; the command line passes None.
"""

from __future__ import annotations

import sys
import time
from typing import Optional

__all__ = ["progress_bar", "PLAIN_LINE_SECONDS"]

#: Seconds between the plain lines written without a terminal.
PLAIN_LINE_SECONDS = 10.0


class _PlainLines:
    """tqdm's ``update`` / ``set_postfix_str`` / ``close`` interface, written as one line every few seconds."""

    def __init__(self, total: Optional[int], desc: str, unit: str, every: float):
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.n, self.postfix, self.printed = 0, "", False
        self.started = self.last = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            self._print(now)

    def set_postfix_str(self, postfix: str) -> None:
        self.postfix = postfix

    def _print(self, now: float) -> None:
        done = f"{self.n:,}/{self.total:,}" if self.total is not None else f"{self.n:,}"
        postfix = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {done} {self.unit}s ({now - self.started:.0f} s{postfix})", file=sys.stderr, flush=True)
        self.printed = True

    def close(self) -> None:
        if self.printed:  # the end of an operation that was reported as under way
            self._print(time.perf_counter())
            self.printed = False

    def __enter__(self) -> "_PlainLines":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(total: Optional[int], desc: str, unit: str = "it", enabled: Optional[bool] = False,
                 every: Optional[float] = None):
    """A progress reporter with tqdm's interface (``update(n)``, ``set_postfix_str``, ``close``, a context).

    Args:
        total: units of work expected (None: unknown).
        desc: what runs, e.g. ``"GaussianMixtureSampler: EM"``.
        unit: the unit's name, e.g. ``"point"``.
        enabled: True: a tqdm bar; False: silent; None: a tqdm bar on a terminal, else plain lines every
            ``every`` seconds (default `PLAIN_LINE_SECONDS`).
    """
    from tqdm.auto import tqdm  # loaded on first use, not with the library

    if enabled is None and not sys.stderr.isatty():
        return _PlainLines(total, desc, unit, PLAIN_LINE_SECONDS if every is None else every)
    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, disable=not enabled and enabled is not None,
                leave=False)
