"""End-to-end tests of the `blackbox-vae` command line on tiny budgets, in temporary directories."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from blackbox_vae.cli import main
from blackbox_vae.cli.checkpoint import load_checkpoint

TINY = ["--steps", "20", "--log-every", "5", "--eval-every", "10", "--checkpoint-every", "10", "--eval-k", "5",
        "--eval-size", "50", "--batch-size", "16", "--progress", "false"]


def train(out, *flags):
    assert main(["train", "--out", str(out), *TINY, *flags]) == 0


@pytest.mark.parametrize("flags", [
    ["--model", "sbn", "--layers", "8,6,4", "--loss", "vimco", "--n-samples", "3"],
    ["--model", "sbn", "--layers", "8", "--loss", "score-function", "--baseline", "leave-one-out"],
    ["--model", "sbn", "--layers", "8", "--loss", "nvil", "--n-samples", "1"],
    ["--model", "sbn", "--layers", "8,4", "--loss", "rws", "--phi-update", "wake-sleep"],
    ["--model", "sbn", "--layers", "8", "--loss", "gumbel-softmax", "--temperature", "anneal"],
    ["--model", "categorical", "--layers", "3", "--n-classes", "4", "--hidden", "16", "--loss", "gumbel-softmax",
     "--straight-through", "true", "--n-samples", "1"],
    ["--model", "gaussian", "--layers", "2", "--hidden", "16", "--loss", "iwae", "--gradient", "dreg"],
    ["--data", "gaussian-2d", "--model", "gaussian", "--layers", "2", "--hidden", "16", "--loss", "elbo",
     "--n-samples", "1"],
    ["--model", "hvae-ladder", "--layers", "3,5", "--hidden", "16", "--loss", "zgr", "--analytic-kl", "true",
     "--n-samples", "1"],
    ["--model", "hvae-reverse", "--layers", "3,5", "--hidden", "16", "--loss", "symmetric", "--flip-noise", "0.01",
     "--n-samples", "1"],
], ids=["sbn3-vimco", "sbn-sf-loo", "sbn-nvil", "sbn2-rws-ws", "sbn-gumbel-anneal", "categorical-gumbel-st",
        "gaussian-iwae-dreg", "gaussian-2d-elbo", "hvae-ladder-zgr", "hvae-reverse-symmetric"])
def test_train_evaluate_sample(tmp_path, capsys, flags):
    out = tmp_path / "run"
    train(out, *flags)
    printed = capsys.readouterr().out
    assert "trained 20 steps" in printed and "validation bound (K=5)" in printed
    for name in ("config.json", "checkpoint.pt", "metrics.csv", "loss_curve.png"):
        assert (out / name).is_file(), name
    with open(out / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [5, 10, 15, 20]
    assert [r["valid_bound"] != "" for r in rows] == [False, True, False, True]
    assert all(float(r["train_bound"]) < 0 or "gaussian-2d" in flags for r in rows)
    binary = flags[flags.index("--model") + 1] in ("sbn", "hvae-ladder", "hvae-reverse")  # only binary latents
    assert [r["active_bits"] != "" for r in rows] == [False, binary, False, binary]
    assert (out / "bit_information.csv").is_file() == binary
    if binary:
        with open(out / "bit_information.csv") as handle:
            bits = list(csv.reader(handle))
        layers = [int(h) for h in flags[flags.index("--layers") + 1].split(",")]
        assert bits[0] == ["step", *(f"z{layer}_{i}" for layer, h in enumerate(layers) for i in range(h))]
        assert [row[0] for row in bits[1:]] == ["10", "20"]
        information = [float(v) for v in bits[-1][1:]]
        assert all(0 <= v <= math.log(2) for v in information)
        assert float(rows[-1]["bit_information"]) == pytest.approx(sum(information))
        assert int(rows[-1]["active_bits"]) == sum(v > 0.01 for v in information)

    assert main(["evaluate", str(out), "--k", "7", "--batch-size", "64", "--sample-chunk", "3"]) == 0
    entries = json.loads((out / "evaluation.json").read_text())
    test_size = 1000 if "gaussian-2d" in flags else 200
    assert entries[-1]["k"] == 7 and entries[-1]["split"] == "test" and entries[-1]["n"] == test_size
    assert torch.isfinite(torch.tensor(entries[-1]["log_likelihood"]))
    assert main(["sample", str(out), "-n", "9"]) == 0
    assert (out / "samples.png").read_bytes()[:4] == b"\x89PNG"


def test_resume_equals_an_uninterrupted_run_bit_for_bit(tmp_path):
    flags = ["--layers", "8,4", "--loss", "nvil", "--n-samples", "2"]  # learned baseline and moving averages
    train(tmp_path / "whole", *flags)
    interrupted = tmp_path / "interrupted"
    assert main(["train", "--out", str(interrupted), *TINY[:-12], "--steps", "10", *TINY[2:], *flags]) == 0
    assert main(["train", "--out", str(interrupted), "--resume", *TINY, *flags]) == 0
    whole = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    resumed = load_checkpoint(interrupted / "checkpoint.pt")
    assert whole["step"] == resumed["step"] == 20
    for name, tensor in whole["loss"].items():
        if isinstance(tensor, torch.Tensor):
            assert torch.equal(tensor, resumed["loss"][name]), name
    assert whole["loss"]["_extra_state"]["loss_history"] == resumed["loss"]["_extra_state"]["loss_history"]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(whole["metrics"]) == strip(resumed["metrics"])
    assert all(row["active_bits"] != "" for row in whole["metrics"] if row["valid_bound"] != "")
    assert whole["bit_information"]["columns"] == resumed["bit_information"]["columns"]
    assert torch.equal(whole["bit_information"]["rows"], resumed["bit_information"]["rows"])
    assert resumed["bit_information"]["rows"][:, 0].tolist() == [10, 20]
    assert (tmp_path / "whole" / "bit_information.csv").read_text() == (interrupted / "bit_information.csv").read_text()


def test_a_checkpoint_from_before_bit_information_resumes(tmp_path):
    """Checkpoints without per-bit information (and metrics rows without its columns) resume; the file then
    holds the evaluations after the resume."""
    from blackbox_vae.cli.checkpoint import save_checkpoint

    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *TINY[:-12], "--steps", "10", *TINY[2:], "--layers", "4"]) == 0
    state = load_checkpoint(out / "checkpoint.pt")
    del state["bit_information"], state["format"]
    state["metrics"] = [{k: v for k, v in row.items() if k not in ("active_bits", "bit_information")}
                        for row in state["metrics"]]
    save_checkpoint(out / "checkpoint.pt", state)
    assert main(["train", "--out", str(out), "--resume", *TINY, "--layers", "4"]) == 0
    with open(out / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["step"], r["active_bits"] != "") for r in rows] == [("5", False), ("10", False), ("15", False),
                                                                   ("20", True)]
    with open(out / "bit_information.csv") as handle:
        assert [row[0] for row in csv.reader(handle)] == ["step", "20"]


def test_config_file_with_flags_overriding(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("model: sbn\nlayers: [6]\nloss: rws\nn-samples: 3\nsteps: 1000\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out), *TINY]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert (saved["loss"], saved["layers"], saved["n_samples"], saved["steps"]) == ("rws", [6], 3, 20)
    (tmp_path / "bad.json").write_text(json.dumps({"lossy": "vimco"}))
    assert main(["train", "--config", str(tmp_path / "bad.json"), "--out", str(out)]) == 2


@pytest.mark.parametrize("damage, message", [
    (lambda path: path.unlink(), "no checkpoint at"),
    (lambda path: path.write_bytes(path.read_bytes()[:200]), "is not a readable checkpoint"),
    (lambda path: path.write_bytes(path.read_bytes()[:-200]), "is not a readable checkpoint"),
    (lambda path: path.write_bytes(b"not a checkpoint at all"), "is not a readable checkpoint"),
])
def test_missing_or_corrupted_checkpoints(tmp_path, capsys, damage, message):
    out = tmp_path / "run"
    train(out, "--layers", "4")
    damage(out / "checkpoint.pt")
    capsys.readouterr()
    assert main(["evaluate", str(out), "--k", "2"]) == 2
    assert message in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--resume", *TINY, "--layers", "4"]) == 2


def test_clear_errors_for_bad_settings(tmp_path, capsys):
    out = tmp_path / "run"
    train(out, "--layers", "4")
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", *TINY, "--layers", "4", "--lr", "0.5"]) == 2
    assert "these settings differ from the checkpoint's (lr: 0.001 -> 0.5)" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "new"), "--data", "mnist", "--data-dir", str(tmp_path), *TINY]) == 2
    assert f"no file in {tmp_path}" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "other"), "--data", "gaussian-2d", *TINY]) == 2
    assert "the 'sbn' model has Bernoulli observations and needs binary data" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "other"), "--loss", "elbo", *TINY]) == 2
    error = capsys.readouterr().err
    assert "--model sbn with --loss elbo: ELBOLoss needs `DeepSBNInfNet.rsample`" in error
    assert "Models that --loss elbo can train: gaussian, nvae." in error
    assert main(["train", "--out", str(tmp_path / "other"), "--loss", "vimco", "--n-samples", "1", *TINY]) == 2
    assert "VIMCOLoss needs `n_samples` >= 2" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["train", "--out", str(out), "--device", "cuda", *TINY]) == 2
        assert "CUDA is not available here" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--layers", "a,b"])


@pytest.mark.slow  # a long end-to-end run: in `pytest -m slow` (and .ci/run)
def test_module_and_console_script_entry_points(tmp_path):
    completed = subprocess.run([sys.executable, "-m", "blackbox_vae", "train", "--out", str(tmp_path / "run"),
                                *TINY[:2], "--steps", "3", *TINY[2:12], "--layers", "4"],
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    script = Path(sys.executable).parent / "blackbox-vae"
    if script.exists():  # installed with pip
        assert subprocess.run([str(script), "--help"], capture_output=True, timeout=120).returncode == 0


def test_the_command_line_reaches_every_exported_loss_and_option():
    """Every Loss exported by blackbox_vae has a --loss name, and every option flag is an option of a registered
    loss whose choices are that class's own (one source of truth)."""
    import blackbox_vae
    from blackbox_vae.cli import build_parser
    from blackbox_vae.cli.config import ESTIMATOR_OPTIONS
    from blackbox_vae.losses.registry import LOSSES

    exported = {getattr(blackbox_vae, n) for n in blackbox_vae.__all__}
    loss_classes = {c for c in exported if isinstance(c, type) and issubclass(c, blackbox_vae.Loss)} - {blackbox_vae.Loss}
    assert loss_classes == {spec.loss_class for spec in LOSSES.values()}
    options = [option for spec in LOSSES.values() for option in spec.options]
    assert sorted(options) == sorted(ESTIMATOR_OPTIONS)  # each option belongs to exactly one loss
    train_parser = build_parser()._subparsers._group_actions[0].choices["train"]
    flags = {action.dest: action for action in train_parser._actions}
    assert list(flags["loss"].choices) == list(LOSSES)
    for name, spec in LOSSES.items():
        for option in spec.options:
            choices = spec.loss_class.choices.get(option)
            if choices is not None and set(choices) != {True, False}:
                assert flags[option].choices == [c for c in choices if c is not None], option


