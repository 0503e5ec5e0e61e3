"""Data sets as train/valid/test tensors, and their binarization."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np
import torch
from torch import Tensor

from blackbox_vae.data.files import DataFileError, find_file, read_amat, read_idx, read_npz_splits
from blackbox_vae.data.mapped import MappedRows
from blackbox_vae.data.user_files import is_data_path
from blackbox_vae.data.toy import correlated_gaussian_2d

__all__ = ["Dataset", "DATASETS", "BINARIZATIONS", "load_dataset", "load_mnist_idx", "load_binarized_mnist", "load_digits",
           "effective_binarization"]

Binarization = Literal["static", "dynamic", "none"]
#: The binarizations of 8-bit images: drawn once (static), afresh at every draw (dynamic), or none (levels k/255).
BINARIZATIONS = ("static", "dynamic", "none")
DATASETS = ("digits", "mnist", "fashion-mnist", "binarized-mnist", "gaussian-2d")

# Evaluation splits of dynamically binarized data are binarized once, with this seed, so that every
# run is evaluated on the same binary images.
_EVALUATION_BINARIZATION_SEED = 1234


@dataclass
class Dataset:
    """A data set split three ways, each ``[N, D]`` float32 on the CPU (rows are flattened images).

    Attributes:
        name: the data set's name.
        train: training rows; intensities in [0, 1] when ``binarization == "dynamic"`` (binarized
            afresh each time a row is drawn), else the values to model.
        valid: validation rows, binary unless ``binarization == "none"``.
        test: test rows, likewise.
        binarization: ``"static"`` (fixed binary values), ``"dynamic"`` or ``"none"`` (real-valued data).
        image_shape: the shape of one image (``(H, W)``, or ``(C, H, W)`` for several channels), or ``None``
            for non-image data.
        likelihood_name: the likelihood when the binarization alone does not say it (a user's real-valued
            images read with a Gaussian likelihood); None: see `likelihood`.
        standardization: ``(mean, std)``, each ``[D]``, when the rows were standardized (``(x - mean) / std``):
            samples map back with ``x * std + mean``.
        description: one line saying what was read and how it is modelled (a user's data file).
    """

    name: str
    train: Union[Tensor, "MappedRows"]  # a memory-mapped .npy stays on disk (see MappedRows)
    valid: Tensor
    test: Tensor
    binarization: Binarization
    image_shape: Optional[tuple[int, ...]]
    likelihood_name: Optional[str] = None
    standardization: Optional[tuple[Tensor, Tensor]] = None
    description: str = ""
    cut_fractions: dict = field(default_factory=dict)  # split -> the fraction of a file's rows cut for it

    @property
    def data_dim(self) -> int:
        """D, the number of values per row (pixels per image)."""
        return self.train.shape[1]

    @property
    def likelihood(self) -> str:
        """``"bernoulli"`` for binary data, ``"8-bit"`` for unbinarized images (grey levels k/255),
        ``"gaussian"`` for other real-valued data."""
        if self.likelihood_name is not None:
            return self.likelihood_name
        if self.binarization != "none":
            return "bernoulli"
        return "gaussian" if self.image_shape is None else "8-bit"

    def split(self, name: str) -> Tensor:
        """One split by name.

        Args:
            name: ``"train"``, ``"valid"`` or ``"test"``.

        Returns:
            that split's rows, ``[N, D]``.

        Raises:
            ValueError: for any other name.
        """
        if name not in ("train", "valid", "test"):
            raise ValueError(f"Dataset.split: `name` must be 'train', 'valid' or 'test'; got {name!r}.")
        rows = getattr(self, name)
        return rows if isinstance(rows, Tensor) else rows[:]  # a memory-mapped split, read whole


def effective_binarization(name: str, binarization: Optional[str]) -> Binarization:
    """The binarization `load_dataset` uses for data set ``name`` when asked for ``binarization`` (None: the default).

    Args:
        name: one of `DATASETS`.
        binarization: ``"static"``, ``"dynamic"``, or None for the data set's default.

    Returns:
        ``"static"`` for binarized MNIST (fixed by its files), ``"none"`` for real-valued data, else the
        one asked for, ``"dynamic"`` by default.
    """
    if name == "gaussian-2d":
        return "none"
    if name == "binarized-mnist":
        return "static"
    return binarization or "dynamic"


def _binarize_once(intensities: Tensor, seed: int) -> Tensor:
    return torch.bernoulli(intensities, generator=torch.Generator().manual_seed(seed))


def load_mnist_idx(data_dir: Path, what: str = "MNIST") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The four standard IDX files of MNIST or Fashion-MNIST: ``{"train": (images, labels), "test": ...}``.

    Images are uint8 ``[N, 28, 28]``, labels uint8 ``[N]``.

    Args:
        data_dir: the directory holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
            ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (each may be gzipped, with ``.gz``).
        what: the data set's name, used in error messages.

    Raises:
        DataFileError: for a missing file (naming the directory and the files expected) or a bad one.
    """
    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images_path = find_file(data_dir, [f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"],
                                f"{what} {split} images")
        labels_path = find_file(data_dir, [f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte"],
                                f"{what} {split} labels")
        images, labels = read_idx(images_path), read_idx(labels_path)
        for path, array, kind in ((images_path, images, "images"), (labels_path, labels, "labels")):
            _check_published(path, array, what, f"{split} {kind}")
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataFileError(f"{images_path}: expected uint8 images [N, rows, cols]; got {images.dtype} "
                                f"{images.shape}.")
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataFileError(f"{labels_path}: expected {len(images)} labels; got shape {labels.shape}.")
        splits[split] = (images, labels)
    return splits


def _check_published(path: Path, array: np.ndarray, what: str, kind: str) -> None:
    """Refuses a file that holds another published data set (MNIST's and Fashion-MNIST's files share their
    names); notes one that matches no published file (a modified copy trains as given).

    Raises:
        DataFileError: naming the file, the data set it holds and the ``--data`` that loads it.
    """
    from blackbox_vae.data.checksums import identify

    found = identify(array)
    if found is None:
        if what in ("MNIST", "Fashion-MNIST"):
            print(f"note: {path} is not the published {what} {kind} (its checksum matches no published file); "
                  "training on it as given.", file=sys.stderr)
        return
    data_set, file_kind = found
    if data_set != what or file_kind != kind:
        flag = {"MNIST": "mnist", "Fashion-MNIST": "fashion-mnist"}[data_set]
        raise DataFileError(f"{path} holds {data_set}'s {file_kind} (by its checksum), not {what}'s {kind}: pass "
                            f"--data {flag} for these files, or point --data-dir at {what}'s.")


def load_binarized_mnist(path: Path) -> dict[str, np.ndarray]:
    """Larochelle & Murray's statically binarized MNIST: ``{"train", "valid", "test"}`` uint8 ``[N, 784]``.

    Args:
        path: the ``.npz`` archive, or a directory holding ``binarized_mnist.npz`` or the three
            ``binarized_mnist_{train,valid,test}.amat`` files.

    Raises:
        DataFileError: for missing or malformed files.
    """
    path = Path(path)
    if path.is_file():
        arrays = read_npz_splits(path)
    elif (path / "binarized_mnist.npz").is_file():
        arrays = read_npz_splits(path / "binarized_mnist.npz")
    elif path.is_dir():
        arrays = {split: read_amat(find_file(path, [f"binarized_mnist_{split}.amat", "binarized_mnist.npz"],
                                             f"binarized MNIST {split} split"))
                  for split in ("train", "valid", "test")}
    else:
        raise DataFileError(f"binarized MNIST: {path.resolve()} does not exist (expected the .npz archive, or a "
                            "directory with binarized_mnist.npz or binarized_mnist_{train,valid,test}.amat).")
    for split, array in arrays.items():
        if array.ndim != 2 or array.shape[1] != 784 or not np.isin(array, (0, 1)).all():
            raise DataFileError(f"binarized MNIST {split}: expected 0/1 values of shape [N, 784]; got "
                                f"{array.dtype} {array.shape}.")
    return {split: array.astype(np.uint8) for split, array in arrays.items()}


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (1797 images, no download): intensities in [0, 1] ``[N, 64]``, labels."""
    from sklearn.datasets import load_digits as sklearn_digits  # the data ship inside scikit-learn

    bunch = sklearn_digits()
    return (bunch.data / 16.0).astype(np.float32), bunch.target


def load_dataset(name: Union[str, Path], data_dir: Optional[Path] = None, binarization: Optional[Binarization] = None,
                 seed: int = 0, **file_options) -> Dataset:
    """Loads one of `DATASETS`, or a data file or image folder of one's own, into train/valid/test tensors.

    A path (a `pathlib.Path`, or text naming an existing file or folder) is read by
    `blackbox_vae.data.user_dataset.load_data_file`: an ``.npy`` (memory-mapped), an ``.npz`` (arrays
    ``train`` and optionally ``valid``/``test``, or a single array), a ``.csv``/``.tsv`` table (a header row
    is detected) or a folder of PNG, JPEG or BMP images; ``file_options`` are its keyword arguments
    (``likelihood``, ``valid_fraction``, ``test_fraction``, ``split_seed``, ``image_size``, ``channels``,
    ``standardize``).

    The bundled data sets:

    | name | source | splits | binarization (default) |
    | --- | --- | --- | --- |
    | ``digits`` | scikit-learn (no files) | 1397 / 200 / 200 | dynamic (or static) |
    | ``mnist`` | IDX files in ``data_dir`` | 50000 / 10000 / 10000 | dynamic (or static) |
    | ``fashion-mnist`` | IDX files in ``data_dir`` | 50000 / 10000 / 10000 | dynamic (or static) |
    | ``binarized-mnist`` | .npz or .amat (``data_dir``) | 50000 / 10000 / 10000 | static (fixed by the files) |
    | ``gaussian-2d`` | generated | 10000 / 1000 / 1000 | none (real-valued) |

    MNIST's validation split is the last sixth of the training images (10000 of 60000), as is customary. "static" draws one
    binarization of every image with ``seed``; "dynamic" keeps training intensities (to be binarized
    afresh each time an image is drawn) and binarizes the evaluation splits once with a fixed seed.

    Args:
        name: one of `DATASETS`, or the path of a data file or image folder.
        data_dir: where the files are: the directory of the IDX files for ``mnist`` and ``fashion-mnist``;
            the ``.npz`` file or its directory for ``binarized-mnist``. Not used for the others.
        binarization: ``"static"`` or ``"dynamic"`` (default ``"dynamic"``), or for ``mnist`` and
            ``fashion-mnist`` ``"none"`` (the 8-bit grey levels k/255 of every split, for a discretized
            likelihood); ``binarized-mnist`` accepts only ``"static"`` and ``gaussian-2d`` ignores it.
        seed: seed of the static binarization of the training split, and of the ``gaussian-2d`` draws.

    Returns:
        the `Dataset`.

    Raises:
        ValueError: for an unknown name or binarization, or a missing ``data_dir``.
        DataFileError: for missing or malformed files.
    """
    if isinstance(name, Path) or (name not in DATASETS and is_data_path(name)):
        from blackbox_vae.data.user_dataset import load_data_file

        if data_dir is not None:
            raise ValueError(f"load_dataset: {name} is read itself; `data_dir` applies to the bundled data sets.")
        return load_data_file(Path(name), binarization, seed, **file_options)
    if name not in DATASETS:
        raise ValueError(f"load_dataset: {name!r} is neither a data set ({', '.join(DATASETS)}) nor an existing "
                         "file or folder.")
    unused = {key: value for key, value in file_options.items() if value not in (None, False)}
    if unused:
        raise ValueError(f"load_dataset: {', '.join(unused)} appl{'y' if len(unused) > 1 else 'ies'} to data files "
                         f"and image folders, not to the bundled {name}.")
    if name == "gaussian-2d":
        data = correlated_gaussian_2d(12_000, seed=seed)
        return Dataset(name, data[:10_000], data[10_000:11_000], data[11_000:], "none", None)
    if name == "binarized-mnist":
        if binarization not in (None, "static"):
            raise ValueError(f"load_dataset: binarized-mnist is statically binarized; got binarization={binarization!r}.")
        if data_dir is None:
            raise ValueError("load_dataset: binarized-mnist needs `data_dir` (the .npz file or its directory).")
        arrays = load_binarized_mnist(Path(data_dir))
        splits = {k: torch.from_numpy(v).float() for k, v in arrays.items()}
        return Dataset(name, splits["train"], splits["valid"], splits["test"], "static", (28, 28))

    binarization = binarization or "dynamic"
    allowed = BINARIZATIONS if name in ("mnist", "fashion-mnist") else BINARIZATIONS[:2]
    if binarization not in allowed:
        raise ValueError(f"load_dataset: `binarization` must be one of {', '.join(map(repr, allowed))} for {name}; got "
                         f"{binarization!r}.")
    if name == "digits":
        images, _ = load_digits()
        order = np.random.default_rng(0).permutation(len(images))  # a fixed split, whatever the run's seed
        intensities = torch.from_numpy(images[order])
        train, valid, test = intensities[:1397], intensities[1397:1597], intensities[1597:]
        image_shape: tuple[int, ...] = (8, 8)
    else:
        if data_dir is None:
            raise ValueError(f"load_dataset: {name} needs `data_dir`, the directory with its four IDX files.")
        splits = load_mnist_idx(Path(data_dir), "Fashion-MNIST" if name == "fashion-mnist" else "MNIST")
        train_images = torch.from_numpy(splits["train"][0].reshape(len(splits["train"][0]), -1)).float() / 255
        test = torch.from_numpy(splits["test"][0].reshape(len(splits["test"][0]), -1)).float() / 255
        n_valid = len(train_images) // 6  # the customary last 10000 of MNIST's 60000
        train, valid = train_images[:-n_valid], train_images[-n_valid:]
        image_shape = tuple(splits["train"][0].shape[1:])
    if binarization == "none":  # the 8-bit grey levels k/255, for a discretized likelihood
        return Dataset(name, train, valid, test, binarization, image_shape)
    valid = _binarize_once(valid, _EVALUATION_BINARIZATION_SEED)
    test = _binarize_once(test, _EVALUATION_BINARIZATION_SEED + 1)
    if binarization == "static":
        train = _binarize_once(train, seed)
    return Dataset(name, train, valid, test, binarization, image_shape)
