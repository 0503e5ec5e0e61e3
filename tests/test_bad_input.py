"""Ordinary mistakes at the command line get one clear line and exit code 2, never a traceback.

Every row runs through the real command line: in-process through `blackbox_vae.cli.main` in the default
run, and as a subprocess (`python -m blackbox_vae`, what a user types) in the slow run. A Hypothesis
test feeds random flag values to the parser and the settings' validation.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blackbox_vae.cli import main

TINY = ["--steps", "20", "--log-every", "5", "--eval-every", "10", "--checkpoint-every", "10", "--eval-k", "5",
        "--eval-size", "50", "--batch-size", "16", "--layers", "4", "--progress", "false"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A trained run, a file where a directory belongs, and broken .npz archives."""
    root = tmp_path_factory.mktemp("bad_input")
    assert main(["train", "--out", str(root / "run"), *TINY]) == 0
    (root / "a_file").write_text("not a directory")
    good = root / "good.npz"
    np.savez(good, train=np.zeros((4, 784)), valid=np.zeros((2, 784)), test=np.zeros((2, 784)))
    (root / "truncated.npz").write_bytes(good.read_bytes()[:300])
    (root / "random.npz").write_bytes(np.random.default_rng(0).bytes(4000))
    (root / "list.yaml").write_text("loss: [a]\n")
    (root / "number_key.yaml").write_text("1: 2\n")
    (root / "binary.yaml").write_bytes(np.random.default_rng(1).bytes(100))
    return root


# (command line, with {root} for the files' folder; the message expected on stderr)
ROWS = [
    ("train --data mnist", "--data mnist needs --data-dir: the directory with MNIST's four IDX files"),
    ("train --data binarized-mnist --data-dir {root}/truncated.npz", "it is truncated or corrupted"),
    ("train --data binarized-mnist --data-dir {root}/random.npz", "not a .npz archive (it does not start with a zip"),
    ("train --batch-size 100000", "`batch_size` (--batch-size) is 100000, more than the 1397 training rows"),
    ("train --lr inf", "`lr` (--lr) must be a finite number; got inf"),
    ("train --lr -1", "`lr` (--lr) must be a positive, finite learning rate; got -1.0"),
    ("train --out {root}/a_file", "is a file; it must be a directory"),
    ("train --model categorical --layers 3 --n-classes 0", "`n_classes` (--n-classes) must be an integer >= 2; got 0"),
    ("train --hidden 0", "argument --hidden: expected positive integers like 200,200,200; got '0'"),
    ("train --eval-size 0", "`eval_size` (--eval-size) must be a positive integer (or leave it out"),
    ("train --eval-size -1", "`eval_size` (--eval-size) must be a positive integer"),
    ("train --out {root}/run", "already holds a run (checkpoint.pt, config.json"),
    ("train --out {root}/run --resume --lr 0.5", "these settings differ from the checkpoint's (lr: 0.001 -> 0.5)"),
    ("train --out {root}/nothing --resume", "no checkpoint at"),
    ("train --out {root}/run --resume --overwrite", "--resume and --overwrite contradict each other"),
    ("train --out {root}/a_file/run", "cannot create the run directory there"),
    ("train --device meta", "`device` (--device) must be cpu or cuda (cuda:N); got 'meta'"),
    ("train --seed 18446744073709551615", "`seed` (--seed) must be below 2**32"),
    ("train --n-classes 7", "`n_classes` (--n-classes) applies to --model categorical, not to --model sbn"),
    ("train --data-dir {root}", "--data digits reads no files (scikit-learn bundles it); remove --data-dir"),
    ("train --config {root}/list.yaml", "`loss` (--loss) must be text; got ['a']"),
    ("train --config {root}/number_key.yaml", "setting names must be text; got 1"),
    ("train --config {root}/binary.yaml", "cannot parse it"),
    ("train --config {root}", "is a directory; give the settings file"),
    ("train --data gaussian-2d --model gaussian --layers 2 --hidden 8 --loss elbo --lr 1e20",
     "training failed at step"),
    ("sample {root}/run --out {root}", "is a directory; give the PNG's file name"),
    ("evaluate {root}/run --k 0", "argument --k: expected a positive integer; got '0'"),
    ("evaluate {root}/run --k -1", "argument --k: expected a positive integer; got '-1'"),
    ("evaluate {root}/run --batch-size 0", "argument --batch-size: expected a positive integer; got '0'"),
    ("evaluate {root}/run --sample-chunk 0", "argument --sample-chunk: expected a positive integer; got '0'"),
    ("evaluate {root}/run --limit 0", "argument --limit: expected a positive integer; got '0'"),
    ("evaluate {root}/nothing", "no checkpoint at"),
    ("sample {root}/run -n 0", "argument -n: expected a positive integer; got '0'"),
    ("sample {root}/run -n -1", "argument -n: expected a positive integer; got '-1'"),
]
IDS = [row[0].replace("{root}/", "") for row in ROWS]


