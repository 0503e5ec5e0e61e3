"""Sample-quality metrics: the Fréchet distance and precision/recall against their definitions, and the
feature network's FID measuring what it claims (near 0 for held-out data, growing with corruption)."""

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from blackbox_vae.metrics import (
    FeatureNetworkInfo,
    feature_network_path,
    frechet_distance,
    labelled_images,
    load_feature_network,
    precision_recall,
    sample_quality,
    train_feature_network,
)

MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


# --------------------------------------------------------------------------------- the definitions
def test_the_frechet_distance_matches_its_closed_form():
    """Against the formula with SciPy's general matrix square root, on features with correlated columns."""
    generator = torch.Generator().manual_seed(0)
    real = torch.randn(300, 6, generator=generator) @ torch.randn(6, 6, generator=generator)
    generated = torch.randn(200, 6, generator=generator) @ torch.randn(6, 6, generator=generator) + 0.5
    mean_r, mean_g = real.double().mean(0).numpy(), generated.double().mean(0).numpy()
    cov_r, cov_g = np.cov(real.double().numpy().T), np.cov(generated.double().numpy().T)
    expected = ((mean_r - mean_g) ** 2).sum() + np.trace(cov_r + cov_g - 2 * scipy.linalg.sqrtm(cov_r @ cov_g).real)
    assert frechet_distance(real, generated) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(generated, real) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-9)


def test_the_frechet_distance_of_shifted_gaussians_is_the_squared_shift():
    """Same covariance, means 2 apart in each of 4 dimensions: 16, up to the estimate's standard error."""
    generator = torch.Generator().manual_seed(1)
    real, generated = torch.randn(20000, 4, generator=generator), torch.randn(20000, 4, generator=generator) + 2
    # The estimated shift is the true one plus e ~ N(0, 2/n I): ||d + e||^2 has standard error 2 |d| sqrt(2/n)
    # and bias 2F/n; the covariance terms' bias is of order F(F + 1)/n.
    n, shift_norm, width = 20000, 4.0, 4
    standard_error, bias = 2 * shift_norm * math.sqrt(2 / n), 2 * width / n + width * (width + 1) / n
    assert abs(frechet_distance(real, generated) - 16) < 5 * standard_error + bias


def reference_precision_recall(real, generated, k):
    """Kynkäänniemi et al.'s definition, written out with scikit-learn's nearest neighbours."""
    from sklearn.neighbors import NearestNeighbors

    def coverage(points, centres):
        radii = NearestNeighbors(n_neighbors=k + 1).fit(centres).kneighbors(centres)[0][:, k]  # self is first
        distances = np.linalg.norm(points[:, None, :] - centres[None, :, :], axis=-1)
        return float((distances <= radii[None, :]).any(axis=1).mean())

    return coverage(generated, real), coverage(real, generated)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_and_recall_match_their_definition(k):
    generator = torch.Generator().manual_seed(6)
    real, generated = torch.randn(300, 3, generator=generator), 1.3 * torch.randn(200, 3, generator=generator) + 0.4
    expected = reference_precision_recall(real.double().numpy(), generated.double().numpy(), k)
    assert precision_recall(real, generated, k=k, chunk=64) == pytest.approx(expected, abs=1e-6)  # < one point


def test_precision_and_recall_separate_fidelity_from_diversity():
    generator = torch.Generator().manual_seed(2)
    real = torch.randn(1000, 2, generator=generator)
    assert precision_recall(real, real) == (1.0, 1.0)
    assert precision_recall(real, real + 100) == (0.0, 0.0)
    # Mode collapse: generated points all from one small patch of the real data. Every one is realistic
    # (precision near 1) but they cover little of it (recall far below).
    collapsed = real[(real - torch.tensor([1.0, 0.0])).norm(dim=1) < 0.3]
    precision, recall = precision_recall(real, collapsed)
    assert precision > 0.95 and recall < 0.2


@pytest.mark.parametrize("call, message", [
    (lambda: frechet_distance(torch.zeros(5, 3), torch.zeros(5, 4)), r"expected features \[N, F\] and \[M, F\]"),
    (lambda: frechet_distance(torch.zeros(1, 3), torch.zeros(5, 3)), r"at least two rows"),
    (lambda: precision_recall(torch.zeros(3, 2), torch.zeros(9, 2)), r"N, M > k = 3; got \(3, 2\)"),
])
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------------------- the feature network
@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """scikit-learn's 8x8 digits and a feature network trained on them (10 epochs, a few seconds)."""
    splits = labelled_images("digits")
    directory = tmp_path_factory.mktemp("cache")
    network, info = train_feature_network("digits", *splits["train"], *splits["test"], splits["shape"], epochs=10,
                                          directory=directory)
    return splits, network, info, directory


