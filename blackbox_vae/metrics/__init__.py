"""Sample-quality metrics: FID and precision/recall on the features of a small classifier of the data set;
and a latent-usage diagnostic, the mutual information of each binary latent bit (`bit_mutual_information`).

```python
network, info = load_feature_network("mnist")          # trained once: blackbox-vae train-classifier --data mnist
scores = sample_quality(test_images, generated, network, info)
# {"fid": ..., "precision": ..., "recall": ..., "feature_network": "FID-MNIST (cnn-v2, seed 0, test accuracy 99.0%)"}
```

The features are not Inception's: every figure names the network it was computed with (`FeatureNetworkInfo.name`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from blackbox_vae.metrics.features import (
    ARCHITECTURE,
    FeatureNetwork,
    FeatureNetworkInfo,
    accuracy,
    cache_dir,
    feature_network_path,
    load_feature_network,
    train_feature_network,
)
from blackbox_vae.metrics.information import bit_mutual_information
from blackbox_vae.metrics.quality import frechet_distance, precision_recall

__all__ = [
    "ARCHITECTURE",
    "FeatureNetwork",
    "FeatureNetworkInfo",
    "accuracy",
    "cache_dir",
    "feature_network_path",
    "load_feature_network",
    "train_feature_network",
    "frechet_distance",
    "precision_recall",
    "sample_quality",
    "labelled_images",
    "FEATURE_DATA",
    "bit_mutual_information",
]

#: The data set whose feature network scores each data set's samples (binarized MNIST's images are MNIST's).
FEATURE_DATA = {"mnist": "mnist", "binarized-mnist": "mnist", "fashion-mnist": "fashion-mnist", "digits": "digits"}


def sample_quality(real: Tensor, generated: Tensor, network: FeatureNetwork, info: FeatureNetworkInfo,
                   k: int = 3) -> dict[str, Any]:
    """FID, precision and recall of generated images against real ones, on the feature network's features.

    Args:
        real: ``[N, H * W]`` images with values in [0, 1].
        generated: ``[M, H * W]``.
        network: the feature network.
        info: its description (named in the result).
        k: the neighbour of precision and recall's balls.

    Returns:
        ``{"fid", "precision", "recall", "feature_network", "n_real", "n_generated"}``.
    """
    network = network.to("cpu")
    real_features = network.features(real.detach().float().cpu())
    generated_features = network.features(generated.detach().float().cpu())
    precision, recall = precision_recall(real_features, generated_features, k=k)
    return {"fid": frechet_distance(real_features, generated_features), "precision": precision, "recall": recall,
            "feature_network": info.name, "n_real": len(real), "n_generated": len(generated)}


def labelled_images(data: str, data_dir: Optional[Path] = None) -> dict[str, tuple[Tensor, Tensor]]:
    """Training and test images (intensities in [0, 1], ``[N, H * W]``) with their labels, for the feature network.

    Args:
        data: ``"mnist"``, ``"fashion-mnist"`` (IDX files in ``data_dir``) or ``"digits"`` (scikit-learn's).
        data_dir: the IDX files' directory.

    Returns:
        ``{"train": (images, labels), "test": (images, labels)}`` and the image shape under ``"shape"``.

    Raises:
        ValueError: for another data set, or a missing ``data_dir``.
    """
    if data == "digits":
        from blackbox_vae.data import load_digits

        images, labels = load_digits()
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
        images, labels = torch.from_numpy(images)[order], torch.from_numpy(labels).long()[order]
        return {"train": (images[:1397], labels[:1397]), "test": (images[1397:], labels[1397:]), "shape": (8, 8)}
    if data not in ("mnist", "fashion-mnist"):
        raise ValueError(f"labelled_images: `data` must be 'mnist', 'fashion-mnist' or 'digits'; got {data!r}.")
    if data_dir is None:
        raise ValueError(f"labelled_images: {data} needs `data_dir`, the directory of its four IDX files.")
    from blackbox_vae.data import load_mnist_idx

    splits = load_mnist_idx(Path(data_dir), "Fashion-MNIST" if data == "fashion-mnist" else "MNIST")
    result: dict[str, Any] = {}
    for split, (images, labels) in splits.items():
        result[split] = (torch.from_numpy(images.reshape(len(images), -1)).float() / 255,
                         torch.from_numpy(labels.astype("int64")))
    result["shape"] = tuple(splits["train"][0].shape[1:])
    return result