@pytest.mark.parametrize("flags, message", [
    (["--loss", "vimco", "--phi-update", "sleep"], "`phi_update` is an option of rws, not of --loss vimco"),
    (["--loss", "gumbel-softmax", "--gradient", "dreg"], "`gradient` is an option of iwae, not of --loss gumbel-softmax"),
    (["--loss", "gumbel-softmax", "--temperature", "0"], "`temperature` must be a number > 0 or 'anneal'; got '0'"),
    (["--loss", "gumbel-softmax", "--temperature", "warm"], "`temperature` must be a number > 0 or 'anneal'"),
    (["--loss", "symmetric", "--flip-noise", "0.5"], "`flip_noise` (--flip-noise) must be a probability in [0, 0.5)"),
    (["--loss", "vimco", "--dreams", "2"], "`dreams` is an option of symmetric, not of --loss vimco"),
])
def test_an_option_the_loss_does_not_take_is_an_error(tmp_path, capsys, flags, message):
    assert main(["train", "--out", str(tmp_path / "run"), *TINY, *flags]) == 2
    assert message in capsys.readouterr().err


def test_symmetric_learning_trains_from_the_command_line(tmp_path):
    train(tmp_path / "run", "--layers", "4", "--loss", "symmetric", "--dreams", "2", "--flip-noise", "0.01")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["loss"] == "symmetric" and config["dreams"] == 2 and config["flip_noise"] == 0.01
    with pytest.raises(SystemExit):  # argparse: --dreams takes a positive integer
        main(["train", "--loss", "symmetric", "--dreams", "0"])