def arguments(command, root, out):
    """The row's command, after the tiny settings (so that the row's own flags override them)."""
    argv = command.format(root=root).split()
    if argv[0] != "train":
        return argv
    return ["train", *TINY, *(["--out", str(out)] if "--out" not in argv else []), *argv[1:]]


@pytest.mark.parametrize("command, message", ROWS, ids=IDS)
def test_one_clear_line_and_exit_code_2(files, tmp_path, capsys, command, message):
    try:
        status = main(arguments(command, files, tmp_path / "new"))
    except SystemExit as exit:  # argparse's own errors
        status = exit.code
    error = capsys.readouterr().err
    assert status == 2 and message in error, error
    assert "Traceback" not in error


@pytest.mark.slow  # a Python process per row: about 2 s each
@pytest.mark.parametrize("command, message", ROWS, ids=IDS)
def test_the_real_command_line_prints_no_traceback(files, tmp_path, command, message):
    completed = subprocess.run([sys.executable, "-m", "blackbox_vae", *arguments(command, files, tmp_path / "new")],
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 2 and message in completed.stderr, completed.stderr
    assert "Traceback" not in completed.stderr


FLAGS = ["--steps", "--batch-size", "--lr", "--seed", "--log-every", "--eval-every", "--eval-k", "--eval-size",
         "--checkpoint-every", "--n-samples", "--n-classes", "--layers", "--hidden", "--temperature", "--baseline",
         "--phi-update", "--gradient", "--straight-through", "--variance-normalization", "--loss", "--model", "--data",
         "--binarization", "--device", "--progress", "--data-dir", "--out"]
VALUES = st.one_of(st.integers(-10**6, 10**6).map(str), st.sampled_from(["inf", "-inf", "nan", "1e-3", "0", "", "a,b",
                                                                         "3,0", "true", "maybe", "anneal", "vimco",
                                                                         "cuda", "meta", "mps", "cpu:0", "/proc/x",
                                                                         "18446744073709551615", "gaussian", "iwae"]),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=8))
YAML = st.one_of(st.text(max_size=40), st.dictionaries(st.sampled_from(["lr", "loss", "steps", "data_dir", "seed", 1,
                                                                        "out", "layers", "model", "data"]),
                                                       st.one_of(VALUES, st.lists(st.integers(-3, 3), max_size=3),
                                                                 st.none(), st.booleans()), max_size=4).map(
    lambda d: "\n".join(f"{k}: {v!r}" if not isinstance(v, str) else f"{k}: {v}" for k, v in d.items())))


class Reached(Exception):
    """Raised where training would start: everything before it accepted the settings."""


def fuzz_command_line(pairs, config_text, directory):
    """Runs `main` with the flags (and a config file) up to the first training step; no exception but
    `Reached` may escape, and a refusal is exit code 2 with one line."""
    from unittest import mock

    import blackbox_vae.trainer as training

    argv = ["train", "--out", str(directory / "run")] + [item for pair in pairs for item in pair]
    if config_text is not None:
        config = directory / "settings.yaml"
        config.write_text(config_text)
        argv += ["--config", str(config)]
    with mock.patch.object(training, "BatchStream", side_effect=Reached):
        try:
            status = main(argv)
        except SystemExit as exit:
            status = exit.code
        except Reached:
            return
    assert status == 2


