"""NVAE benchmarks: the tiny preset against the Gaussian MLP VAE at equal wall-clock, cost per preset, a GPU
smoke run of the paper's preset, and sample grids at several temperatures.

    python benchmarks/nvae.py compare [--minutes 40] [--data-root ../shared/data] [--runs runs/nvae-bench]
        [--limit 500]
    python benchmarks/nvae.py profile [--device cpu] [--presets nvae-tiny nvae-small nvae-mnist] [--steps N]
        [--batch-size B]
    python benchmarks/nvae.py smoke --device cuda [--minutes 5] [--data-root ../shared/data] [--runs runs/nvae-smoke]
    python benchmarks/nvae.py grids RUN [--name nvae-tiny] [--bn-passes 20]

``compare``: a short probe (both trainings at once, one thread each) measures each model's step time on
this machine; then both train at once, one thread each, for the number of steps that fills ``--minutes``
of wall-clock (fixed in ``RUNS/plan.json``, so a rerun resumes the same runs from their checkpoints), and
both are scored by the importance-weighted bound with k = 1000 on the same ``--limit`` test images.
Dynamically binarized MNIST for both; the NVAE pads it to 32 x 32 and scores the 28 x 28 pixels only.

``profile``: training steps per second and the peak memory one step allocates, per preset (its own batch
size), on ``--device``. ``smoke``: trains ``nvae-mnist`` on a GPU for ``--minutes`` and scores it (k = 1000
on ``--limit`` test images), to show the paper's preset runs end to end; the paper's 78 nats take 400 epochs.
``grids``: E[x|z] of prior samples at temperatures 0.4 / 0.7 / 1.0, the decoder's batch-norm statistics
readjusted at each temperature, into ``docs/img/NAME-temperatures.png``.

Every subcommand updates its part of ``benchmarks/results/nvae.json`` and rewrites ``nvae.md`` from it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "nvae.json"
TEMPERATURES = (0.4, 0.7, 1.0)


def _load_benchmark(name: str):
    """A sibling benchmark module (its helpers: the command line, the peak-memory measurement)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def command_line() -> list[str]:
    return _load_benchmark("samplers").command_line()


def _machine(device: str) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"


# ------------------------------------------------------------------------------------------ compare
def compare_flags(data_dir: Path) -> dict[str, list[str]]:
    """The two contenders: the tiny NVAE preset and the library's Gaussian MLP VAE (784-200-200-50, ELBO)."""
    return {
        "nvae-tiny": ["--config", "nvae-tiny", "--data-dir", str(data_dir)],
        "mlp-vae": ["--data", "mnist", "--data-dir", str(data_dir), "--model", "gaussian", "--layers", "50",
                    "--hidden", "200,200", "--loss", "elbo", "--n-samples", "1", "--batch-size", "64",
                    "--lr", "1e-3"],
    }