def test_config_json_records_the_options_that_took_effect(tmp_path):
    train(tmp_path / "run", "--layers", "4", "--loss", "rws")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["phi_update"] == "wake" and config["baseline"] is None and config["gradient"] is None


def test_resume_refuses_any_setting_but_the_listed_ones(tmp_path, capsys):
    """Every setting outside RESUME_MAY_CHANGE is protected, new ones included; the listed ones may change."""
    from blackbox_vae.cli.config import RESUME_MAY_CHANGE

    assert set(RESUME_MAY_CHANGE) == {"steps", "device", "log_every", "eval_every", "eval_k", "eval_size",
                                      "checkpoint_every", "out", "output_bias", "compile", "threads",
                                      "snapshot_every", "tensorboard"}  # output_bias: an initial value; compile
    # and threads: how the steps are run (not what they compute)
    out = tmp_path / "run"
    train(out, "--layers", "4", "--loss", "rws")
    capsys.readouterr()
    for flags, changed in ([["--hidden", "3"], "hidden: [] -> [3]"], [["--phi-update", "sleep"], "phi_update: 'wake' -> 'sleep'"],
                           [["--n-samples", "4"], "n_samples: 5 -> 4"], [["--batch-size", "8"], "batch_size: 16 -> 8"],
                           [["--precision", "bf16"], "precision: 'fp32' -> 'bf16'"],
                           [["--lr-schedule", "iwae"], "lr_schedule: 'constant' -> 'iwae'"]):
        assert main(["train", "--out", str(out), "--resume", *TINY, "--layers", "4", "--loss", "rws", *flags]) == 2
        assert changed in capsys.readouterr().err
    # the monitoring settings and the length may change; an option left at its default equals it given explicitly
    assert main(["train", "--out", str(out), "--resume", *TINY, "--layers", "4", "--loss", "rws", "--phi-update", "wake",
                 "--steps", "25", "--eval-k", "3", "--log-every", "25", "--eval-every", "25"]) == 0


