"""The `blackbox-vae` command line (also `python -m blackbox_vae`): train, evaluate, sample."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from blackbox_vae.cli.checkpoint import CheckpointError
from blackbox_vae.cli.files import RunFileError
from blackbox_vae.cli.config import (
    ESTIMATOR_OPTIONS,
    RESUME_MAY_CHANGE,
    ConfigError,
    TrainConfig,
    TrainerSettings,
    boolean,
    load_config_file,
    positive_int,
)
from blackbox_vae.cli.presets import preset_names, resolve_config
from blackbox_vae.data import DataFileError
from blackbox_vae.losses.registry import ANNEALED_TEMPERATURE, LOSSES, option_choices, option_default

__all__ = ["main", "build_parser"]


# The flags' value types are declared with the settings (blackbox_vae.cli.config).
_positive_int, _bool = positive_int, boolean


def build_parser() -> argparse.ArgumentParser:
    """The ``blackbox-vae`` argument parser, with its ``train``, ``evaluate``, ``sample``, ``export-samples``
    and ``train-classifier`` subcommands.

    The ``train`` flags default to "not given" (``argparse.SUPPRESS``), so that only the flags on the
    command line override the values of a ``--config`` file and of `TrainConfig`.

    Returns:
        the parser; ``parse_args`` leaves the subcommand's name in ``args.command``.
    """
    parser = argparse.ArgumentParser(prog="blackbox-vae", description="Train, evaluate and sample latent-variable "
                                     "models with the gradient estimators of blackbox_vae.")
    commands = parser.add_subparsers(dest="command", required=True)

    # Every train flag defaults to "not given", so that a --config file's values are kept unless overridden.
    train = commands.add_parser("train", help="train a model; with no data flags, on scikit-learn's 8x8 digits",
                                argument_default=argparse.SUPPRESS,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train.add_argument("--config", help="a JSON or YAML file of settings, or a preset's name: "
                       f"{', '.join(preset_names())} (flags override it)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint, with "
                       "its saved settings (flags may change only " + ", ".join(RESUME_MAY_CHANGE) + ")")
    train.add_argument("--overwrite", action="store_true", help="delete the run already in --out and start afresh")
    _add_setting_flags(train)
    train.add_argument("--progress", type=_bool, help="show a progress bar (default: when attached to a terminal)")

    evaluate = commands.add_parser("evaluate", help="test log-likelihood by importance sampling (the IWAE bound)")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--k", type=_positive_int, default=5000, help="importance samples per data point")
    evaluate.add_argument("--split", choices=("test", "valid", "train"), default="test")
    evaluate.add_argument("--batch-size", type=_positive_int, default=100, help="data points per chunk")
    evaluate.add_argument("--sample-chunk", type=_positive_int, help="samples per chunk (default: sized for the cache, "
                          "about 2 million elements of data per chunk)")
    evaluate.add_argument("--limit", type=_positive_int,
                          help="evaluate on a fixed random subset of LIMIT data points, the same for every run "
                               "(default all)")
    evaluate.add_argument("--device", default="cpu")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--progress", type=_bool, help="show a progress bar with its rate (default: on a terminal; "
                          "otherwise a line every 10 s)")
    evaluate.add_argument("--fid", action="store_true", help="also score generated samples against the split: FID, "
                          "precision and recall on the features of the data set's cached classifier")
    evaluate.add_argument("--fid-samples", type=_positive_int, help="samples scored (default: as many as data points)")
    _add_sampler_options(evaluate)

    sample = commands.add_parser("sample", help="a PNG of generated images and reconstructions")
    sample.add_argument("run_dir", type=Path)
    sample.add_argument("-n", type=_positive_int, default=64, help="number of images")
    sample.add_argument("--out", type=Path, help="PNG path (default RUN_DIR/samples.png, or samples-SAMPLER.png)")
    sample.add_argument("--device", default="cpu")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--temperature", type=float, help="nvae: scale every prior's standard deviation (default 1)")
    sample.add_argument("--bn-passes", type=_positive_int, help="nvae: first re-estimate the batch-norm statistics on "
                        "this many batches of samples at the temperature (NVAE's readjustment)")
    _add_sampler_options(sample)

    export = commands.add_parser("export-samples", help="one PNG per generated image (or per image of a split), for "
                                 "external FID tools such as pytorch-fid")
    export.add_argument("run_dir", type=Path)
    export.add_argument("n", type=_positive_int, metavar="N", help="number of images")
    export.add_argument("--dir", type=Path, required=True, help="the folder of the PNGs (created if missing)")
    export.add_argument("--from-data", action="store_true", help="write the first N images of --split instead of "
                        "samples (the other folder an FID tool compares with)")
    export.add_argument("--split", choices=("test", "valid", "train"), default="test", help="with --from-data")
    export.add_argument("--overwrite", action="store_true", help="remove the PNGs already in --dir first")
    export.add_argument("--device", default="cpu")
    export.add_argument("--seed", type=int, default=0)
    export.add_argument("--progress", type=_bool, help="show a progress bar (default: on a terminal)")
    _add_sampler_options(export)

    classifier = commands.add_parser("train-classifier", help="train and cache the feature network of --fid")
    classifier.add_argument("--data", choices=("mnist", "fashion-mnist", "digits"), required=True)
    classifier.add_argument("--data-dir", type=Path, help="the directory of the data set's IDX files")
    classifier.add_argument("--seed", type=int, default=0)
    classifier.add_argument("--epochs", type=_positive_int, default=4)
    return parser


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per `TrainConfig` field, from its declaration (`blackbox_vae.cli.config.setting`), in the order
    of the fields (the data, model and estimator first, then the loop's `TrainerSettings`, then ``--out``); the
    estimators' options from the loss classes, after ``--n-samples``."""
    loop = {f.name for f in fields(TrainerSettings)}
    ordered = sorted(fields(TrainConfig), key=lambda f: (f.name in loop) + 2 * (f.name == "out"))
    for setting_field in ordered:
        meta = setting_field.metadata
        if setting_field.name == "n_samples":
            _add_flag(parser, setting_field)
            _add_estimator_options(parser)
            continue
        if meta.get("flag") == "" or setting_field.name in ESTIMATOR_OPTIONS:
            continue
        _add_flag(parser, setting_field)