def _train_together(jobs: dict[str, list[str]]) -> None:
    """Runs ``blackbox-vae train`` for every job at once, one thread each (equal shares of the machine)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    processes = {}
    for name, arguments in jobs.items():
        print(f"[{name}] train {' '.join(arguments)}", flush=True)
        processes[name] = subprocess.Popen(command_line() + ["train", *arguments], env=environment)
    for name, process in processes.items():
        if process.wait() != 0:
            raise SystemExit(f"[{name}] training failed (exit {process.returncode})")


def _checkpoint_step(out: Path) -> int:
    from blackbox_vae.cli.checkpoint import load_checkpoint

    path = out / "checkpoint.pt"
    return load_checkpoint(path)["step"] if path.is_file() else 0


def _run_summary(out: Path) -> dict:
    from blackbox_vae.cli.checkpoint import load_checkpoint

    state = load_checkpoint(out / "checkpoint.pt")
    valid = [row for row in state["metrics"] if row["valid_bound"] != ""]
    return {"steps": state["step"], "seconds": round(state["elapsed"], 1), "final_valid_bound": valid[-1]["valid_bound"],
            "parameters": _unique_parameters(state["loss"])}


def _unique_parameters(state: dict) -> int:
    """Numbers in the models' floating-point tensors other than batch-norm statistics, each storage counted once
    (NVAE's q and p share the decoder, so its tensors appear under both names)."""
    seen, total = set(), 0
    for key, tensor in state.items():
        if (key.startswith(("inf_net.", "gen_model.")) and tensor.is_floating_point() and "running_" not in key
                and tensor.untyped_storage().data_ptr() not in seen):
            seen.add(tensor.untyped_storage().data_ptr())
            total += tensor.numel()
    return total


def _test_bound(out: Path, limit: int) -> dict:
    entries = json.loads((out / "evaluation.json").read_text()) if (out / "evaluation.json").is_file() else []
    found = [e for e in entries if e["split"] == "test" and e["k"] == 1000 and e["n"] == limit and "sampler" not in e]
    if found:
        return {key: found[-1][key] for key in ("log_likelihood", "standard_error", "k", "n")}
    return {}


def compare(args) -> None:
    data_dir = args.data_root / "mnist"
    flags = compare_flags(data_dir)
    args.runs.mkdir(parents=True, exist_ok=True)
    plan_path = args.runs / "plan.json"
    if plan_path.is_file():
        plan = json.loads(plan_path.read_text())
    else:
        # Probe: both at once, as in the real runs, so each step time includes the same sharing of the machine.
        probe_steps = {"nvae-tiny": 30, "mlp-vae": 600}
        probes = {name: args.runs / f"probe-{name}" for name in flags}
        _train_together({name: [*flags[name], "--steps", str(probe_steps[name]), "--eval-every", "100000",
                                "--eval-k", "2", "--eval-size", "10", "--progress", "false", "--seed", "0",
                                "--overwrite", "--out", str(probes[name])] for name in flags})
        seconds_per_step = {name: _run_summary(probes[name])["seconds"] / probe_steps[name] for name in flags}
        plan = {"minutes": args.minutes, "seconds_per_step": seconds_per_step,
                "steps": {name: int(args.minutes * 60 / seconds_per_step[name]) for name in flags}}
        plan_path.write_text(json.dumps(plan, indent=1) + "\n")
    jobs = {}
    for name, arguments in flags.items():
        out, steps = args.runs / name, plan["steps"][name]
        if _checkpoint_step(out) >= steps:
            continue
        # a few validation bounds on a small subset: their cost is part of each run's wall-clock
        monitoring = ["--eval-every", str(max(steps // 4, 1)), "--eval-k", "10", "--eval-size", "200",
                      "--log-every", str(max(steps // 40, 1)), "--checkpoint-every", str(max(steps // 20, 1))]
        resume = ["--resume"] if (out / "checkpoint.pt").is_file() else []
        jobs[name] = [*arguments, *monitoring, "--steps", str(steps), "--progress", "false", "--seed", "0",
                      *resume, "--out", str(out)]
    if jobs:
        _train_together(jobs)
    # Score both at once, one thread each; the NVAE's k = 1000 bound dominates (seconds per image on a core).
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    scoring = {name: subprocess.Popen(command_line() + ["evaluate", str(args.runs / name), "--k", "1000", "--limit",
                                                        str(args.limit), "--batch-size", "10", "--sample-chunk", "100"],
                                      env=environment)
               for name in flags if not _test_bound(args.runs / name, args.limit)}
    for name, process in scoring.items():
        if process.wait() != 0:
            raise SystemExit(f"[{name}] evaluation failed (exit {process.returncode})")
    section = {"machine": _machine("cpu"), "minutes": plan["minutes"], "limit": args.limit,
               "seconds_per_step_probe": plan["seconds_per_step"],
               "runs": {name: {**_run_summary(args.runs / name), "test": _test_bound(args.runs / name, args.limit),
                               "command": " ".join(["blackbox-vae", "train", *flags[name]])} for name in flags}}
    _update("compare", section)


# ------------------------------------------------------------------------------------------ profile
def _preset_config(preset: str, device: str, data_dir: Path, **overrides):
    from blackbox_vae.cli.config import TrainConfig, load_config_file
    from blackbox_vae.cli.presets import resolve_config

    settings = {**load_config_file(resolve_config(preset)), "data_dir": str(data_dir), "device": device, **overrides}
    return TrainConfig(**settings).validate()


def profile_preset(preset: str, device: str, data_dir: Path, steps: int, batch_size: int | None = None) -> dict:
    """Steps per second and the peak memory of one step for a preset, with all its training aids on."""
    from blackbox_vae.cli.training import _step, build_run
    from blackbox_vae.data import BatchStream

    peak_memory_mib = _load_benchmark("pyro_comparison").peak_memory_mib
    config = _preset_config(preset, device, data_dir, **({"batch_size": batch_size} if batch_size else {}))
    run = build_run(config)
    optimizer = torch.optim.Adam(run.loss.parameters(), lr=config.lr)
    stream = BatchStream(run.dataset.train.to(run.device), config.batch_size, dynamic_binarization=True, seed=0)

    def step() -> None:
        _step(run, optimizer, stream)

    def synchronize() -> None:
        if run.device.type == "cuda":
            torch.cuda.synchronize(run.device)

    for _ in range(3):  # warm-up: allocator, kernels' autotuning, Adam's state
        step()
    synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize()
    seconds = (time.perf_counter() - started) / steps
    return {"preset": preset, "batch_size": config.batch_size, "steps_timed": steps,
            "ms_per_step": round(seconds * 1000, 2), "steps_per_s": round(1 / seconds, 3),
            "images_per_s": round(config.batch_size / seconds, 1),
            "peak_mib": round(peak_memory_mib(step, run.device), 1),
            "parameters": sum(p.numel() for p in run.loss.parameters())}


def profile(args) -> None:
    section = f"profile-{torch.device(args.device).type}"
    old = json.loads(RESULTS.read_text()).get(section, {}) if RESULTS.is_file() else {}
    rows = {(row["preset"], row["batch_size"]): row for row in old.get("rows", [])}  # other batch sizes stay
    for preset in args.presets:
        steps = args.steps or (50 if args.device.startswith("cuda") else {"nvae-tiny": 10}.get(preset, 2))
        row = profile_preset(preset, args.device, args.data_root / "mnist", steps, args.batch_size)
        rows[(row["preset"], row["batch_size"])] = row
        print(json.dumps(row), flush=True)
    _update(section, {"machine": _machine(args.device), "rows": sorted(rows.values(), key=lambda r: (
        ["nvae-tiny", "nvae-small", "nvae-mnist"].index(r["preset"]), r["batch_size"]))})


# -------------------------------------------------------------------------------------------- smoke
def smoke(args) -> None:
    from blackbox_vae.cli.commands import evaluate
    from blackbox_vae.cli.training import train

    data_dir = args.data_root / "mnist"
    timing = profile_preset("nvae-mnist", args.device, data_dir, steps=20)
    steps = max(int(args.minutes * 60 * timing["steps_per_s"]), 10)
    config = _preset_config("nvae-mnist", args.device, data_dir, steps=steps, eval_every=max(steps // 4, 1),
                            checkpoint_every=steps, out=str(args.runs / "nvae-mnist"), log_every=max(steps // 20, 1))
    summary = train(config, progress=False, overwrite=True)
    score = evaluate(args.runs / "nvae-mnist", k=1000, limit=args.limit, batch_size=20, sample_chunk=500,
                     device=args.device)
    if args.grids:
        grids(argparse.Namespace(run=args.runs / "nvae-mnist", name="nvae-mnist-smoke", bn_passes=20, device=args.device,
                                 out=args.grids))
    _update("smoke", {"machine": _machine(args.device), "minutes": args.minutes, "steps": summary["steps"],
                      "batch_size": config.batch_size, "seconds": summary["seconds"],
                      "valid_bound": summary["valid_bound"], "eval_k": summary["eval_k"],
                      "test": {key: score[key] for key in ("log_likelihood", "standard_error", "k", "n")}},
            results=args.results)


# -------------------------------------------------------------------------------------------- grids
@torch.no_grad()
def grids(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from blackbox_vae.cli.commands import load_run
    from blackbox_vae.cli.plots import image_grid
    from blackbox_vae.models.nvae.batch_norm import readjust_batch_norm

    figure, axes = plt.subplots(1, len(TEMPERATURES), figsize=(3.4 * len(TEMPERATURES), 3.8), squeeze=False)
    for axis, temperature in zip(axes.flat, TEMPERATURES):
        run, state = load_run(args.run, getattr(args, "device", "cpu"))  # fresh statistics for each temperature
        torch.manual_seed(0)
        readjust_batch_norm(run.gen_model, args.bn_passes, batch_size=100, temperature=temperature)
        means = run.gen_model.likelihood_mean(run.gen_model.sample_latents(36, temperature)).cpu()
        axis.imshow(image_grid(means, run.dataset.image_shape).numpy(), cmap="gray_r", vmin=0, vmax=1,
                    interpolation="nearest")
        axis.set_title(f"temperature {temperature:g}")
        axis.axis("off")
    figure.suptitle(f"{args.name} after {state['step']:,} steps: E[x|z], BN readjusted on {args.bn_passes} batches")
    figure.tight_layout()
    out = Path(getattr(args, "out", None) or ROOT / "docs" / "img")
    out.mkdir(parents=True, exist_ok=True)
    figure.savefig(out / f"{args.name}-temperatures.png", dpi=100)
    plt.close(figure)
    print(out / f"{args.name}-temperatures.png")


# ---------------------------------------------------------------------------------------- results
def _update(section: str, value: dict, results: Path | None = None) -> None:
    path = Path(results) if results else RESULTS
    everything = json.loads(path.read_text()) if path.is_file() else {}
    everything[section] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(everything, indent=1) + "\n")
    path.with_suffix(".md").write_text(markdown(everything))
    print(path.with_suffix(".md").read_text())


def markdown(results: dict) -> str:
    lines = ["# NVAE benchmarks", "", "Written by `benchmarks/nvae.py`; see `docs/nvae.md` for the discussion.", ""]
    if "compare" in results:
        c = results["compare"]
        lines += [f"## nvae-tiny vs the Gaussian MLP VAE at equal wall-clock ({c['machine']})", "",
                  f"Both trained at once, one thread each, for the steps each takes in {c['minutes']:g} minutes by a "
                  "short probe (the seconds column is what the runs took, validation included); dynamically binarized "
                  f"MNIST; test bound with k = 1000 on the same {c['limit']} test images (mean ± standard error over "
                  "images).", "",
                  "| model | parameters | steps | seconds | validation bound (k=10, 200 images) | test log-likelihood (k=1000) |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for name, run in c["runs"].items():
            test = run["test"]
            cell = f"{test['log_likelihood']:.2f} ± {test['standard_error']:.2f}" if test else "—"
            lines.append(f"| {name} | {run['parameters']:,} | {run['steps']:,} | {run['seconds']:,.0f} | "
                         f"{run['final_valid_bound']:.2f} | {cell} |")
        lines += ["", "Commands: " + "; ".join(f"`{run['command']}`" for run in c["runs"].values()), ""]
    for section in ("profile-cpu", "profile-cuda"):
        if section in results:
            p = results[section]
            lines += [f"## Cost per preset: {section.split('-')[1].upper()} ({p['machine']})", "",
                      "All training aids on (KL warm-up and balancing, spectral regularization, clipping); the peak is "
                      "the memory one training step allocates above the model's.", "",
                      "| preset | parameters | batch | ms / step | steps / s | images / s | peak MiB |",
                      "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
            lines += [f"| {r['preset']} | {r['parameters']:,} | {r['batch_size']} | {r['ms_per_step']:,.1f} | "
                      f"{r['steps_per_s']:.2f} | {r['images_per_s']:,.0f} | {r['peak_mib']:,.0f} |" for r in p["rows"]]
            lines.append("")
    if "smoke" in results:
        s = results["smoke"]
        test = s["test"]
        lines += [f"## GPU smoke run of nvae-mnist ({s['machine']})", "",
                  f"{s['steps']:,} steps of batch {s['batch_size']} in {s['seconds']:,.0f} s (KL warm-up over 30% of "
                  f"them); validation bound (k={s['eval_k']}) {s['valid_bound']:.2f}; test log-likelihood (k=1000, "
                  f"{test['n']} images) {test['log_likelihood']:.2f} ± {test['standard_error']:.2f} nats. The paper's "
                  "about −78 nats take 400 epochs (about 50,000 steps of batch 400).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("compare")
    p.add_argument("--minutes", type=float, default=40.0)
    p.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "nvae-bench")
    p.add_argument("--limit", type=int, default=500)
    p = commands.add_parser("profile")
    p.add_argument("--device", default="cpu")
    p.add_argument("--presets", nargs="+", default=["nvae-tiny", "nvae-small", "nvae-mnist"])
    p.add_argument("--steps", type=int, default=None, help="timed steps (default: 50 on CUDA; 10 or 2 on CPU)")
    p.add_argument("--batch-size", type=int, default=None, help="instead of each preset's own")
    p.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    p = commands.add_parser("smoke")
    p.add_argument("--device", default="cuda")
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "nvae-smoke")
    p.add_argument("--limit", type=int, default=1000, help="test images of the k = 1000 bound")
    p.add_argument("--results", type=Path, default=None, help="results file (default: benchmarks/results/nvae.json)")
    p.add_argument("--grids", type=Path, default=None, help="also write temperature grids into this folder")
    p = commands.add_parser("grids")
    p.add_argument("run", type=Path)
    p.add_argument("--name", default="nvae-tiny")
    p.add_argument("--bn-passes", type=int, default=20)
    p.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    {"compare": compare, "profile": profile, "smoke": smoke, "grids": grids}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