# ------------------------------------------------------------------------- samplers and sample quality
@pytest.fixture
def feature_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BLACKBOX_VAE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.slow  # a long end-to-end run: in `pytest -m slow` (and .ci/run)
def test_train_classifier_then_evaluate_fid_and_sample_with_fitted_samplers(tmp_path, capsys, feature_cache):
    gaussian, sbn = tmp_path / "gaussian", tmp_path / "sbn"
    train(gaussian, "--model", "gaussian", "--layers", "2", "--hidden", "16", "--loss", "elbo", "--n-samples", "1")
    train(sbn, "--model", "sbn", "--layers", "6", "--loss", "vimco", "--n-samples", "3")
    assert main(["evaluate", str(gaussian), "--k", "3", "--fid"]) == 2  # no feature network yet
    assert "blackbox-vae train-classifier --data digits" in capsys.readouterr().err

    assert main(["train-classifier", "--data", "digits", "--epochs", "2"]) == 0
    assert (feature_cache / "feature_networks" / "digits-cnn-v2-seed0.pt").is_file()
    assert "FID-DIGITS (cnn-v2, seed 0, test accuracy" in capsys.readouterr().out

    for run, flags in ((gaussian, ["--sampler", "gmm", "--components", "3"]), (gaussian, []),
                       (sbn, ["--sampler", "bernoulli-mixture", "--components", "2"]),
                       (sbn, ["--sampler", "markov-chain", "--chain-steps", "3"])):
        assert main(["evaluate", str(run), "--k", "3", "--fid", "--fid-samples", "50", *flags]) == 0, flags
        printed = capsys.readouterr().out
        assert "FID" in printed and "FID-DIGITS (cnn-v2" in printed
    entries = json.loads((gaussian / "evaluation.json").read_text())
    assert {entry["sampler"] for entry in entries} == {"gmm", "prior"}  # one entry per sampler
    gmm = next(entry for entry in entries if entry["sampler"] == "gmm")
    assert gmm["components"] == 3
    assert gmm["decode"] == "sample" and gmm["n_generated"] == 50 and gmm["fid"] >= 0
    assert gmm["feature_network"].startswith("FID-DIGITS (cnn-v2, seed 0")

    assert main(["sample", str(gaussian), "--sampler", "gmm", "--components", "3", "-n", "9"]) == 0
    assert (gaussian / "samples-gmm.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["sample", str(sbn), "--sampler", "autoregressive", "--fit-epochs", "2", "-n", "4", "--out", str(tmp_path / "a.png")]) == 0
    assert (tmp_path / "a.png").is_file()


def test_a_sampler_that_cannot_model_the_codes_is_a_clear_error(tmp_path, capsys):
    train(tmp_path / "sbn", "--model", "sbn", "--layers", "6", "--loss", "vimco", "--n-samples", "3")
    assert main(["sample", str(tmp_path / "sbn"), "--sampler", "flow"]) == 2
    assert "--sampler flow: FlowSampler models real codes; the codes of DeepSBNInfNet are binary" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "sbn"), "--sampler", "flow", "--components", "3"]) == 2
    assert "--components is an option of the gmm and bernoulli-mixture samplers" in capsys.readouterr().err


