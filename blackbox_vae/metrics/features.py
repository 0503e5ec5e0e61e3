"""The feature network of the sample-quality metrics: a small classifier of the data set's images.

FID on Inception features is the usual sample-quality metric, but Inception's weights cannot be assumed
available offline and fit 28x28 digits poorly. Here the features are the penultimate layer (128 units)
of a small convolutional classifier trained on the data set's own training images ("FID-MNIST" for MNIST),
seeded and reproducible. It is trained once by ``blackbox-vae train-classifier`` (or
`train_feature_network`) and cached in the user's cache directory; every figure computed with it names it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

__all__ = ["FeatureNetwork", "FeatureNetworkInfo", "cache_dir", "train_feature_network", "load_feature_network",
           "feature_network_path", "ARCHITECTURE"]

#: The version of the network's architecture and training recipe; part of the cached file's name.
ARCHITECTURE = "cnn-v2"


def cache_dir() -> Path:
    """Where feature networks are cached: ``$BLACKBOX_VAE_CACHE``, else ``$XDG_CACHE_HOME/blackbox_vae``, else
    ``~/.cache/blackbox_vae``."""
    if os.environ.get("BLACKBOX_VAE_CACHE"):
        return Path(os.environ["BLACKBOX_VAE_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "blackbox_vae"


@dataclass
class FeatureNetworkInfo:
    """What a cached feature network is: the data it was trained on, how, and how well it classifies.

    Attributes:
        data: the data set's name (``"mnist"``, ``"fashion-mnist"``, ``"digits"``).
        image_shape: the images' shape.
        seed: the training seed.
        epochs: training epochs.
        test_accuracy: accuracy on the data set's test split.
        architecture: `ARCHITECTURE`.
        seconds: training time.
    """

    data: str
    image_shape: tuple[int, int]
    seed: int
    epochs: int
    test_accuracy: float
    architecture: str = ARCHITECTURE
    seconds: float = 0.0

    @property
    def name(self) -> str:
        """How figures computed with it are labelled, e.g. ``FID-MNIST (cnn-v2, seed 0, test accuracy 99.0%)``."""
        return (f"FID-{self.data.upper()} ({self.architecture}, seed {self.seed}, test accuracy "
                f"{100 * self.test_accuracy:.1f}%)")


class FeatureNetwork(nn.Module):
    """A small CNN classifier; its 128 penultimate units are the features.

    conv 3x3 (32) - ReLU - max-pool 2 - conv 3x3 (64) - ReLU - max-pool 2 - adaptive average pool to 7x7 (the
    size a 28x28 image has there) - linear 3136 -> 128 - ReLU (the features) - linear 128 -> classes.

    Args:
        image_shape: (height, width), at least 4 x 4.
        n_classes: output classes.
    """

    def __init__(self, image_shape: tuple[int, int], n_classes: int = 10):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.AdaptiveAvgPool2d(7), nn.Flatten(), nn.Linear(64 * 49, 128), nn.ReLU())
        self.head = nn.Linear(128, n_classes)

    def _images(self, images: Tensor) -> Tensor:
        return images.reshape(images.shape[0], 1, *self.image_shape).float()

    def features(self, images: Tensor, batch_size: int = 1000) -> Tensor:
        """The 128 features of images ``[N, H * W]`` (or ``[N, H, W]``), values in [0, 1]: ``[N, 128]``."""
        with torch.no_grad():
            return torch.cat([self.body(self._images(chunk)) for chunk in images.split(batch_size)])

    def forward(self, images: Tensor) -> Tensor:
        """Class logits ``[N, n_classes]``."""
        return self.head(self.body(self._images(images)))


def feature_network_path(data: str, seed: int = 0, directory: Optional[Path] = None) -> Path:
    """The cached file of the feature network for ``data`` and ``seed`` in ``directory`` (default `cache_dir`)."""
    return Path(directory or cache_dir()) / "feature_networks" / f"{data}-{ARCHITECTURE}-seed{seed}.pt"


def train_feature_network(data: str, train_images: Tensor, train_labels: Tensor, test_images: Tensor,
                          test_labels: Tensor, image_shape: tuple[int, int], *, seed: int = 0, epochs: int = 4,
                          batch_size: int = 128, lr: float = 1e-3, directory: Optional[Path] = None,
                          progress: bool = False) -> tuple[FeatureNetwork, FeatureNetworkInfo]:
    """Trains the feature network on labelled images (intensities in [0, 1]) and caches it.

    Seeded: the same data and seed give the same network. Adam, cross-entropy, ``epochs`` passes.

    Args:
        data: the data set's name (names the cached file).
        train_images: ``[N, H * W]``.
        train_labels: ``[N]``.
        test_images: ``[M, H * W]``, to report the test accuracy.
        test_labels: ``[M]``.
        image_shape: (height, width).
        seed: the training seed.
        epochs: passes over the training images.
        batch_size: images per Adam step.
        lr: Adam's learning rate.
        directory: the cache directory (default `cache_dir`).
        progress: print a line per epoch.

    Returns:
        ``(network, info)``; the network is written to `feature_network_path`.
    """
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        network = FeatureNetwork(image_shape, n_classes=int(train_labels.max()) + 1)
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    for epoch in range(epochs):
        network.train()
        order = torch.randperm(len(train_images), generator=generator)
        for batch in order.split(batch_size):
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(network(train_images[batch]), train_labels[batch]).backward()
            optimizer.step()
        if progress:
            print(f"epoch {epoch + 1}/{epochs}: test accuracy {accuracy(network, test_images, test_labels):.4f}",
                  flush=True)
    network.eval()
    info = FeatureNetworkInfo(data, tuple(image_shape), seed, epochs, accuracy(network, test_images, test_labels),
                              seconds=round(time.perf_counter() - started, 1))
    path = feature_network_path(data, seed, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    from blackbox_vae.cli.files import write_bytes_of  # whole or not at all; one line on a full disk

    write_bytes_of(path, lambda buffer: torch.save({"info": json.dumps(asdict(info)),
                                                    "state_dict": network.state_dict()}, buffer))
    return network, info


def accuracy(network: FeatureNetwork, images: Tensor, labels: Tensor) -> float:
    """The share of ``images`` that ``network`` classifies as ``labels``."""
    network.eval()
    with torch.no_grad():
        predictions = torch.cat([network(chunk).argmax(1) for chunk in images.split(1000)])
    return (predictions == labels).float().mean().item()


def load_feature_network(data: str, seed: int = 0, directory: Optional[Path] = None
                         ) -> tuple[FeatureNetwork, FeatureNetworkInfo]:
    """The cached feature network for ``data`` and ``seed`` in ``directory`` (default `cache_dir`), read with
    ``weights_only=True``.

    Raises:
        FileNotFoundError: when it has not been trained, with the command that trains it.
    """
    path = feature_network_path(data, seed, directory)
    if not path.is_file():
        raise FileNotFoundError(
            f"no feature network for {data!r} in {path.parent} (the metrics' features). Train it once with "
            f"`blackbox-vae train-classifier --data {data}{' --data-dir DIR' if data != 'digits' else ''}` "
            "(a few minutes on a CPU); it is cached there.")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    info = FeatureNetworkInfo(**{**json.loads(saved["info"]), "image_shape": tuple(json.loads(saved["info"])["image_shape"])})
    network = FeatureNetwork(info.image_shape, n_classes=saved["state_dict"]["head.weight"].shape[0])
    network.load_state_dict(saved["state_dict"])
    network.eval()
    return network, info
