"""How many CPU threads a training step uses: every idle core, and no more.

torch runs its intra-op work on one OpenMP thread per core, and its threads spin-wait for each other at the
end of every parallel region. When another process holds one of those cores, every region waits for the
descheduled thread: measured on 2 cores (benchmarks/results/threads.md), the default job beside one busy
single-threaded process took 3.6x as long as on a quiet machine with two threads, and 1.03x with one. A
passive wait policy (``OMP_WAIT_POLICY=PASSIVE``) avoids the collapse but costs 2x on a quiet machine, and
must be set before torch is imported.

`AdaptiveThreads` therefore counts, every ``interval`` seconds, how much CPU the *other* processes use
(``/proc/stat`` less this process's own time; niced processes, which yield to us, are not counted) and sets
``torch.set_num_threads`` to the cores they leave free (at least one). Where ``/proc/stat`` cannot be read,
torch's own setting is kept.
"""

from __future__ import annotations

import math
import os
import time
from typing import Optional

import torch

__all__ = ["AdaptiveThreads", "apply_thread_setting"]


def _busy_seconds() -> Optional[float]:
    """CPU seconds all processes spent busy since boot, niced time excepted (None without ``/proc/stat``)."""
    try:
        with open("/proc/stat") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    user, _nice, system, _idle, _iowait, irq, softirq, *rest = (int(v) for v in fields[1:])
    steal = rest[0] if rest else 0
    return (user + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    """CPU seconds of this process, all its threads."""
    return time.process_time()


def _wall_seconds() -> float:
    return time.perf_counter()


class AdaptiveThreads:
    """Keeps torch's intra-op threads at the number of cores other processes leave idle.

    Args:
        cores: the cores this process may use (default: its CPU affinity).
        interval: seconds between measurements; `update` is cheap between them (one clock read).
        look: measure for 0.1 s at once and set the threads (else from the first `update` after ``interval``).
    """

    def __init__(self, cores: Optional[int] = None, interval: float = 2.0, look: bool = True):
        if cores is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.cores = cores
        self.interval = interval
        self.available = _busy_seconds() is not None
        self.threads = torch.get_num_threads()
        self._mark()
        if self.available and look:  # a first decision after a short look, not after an interval at full width
            time.sleep(0.1)
            self.update(force=True)

    def _mark(self) -> None:
        self.wall, self.busy, self.own = _wall_seconds(), _busy_seconds(), _own_seconds()

    def others(self) -> float:
        """Cores the other processes kept busy since the last measurement."""
        wall, busy, own = _wall_seconds(), _busy_seconds(), _own_seconds()
        elapsed = max(wall - self.wall, 1e-9)
        return max(0.0, (busy - self.busy) - (own - self.own)) / elapsed

    def update(self, force: bool = False) -> int:
        """Re-measures when ``interval`` has passed (or ``force``) and sets the threads; returns them."""
        if not self.available or (not force and _wall_seconds() - self.wall < self.interval):
            return self.threads
        free = self.cores - self.others()
        threads = max(1, min(self.cores, math.floor(free + 0.25)))  # a core three-quarters idle counts as free
        if threads != self.threads:
            torch.set_num_threads(threads)
            self.threads = threads
        self._mark()
        return self.threads


def apply_thread_setting(threads: Optional[int], device: torch.device) -> Optional[AdaptiveThreads]:
    """``--threads``: N >= 1 sets N threads; 0 or None on the CPU adapts them (`AdaptiveThreads`, returned for
    the training loop to `update`); on a GPU nothing changes."""
    if threads:
        torch.set_num_threads(threads)
        return None
    if device.type != "cpu":
        return None
    return AdaptiveThreads()
