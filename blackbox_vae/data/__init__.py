"""Data sets: file readers, loaders, and minibatch streams. Nothing is downloaded."""

from blackbox_vae.data.batches import BatchStream
from blackbox_vae.data.datasets import (
    DATASETS,
    Dataset,
    effective_binarization,
    load_binarized_mnist,
    load_dataset,
    load_digits,
    load_mnist_idx,
)
from blackbox_vae.data.files import DataFileError, read_amat, read_idx, read_npz_splits
from blackbox_vae.data.mapped import MappedRows
from blackbox_vae.data.user_dataset import load_data_file
from blackbox_vae.data.user_files import LIKELIHOODS, is_data_path
from blackbox_vae.data.toy import correlated_gaussian_2d

__all__ = [
    "DATASETS",
    "Dataset",
    "effective_binarization",
    "load_dataset",
    "load_data_file",
    "LIKELIHOODS",
    "is_data_path",
    "MappedRows",
    "load_mnist_idx",
    "load_binarized_mnist",
    "load_digits",
    "BatchStream",
    "DataFileError",
    "read_idx",
    "read_amat",
    "read_npz_splits",
    "correlated_gaussian_2d",
]
