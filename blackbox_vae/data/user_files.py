"""A user's own data: an array file (.npy, .npz, .csv, .tsv) or a folder of images, as a `Dataset`.

Every problem with the data is a `DataFileError` of one line naming the file (and the row and column, or
the image) and what is wrong, raised before a run directory is touched.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from blackbox_vae.data.files import DataFileError

__all__ = ["ARRAY_SUFFIXES", "IMAGE_SUFFIXES", "LIKELIHOODS", "read_splits", "read_image_folder", "ValueSummary",
           "summarize_values", "is_data_path"]

ARRAY_SUFFIXES = (".npy", ".npz", ".csv", ".tsv")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
#: The likelihoods a user's data may be given (`--likelihood`): binary values, 8-bit grey or colour levels
#: k/255 (a discretized likelihood, e.g. NVAE's logistic mixture), or other real values.
LIKELIHOODS = ("bernoulli", "8-bit", "gaussian")
SPLITS = ("train", "valid", "test")
_SCAN_ELEMENTS = 2**21  # values checked at a time (16 MB as float64), so that a memory-mapped file is never read whole


def is_data_path(name: str) -> bool:
    """Whether ``--data NAME`` names a file or folder rather than a bundled data set.

    Args:
        name: the value of ``--data``: a path if it ends in a data file's suffix, holds a path separator, or
            is an existing folder.
    """
    return name.lower().endswith(ARRAY_SUFFIXES) or "/" in name or "\\" in name or Path(name).is_dir()


def read_splits(path: Path, image_size: Optional[int] = None, channels: Optional[int] = None
                ) -> dict[str, np.ndarray]:
    """The arrays of a data file or image folder, by split: ``{"train": ...}`` and any of ``valid`` / ``test``
    the file holds. A ``.npy`` is memory-mapped, not read.

    Raises:
        DataFileError: for a missing path, an unknown kind of file, or a file that cannot be read.
    """
    path = Path(path)
    if path.is_dir():
        return {"train": read_image_folder(path, image_size, channels)}
    if not path.exists():
        raise DataFileError(f"{path}: no such file or folder (--data takes a data set's name, an .npy, .npz, .csv "
                            "or .tsv file, or a folder of images).")
    suffix = path.suffix.lower()
    if image_size is not None or channels is not None:
        raise DataFileError(f"{path}: --image-size and --channels convert the images of a folder; this is an "
                            f"{suffix} file (remove them).")
    if suffix == ".npy":
        try:
            return {"train": np.load(path, mmap_mode="r", allow_pickle=False)}
        except (ValueError, OSError, EOFError) as error:
            raise DataFileError(f"{path}: not a readable .npy array ({_first_line(error)}).") from error
    if suffix == ".npz":
        return _read_npz(path)
    if suffix in (".csv", ".tsv"):
        return {"train": _read_table(path, "\t" if suffix == ".tsv" else ",")}
    raise DataFileError(f"{path}: unknown kind of data file {suffix or '(no suffix)'!r}; expected "
                        f"{', '.join(ARRAY_SUFFIXES)} or a folder of images.")


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0]


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            names = [split for split in SPLITS if split in keys]
            if "train" in names:
                return {split: archive[split] for split in names}
            if len(keys) == 1:
                return {"train": archive[keys[0]]}
    except (ValueError, OSError, EOFError) as error:  # zipfile.BadZipFile is an OSError's sibling: below
        raise DataFileError(f"{path}: not a readable .npz archive ({_first_line(error)}).") from error
    except Exception as error:  # BadZipFile, a truncated member
        raise DataFileError(f"{path}: not a readable .npz archive ({_first_line(error)}).") from error
    raise DataFileError(f"{path}: no usable array: expected one named `train` (and optionally `valid`, `test`) or "
                        f"a single array; it holds {', '.join(keys) if keys else 'none'}.")


def _read_table(path: Path, delimiter: str) -> np.ndarray:
    """A numeric CSV/TSV table ``[N, D]`` float64; a first row that is not numeric is taken as a header."""
    with open(path, newline="") as handle:
        rows = [row for row in csv.reader(handle, delimiter=delimiter) if row]
    if not rows:
        raise DataFileError(f"{path}: the file is empty.")
    header = not all(_is_number(cell) for cell in rows[0])
    first = 2 if header else 1  # the file's line number of the first data row
    rows = rows[1:] if header else rows
    if not rows:
        raise DataFileError(f"{path}: a header row and no data rows.")
    width = len(rows[0])
    for number, row in enumerate(rows):
        if len(row) != width:
            raise DataFileError(f"{path}, line {number + first}: {len(row)} columns; the first data row has {width}.")
    try:
        return np.array(rows, dtype=np.float64)
    except ValueError:
        for number, row in enumerate(rows):
            for column, cell in enumerate(row):
                if not _is_number(cell):
                    raise DataFileError(f"{path}, line {number + first}, column {column + 1}: {cell!r} is not a "
                                        "number (every cell must be numeric).") from None
        raise


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def read_image_folder(folder: Path, image_size: Optional[int] = None, channels: Optional[int] = None) -> np.ndarray:
    """Every PNG, JPEG and BMP image under ``folder`` (subfolders too, in sorted path order) as uint8
    ``[N, C, H, W]``.

    Args:
        image_size: centre-crop each image to a square (its shorter side) and resize it to
            ``image_size x image_size`` (Pillow's bicubic filter); required when the sizes differ.
        channels: 1 (greyscale) or 3 (RGB); by default 1 if every image is greyscale, else 3.

    Raises:
        DataFileError: for an empty folder, an image Pillow cannot read (named), or images of different
            sizes without ``image_size``.
    """
    from PIL import Image, UnidentifiedImageError  # Pillow comes with matplotlib; declared in pyproject.toml

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataFileError(f"{folder}: no PNG, JPEG or BMP images in this folder or its subfolders.")
    if channels not in (None, 1, 3):
        raise DataFileError(f"--channels must be 1 (greyscale) or 3 (RGB); got {channels!r}.")
    images, first = [], None
    for file in files:
        try:
            with Image.open(file) as image:
                image.load()  # a truncated file fails here, not later
                image = image.convert("RGB" if image.mode not in ("L", "1", "I", "I;16", "F", "LA") else "L")
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
            raise DataFileError(f"{file}: cannot read this image ({_first_line(error)}); remove or replace it."
                                ) from error
        if image_size is not None:
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            image = image.crop((left, top, left + side, top + side)).resize((image_size, image_size),
                                                                               Image.Resampling.BICUBIC)
        elif first is None:
            first = (file, image.size)
        elif image.size != first[1]:
            raise DataFileError(f"{folder}: images of different sizes ({first[0].name}: {first[1][0]}x{first[1][1]}, "
                                f"{file.name}: {image.width}x{image.height}); give --image-size N to centre-crop "
                                "and resize them all to N x N.")
        images.append(image)
    if channels is None:
        channels = 1 if all(image.mode == "L" for image in images) else 3
    mode = "L" if channels == 1 else "RGB"
    arrays = [np.asarray(image.convert(mode), dtype=np.uint8) for image in images]
    stacked = np.stack(arrays)  # [N, H, W] or [N, H, W, 3]
    return stacked[:, None] if channels == 1 else stacked.transpose(0, 3, 1, 2).copy()


@dataclass
class ValueSummary:
    """What a scan of an array's values found: the likelihoods they admit."""

    rows: int
    binary: bool  # every value is 0 or 1
    eight_bit: bool  # every value is an integer in [0, 255]
    low: float
    high: float
    example: Optional[tuple[int, int, float]] = None  # (row, column, value) of a value outside {0, 1}


def summarize_values(array: np.ndarray, path: Path, split: str) -> ValueSummary:
    """Scans ``array`` ``[N, ...]`` in chunks (a memory-mapped file stays on disk).

    Raises:
        DataFileError: naming the first NaN or infinite value's row and column.
    """
    flat = array.reshape(len(array), -1)
    binary, eight_bit, low, high, example = True, True, math.inf, -math.inf, None
    integral_dtype = np.issubdtype(flat.dtype, np.integer) or flat.dtype == np.bool_
    rows_at_a_time = max(1, _SCAN_ELEMENTS // max(flat.shape[1], 1))
    for start in range(0, len(flat), rows_at_a_time):
        chunk = np.asarray(flat[start:start + rows_at_a_time], dtype=np.float64)
        finite = np.isfinite(chunk)
        if not finite.all():
            row, column = map(int, np.argwhere(~finite)[0])
            raise DataFileError(f"{path}: {split} row {start + row + 1}, column {column + 1} is "
                                f"{chunk[row, column]}; every value must be finite.")
        low, high = min(low, chunk.min(initial=math.inf)), max(high, chunk.max(initial=-math.inf))
        outside = (chunk != 0) & (chunk != 1)
        if binary and outside.any():
            binary = False
            row, column = map(int, np.argwhere(outside)[0])
            example = (start + row + 1, column + 1, float(chunk[row, column]))
        if eight_bit and not integral_dtype:
            eight_bit = bool((chunk == np.round(chunk)).all())
    eight_bit = eight_bit and low >= 0 and high <= 255
    return ValueSummary(len(flat), binary, eight_bit, low, high, example)
