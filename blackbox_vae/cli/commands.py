"""`blackbox-vae evaluate` and `blackbox-vae sample`: load a trained run and use it."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from blackbox_vae.cli.checkpoint import CHECKPOINT_NAME, CheckpointError, check_against_run_config, load_checkpoint
from blackbox_vae.cli.config import ConfigError, TrainConfig
from blackbox_vae.cli.files import RunFileError, remove_stale_temporaries, write_text
from blackbox_vae.cli.plots import save_image_grids, save_scatter
from blackbox_vae.cli.training import Run, build_run, resolve_device
from blackbox_vae.evaluation import log_likelihood_bound
from blackbox_vae.progress import progress_bar

__all__ = ["load_run", "evaluate", "sample", "fitted_sampler", "train_classifier"]


def load_run(run_dir: Path, device: str = "cpu") -> tuple[Run, dict[str, Any]]:
    """The trained run in ``run_dir`` (its config and last checkpoint), on ``device``."""
    run_dir = Path(run_dir)
    resolve_device(device)  # a clear error before any work if the device is not there
    state = load_checkpoint(run_dir / CHECKPOINT_NAME, map_location="cpu")
    from blackbox_vae.cli.config import RESUME_MAY_CHANGE

    check_against_run_config(run_dir / CHECKPOINT_NAME, state["config"], RESUME_MAY_CHANGE)
    config = TrainConfig.from_saved(state["config"], f"{run_dir / CHECKPOINT_NAME} (its config)")
    config.device = device
    run = build_run(config)
    saved_settings = state["loss"].get("_extra_state", {}).get("settings", {})
    if "kl_warmup_steps" in saved_settings and hasattr(run.loss, "kl_warmup_steps"):
        # fixed when the run started (a fraction of its steps then), which a resumed run's config does not say
        run.loss.kl_warmup_steps = saved_settings["kl_warmup_steps"]
    try:
        run.loss.load_state_dict(state["loss"])
    except (RuntimeError, ValueError) as error:  # parameters of other shapes; a loss of other settings
        raise CheckpointError(f"{run_dir / CHECKPOINT_NAME}: its state does not fit the model and loss its config "
                              f"describes ({str(error).splitlines()[0]}).") from error
    run.loss.eval()
    return run, state


def _check_tempered(run: Run, sampler: str, temperature: float | None) -> None:
    """Raises unless ``--temperature`` / ``--bn-passes`` apply: NVAE's prior, a temperature >= 0."""
    if not hasattr(run.gen_model, "sample_latents"):
        raise ConfigError(f"--temperature and --bn-passes apply to --model nvae; this run's model is "
                          f"{run.config.model}.")
    if sampler != "prior":
        raise ConfigError(f"--temperature and --bn-passes sample NVAE's own prior; remove --sampler {sampler}.")
    if temperature is not None and not (math.isfinite(temperature) and temperature >= 0):
        raise ConfigError(f"--temperature must be a number >= 0 (0: every prior's mean); got {temperature!r}.")