@settings(max_examples=40, deadline=None)
@given(pairs=st.lists(st.tuples(st.sampled_from(FLAGS), VALUES), max_size=5), config=st.one_of(st.none(), YAML))
def test_random_flag_values_never_escape_as_a_traceback(pairs, config, tmp_path_factory):
    """Any flags, device names, output paths and config-file contents: `main` either reaches training or
    refuses with exit code 2; no other exception escapes."""
    fuzz_command_line(pairs, config, tmp_path_factory.mktemp("fuzz"))


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(pairs=st.lists(st.tuples(st.sampled_from(FLAGS), VALUES), max_size=8), config=st.one_of(st.none(), YAML))
def test_random_flag_values_never_escape_as_a_traceback_thoroughly(pairs, config, tmp_path_factory):
    fuzz_command_line(pairs, config, tmp_path_factory.mktemp("fuzz"))


def test_two_writers_on_one_run_directory(tmp_path, capsys):
    """A live process's lock stops a second train; a dead process's lock is taken over."""
    import json
    import socket

    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": "now"}))
        assert main(["train", "--out", str(out), *TINY]) == 2
        error = capsys.readouterr().err
        assert f"is in use: `blackbox-vae train` (process {holder.pid}" in error
        assert f"If no run is writing there, delete {out / '.lock'}" in error
    finally:
        holder.kill()
        holder.wait()
    assert main(["train", "--out", str(out), *TINY]) == 0
    assert f"took over a stale lock in {out} (process {holder.pid} is gone)" in capsys.readouterr().err
    assert not (out / ".lock").exists()


def test_overwrite_deletes_nothing_before_every_setting_is_checked(tmp_path, capsys):
    """A mistake in the new settings leaves the old run as it was."""
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *TINY]) == 0
    before = sorted(path.name for path in out.iterdir())
    assert main(["train", "--out", str(out), "--overwrite", *TINY, "--loss", "elbo"]) == 2
    assert main(["train", "--out", str(out), "--overwrite", *TINY, "--batch-size", "100000"]) == 2
    assert sorted(path.name for path in out.iterdir()) == before
    assert "deleted" not in capsys.readouterr().err


def test_resume_finds_the_run_named_in_the_config_file(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *TINY]) == 0
    config = tmp_path / "settings.yaml"
    config.write_text(f"out: {out}\n")
    assert main(["train", "--config", str(config), "--resume", "--steps", "25"]) == 0


def test_a_damaged_evaluation_file_stops_evaluate_before_the_work(files, capsys, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(files / "run", run)
    (run / "evaluation.json").write_text("{")
    assert main(["evaluate", str(run), "--k", "2"]) == 2
    assert "evaluation.json is not valid JSON" in capsys.readouterr().err


def test_overwrite_deletes_the_old_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *TINY]) == 0
    assert main(["evaluate", str(out), "--k", "2", "--limit", "5"]) == 0
    (out / "notes.txt").write_text("mine")
    assert main(["train", "--out", str(out), "--overwrite", *TINY, "--steps", "10"]) == 0
    assert not (out / "evaluation.json").exists()  # the old model's evaluation is gone with it
    assert (out / "notes.txt").read_text() == "mine"  # files that are not the run's are left alone
    assert "--overwrite deleted the old run's files" in capsys.readouterr().err


