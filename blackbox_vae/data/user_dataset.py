"""`load_data_file`: a user's array file or image folder as a `Dataset`, with its likelihood and splits."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch
from torch import Tensor

from blackbox_vae.data.files import DataFileError
from blackbox_vae.data.mapped import MappedRows
from blackbox_vae.data.user_files import LIKELIHOODS, ValueSummary, read_splits, summarize_values

if TYPE_CHECKING:
    from blackbox_vae.data.datasets import Dataset

__all__ = ["load_data_file", "DEFAULT_VALID_FRACTION", "DEFAULT_TEST_FRACTION"]

DEFAULT_VALID_FRACTION = 0.1
DEFAULT_TEST_FRACTION = 0.1
# Evaluation splits of dynamically binarized images are binarized once, with this seed (as for MNIST).
_EVALUATION_BINARIZATION_SEED = 1234


def load_data_file(path: Path, binarization: Optional[str] = None, seed: int = 0, *,
                   likelihood: Optional[str] = None, valid_fraction: Optional[float] = None,
                   test_fraction: Optional[float] = None, split_seed: int = 0, image_size: Optional[int] = None,
                   channels: Optional[int] = None, standardize: bool = False) -> "Dataset":
    """A data file or image folder as a `Dataset` (see `blackbox_vae.data.load_dataset`, which calls this for a path).

    Rows are ``[N, D]`` (a table) or images ``[N, H, W]`` / ``[N, C, H, W]``, flattened to ``[N, D]`` with
    the image shape kept (``(H, W)`` for one channel, ``(C, H, W)`` otherwise). The likelihood follows the
    values unless ``likelihood`` says otherwise: values in {0, 1} are Bernoulli; 8-bit images (uint8, or
    integers 0..255 shaped as images) are binarized as ``binarization`` says (``"dynamic"`` by default, as
    for MNIST) or, with ``"none"``, kept as levels k/255 for a discretized likelihood; other values are
    Gaussian, optionally standardized per column with the training split's mean and standard deviation
    (kept in ``Dataset.standardization``, to map samples back).

    Splits the file does not hold are cut from its rows by a permutation seeded with ``split_seed``:
    ``test_fraction`` of them for the test split, then ``valid_fraction`` for the validation split (0.1 each
    by default); the same arguments give the same rows again. A ``.npy`` training split stays memory-mapped
    (a `MappedRows`) and is read by batches.

    Args:
        path: the ``.npy``, ``.npz``, ``.csv`` or ``.tsv`` file, or the folder of images.
        binarization: for 8-bit images: ``"dynamic"`` (default), ``"static"`` or ``"none"``.
        seed: the seed of a static binarization of the training split.
        likelihood: ``"bernoulli"``, ``"8-bit"`` or ``"gaussian"`` (default: as the values imply).
        valid_fraction: the fraction of rows cut for a validation split the file does not hold (0.1).
        test_fraction: the fraction of rows cut for a test split the file does not hold (0.1).
        split_seed: the seed of the permutation that cuts them.
        image_size: a folder: centre-crop to a square and resize to this (see `read_image_folder`).
        channels: a folder: 1 (greyscale) or 3 (RGB).
        standardize: Gaussian data: standardize each column with the training split's mean and deviation.

    Returns:
        the `Dataset`, with ``description`` (one line saying what was read and how it is modelled) and
        ``cut_fractions`` (the splits cut from the rows, and their fractions).

    Raises:
        DataFileError: one line naming the file and the problem (see `blackbox_vae.data.user_files`).
    """
    from blackbox_vae.data.datasets import Dataset

    path = Path(path)
    if likelihood is not None and likelihood not in LIKELIHOODS:
        raise DataFileError(f"--likelihood must be one of {', '.join(LIKELIHOODS)}; got {likelihood!r}.")
    arrays = read_splits(path, image_size, channels)
    shape = _row_shape(arrays, path)
    summaries = {split: summarize_values(array, path, split) for split, array in arrays.items()}
    image_like = len(shape) >= 2
    uint8 = all(array.dtype == np.uint8 for array in arrays.values())
    eight_bit = all(s.eight_bit for s in summaries.values()) and (uint8 or image_like)
    binary = all(s.binary for s in summaries.values())
    kind = _likelihood(path, likelihood, binary, eight_bit, summaries)
    if likelihood == "8-bit" and binarization is None:
        binarization = "none"  # levels k/255, kept as they are
    binarization = _binarization(path, kind, binary, eight_bit, binarization)
    if (likelihood == "bernoulli") == (binarization == "none") and likelihood in ("bernoulli", "8-bit"):
        raise DataFileError(f"--likelihood {likelihood} with --binarization {binarization}: "
                            + ("binarize the images (static or dynamic) for a Bernoulli likelihood."
                               if likelihood == "bernoulli" else "an 8-bit likelihood models the levels k/255 "
                               "themselves: use --binarization none (or leave it out)."))
    scale = 1 / 255 if eight_bit and not binary else 1.0
    if standardize and kind != "gaussian":
        raise DataFileError(f"--standardize applies to real values with a Gaussian likelihood; {path} is read with "
                            f"a {kind} likelihood (remove --standardize, or give --likelihood gaussian).")

    total = sum(len(a) for a in arrays.values())
    rows = _split_rows(arrays, path, valid_fraction, test_fraction, split_seed)
    mapped = isinstance(arrays["train"], np.memmap)
    source = {split: arrays["train"] if split not in arrays else arrays[split] for split in ("train", "valid", "test")}
    train = MappedRows(source["train"], rows["train"], scale) if mapped else _read(source["train"], rows["train"], scale)
    standardization = None
    if standardize:
        mean = train.mean(0).float() if mapped else train.double().mean(0).float()
        std = _std(train, mean).clamp_min(1e-6)  # a constant column keeps its scale
        standardization = (mean, std)
        train = (MappedRows(source["train"], rows["train"], scale / std.numpy(), mean.numpy() / scale) if mapped
                 else (train - mean) / std)
    evaluation = {}
    for split in ("valid", "test"):
        values = _read(source[split], rows[split], scale)
        if standardization is not None:
            values = (values - standardization[0]) / standardization[1]
        if binarization == "dynamic":
            offset = 0 if split == "valid" else 1
            values = torch.bernoulli(values, generator=torch.Generator().manual_seed(_EVALUATION_BINARIZATION_SEED + offset))
        evaluation[split] = values
    if binarization == "static" and not binary:
        train = torch.bernoulli(train if isinstance(train, Tensor) else train[:],
                                generator=torch.Generator().manual_seed(seed))
    image_shape = None if not image_like else (tuple(shape[1:]) if len(shape) == 3 and shape[0] == 1 else tuple(shape))
    dataset = Dataset(str(path), train, evaluation["valid"], evaluation["test"], binarization, image_shape,
                      likelihood_name=kind if binarization == "none" else "bernoulli",
                      standardization=standardization)
    dataset.cut_fractions = {split: fraction for split, fraction in
                             (("valid", valid_fraction), ("test", test_fraction)) if split not in arrays}
    dataset.cut_fractions = {split: (DEFAULT_VALID_FRACTION if split == "valid" else DEFAULT_TEST_FRACTION)
                             if fraction is None else fraction for split, fraction in dataset.cut_fractions.items()}
    dataset.description = _describe(path, total, shape, summaries, kind, binarization, standardize, rows, arrays,
                                    split_seed, mapped)
    return dataset


def _row_shape(arrays: dict[str, np.ndarray], path: Path) -> tuple[int, ...]:
    shape = None
    for split, array in arrays.items():
        if array.ndim < 2 or array.ndim > 4:
            raise DataFileError(f"{path}: {split} is a {array.ndim}-D array of shape {tuple(array.shape)}; expected "
                                "rows [N, D] or images [N, H, W] / [N, C, H, W].")
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise DataFileError(f"{path}: {split} holds {array.dtype} values; expected numbers.")
        if shape is not None and tuple(array.shape[1:]) != shape:
            raise DataFileError(f"{path}: {split} rows are {tuple(array.shape[1:])}, the train rows "
                                f"{shape}; every split must have rows of one shape.")
        shape = tuple(array.shape[1:])
        if len(array) == 0:
            raise DataFileError(f"{path}: {split} has no rows.")
    return shape


def _likelihood(path: Path, given: Optional[str], binary: bool, eight_bit: bool,
                summaries: dict[str, ValueSummary]) -> str:
    if given is None:
        return "bernoulli" if binary else "8-bit" if eight_bit else "gaussian"
    if given == "bernoulli" and not (binary or eight_bit):
        row, column, value = next(s.example for s in summaries.values() if s.example)
        raise DataFileError(f"--likelihood bernoulli: {path} has values outside {{0, 1}} (row {row}, column {column}: "
                            f"{value:g}) and is not 8-bit images to binarize; use --likelihood gaussian.")
    if given == "8-bit" and not eight_bit:
        low, high = min(s.low for s in summaries.values()), max(s.high for s in summaries.values())
        raise DataFileError(f"--likelihood 8-bit: {path} is not 8-bit images (values from {low:g} to {high:g}; "
                            "expected integers 0..255 shaped as images, or uint8); use --likelihood gaussian.")
    return "8-bit" if given == "bernoulli" and not binary else given


def _binarization(path: Path, kind: str, binary: bool, eight_bit: bool, given: Optional[str]) -> str:
    """The binarization that takes effect: a choice for 8-bit images only."""
    from blackbox_vae.data.datasets import BINARIZATIONS

    if kind == "8-bit" and eight_bit and not binary:
        if given not in (None, *BINARIZATIONS):
            raise DataFileError(f"--binarization must be static, dynamic or none; got {given!r}.")
        return given or "dynamic"  # as for MNIST
    if given is not None and given != ("static" if binary else "none"):
        what = "binary values (no binarization to choose)" if binary else "real values read with a Gaussian likelihood"
        raise DataFileError(f"--binarization {given}: {path} holds {what}; --binarization applies to 8-bit images. "
                            "Remove it.")
    return "static" if binary else "none"


def _split_rows(arrays: dict[str, np.ndarray], path: Path, valid_fraction: Optional[float],
                test_fraction: Optional[float], split_seed: int) -> dict[str, np.ndarray]:
    """Row numbers of each split in its source array: the file's own splits whole, the others cut from train."""
    rows = {split: np.arange(len(array)) for split, array in arrays.items()}
    missing = [split for split in ("test", "valid") if split not in arrays]
    fractions = {"valid": DEFAULT_VALID_FRACTION if valid_fraction is None else valid_fraction,
                 "test": DEFAULT_TEST_FRACTION if test_fraction is None else test_fraction}
    for split, given in (("valid", valid_fraction), ("test", test_fraction)):
        if given is not None and split in arrays:
            raise DataFileError(f"--{split}-fraction: {path} has its own {split} split; remove the flag.")
        if not 0 < fractions[split] < 1:
            raise DataFileError(f"--{split}-fraction must be in (0, 1); got {fractions[split]!r}.")
    if not missing:
        return rows
    n = len(arrays["train"])
    order = np.random.default_rng(split_seed).permutation(n)
    start = 0
    for split in missing:
        count = int(round(fractions[split] * n))
        if count < 1:
            raise DataFileError(f"{path}: {n} rows are too few for a {split} split of {fractions[split]:g} of them "
                                f"(it would be empty); give more rows or a larger --{split}-fraction.")
        rows[split] = np.sort(order[start:start + count])
        start += count
    if start >= n:
        raise DataFileError(f"{path}: {n} rows leave no training rows after the "
                            f"{' and '.join(missing)} split(s); give more rows or smaller fractions.")
    rows["train"] = np.sort(order[start:])
    return rows