def _add_flag(parser: argparse.ArgumentParser, setting_field) -> None:
    meta = setting_field.metadata
    default = setting_field.default
    flag = meta.get("flag") or "--" + setting_field.name.replace("_", "-")
    parser.add_argument(flag, help=meta["help"].replace("{default}", str(default)), **meta["argparse"])


def _add_sampler_options(parser: argparse.ArgumentParser) -> None:
    """The post-hoc sampler flags of `sample` and `evaluate` (blackbox_vae.samplers)."""
    from blackbox_vae.samplers import CHAINS, SAMPLERS

    parser.add_argument("--sampler", choices=tuple(SAMPLERS),
                        help="how latents are drawn: the prior (default), or a density fitted to the training split's "
                             "codes")
    parser.add_argument("--chain", choices=tuple(CHAINS), help="sample a Markov chain's distribution: "
                        + ", ".join(f"{name} is --sampler {sampler}" for name, sampler in CHAINS.items()))
    parser.add_argument("--steps", type=_positive_int, help="with --chain: the chain's steps (its --chain-steps)")
    parser.add_argument("--components", type=_positive_int, help="gmm, bernoulli-mixture: mixture components (10)")
    parser.add_argument("--flow", choices=("maf", "iaf"), help="flow: the kind (maf)")
    parser.add_argument("--fit-epochs", type=_positive_int, help="flow, two-stage, autoregressive: at most this many "
                        "passes over the codes, stopping earlier on held-out codes (300, 300, 200)")
    parser.add_argument("--chain-steps", type=_positive_int, help="markov-chain: steps of x -> z -> x (100)")
    parser.add_argument("--chain-start", choices=("noise", "data"), help="markov-chain: where chains start (noise)")
    parser.add_argument("--codes", choices=("auto", "mean", "sample"), help="how data are encoded to codes (auto: "
                        "the posterior mean for continuous latents, a sample for discrete ones)")
    parser.add_argument("--decode", choices=("mean", "sample"), help="decode latents to the mean of p(x|z) or a sample "
                        "(default: the mean; for evaluate --fid on binary data, a sample, as the data are binary)")


