"""A user's own data files and image folders, through `load_dataset` and the command line: each kind is
written here, trained a few steps, evaluated and sampled; each bad input ends in one line, exit code 2,
before the run directory exists."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from blackbox_vae.cli import main
from blackbox_vae.data import DataFileError, MappedRows, load_dataset

FEW = ["--steps", "6", "--eval-every", "3", "--eval-k", "4", "--batch-size", "8", "--progress", "false"]


def write_images(folder, n, size=(6, 5), mode="RGB", seed=0, nested=True):
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    for index in range(n):
        where = folder / f"group{index % 2}" if nested else folder
        where.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(where / f"{index:03d}.png")
    return folder


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    binary = (rng.random((120, 12)) < 0.3).astype(np.float32)
    np.save(tmp_path / "binary.npy", binary)
    np.savez(tmp_path / "splits.npz", train=binary[:80], valid=binary[80:100], test=binary[100:])
    real = rng.normal(3.0, 2.0, size=(120, 4))
    np.savetxt(tmp_path / "real.csv", real, delimiter=",", header="a,b,c,d", comments="")
    np.savetxt(tmp_path / "real.tsv", real, delimiter="\t")
    write_images(tmp_path / "grey", 40, mode="L")
    write_images(tmp_path / "rgb", 40, mode="RGB")
    return tmp_path


def test_each_kind_of_file_is_read_with_its_likelihood_and_shape(files):
    binary = load_dataset(files / "binary.npy")
    assert isinstance(binary.train, MappedRows) and binary.likelihood == "bernoulli" and binary.image_shape is None
    assert (len(binary.train), len(binary.valid), len(binary.test)) == (96, 12, 12)
    assert load_dataset(files / "splits.npz").test.shape == (20, 12)  # the file's own splits, whole
    real = load_dataset(files / "real.csv")
    assert real.likelihood == "gaussian" and real.train.shape == (96, 4)  # the header row is not data
    assert torch.equal(load_dataset(files / "real.tsv").test, real.test)
    grey, rgb = load_dataset(files / "grey"), load_dataset(files / "rgb", binarization="none")
    assert grey.image_shape == (5, 6) and grey.binarization == "dynamic" and grey.likelihood == "bernoulli"
    assert rgb.image_shape == (3, 5, 6) and rgb.likelihood == "8-bit" and rgb.train.shape == (32, 90)
    assert rgb.test.max() <= 1 and torch.allclose(rgb.test * 255, (rgb.test * 255).round(), atol=1e-4)
    assert load_dataset(files / "rgb", image_size=4, channels=1).image_shape == (4, 4)


def test_the_split_is_a_seeded_permutation_and_the_rows_are_the_files(files):
    rows = np.load(files / "binary.npy")
    one, again = load_dataset(files / "binary.npy"), load_dataset(files / "binary.npy")
    assert torch.equal(one.test, again.test)
    other = load_dataset(files / "binary.npy", split_seed=1)
    assert not torch.equal(one.test, other.test)
    everything = torch.cat([one.train[:], one.valid, one.test])
    assert sorted(map(tuple, everything.tolist())) == sorted(map(tuple, rows.tolist()))  # each row once
    train = load_dataset(files / "binary.npy", valid_fraction=0.25, test_fraction=0.25).train
    assert len(train) == 60


def test_standardized_rows_map_back(files):
    real = load_dataset(files / "real.csv", standardize=True)
    mean, std = real.standardization
    assert real.train.mean(0).abs().max() < 1e-5 and (real.train.std(0) - 1).abs().max() < 1e-4
    assert torch.allclose(mean, torch.full((4,), 3.0), atol=0.6) and torch.allclose(std, torch.full((4,), 2.0), atol=0.6)


def test_a_memory_mapped_split_is_read_by_batches(files):
    mapped = load_dataset(files / "binary.npy").train
    index = torch.tensor([5, 1, 5, 90])
    whole = np.load(files / "binary.npy")
    assert torch.equal(mapped[index], torch.from_numpy(whole[mapped.rows[index.numpy()]]))
    assert torch.allclose(mapped.mean(0), torch.from_numpy(whole[mapped.rows]).double().mean(0))


@pytest.mark.parametrize("name, flags", [
    ("binary.npy", []), ("splits.npz", []), ("real.csv", ["--model", "gaussian", "--loss", "iwae"]),
    ("real.tsv", ["--model", "gaussian", "--loss", "iwae", "--standardize", "true"]),
    ("grey", ["--layers", "5"]), ("rgb", ["--model", "gaussian", "--loss", "iwae", "--layers", "3"]),
])
def test_each_kind_trains_evaluates_and_samples(files, name, flags, capsys):
    out = files / f"run-{name}"
    assert main(["train", "--data", str(files / name), *flags, *FEW, "--out", str(out)]) == 0
    assert capsys.readouterr().err.startswith(f"data: {files / name}:")  # the one line saying what was read
    config = json.loads((out / "config.json").read_text())
    assert config["data"] == str((files / name).resolve()) and config["likelihood"] in ("bernoulli", "gaussian")
    assert main(["evaluate", str(out), "--k", "3"]) == 0
    result = json.loads((out / "evaluation.json").read_text())[0]
    expected_n = 20 if name == "splits.npz" else 12 if name.startswith(("binary", "real")) else 4
    assert result["n"] == expected_n and math.isfinite(result["log_likelihood"])
    assert main(["sample", str(out), "-n", "4"]) == 0 and (out / "samples.png").is_file()
    if name.startswith("real"):
        assert np.loadtxt(out / "samples.csv", delimiter=",").shape == (4, 4)  # in the data's own units


def test_evaluate_scores_the_rows_the_run_was_tested_on(files):
    out = files / "run"
    assert main(["train", "--data", str(files / "binary.npy"), "--test-fraction", "0.25", "--split-seed", "3",
                 *FEW, "--out", str(out)]) == 0
    from blackbox_vae.cli.commands import load_run

    run, _ = load_run(out)
    expected = load_dataset(files / "binary.npy", test_fraction=0.25, split_seed=3).test
    assert torch.equal(run.dataset.test, expected) and len(expected) == 30


def test_an_rgb_folder_trains_the_nvae_preset(files):
    out = files / "nvae"
    assert main(["train", "--config", "nvae-tiny", "--data", str(files / "rgb"), "--image-size", "8",
                 "--arch", "image_size=8", "--arch", "scales=1", "--arch", "groups_per_scale=1", *FEW,
                 "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["image_size"] == 8
    assert main(["sample", str(out), "-n", "4"]) == 0


def test_snapshots_are_written_during_training(files):
    out = files / "snap"
    assert main(["train", "--data", str(files / "rgb"), "--model", "gaussian", "--loss", "iwae", "--layers", "2",
                 *FEW, "--snapshot-every", "3", "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["step-0000003.png", "step-0000006.png"]


def test_snapshots_leave_the_run_as_it_is(files):
    """The grids draw from a forked generator: the run's parameters are those of a run without them."""
    runs = {}
    for name, extra in (("plain", []), ("watched", ["--snapshot-every", "2"])):
        out = files / name
        assert main(["train", "--data", str(files / "grey"), "--layers", "3", *FEW, *extra, "--out", str(out)]) == 0
        runs[name] = torch.load(out / "checkpoint.pt", weights_only=True)["loss"]
    tensors = [key for key, value in runs["plain"].items() if isinstance(value, torch.Tensor)]
    assert tensors and all(torch.equal(runs["plain"][key], runs["watched"][key]) for key in tensors)