def _read(array: np.ndarray, rows: np.ndarray, scale: float) -> Tensor:
    """The rows of ``array`` as a float32 ``[n, D]`` tensor (values times ``scale``)."""
    values = np.asarray(array[rows], dtype=np.float32).reshape(len(rows), -1)
    return torch.from_numpy(values * np.float32(scale) if scale != 1 else values)


def _std(train, mean: Tensor) -> Tensor:
    if isinstance(train, Tensor):
        return train.double().std(0).float() if len(train) > 1 else torch.ones_like(mean)
    total = torch.zeros_like(mean, dtype=torch.float64)
    for start in range(0, len(train), 4096):
        total += ((train[start:start + 4096].double() - mean.double()) ** 2).sum(0)
    return (total / max(len(train) - 1, 1)).sqrt().float()


def _describe(path: Path, total: int, shape: tuple[int, ...], summaries: dict[str, ValueSummary], kind: str,
              binarization: str, standardize: bool, rows: dict[str, np.ndarray], arrays: dict[str, np.ndarray],
              split_seed: int, mapped: bool) -> str:
    low, high = min(s.low for s in summaries.values()), max(s.high for s in summaries.values())
    values = ("values in {0, 1}" if all(s.binary for s in summaries.values())
              else f"{'8-bit ' if kind == '8-bit' else ''}values from {low:g} to {high:g}")
    what = f"{total} {'images' if len(shape) >= 2 else 'rows'} of {'x'.join(map(str, shape))} {values}"
    if kind == "8-bit":
        likelihood = ("Bernoulli likelihood, " + binarization + " binarization" if binarization != "none"
                      else "8-bit likelihood (levels k/255, no binarization)")
    else:
        likelihood = kind.capitalize() + " likelihood" + (", standardized per column" if standardize else "")
    cut = [split for split in ("valid", "test") if split not in arrays]
    how = f"; {' and '.join(cut)} cut by a permutation of seed {split_seed}" if cut else ""
    splits = "/".join(str(len(rows[s])) for s in ("train", "valid", "test"))
    return (f"data: {path}: {what} -> {likelihood}; train/valid/test {splits} rows{how}"
            f"{'; memory-mapped, read by batches' if mapped else ''}.")