def _sampler_choice(args: argparse.Namespace) -> tuple[str, dict]:
    """The sampler's name and options from the sampler flags; ``--chain NAME --steps N`` is read as the sampler
    `CHAINS` names with ``--chain-steps N``.

    Raises:
        ConfigError: for ``--chain`` with another ``--sampler``, ``--steps`` without ``--chain``, or ``--steps``
            with ``--chain-steps``.
    """
    from blackbox_vae.samplers import CHAINS

    sampler = args.sampler or "prior"
    names = ("components", "flow", "fit_epochs", "chain_steps", "chain_start", "codes", "decode")
    options = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if args.steps is not None and args.chain is None:
        raise ConfigError(f"--steps {args.steps} counts the steps of a --chain; add --chain "
                          f"{'/'.join(CHAINS)}, or use --chain-steps with --sampler markov-chain.")
    if args.chain is not None:
        if args.sampler not in (None, CHAINS[args.chain]):
            raise ConfigError(f"--chain {args.chain} is --sampler {CHAINS[args.chain]}; it cannot be combined with "
                              f"--sampler {args.sampler}: give one of the two.")
        sampler = CHAINS[args.chain]
        if args.steps is not None:
            if "chain_steps" in options:
                raise ConfigError(f"--steps {args.steps} and --chain-steps {options['chain_steps']} both set the "
                                  "chain's steps: give one of the two.")
            options["chain_steps"] = args.steps
    return sampler, options


def _add_estimator_options(parser: argparse.ArgumentParser) -> None:
    """One flag per option of the registered losses; choices and defaults come from the loss classes."""
    for option in ESTIMATOR_OPTIONS:
        owners = [name for name, spec in LOSSES.items() if option in spec.options]
        name = owners[0]  # each option belongs to one loss; test_cli checks it
        choices, default = option_choices(name, option), option_default(name, option)
        flag = "--" + option.replace("_", "-")
        if option == "temperature":
            parser.add_argument(flag, help=f"{name}: a number > 0, or 'anneal' for {ANNEALED_TEMPERATURE} "
                                           f"(default {default})")
        elif choices is None:  # a free number: its type is its default's
            parser.add_argument(flag, type=_positive_int if isinstance(default, int) else float,
                                help=f"{name} (default {default})")
        elif set(choices) == {True, False}:
            parser.add_argument(flag, type=_bool, metavar="{true,false}",
                                help=f"{name} (default {str(default).lower()})")
        else:
            parser.add_argument(flag, choices=[c for c in choices if c is not None],
                                help=f"{name} (default {default if default is not None else 'none'})")


