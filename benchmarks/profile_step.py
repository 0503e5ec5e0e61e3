"""Where the time of a training step and of ``evaluate --k 5000`` goes, and how near each is to this machine's
matrix-product limit: the Trainer's step (what ``blackbox-vae train`` runs) and the same step written by hand
in eager PyTorch with the default ``torch.optim.Adam`` (how the step looked before issue 30), on the paper
models and the default job.

    python benchmarks/profile_step.py [--steps 300] [--threads 1] [--eval-images 100] [--data ../shared/data]
        [--run benchmarks/long_runs/state/vimco-k5] [--results benchmarks/results/profile_step.md]

Each step is profiled with ``torch.profiler`` (shapes and FLOPs recorded) and its time split by what ran:
- matrix products: the self time of the product kernels (``mm``, ``addmm``, ``bmm``, ...);
- elementwise and other kernels: the self time of every other ATen operator (a composite operator's own time,
  small, is counted here too);
- optimizer: everything under ``Optimizer.step`` / ``Optimizer.zero_grad``;
- data: everything under the drawing of the batch;
- Python, autograd and dispatch: the rest of the profiled step (the interpreter, the autograd engine, the
  dispatcher, and the profiler's own cost per operator).
The shares are of the profiled step; the milliseconds apply them to the unprofiled time per step, measured
separately in the same run. The profiler adds a few microseconds per operator call, so the shares overstate
what is paid per call (Python and dispatch, small kernels) and understate the large products; the ATen operator
calls per step are given for that reason. The matrix-product limit is the step's FLOPs of matrix products
(forward and backward, as the profiler counts them from the shapes) at the peak measured in the same run: the
better of a [1024, 1024] x [1024, 1024] product and one at the step's own shape [120, 784] x [784, 200].
Nothing else should run on the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

from blackbox_vae import Trainer, trainer as trainer_module
from blackbox_vae.data.batches import BatchStream
from blackbox_vae.evaluation import log_likelihood_bound

sys.path.insert(0, str(Path(__file__).resolve().parent))  # hand_written_step.py, beside this file
import hand_written_step as hand  # noqa: E402  (the paper models and the hand-written steps, defined once)

ROOT = Path(__file__).resolve().parents[1]
JOBS = {**hand.MODELS, "default job (digits, 64-200 SBN, VIMCO K=5, batch 64)": {}}
PRODUCTS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addmv", "aten::mv", "aten::dot",
            "aten::addbmm", "aten::_addmm_activation"}
CATEGORIES = ("matrix products", "elementwise and other kernels", "optimizer", "data",
              "Python, autograd and dispatch")


def peak_gflops() -> dict[str, float]:
    """GFLOP/s of a large square product and of one at the step's shape, at the current threads."""
    peaks = {}
    for name, (m, k, n) in {"1024^3": (1024, 1024, 1024), "[120, 784] x [784, 200]": (120, 784, 200)}.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        repeats = max(3, int(2e9 / (2 * m * k * n)))  # about 2 GFLOP a sample
        best = float("inf")
        for _ in range(7):
            started = time.perf_counter()
            for _ in range(repeats):
                torch.mm(a, b)
            best = min(best, time.perf_counter() - started)
        peaks[name] = 2 * m * k * n * repeats / best / 1e9
    return peaks


@contextmanager
def marked_steps():
    """The Trainer's step and its batch drawing under record_function ranges named "step" and "data"."""
    step, next_batch = trainer_module._step, BatchStream.__next__

    def marked_step(*args, **kwargs):
        with record_function("step"):
            return step(*args, **kwargs)

    def marked_next(self):
        with record_function("data"):
            return next_batch(self)
    trainer_module._step, BatchStream.__next__ = marked_step, marked_next
    try:
        yield
    finally:
        trainer_module._step, BatchStream.__next__ = step, next_batch


def split(prof, range_name: str = "step") -> tuple[dict[str, float], float, int, int]:
    """Microseconds per category over the ``range_name`` ranges, their matrix-product FLOPs, their number, and the
    ATen operator calls in them."""
    events = prof.events()
    totals = dict.fromkeys(CATEGORIES, 0.0)
    flops, ranges, wall, calls = 0, 0, 0.0, 0
    for event in events:
        if event.name == range_name:
            ranges += 1
            wall += event.cpu_time_total
    for event in events:
        chain, parent = [], event.cpu_parent
        while parent is not None:
            chain.append(parent.name)
            parent = parent.cpu_parent
        if range_name not in chain:
            continue
        if any(name.startswith("Optimizer.") for name in chain + [event.name]):
            totals["optimizer"] += event.self_cpu_time_total
        elif "data" in chain or event.name == "data":
            totals["data"] += event.self_cpu_time_total
        elif event.name in PRODUCTS:
            totals["matrix products"] += event.self_cpu_time_total
            flops += event.flops or 0
        elif event.name.startswith("aten::"):
            totals["elementwise and other kernels"] += event.self_cpu_time_total
        calls += event.name.startswith("aten::")
    totals["Python, autograd and dispatch"] = wall - sum(totals.values())
    return totals, flops, ranges, calls


def profiled(run_steps) -> tuple[dict[str, float], float, float]:
    """(microseconds per category, matrix-product FLOPs, ATen calls), per "step" range of ``run_steps()``."""
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True, with_flops=True) as prof:
        run_steps()
    totals, flops, ranges, calls = split(prof)
    return {name: value / ranges for name, value in totals.items()}, flops / ranges, calls / ranges