def bad_inputs(tmp_path):
    from PIL import Image

    (tmp_path / "bad.csv").write_text("a,b\n1,2\n3,x\n")
    (tmp_path / "nan.csv").write_text("1,2\n3,nan\n4,5\n")
    np.save(tmp_path / "inf.npy", np.array([[0.0, 1.0], [np.inf, 0.0]]))
    np.save(tmp_path / "flat.npy", np.zeros(30))
    np.savez(tmp_path / "keys.npz", images=np.zeros((3, 2)), labels=np.zeros(3))
    np.save(tmp_path / "few.npy", np.zeros((6, 3), dtype=np.float32))
    np.save(tmp_path / "reals.npy", np.linspace(0, 2, 60).reshape(20, 3))
    write_images(tmp_path / "broken", 4)
    (tmp_path / "broken" / "group0" / "000.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    write_images(tmp_path / "mixed", 3)
    Image.new("RGB", (9, 9)).save(tmp_path / "mixed" / "odd.png")
    (tmp_path / "empty").mkdir()
    return {
        "non-numeric": (["--data", str(tmp_path / "bad.csv")], "line 3, column 2: 'x' is not a number"),
        "nan": (["--data", str(tmp_path / "nan.csv")], "row 2, column 2 is nan"),
        "inf": (["--data", str(tmp_path / "inf.npy")], "row 2, column 1 is inf"),
        "1-D": (["--data", str(tmp_path / "flat.npy")], "1-D array of shape (30,)"),
        "npz keys": (["--data", str(tmp_path / "keys.npz")], "it holds images, labels"),
        "corrupt image": (["--data", str(tmp_path / "broken")], "000.png: cannot read this image"),
        "mixed sizes": (["--data", str(tmp_path / "mixed")], "images of different sizes"),
        "empty folder": (["--data", str(tmp_path / "empty")], "no PNG, JPEG or BMP images"),
        "too few rows for the batch": (["--data", str(tmp_path / "few.npy"), "--batch-size", "8"],
                                       "more than the 4 training rows"),
        "too few rows for the splits": (["--data", str(tmp_path / "few.npy"), "--valid-fraction", "0.01"],
                                        "too few for a valid split"),
        "impossible likelihood": (["--data", str(tmp_path / "reals.npy"), "--likelihood", "bernoulli"],
                                  "has values outside {0, 1}"),
        "missing file": (["--data", str(tmp_path / "nothing.npy")], "neither a data set"),
        "image flag on a file": (["--data", str(tmp_path / "reals.npy"), "--image-size", "8"],
                                 "convert the images of a folder"),
    }


def test_every_bad_input_is_one_line_before_the_run_directory_exists(tmp_path, capsys):
    for name, (flags, expected) in bad_inputs(tmp_path).items():
        out = tmp_path / f"out-{name.replace(' ', '-')}"
        status = main(["train", *flags, "--out", str(out), "--progress", "false"])
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2, name
        assert err[-1].startswith("blackbox-vae train: error:") and expected in err[-1], (name, err)
        assert len([line for line in err if not line.startswith("data: ")]) == 1, (name, err)
        assert not out.exists(), name


def test_load_dataset_names_the_file_in_its_errors(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros(3))
    with pytest.raises(DataFileError, match="flat.npy: train is a 1-D array"):
        load_dataset(tmp_path / "flat.npy")
    with pytest.raises(ValueError, match="applies to data files"):
        load_dataset("digits", standardize=True)
