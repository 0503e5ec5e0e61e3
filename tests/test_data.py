"""Data loaders read the standard formats exactly; missing or damaged files give clear errors."""

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from blackbox_vae.data import (
    BatchStream,
    DataFileError,
    load_binarized_mnist,
    load_dataset,
    load_mnist_idx,
    read_amat,
    read_idx,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}
    array = array.astype(array.dtype.newbyteorder(">")) if array.dtype.itemsize > 1 else array
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = header + array.tobytes()
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


def fake_mnist(directory: Path, n_train=24, n_test=6, compress=True, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(directory / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte", labels, compress)
        arrays[prefix] = (images, labels)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_idx_round_trip(tmp_path, compress):
    for array in (np.arange(24, dtype=np.uint8).reshape(2, 3, 4), np.array([1, -2, 3], dtype=">i4"),
                  np.array([[0.5, -1.25]], dtype=">f4")):
        write_idx(tmp_path / "file", array, compress)
        path = tmp_path / ("file.gz" if compress else "file")
        result = read_idx(path)
        assert result.shape == array.shape and np.array_equal(result, array) and result.dtype.isnative


def test_mnist_loader_reads_the_idx_files_exactly(tmp_path):
    arrays = fake_mnist(tmp_path, compress=False)
    splits = load_mnist_idx(tmp_path)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = splits[split]
        assert images.dtype == np.uint8 and images.shape == arrays[prefix][0].shape
        assert np.array_equal(images, arrays[prefix][0]) and np.array_equal(labels, arrays[prefix][1])
    dataset = load_dataset("mnist", tmp_path, "static", seed=3)
    assert dataset.train.shape == (20, 784) and dataset.valid.shape == (4, 784) and dataset.test.shape == (6, 784)
    assert dataset.image_shape == (28, 28) and dataset.train.dtype == torch.float32
    assert set(dataset.train.unique().tolist()) <= {0.0, 1.0}
    dynamic = load_dataset("mnist", tmp_path)
    torch.testing.assert_close(dynamic.train, torch.from_numpy(arrays["train"][0][:20].reshape(20, -1)).float() / 255)


def test_missing_files_say_where_and_what(tmp_path):
    with pytest.raises(DataFileError, match=rf"MNIST train images: no file in {tmp_path} \(expected "
                                            r"train-images-idx3-ubyte\[\.gz\], train-images\.idx3-ubyte\[\.gz\]\)"):
        load_mnist_idx(tmp_path)
    with pytest.raises(DataFileError, match="binarized MNIST train split: no file in"):
        load_binarized_mnist(tmp_path)
    with pytest.raises(ValueError, match="mnist needs `data_dir`"):
        load_dataset("mnist")


def test_damaged_files_are_reported(tmp_path):
    fake_mnist(tmp_path, compress=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataFileError, match=r"IDX header says shape \(24, 28, 28\) .* truncated or corrupted"):
        load_mnist_idx(tmp_path)
    (tmp_path / "bogus").write_bytes(b"hello world")
    with pytest.raises(DataFileError, match="not an IDX file"):
        read_idx(tmp_path / "bogus")


def test_binarized_mnist_from_amat_and_npz(tmp_path):
    rng = np.random.default_rng(0)
    splits = {s: rng.integers(0, 2, size=(n, 784)).astype(np.uint8) for s, n in (("train", 5), ("valid", 3), ("test", 2))}
    for split, array in splits.items():
        np.savetxt(tmp_path / f"binarized_mnist_{split}.amat", array, fmt="%d")
    from_amat = load_binarized_mnist(tmp_path)
    np.savez_compressed(tmp_path / "copy.npz", **splits)
    from_npz = load_binarized_mnist(tmp_path / "copy.npz")
    for split, array in splits.items():
        assert np.array_equal(from_amat[split], array) and np.array_equal(from_npz[split], array)
    dataset = load_dataset("binarized-mnist", tmp_path / "copy.npz")
    assert dataset.binarization == "static" and dataset.train.shape == (5, 784)
    np.savetxt(tmp_path / "bad.amat", np.full((2, 784), 0.5))
    with pytest.raises(DataFileError, match="values other than 0 and 1"):
        read_amat(tmp_path / "bad.amat")


def test_digits_need_no_files():
    dataset = load_dataset("digits")
    assert (dataset.train.shape, dataset.valid.shape, dataset.test.shape) == ((1397, 64), (200, 64), (200, 64))
    assert dataset.image_shape == (8, 8) and 0 <= dataset.train.min() and dataset.train.max() <= 1
    assert set(dataset.valid.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(dataset.valid, load_dataset("digits", seed=5).valid)  # evaluation data fixed across runs


def test_batch_stream_covers_each_epoch_and_resumes_exactly():
    data = torch.arange(10.0).unsqueeze(1)
    stream = BatchStream(data, batch_size=3, seed=1)
    epoch = torch.cat([next(stream) for _ in range(3)]).flatten()  # 9 of 10 rows, no repeats
    assert len(set(epoch.tolist())) == 9
    state = stream.state_dict()
    expected = [next(stream) for _ in range(5)]
    resumed = BatchStream(data, batch_size=3, seed=99)
    resumed.load_state_dict(state)
    assert all(torch.equal(a, next(resumed)) for a in expected)


def test_dynamic_binarization_resamples_each_draw():
    stream = BatchStream(torch.full((4, 1000), 0.3), batch_size=4, dynamic_binarization=True, seed=0)
    first, second = next(stream), next(stream)
    assert set(first.unique().tolist()) == {0.0, 1.0} and not torch.equal(first, second)
    assert abs(first.mean().item() - 0.3) < 5 * (0.3 * 0.7 / 4000) ** 0.5


@pytest.mark.slow  # a long end-to-end run: in `pytest -m slow` (and .ci/run)
@pytest.mark.skipif(not SHARED.is_dir(), reason=f"the shared data folder {SHARED} is not present")
def test_the_real_files():
    splits = load_mnist_idx(SHARED / "mnist")
    assert splits["train"][0].shape == (60000, 28, 28) and splits["test"][0].shape == (10000, 28, 28)
    assert splits["train"][0].mean() == pytest.approx(33.318, abs=1e-3)  # as the data README states
    assert sorted(np.unique(splits["train"][1]).tolist()) == list(range(10))
    fashion = load_mnist_idx(SHARED / "fashion_mnist", "Fashion-MNIST")
    assert np.bincount(fashion["train"][1]).tolist() == [6000] * 10
    binarized = load_binarized_mnist(SHARED / "binarized_mnist")
    assert {k: v.shape for k, v in binarized.items()} == {"train": (50000, 784), "valid": (10000, 784),
                                                          "test": (10000, 784)}
    assert binarized["train"].mean() == pytest.approx(0.13056, abs=1e-5)
    dataset = load_dataset("mnist", SHARED / "mnist")
    assert dataset.train.shape == (50000, 784) and dataset.valid.shape == (10000, 784)