def test_every_sampler_is_reachable_by_name():
    from blackbox_vae.cli import build_parser
    from blackbox_vae.samplers import SAMPLERS

    from blackbox_vae.samplers import SAMPLER_OPTIONS

    commands = build_parser()._subparsers._group_actions[0].choices
    for command in ("sample", "evaluate"):
        destinations = {action.dest: action for action in commands[command]._actions}
        assert set(destinations["sampler"].choices) == set(SAMPLERS)
        assert set(SAMPLER_OPTIONS) <= set(destinations), command  # every sampler option has a flag


def test_sample_chain_limiting_is_the_markov_chain_sampler(tmp_path, capsys):
    """`--chain limiting --steps N` is `--sampler markov-chain --chain-steps N`; misuses are one-line errors."""
    run = tmp_path / "sbn"
    train(run, "--model", "sbn", "--layers", "6", "--loss", "vimco", "--n-samples", "3")
    capsys.readouterr()
    assert main(["sample", str(run), "--chain", "limiting", "--steps", "3", "-n", "4"]) == 0
    assert (run / "samples-markov-chain.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["sample", str(run), "--chain", "limiting", "--sampler", "markov-chain", "--chain-start", "data",
                 "-n", "4", "--out", str(tmp_path / "data.png")]) == 0
    assert (tmp_path / "data.png").is_file()
    for flags, message in (
            (["--chain", "limiting", "--sampler", "gmm"], "--chain limiting is --sampler markov-chain; it cannot be "
                                                          "combined with --sampler gmm"),
            (["--steps", "3"], "--steps 3 counts the steps of a --chain; add --chain limiting"),
            (["--sampler", "markov-chain", "--steps", "3"], "--steps 3 counts the steps of a --chain"),
            (["--chain", "limiting", "--steps", "3", "--chain-steps", "4"], "--steps 3 and --chain-steps 4 both")):
        assert main(["sample", str(run), *flags]) == 2, flags
        error = capsys.readouterr().err
        assert error.startswith("blackbox-vae sample: error: ") and message in error and error.count("\n") == 1
    with pytest.raises(SystemExit):
        main(["sample", str(run), "--chain", "stationary"])  # choices come from samplers.CHAINS
    capsys.readouterr()

    from blackbox_vae.cli import _sampler_choice, build_parser  # evaluate takes the same flags

    args = build_parser().parse_args(["evaluate", str(run), "--fid", "--chain", "limiting", "--steps", "7"])
    assert _sampler_choice(args) == ("markov-chain", {"chain_steps": 7})
    assert _sampler_choice(build_parser().parse_args(["sample", str(run)])) == ("prior", {})


def test_hvae_models_take_the_papers_layers_by_default(tmp_path):
    train(tmp_path / "run", "--model", "hvae-ladder", "--hidden", "8", "--loss", "zgr", "--n-samples", "1")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["layers"] == [30, 100] and config["analytic_kl"] is False
    train(tmp_path / "sbn", "--loss", "vimco")
    assert json.loads((tmp_path / "sbn" / "config.json").read_text())["layers"] == [200]


def test_every_setting_is_declared_once_and_has_its_flag():
    """The flags, their help and the resume rule come from TrainConfig's fields: each field has a flag (the
    estimators' options from the loss classes; world_size from torchrun) and the resume rule is the fields'."""
    from dataclasses import fields

    from blackbox_vae.cli import build_parser
    from blackbox_vae.cli.config import ESTIMATOR_OPTIONS, RESUME_MAY_CHANGE, TrainConfig

    train = next(action for action in build_parser()._subparsers._group_actions[0].choices.values()
                 if action.prog.endswith("train"))
    flags = {option for action in train._actions for option in action.option_strings}
    for setting in fields(TrainConfig):
        if setting.name == "world_size":
            continue
        flag = setting.metadata.get("flag") or "--" + setting.name.replace("_", "-")
        assert flag in flags, setting.name
        assert setting.metadata.get("help") or setting.name in ESTIMATOR_OPTIONS, setting.name
    assert set(RESUME_MAY_CHANGE) == {f.name for f in fields(TrainConfig) if f.metadata.get("resume")}

