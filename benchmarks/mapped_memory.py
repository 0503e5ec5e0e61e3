"""The memory a run on a large `.npy` takes: the file is memory-mapped and read by batches, not loaded whole.

    python benchmarks/mapped_memory.py [--gigabytes 4] [--folder /tmp/mapped] [--results benchmarks/results/mapped_memory.md]

Writes an `.npy` of uint8 rows (8-bit 32x32 RGB images) of the size asked for, trains `blackbox-vae train --data
FILE` on it (a Gaussian-latent VAE, dynamically binarized pixels, 300 steps, 1% of the rows for each of the
validation and test splits) and samples the process's memory every 20 ms: the private memory (RssAnon, what
the run itself holds) and the file's pages mapped in (RssFile, page cache the kernel takes back under pressure).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
ROW = 3 * 32 * 32


def write(path: Path, gigabytes: float) -> int:
    rows = int(gigabytes * 1e9) // ROW
    if not path.is_file() or path.stat().st_size < rows * ROW:
        array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(rows, 3, 32, 32))
        rng = np.random.default_rng(0)
        for start in range(0, rows, 20_000):  # blobs of brightness, so the model has something to learn
            stop = min(rows, start + 20_000)
            array[start:stop] = (rng.random((stop - start, 3, 1, 1)) * 255).astype(np.uint8)
        array.flush()
        del array
    return rows


def watch(pid: int, peaks: dict, done: threading.Event) -> None:
    while not done.is_set():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return
        for line in status.splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "VmRSS"):
                peaks[key] = max(peaks.get(key, 0), int(value.split()[0]) * 1024)
        time.sleep(0.02)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=4.0)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/mapped"))
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "mapped_memory.md")
    args = parser.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    path = args.folder / "images.npy"
    rows = write(path, args.gigabytes)
    command = [sys.executable, "-m", "blackbox_vae", "train", "--data", str(path), "--valid-fraction", "0.01",
               "--test-fraction", "0.01", "--model", "gaussian", "--layers", "16", "--loss", "iwae", "--steps", "300",
               "--eval-every", "300", "--eval-size", "500", "--progress", "false", "--overwrite",
               "--out", str(args.folder / "run")]
    started = time.perf_counter()
    process = subprocess.Popen(command)
    peaks: dict = {}
    done = threading.Event()
    watcher = threading.Thread(target=watch, args=(process.pid, peaks, done))
    watcher.start()
    status = process.wait()
    done.set()
    watcher.join()
    seconds = time.perf_counter() - started
    if status:
        raise SystemExit(status)
    size = path.stat().st_size
    text = (f"<!-- written by benchmarks/mapped_memory.py on {platform.machine()}, torch {torch.__version__} -->\n"
            "| file | rows | training | peak private memory (RssAnon) | peak file pages mapped (RssFile) |\n"
            "| --- | --- | --- | --- | --- |\n"
            f"| {size / 1e9:.2f} GB uint8 .npy of 3x32x32 images | {rows:,} | 300 steps, {seconds:.0f} s in all | "
            f"{peaks.get('RssAnon', 0) / 1e6:.0f} MB | {peaks.get('RssFile', 0) / 1e6:.0f} MB |\n\n"
            "The private memory is what the run holds (models, optimizer, one batch, the validation and test "
            "splits of 1% of the rows each, read whole as float32); the file's pages are page cache, mapped while "
            "they are read (the value scan at the start reads every row once), which the kernel takes back when "
            "memory is short.\n")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