def fitted_sampler(run: Run, name: str = "prior", options: dict[str, Any] | None = None, fit_size: int | None = None,
                   progress: bool | None = None):
    """The sampler ``name`` for a loaded run, fitted on its training split (binarized once if it is dynamic).

    ``progress``: the fit's progress (None: a bar on a terminal, a line every few seconds otherwise).

    Raises:
        ConfigError: for an unknown sampler, an option it does not take, or codes it cannot model.
    """
    from blackbox_vae.samplers import build_sampler

    try:
        sampler = build_sampler(name, run.gen_model, run.inf_net, **(options or {})).to(run.device)
    except ValueError as error:
        raise ConfigError(str(error)) from error
    if sampler.needs_fit or name == "markov-chain":
        data = run.dataset.train[:fit_size or len(run.dataset.train)]  # a tensor (a memory-mapped split is read)
        if run.dataset.binarization == "dynamic":  # the codes of binary images, as in training
            data = torch.bernoulli(data, generator=torch.Generator().manual_seed(0))
        started = time.perf_counter()  # a fit can take minutes (NVAE's codes): say what runs, and when it is done
        if sampler.needs_fit:
            print(f"fitting --sampler {name} to the codes of {len(data)} training rows ...", file=sys.stderr, flush=True)
        try:
            sampler.fit(data.to(run.device), progress=progress)
        except ValueError as error:
            raise ConfigError(f"--sampler {name}: {error}") from error
        if sampler.needs_fit:
            print(f"fitted --sampler {name} in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return sampler


def evaluate(run_dir: Path, k: int = 5000, split: str = "test", batch_size: int = 100,
             sample_chunk: int | None = None, device: str = "cpu", seed: int = 0, limit: int | None = None,
             fid: bool = False, sampler: str = "prior", sampler_options: dict[str, Any] | None = None,
             fid_samples: int | None = None, progress: bool | None = False,
             report: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The K-sample importance-weighted bound of log p(x) on a split, with the trained inference network,
    and optionally the quality of generated samples (FID, precision, recall) against the split.

    Prints and returns the mean over the split and its standard error (for images also in bits per
    dimension, ``bits_per_dim``; for standardized data also in the data's own units,
    ``log_likelihood_data_units``), and records them in
    ``RUN_DIR/evaluation.json`` (one entry per split, K and number of data points; FID entries per sampler).

    Args:
        limit: evaluate on a fixed random subset of ``limit`` data points (default: all of them). The
            subset depends only on the split's size, so every run is scored on the same points; it is
            random rather than the first rows because some splits are ordered (binarized MNIST's test
            rows are sorted by digit).
        fid: also score ``fid_samples`` samples (default: as many as the split's data points) of
            ``sampler`` (fitted on the training split) with the data set's cached feature network. The
            samples are images of the split's kind: for binary data, x ~ p(x|z) unless ``sampler_options``
            sets ``decode``.
        sampler: the sampler's name (see `blackbox_vae.samplers.build_sampler`).
        sampler_options: keyword options for that sampler.
        sample_chunk: samples per chunk (default: `log_likelihood_bound`'s, sized for the cache).
        progress: show a tqdm progress bar in data points, with its rate (None: on a terminal; otherwise a line
            every few seconds). Also the sampler's fit and sampling under ``fid``.
        report: called with the result before it is recorded (the command line prints it there, so that a
            result that cannot be recorded, in a read-only or vanished directory, is not lost).

    The entry also records ``seconds``, the bound's wall time.

    Raises:
        ConfigError: for a data set without a feature network, or a sampler that does not fit.
        CheckpointError: for a missing or damaged checkpoint.
        RunFileError: when ``evaluation.json`` cannot be written; its ``result`` attribute holds the result.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"evaluate: `limit` must be a positive integer or None; got {limit!r}.")
    entries = _read_evaluations(Path(run_dir) / "evaluation.json")  # a damaged file stops us before the work
    run, state = load_run(run_dir, device)
    data = run.dataset.split(split)
    if limit is not None and limit >= len(data) and limit != len(data):
        print(f"note: --limit {limit} is more than the {len(data)} data points of the {split} split; evaluating "
              f"all {len(data)}.", file=sys.stderr)
    if limit is not None and limit < len(data):
        rows = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:limit].sort().values
        data = data[rows]
    data = data.to(run.device)
    torch.manual_seed(seed)
    started = time.perf_counter()
    with progress_bar(len(data), f"{split} bound, K={k}", "point", progress) as bar:
        bounds = log_likelihood_bound(run.inf_net, run.gen_model, data, n_samples=k, batch_size=batch_size,
                                      sample_chunk=sample_chunk, progress=bar.update).double()
    seconds = time.perf_counter() - started
    result = {"split": split, "k": k, "n": len(bounds), "log_likelihood": bounds.mean().item(),
              "standard_error": (bounds.std() / math.sqrt(len(bounds))).item() if len(bounds) > 1 else 0.0,
              "step": state["step"], "data": run.config.data, "model": run.config.model, "loss": run.config.loss,
              "n_samples": run.config.n_samples, "device": str(run.device), "seed": seed, "seconds": round(seconds, 3)}
    if run.dataset.standardization is not None:  # the bound of the data in their own units
        result["log_likelihood_data_units"] = result["log_likelihood"] - run.dataset.standardization[1].log().sum().item()
    if run.dataset.image_shape is not None:  # per pixel and channel, in bits: the images' customary unit
        result["bits_per_dim"] = -result["log_likelihood"] / (run.dataset.data_dim * math.log(2))
    if fid:
        result.update(_sample_quality(run, data, sampler, sampler_options, fid_samples or len(data), seed,
                                       progress))
    if report is not None:
        report(result)
    path = Path(run_dir) / "evaluation.json"
    key = (split, k, len(bounds), result.get("sampler"))
    entries = [e for e in entries if (e.get("split"), e.get("k"), e.get("n"), e.get("sampler")) != key] + [result]
    remove_stale_temporaries(run_dir)
    try:
        write_text(path, json.dumps(entries, indent=1) + "\n")
    except RunFileError as error:
        failure = RunFileError(f"the result is not recorded: {error}")
        failure.result = result
        raise failure from error
    return result


def _read_evaluations(path: Path) -> list[dict]:
    """The entries of ``evaluation.json`` (none if it does not exist).

    Raises:
        ConfigError: if it is not a JSON list of entries.
    """
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} is not valid JSON ({error}); move it away (or delete it) and evaluate again.") \
            from error
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise ConfigError(f"{path} is not a list of evaluation entries; move it away (or delete it) and evaluate again.")
    return entries


def _sample_quality(run: Run, real: torch.Tensor, sampler_name: str, options: dict[str, Any] | None, n: int,
                    seed: int, progress: bool | None) -> dict[str, Any]:
    from blackbox_vae.metrics import FEATURE_DATA, load_feature_network, sample_quality

    if run.config.data not in FEATURE_DATA:
        raise ConfigError(f"--fid: there is no feature network for --data {run.config.data} (only for "
                          f"{', '.join(FEATURE_DATA)}).")
    try:
        network, info = load_feature_network(FEATURE_DATA[run.config.data])
    except FileNotFoundError as error:
        raise ConfigError(str(error)) from error
    options = dict(options or {})
    if run.dataset.binarization != "none":
        # Generated images of the kind the split holds: binary images x ~ p(x|z), unless --decode says otherwise
        # (means of p(x|z) against binary test images would differ from them however good the model).
        options.setdefault("decode", "sample")
    sampler = fitted_sampler(run, sampler_name, options, progress=progress)
    torch.manual_seed(seed)
    generated = sampler.sample(n, progress=progress).reshape(n, -1)
    scores = sample_quality(real.reshape(len(real), -1), generated, network, info)
    return {"sampler": sampler_name, **options, **scores}


def train_classifier(data: str, data_dir: Path | None = None, seed: int = 0, epochs: int = 4) -> dict[str, Any]:
    """Trains and caches the feature network of the sample-quality metrics for ``data``.

    Raises:
        ConfigError: for a data set without one, or a missing ``data_dir``.
    """
    from blackbox_vae.metrics import labelled_images, train_feature_network

    if data not in ("mnist", "fashion-mnist", "digits"):
        raise ConfigError(f"--data must be mnist, fashion-mnist or digits (binarized MNIST is scored with MNIST's "
                          f"network); got {data!r}.")
    if data != "digits" and data_dir is None:
        raise ConfigError(f"--data {data} needs --data-dir, the directory with its four IDX files.")
    splits = labelled_images(data, data_dir)
    _, info = train_feature_network(data, *splits["train"], *splits["test"], splits["shape"], seed=seed,
                                    epochs=epochs, progress=True)
    from blackbox_vae.metrics import feature_network_path

    return {"feature_network": info.name, "test_accuracy": info.test_accuracy, "seconds": info.seconds,
            "path": str(feature_network_path(data, seed))}


@torch.no_grad()
def sample(run_dir: Path, n: int = 64, out: Path | None = None, device: str = "cpu", seed: int = 0,
           sampler: str = "prior", sampler_options: dict[str, Any] | None = None, temperature: float | None = None,
           bn_passes: int | None = None) -> Path:
    """A PNG of ``n`` generated images (decoded latents of ``sampler``; the prior's by default) beside test images
    and their reconstructions (means of p(x|z), z ~ q(z|x)); for 2-D data, a scatter plot of samples and data.

    A sampler other than the prior is fitted on the run's training split first; the PNG is then
    ``RUN_DIR/samples-SAMPLER.png`` by default. For NVAE, ``temperature`` scales every prior's standard
    deviation, and ``bn_passes`` batches of prior samples at that temperature first re-estimate the decoder's
    batch-norm statistics (in memory only: the checkpoint is not changed); generated images are then means.

    Raises:
        ConfigError: for a bad output path, or ``temperature`` / ``bn_passes`` with a model or sampler they do not
            apply to.
    """
    default_name = "samples.png" if sampler == "prior" else f"samples-{sampler}.png"
    out = Path(out) if out is not None else Path(run_dir) / default_name
    if out.is_dir():
        raise ConfigError(f"`--out` {out} is a directory; give the PNG's file name (e.g. {out / default_name}).")
    if not out.suffix:  # the file written is the one named in the report
        out = out.with_name(out.name + ".png")
    elif out.suffix.lower()[1:] not in _IMAGE_FORMATS:
        raise ConfigError(f"`--out` {out}: {out.suffix} is not an image format matplotlib writes; use .png (or "
                          f"{', '.join('.' + f for f in _IMAGE_FORMATS if f != 'png')}).")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"`--out` {out}: cannot create its folder ({error}).") from error
    run, _ = load_run(run_dir, device)
    _check_sample_size(n, run)
    tempered = temperature is not None or bn_passes is not None
    if tempered:
        _check_tempered(run, sampler, temperature)
    fitted = fitted_sampler(run, sampler, sampler_options)
    torch.manual_seed(seed)
    if tempered:
        from blackbox_vae.models.nvae.batch_norm import readjust_batch_norm

        temperature = 1.0 if temperature is None else temperature
        if bn_passes:
            readjust_batch_norm(run.gen_model, bn_passes, batch_size=100, temperature=temperature)
        with torch.no_grad(), progress_bar(n, f"sampling at temperature {temperature:g}", "sample", None) as bar:
            chunks = []
            for start in range(0, n, 500):
                chunks.append(run.gen_model.likelihood_mean(run.gen_model.sample_latents(min(500, n - start),
                                                                                         temperature)))
                bar.update(len(chunks[-1]))
            generated = torch.cat(chunks)
        test = run.dataset.test[:n].to(run.device)
        with torch.no_grad():
            reconstructions = run.gen_model.likelihood_mean(run.inf_net(test).sample(1))[:, 0]
        save_image_grids([(f"generated (temperature {temperature:g}"
                           f"{f', BN readjusted on {bn_passes} batches' if bn_passes else ''}; means)", generated),
                          ("test images", test), ("reconstructions", reconstructions)], run.dataset.image_shape, out)
        return out
    original = _original_units(run.dataset)
    if run.dataset.image_shape is None:
        generated = fitted.sample(max(n, 1000), progress=None)
        save_scatter([("data (test)", original(run.dataset.test[:max(n, 1000)])),
                      (f"generated ({sampler})", original(generated))], out)
        if run.config.is_data_file:  # the samples themselves, in the data's own units
            _write_csv(original(generated[:n]).cpu(), out.with_suffix(".csv"))
        return out
    generated = original(fitted.sample(n, progress=None))
    test = run.dataset.test[:n].to(run.device)
    latents = run.inf_net(test).sample(1)  # leading [n, 1]
    reconstructions = original(run.gen_model.likelihood_mean(latents)[:, 0])
    test = original(test)
    decoded = "means of p(x|z)" if fitted.decode == "mean" else "x ~ p(x|z)"
    save_image_grids([(f"generated ({sampler}, {decoded})", generated), ("test images", test),
                      ("reconstructions", reconstructions)], run.dataset.image_shape, out)
    return out