def trainer_step(settings: dict, data: Path, steps: int, out: Path, threads: int):
    """(ms per step unprofiled, shares, matrix-product FLOPs per step) of `Trainer.fit` on a job."""
    if settings:
        config, run = hand.build(settings, data, steps, out)
    else:  # the default job: every setting at the command line's default
        from blackbox_vae.cli.config import TrainConfig
        from blackbox_vae.cli.training import build_run
        config = TrainConfig(steps=steps, eval_every=10 * steps, checkpoint_every=10 * steps, log_every=steps,
                             eval_size=24, eval_k=2, out=str(out)).validate()
        run = build_run(config)

    def fit():
        trainer = Trainer(run.loss, run.dataset, out, steps=steps, batch_size=config.batch_size, log_every=steps,
                          eval_every=10 * steps, checkpoint_every=10 * steps, eval_size=24, eval_k=2,
                          progress=False, threads=threads)
        return 1000 * trainer.fit(overwrite=True)["seconds"] / steps
    fit()  # warm-up (and the unprofiled time below is a second, warm run)
    ms = statistics.median(fit() for _ in range(2))
    with marked_steps():
        shares, flops, calls = profiled(fit)
    return ms, shares, flops, calls


def hand_step(settings: dict, data: Path, steps: int, out: Path, threads: int):
    """The same figures for the step written by hand (default Adam, BCE log-probabilities, torch.bernoulli)."""
    config, run = hand.build(settings, data, steps, out)
    torch.set_num_threads(threads)
    q, p = run.loss.inf_net, run.loss.gen_model
    surrogate = (hand.hand_gaussian(q, p, 5) if settings["model"] == "gaussian"
                 else hand.hand_sbn(q, p, 5, settings["loss"]))
    rows = run.dataset.train
    optimizer = torch.optim.Adam([*q.parameters(), *p.parameters()], lr=1e-3)

    def loop():
        started = time.perf_counter()
        for _ in range(steps):
            with record_function("step"):
                with record_function("data"):
                    batch = rows[torch.randint(len(rows), (config.batch_size,))]
                optimizer.zero_grad()
                surrogate(batch).backward()
                optimizer.step()
        return 1000 * (time.perf_counter() - started) / steps
    loop()
    ms = statistics.median(loop() for _ in range(2))
    shares, flops, calls = profiled(loop)
    return ms, shares, flops, calls


def evaluation(run_dir: Path, images: int, threads: int):
    """The figures of the k = 5000 bound of ``images`` test images (the command line's batch of 100), per image."""
    from blackbox_vae.cli.commands import load_run

    run, _ = load_run(run_dir, "cpu")
    torch.set_num_threads(threads)
    data = run.dataset.test[:images]

    def bound():
        started = time.perf_counter()
        with record_function("step"):
            log_likelihood_bound(run.inf_net, run.gen_model, data, 5000, batch_size=100)
        return 1000 * (time.perf_counter() - started) / images
    ms = bound()
    shares, flops, calls = profiled(bound)
    return ms, {name: value / images for name, value in shares.items()}, flops / images, calls / images


def row(label: str, ms: float, shares: dict[str, float], flops: float, calls: float, peak: float) -> str:
    """A table row: each category's share of the profiled step, applied to the unprofiled time ``ms``."""
    total = sum(shares.values())
    parts = " | ".join(f"{ms * shares[name] / total:.2f} ({100 * shares[name] / total:.0f}%)" for name in CATEGORIES)
    limit = flops / (peak * 1e9) * 1000  # ms
    gflops = flops / (ms / 1000) / 1e9
    return f"| {label} | {ms:.2f} | {parts} | {calls:.0f} | {flops / 1e6:.0f} | {limit:.2f} | {gflops:.0f} | {100 * limit / ms:.0f}% |"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-images", type=int, default=100)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--run", type=Path, default=ROOT / "benchmarks" / "long_runs" / "state" / "vimco-k5")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "profile_step.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    peaks = peak_gflops()
    peak = max(peaks.values())
    print(f"peak GFLOP/s: {peaks}", flush=True)
    lines = []
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "run"
        for job, settings in JOBS.items():
            lines.append(row(f"{job}: ours (Trainer)", *trainer_step(settings, args.data, args.steps, out,
                                                                      args.threads), peak))
            print(lines[-1], flush=True)
            if settings:
                lines.append(row(f"{job}: by hand, default Adam", *hand_step(settings, args.data, args.steps, out,
                                                                          args.threads), peak))
                print(lines[-1], flush=True)
    if args.run.exists():
        lines.append(row(f"evaluate --k 5000, 784-200-200-200 SBN ({args.run.name}), per test image",
                         *evaluation(args.run, args.eval_images, args.threads), peak))
        print(lines[-1], flush=True)
    peak_note = ", ".join(f"{name}: {value:.0f}" for name, value in peaks.items())
    header = [f"<!-- written by benchmarks/profile_step.py on {platform.machine()}, torch {torch.__version__}, "
              f"{os.cpu_count()} cores, {args.threads} thread(s), {args.steps} steps per profile -->",
              f"Peak of a matrix product here, same run and threads (GFLOP/s): {peak_note}; the limit uses "
              f"{peak:.0f}.", "",
              "| step | ms (unprofiled) | " + " | ".join(f"{name} (ms)" for name in CATEGORIES)
              + " | ATen calls | matmul MFLOP | matmul limit (ms) | matmul GFLOP/s | fraction of the limit |",
              "| --- | --- | " + " | ".join("---" for _ in CATEGORIES) + " | --- | --- | --- | --- | --- |"]
    args.results.write_text("\n".join(header + lines) + "\n")
    print("\n".join(header + lines))


if __name__ == "__main__":
    main()