def _train_config(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then (with --resume) the run's saved settings, then a --config file (or preset), then the flags
    given (``--arch`` entries over the file's ``architecture``)."""
    names = {f.name for f in fields(TrainConfig)}
    given = {name: value for name, value in vars(args).items() if name in names}
    from_file = load_config_file(resolve_config(args.config)) if getattr(args, "config", None) else {}
    values: dict = {}
    if getattr(args, "resume", False):
        from blackbox_vae.cli.checkpoint import CHECKPOINT_NAME, load_checkpoint

        out = Path(given.get("out", from_file.get("out", TrainConfig.out)))
        if not isinstance(out, (str, Path)):
            raise ConfigError(f"`out` (--out) must be a path; got {out!r}.")
        if not (out / CHECKPOINT_NAME).is_file():  # a run starting there says so, rather than "no checkpoint"
            from blackbox_vae.cli.run_directory import raise_if_in_use

            raise_if_in_use(out)
        saved = load_checkpoint(out / CHECKPOINT_NAME)["config"]
        from blackbox_vae.cli.checkpoint import check_against_run_config
        from blackbox_vae.cli.config import RESUME_MAY_CHANGE

        check_against_run_config(out / CHECKPOINT_NAME, saved, RESUME_MAY_CHANGE)
        values = TrainConfig.from_saved(saved, f"{out / CHECKPOINT_NAME} (its config)").to_dict()
        values["binarization"] = saved.get("binarization")  # as saved; the data set's default otherwise
    values.update(from_file)
    values.update(given)
    if getattr(args, "model_option", None):
        options = values.get("model_options")
        values["model_options"] = {**(options if isinstance(options, dict) else {}), **dict(args.model_option)}
    if getattr(args, "arch", None):
        architecture = values.get("architecture")
        values["architecture"] = {**(architecture if isinstance(architecture, dict) else {}), **dict(args.arch)}
    return TrainConfig.from_dict(values, str(args.config) if getattr(args, "config", None) else "settings")


def main(argv: list[str] | None = None) -> int:
    """Runs the ``blackbox-vae`` command line: parses ``argv`` and trains, evaluates or samples.

    Prints a one-line summary (``evaluate`` also prints its result as JSON). Configuration, checkpoint
    and data-file errors are printed to stderr as ``blackbox-vae COMMAND: error: ...`` rather than raised.

    Args:
        argv: the arguments, without the program name (default ``sys.argv[1:]``).

    Returns:
        the exit status: 0 on success, 2 for a `ConfigError`, `CheckpointError`, `DataFileError`, `TrainingError`
        or `RunFileError` (a file that could not be written: full disk, read-only directory), printed in one line.

    Raises:
        SystemExit: from argparse, for ``--help`` or arguments it cannot parse.
    """
    args = build_parser().parse_args(argv)
    from blackbox_vae.trainer import TrainingError  # the loop loads with the command that runs it

    try:
        if args.command == "train":
            from blackbox_vae.cli.training import train

            summary = train(_train_config(args), resume=getattr(args, "resume", False),
                            progress=getattr(args, "progress", None), overwrite=getattr(args, "overwrite", False))
            if summary["rank"]:  # under torchrun the main process (rank 0) reports
                return 0
            print(f"trained {summary['steps']} steps in {summary['seconds']:.1f} s: training bound "
                  f"{summary['train_bound']:.4f}, validation bound (K={summary['eval_k']}) {summary['valid_bound']:.4f} "
                  f"nats; wrote {summary['out']}/")
        elif args.command == "evaluate":
            from blackbox_vae.cli.commands import evaluate

            sampler, options = _sampler_choice(args)

            def report(result: dict) -> None:  # printed before evaluation.json is written: never lost
                print(json.dumps(result, indent=1))
                print(f"{args.split} log-likelihood (K={args.k}, n={result['n']}): {result['log_likelihood']:.4f} "
                      f"± {result['standard_error']:.4f} nats ({result['seconds']:.1f} s"
                      + (f", {result['n'] / result['seconds']:.1f} data points/s)" if result["seconds"] > 0 else ")")
                      + (f"; {result['bits_per_dim']:.4f} bits/dim" if "bits_per_dim" in result else ""), flush=True)
                if args.fid:
                    print(f"{sampler} samples: FID {result['fid']:.3f}, precision {result['precision']:.3f}, recall "
                          f"{result['recall']:.3f} ({result['feature_network']})", flush=True)

            evaluate(args.run_dir, args.k, args.split, args.batch_size, args.sample_chunk, args.device, args.seed,
                     args.limit, fid=args.fid, sampler=sampler, sampler_options=options, fid_samples=args.fid_samples,
                     progress=args.progress, report=report)
        elif args.command == "train-classifier":
            from blackbox_vae.cli.commands import train_classifier

            result = train_classifier(args.data, args.data_dir, args.seed, args.epochs)
            print(f"{result['feature_network']}: trained in {result['seconds']:.0f} s; cached at {result['path']}")
        elif args.command == "export-samples":
            from blackbox_vae.cli.export import export_samples

            sampler, options = _sampler_choice(args)
            record = export_samples(args.run_dir, args.n, args.dir, args.from_data, args.split, args.device, args.seed,
                                    sampler, options, args.overwrite, args.progress)
            print(f"wrote {record['n']} PNGs to {args.dir}/ ({record['source']}); score two such folders with "
                  f"Inception features: python -m pytorch_fid {args.dir} OTHER_FOLDER (pip install pytorch-fid; "
                  "it fetches its weights once)")
        else:
            from blackbox_vae.cli.commands import sample

            sampler, options = _sampler_choice(args)
            print(f"wrote {sample(args.run_dir, args.n, args.out, args.device, args.seed, sampler, options, args.temperature, args.bn_passes)}")
    except (ConfigError, CheckpointError, DataFileError, TrainingError, RunFileError) as error:
        print(f"blackbox-vae {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0