def _check_sample_size(n: int, run: Run) -> None:
    """Refuses ``-n`` whose images (generated, test rows and reconstructions, float32) cannot fit in memory."""
    from blackbox_vae.models.size import available_memory

    needed = 3 * max(n, 1000) * run.dataset.data_dim * 4
    free = available_memory(run.device)
    if free is not None and needed > free:
        raise ConfigError(f"-n {n}: the samples, test images and reconstructions need about {needed / 2**30:,.1f} GiB "
                          f"and {run.device} has {free / 2**30:,.1f} GiB free; a grid shows a few hundred at most, "
                          "so lower -n.")


#: The suffixes `sample` writes (matplotlib's formats without extra dependencies).
_IMAGE_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg")


def _original_units(dataset):
    """Maps rows ``[n, D]`` of a standardized data set back to its units (others unchanged)."""
    if dataset.standardization is None:
        return lambda rows: rows
    mean, std = dataset.standardization
    return lambda rows: rows.reshape(len(rows), -1) * std.to(rows.device) + mean.to(rows.device)


def _write_csv(rows: torch.Tensor, path: Path) -> None:
    import io

    import numpy as np

    text = io.StringIO()
    np.savetxt(text, rows.numpy(), delimiter=",", fmt="%.6g")
    write_text(path, text.getvalue())