def null_spread(network, pooled, sizes, repeats=20):
    """FID between random disjoint subsets of ``pooled`` of the given sizes: the spread of FID between two
    samples of one distribution (mean, standard deviation)."""
    features = network.features(pooled)
    generator = torch.Generator().manual_seed(3)
    values = []
    for _ in range(repeats):
        order = torch.randperm(len(pooled), generator=generator)
        values.append(frechet_distance(features[order[:sizes[0]]], features[order[sizes[0]:sizes[0] + sizes[1]]]))
    return float(np.mean(values)), float(np.std(values, ddof=1))


def check_fid_measures_what_it_claims(network, train, test):
    """FID(test, train) is near 0 on the metric's own scale: below the FID that the mildest noise tested (0.05)
    on the test images causes (level 0 is FID(test, train) itself, so the monotone check says it), and an
    order of magnitude below FID(test, uniform noise); FID grows with each level of Gaussian noise added to
    the test images (one noise draw, scaled, so that the levels are coupled), and noise of 0.2 is far outside
    the spread of FID between random halves of the pooled images.

    Not asserted: that FID(test, train) falls within that spread. The network was trained on the training
    images, so its features separate them slightly from held-out ones (MNIST: 3.07 against re-splits of the
    pooled images at 1.09 +- 0.20; digits: 2.94); that gap is the floor a perfect sampler's FID is read against.
    """
    null_mean, null_std = null_spread(network, torch.cat([train, test]), (len(test), len(train)))
    test_features, train_features = network.features(test), network.features(train)
    held_out = frechet_distance(test_features, train_features)
    noise = frechet_distance(test_features, network.features(torch.rand(test.shape, generator=torch.Generator()
                                                                      .manual_seed(4))))
    direction = torch.randn(test.shape, generator=torch.Generator().manual_seed(5))
    levels = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8)
    fids = [frechet_distance(train_features, network.features((test + level * direction).clamp(0, 1)))
            for level in levels]
    assert all(a < b for a, b in zip(fids, fids[1:])), dict(zip(levels, fids))
    assert held_out < noise / 10, (held_out, noise)
    assert fids[levels.index(0.2)] > null_mean + 5 * null_std, (fids, null_mean, null_std)  # 0.2 is detected
    return {"held_out": held_out, "noise": noise, "levels": dict(zip(levels, fids))}


def test_fid_on_digits_measures_what_it_claims(digits):
    splits, network, info, _ = digits
    assert info.test_accuracy > 0.95, info
    print(check_fid_measures_what_it_claims(network, splits["train"][0], splits["test"][0]))


@pytest.mark.slow  # a long end-to-end run: in `pytest -m slow` (and .ci/run)
def test_the_feature_network_is_seeded_cached_and_named(digits):
    splits, network, info, directory = digits
    path = feature_network_path("digits", 0, directory)
    assert path.is_file() and path.name == "digits-cnn-v2-seed0.pt"
    loaded, loaded_info = load_feature_network("digits", 0, directory)
    assert loaded_info == info and info.name.startswith("FID-DIGITS (cnn-v2, seed 0, test accuracy ")
    torch.testing.assert_close(loaded.features(splits["test"][0]), network.features(splits["test"][0]))
    again, _ = train_feature_network("digits", *splits["train"], *splits["test"], splits["shape"], epochs=10,
                                     directory=directory / "again")
    for (name, a), (_, b) in zip(network.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name  # the same seed, the same network
    scores = sample_quality(splits["test"][0], splits["train"][0][:300], network, info)
    assert scores["feature_network"] == info.name and scores["n_generated"] == 300
    assert 0 <= scores["precision"] <= 1 and 0 <= scores["recall"] <= 1 and scores["fid"] >= 0


def test_a_missing_feature_network_names_the_command_that_trains_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"blackbox-vae train-classifier --data mnist --data-dir DIR"):
        load_feature_network("mnist", directory=tmp_path)


def test_feature_network_info_is_plain_data():
    info = FeatureNetworkInfo("mnist", (28, 28), 0, 4, 0.9899)
    assert info.name == "FID-MNIST (cnn-v2, seed 0, test accuracy 99.0%)"


@pytest.mark.slow
@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason="needs the shared MNIST files")
def test_fid_mnist_classifies_at_least_98_percent_and_measures_what_it_claims(tmp_path):
    """The network `blackbox-vae train-classifier --data mnist` trains (the default recipe), in a fresh cache."""
    splits = labelled_images("mnist", MNIST_DIR)
    network, info = train_feature_network("mnist", *splits["train"], *splits["test"], splits["shape"],
                                          directory=tmp_path)
    assert info.test_accuracy >= 0.98, info
    check_fid_measures_what_it_claims(network, splits["train"][0][:10000], splits["test"][0])
