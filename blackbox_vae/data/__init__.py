"""Data sets."""

from blackbox_vae.data.toy import correlated_gaussian_2d

__all__ = ["correlated_gaussian_2d"]
