"""`blackbox-vae export-samples`: one PNG per image, of the data's kind and tones, for external FID tools."""

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from blackbox_vae.cli import export, main
from blackbox_vae.cli.export import _as_8_bit, png_bytes_of

TINY = ["--steps", "10", "--eval-every", "10", "--eval-k", "3", "--eval-size", "20", "--batch-size", "16",
        "--progress", "false"]


@pytest.fixture(scope="module")
def sbn_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "run"
    assert main(["train", "--out", str(out), "--model", "sbn", "--layers", "8", *TINY]) == 0
    return out


def read(path):
    return np.array(Image.open(path))


def test_samples_are_binary_images_of_the_data_shape_numbered_in_order(sbn_run, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "_CHUNK", 7)  # several chunks: numbering continues across them
    folder = tmp_path / "samples"
    assert main(["export-samples", str(sbn_run), "20", "--dir", str(folder), "--progress", "false"]) == 0
    names = sorted(p.name for p in folder.glob("*.png"))
    assert names == [f"{i:05d}.png" for i in range(20)]
    images = np.stack([read(folder / name) for name in names])
    assert images.shape == (20, 8, 8) and images.dtype == np.uint8
    assert set(np.unique(images)) <= {0, 255}  # x ~ p(x|z) for binary data, as the binary test images are
    record = json.loads((folder / "export.json").read_text())
    assert record["n"] == 20 and record["source"] == "samples" and record["decode"] == "sample"
    assert record["step"] == 10


def test_samples_follow_the_seed(sbn_run, tmp_path):
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        assert main(["export-samples", str(sbn_run), "30", "--dir", str(tmp_path / name), "--seed", seed,
                     "--progress", "false"]) == 0
    stack = {name: np.stack([read(tmp_path / name / f"{i:05d}.png") for i in range(30)]) for name in "abc"}
    assert np.array_equal(stack["a"], stack["b"]) and not np.array_equal(stack["a"], stack["c"])


def test_means_are_grey_levels_of_the_decoder(sbn_run, tmp_path):
    from blackbox_vae.cli.commands import fitted_sampler, load_run

    folder = tmp_path / "means"
    assert main(["export-samples", str(sbn_run), "5", "--dir", str(folder), "--decode", "mean",
                 "--progress", "false"]) == 0
    run, _ = load_run(sbn_run)
    torch.manual_seed(0)
    means = fitted_sampler(run, "prior", {"decode": "mean"}).sample(5)
    expected = (means.clamp(0, 1) * 255).round().to(torch.uint8).reshape(5, 8, 8).numpy()
    assert np.array_equal(np.stack([read(folder / f"{i:05d}.png") for i in range(5)]), expected)


def test_from_data_writes_the_split_in_its_own_tones(sbn_run, tmp_path):
    from blackbox_vae.cli.commands import load_run

    folder = tmp_path / "data"
    assert main(["export-samples", str(sbn_run), "12", "--dir", str(folder), "--from-data", "--split", "valid",
                 "--progress", "false"]) == 0
    run, _ = load_run(sbn_run)
    expected = (run.dataset.valid[:12] * 255).round().to(torch.uint8).reshape(12, 8, 8).numpy()  # not inverted
    assert np.array_equal(np.stack([read(folder / f"{i:05d}.png") for i in range(12)]), expected)
    assert json.loads((folder / "export.json").read_text())["split"] == "valid"


def test_channels_are_written_last_as_rgb():
    images = torch.rand(2, 3 * 4 * 5)
    levels = _as_8_bit(images, (3, 4, 5))
    assert levels.shape == (2, 4, 5, 3)
    channel_first = (images.clamp(0, 1) * 255).round().to(torch.uint8).reshape(2, 3, 4, 5)
    assert torch.equal(levels[1, 2, 3], channel_first[1, :, 2, 3])
    image = Image.open(io.BytesIO(png_bytes_of(levels[1])))
    assert image.mode == "RGB" and np.array_equal(np.array(image), levels[1].numpy())
    assert _as_8_bit(images[:, :20], (1, 4, 5)).shape == (2, 4, 5)  # one channel: greyscale


@pytest.mark.parametrize("flags, message", [
    (["--from-data", "100000"], "more than the"),
    (["--from-data", "--decode", "mean", "5"], "remove the sampler flags"),
    (["0"], "expected a positive integer; got '0'"),
])
def test_bad_requests_are_one_line(sbn_run, tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) if flags == ["0"] else contextlib.nullcontext():  # argparse's own refusal
        assert main(["export-samples", str(sbn_run), *flags, "--dir", str(tmp_path / "x")]) == 2
    assert message in capsys.readouterr().err
    assert not list((tmp_path).glob("x/*.png"))


def test_a_folder_with_pngs_is_refused_unless_overwrite(sbn_run, tmp_path, capsys):
    folder = tmp_path / "full"
    assert main(["export-samples", str(sbn_run), "6", "--dir", str(folder), "--progress", "false"]) == 0
    assert main(["export-samples", str(sbn_run), "3", "--dir", str(folder), "--progress", "false"]) == 2
    assert "already holds 6 PNG files" in capsys.readouterr().err
    assert main(["export-samples", str(sbn_run), "3", "--dir", str(folder), "--overwrite", "--progress", "false"]) == 0
    assert len(list(folder.glob("*.png"))) == 3  # the old ones removed, not mixed in


def test_data_that_are_not_images_are_refused(tmp_path, capsys):
    out = tmp_path / "run2d"
    assert main(["train", "--out", str(out), "--data", "gaussian-2d", "--model", "gaussian", "--layers", "2",
                 "--hidden", "8", "--loss", "elbo", "--n-samples", "1", *TINY]) == 0
    assert main(["export-samples", str(out), "5", "--dir", str(tmp_path / "x")]) == 2
    assert "without an image shape" in capsys.readouterr().err