def test_a_checkpoint_with_flipped_bytes_is_refused(tmp_path, capsys):
    """One bit flipped inside a stored tensor's bytes: torch.load reads the file without complaint, and the
    checksum of the contents refuses it."""
    import struct
    import zipfile

    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *TINY]) == 0
    path = out / "checkpoint.pt"
    with zipfile.ZipFile(path) as archive:  # torch.save writes a zip: find the largest tensor record's data
        record = max((info for info in archive.infolist() if "/data/" in info.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack("<HH", raw[record.header_offset + 26:record.header_offset + 30])
    start = record.header_offset + 30 + name_length + extra_length  # after the local file header
    raw[start + record.file_size // 2] ^= 0x10
    path.write_bytes(bytes(raw))
    capsys.readouterr()
    assert main(["evaluate", str(out), "--k", "2"]) == 2
    assert "is damaged: its contents do not match the checksum written with them" in capsys.readouterr().err


def test_an_evaluation_that_fails_does_not_lose_the_steps(tmp_path, monkeypatch):
    """The checkpoint is written before the error propagates, and the run resumes from it."""
    import blackbox_vae.trainer as training

    out = tmp_path / "run"
    real = training._validation_bound

    def failing(run, data, step):
        if step == 20:
            raise RuntimeError("evaluation failed")
        return real(run, data, step)

    monkeypatch.setattr(training, "_validation_bound", failing)
    with pytest.raises(RuntimeError, match="evaluation failed"):
        main(["train", "--out", str(out), *TINY, "--checkpoint-every", "15"])
    from blackbox_vae.cli.checkpoint import load_checkpoint

    assert load_checkpoint(out / "checkpoint.pt")["step"] == 20
    monkeypatch.setattr(training, "_validation_bound", real)
    assert main(["train", "--out", str(out), "--resume", "--steps", "25"]) == 0
    # and the metrics are the uninterrupted run's: the failed step's row is computed on resuming
    assert main(["train", "--out", str(tmp_path / "whole"), *TINY, "--checkpoint-every", "15", "--steps", "25"]) == 0
    import csv

    def rows(run):
        with open(run / "metrics.csv") as handle:
            return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]

    assert rows(out) == rows(tmp_path / "whole")
    assert (out / "bit_information.csv").read_text() == (tmp_path / "whole" / "bit_information.csv").read_text()


def test_resume_takes_the_saved_settings_and_writes_the_uninterrupted_rows(tmp_path, monkeypatch):
    """`--resume` needs no flags but the changes; after a run dies at step 16 (its last checkpoint at 14,
    rows every 5), the first metrics row of the resumed run averages steps 11-15, as the uninterrupted
    run's does."""
    import csv

    import blackbox_vae.trainer as training

    flags = [*TINY, "--loss", "rws", "--n-samples", "3", "--checkpoint-every", "7"]
    assert main(["train", "--out", str(tmp_path / "whole"), *flags]) == 0
    real_step = training._step

    def dies_at_16(run, optimizer, stream, *step):
        if run.loss.loss_history_ and len(run.loss.loss_history_) == 15:
            raise KeyboardInterrupt  # as a killed process: no checkpoint, no final row
        real_step(run, optimizer, stream, *step)

    monkeypatch.setattr(training, "_step", dies_at_16)
    with pytest.raises(KeyboardInterrupt):
        main(["train", "--out", str(tmp_path / "cut"), *flags])
    monkeypatch.setattr(training, "_step", real_step)
    assert main(["train", "--out", str(tmp_path / "cut"), "--resume"]) == 0

    def rows(run):
        with open(tmp_path / run / "metrics.csv") as handle:
            return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]

    assert rows("whole") == rows("cut")
    bits = [(tmp_path / run / "bit_information.csv").read_text() for run in ("whole", "cut")]
    assert bits[0] == bits[1]


def test_no_terminal_prints_a_line_per_evaluation(tmp_path, capsys):
    flags = [f for f in TINY if f not in ("--progress", "false")]
    assert main(["train", "--out", str(tmp_path / "run"), *flags]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == ["10/20", "20/20"]
    assert "validation bound (K=5)" in lines[0]


def test_yaml_numbers_and_effective_settings_in_config_json(tmp_path):
    import json

    config = tmp_path / "run.yaml"
    config.write_text("lr: 1e-3\nsteps: 2e1\n")  # PyYAML reads both as strings
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run"), *TINY[2:]]) == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["lr"] == 0.001 and saved["steps"] == 20
    assert saved["binarization"] == "dynamic"  # the effective value, not null


def test_a_run_directory_without_a_run_is_trained_into(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "README").write_text("my notes")
    assert main(["train", "--out", str(out), *TINY]) == 0
    assert os.path.exists(out / "checkpoint.pt")
