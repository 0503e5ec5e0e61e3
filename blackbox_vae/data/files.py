"""Readers for the standard file formats of the MNIST family; nothing is downloaded.

- IDX (the MNIST / Fashion-MNIST distribution format), gzip-compressed or not.
- Larochelle & Murray's binarized MNIST: ``binarized_mnist_{train,valid,test}.amat`` text files, or one
  ``.npz`` archive with ``train``/``valid``/``test`` arrays (loaded with ``allow_pickle=False``).
"""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["DataFileError", "read_idx", "find_file", "read_amat", "read_npz_splits"]

# IDX type codes -> numpy dtypes (big-endian as stored).
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataFileError(ValueError):
    """A data file is missing or not in the expected format; the message says where and what."""


def find_file(directory: Path, names: Sequence[str], what: str) -> Path:
    """The first of ``names`` (each also tried with ``.gz``) that exists in ``directory``.

    Raises:
        DataFileError: naming the directory and the files it expected.
    """
    directory = Path(directory)
    for name in names:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    expected = ", ".join(f"{n}[.gz]" for n in names)
    raise DataFileError(f"{what}: no file in {directory.resolve()} (expected {expected}). Nothing is downloaded: "
                        "put the standard files there, or pass the directory that holds them.")


def _open(path: Path):
    with open(path, "rb") as handle:
        gzipped = handle.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file as a numpy array of its stored dtype and shape.

    Args:
        path: the file, gzip-compressed or not (recognized by its content, not its name).

    Raises:
        DataFileError: for a bad magic number, an unknown type code, or a size that does not match the header.
    """
    path = Path(path)
    try:
        with _open(path) as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise DataFileError(f"{path}: cannot read it as an IDX file ({error}).") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataFileError(f"{path}: not an IDX file (magic bytes {raw[:4].hex() or 'missing'}; expected "
                            "00 00 <type code> <number of dimensions>).")
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFileError(f"{path}: truncated IDX header ({len(raw)} bytes for {ndim} dimensions).")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DataFileError(f"{path}: IDX header says shape {shape} ({expected} bytes in all) but the file has "
                            f"{len(raw)} bytes; it is truncated or corrupted.")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_amat(path: Path, n_columns: int = 784) -> np.ndarray:
    """A whitespace-separated ``.amat`` file of 0/1 values as a uint8 array ``[N, n_columns]``.

    Args:
        path: the file, gzip-compressed or not.
        n_columns: the number of values per row.

    Raises:
        DataFileError: if the file cannot be read as numbers, a row does not have ``n_columns`` values
            or a value is not 0 or 1.
    """
    path = Path(path)
    try:
        with _open(path) as handle:
            values = np.loadtxt(handle, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as error:
        raise DataFileError(f"{path}: cannot read it as whitespace-separated numbers ({error}).") from error
    if values.shape[1] != n_columns:
        raise DataFileError(f"{path}: rows have {values.shape[1]} values; expected {n_columns}.")
    if not np.isin(values, (0.0, 1.0)).all():
        raise DataFileError(f"{path}: values other than 0 and 1; expected binarized pixels.")
    return values.astype(np.uint8)


def read_npz_splits(path: Path, splits: Sequence[str] = ("train", "valid", "test")) -> dict[str, np.ndarray]:
    """The named arrays of an ``.npz`` archive (no pickles allowed).

    Args:
        path: the archive.
        splits: the names of the arrays to read.

    Returns:
        ``{name: array}`` for each of ``splits``.

    Raises:
        DataFileError: if the file is not an npz archive or lacks a split.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as error:
        raise DataFileError(f"{path}: cannot read it ({error}).") from error
    if magic != b"PK\x03\x04":  # every .npz is a zip archive; otherwise np.load would try (and refuse) a pickle
        raise DataFileError(f"{path}: not a .npz archive (it does not start with a zip header); expected the "
                            f"arrays {', '.join(splits)} saved with numpy.savez.")
    try:  # numpy leaves the file open when the archive is damaged: open (and close) it here
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as archive:
            missing = [s for s in splits if s not in archive.files]
            if missing:
                raise DataFileError(f"{path}: no array named {', '.join(map(repr, missing))} "
                                    f"(it has {', '.join(archive.files) or 'none'}); expected {', '.join(splits)}.")
            return {s: archive[s] for s in splits}
    except DataFileError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # truncated or damaged archives
        raise DataFileError(f"{path}: cannot read it as a .npz archive; it is truncated or corrupted "
                            f"({type(error).__name__}: {error}).") from error
