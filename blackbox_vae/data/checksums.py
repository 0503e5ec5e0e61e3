"""Which published data set a bundled loader's file holds, by the SHA-256 of its decoded contents.

MNIST and Fashion-MNIST ship as files of the same names, so ``--data mnist --data-dir path/to/fashion`` would
otherwise train on Fashion-MNIST under MNIST's name. The digests below are of the arrays the IDX files decode
to (so a file re-compressed, or stored uncompressed, still matches); they were computed from the official
``.gz`` files, whose MD5s match the published ones (MNIST: f68b3c2d..., as torchvision lists them;
Fashion-MNIST: 8d4fb7e6..., as Zalando Research's README does).
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["PUBLISHED", "identify"]

#: array digest -> (data set, file)
PUBLISHED = {
    "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757": ("MNIST", "train images"),
    "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13": ("MNIST", "train labels"),
    "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161": ("MNIST", "test images"),
    "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5": ("MNIST", "test labels"),
    "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012": ("Fashion-MNIST", "train images"),
    "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7": ("Fashion-MNIST", "train labels"),
    "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a": ("Fashion-MNIST", "test images"),
    "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9": ("Fashion-MNIST", "test labels"),
}


def identify(array: np.ndarray) -> tuple[str, str] | None:
    """(data set, file) of a published file with these contents, or None for contents of no published file."""
    return PUBLISHED.get(hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest())
