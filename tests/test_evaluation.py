"""log_likelihood_bound: the chunked importance-sampling evaluator."""

import torch

from blackbox_vae import log_likelihood_bound
from blackbox_vae.testing import bernoulli_configurations, exact_iwae_bound, exact_log_marginal
from exact_references import LATENT_DIM, binary_data, random_sbn


def test_matches_the_exact_k_sample_bound_across_chunks(device):
    inf_net, gen_model = random_sbn(device)
    points, _ = binary_data(device)
    configurations = bernoulli_configurations(LATENT_DIM, dtype=torch.float64, device=device)
    exact = exact_iwae_bound(inf_net, gen_model, points, configurations, 3)  # [3]
    replicas = 4000
    estimates = log_likelihood_bound(inf_net, gen_model, points.repeat(replicas, 1), n_samples=3, batch_size=999,
                                     sample_chunk=2).reshape(replicas, -1)  # [replicas, 3]
    standard_error = estimates.std(0) / replicas**0.5
    assert ((estimates.mean(0) - exact).abs() < 4.5 * standard_error).all()  # ~2e-5 false failures


def test_large_k_approaches_log_p():
    inf_net, gen_model = random_sbn("cpu")
    points, _ = binary_data("cpu")
    log_p = exact_log_marginal(gen_model, points, bernoulli_configurations(LATENT_DIM, dtype=torch.float64))
    k = 5000
    bound = log_likelihood_bound(inf_net, gen_model, points, n_samples=k, sample_chunk=1000)
    assert bound.shape == (3,) and not bound.requires_grad
    # Delta method for log of a mean of K weights with relative variance r = Var(w) / E[w]^2:
    # bias ~ r / (2K), standard error ~ sqrt(r / K).
    latents, log_q = inf_net(points).sample_and_log_prob(k)
    log_w = gen_model(points, latents).log_prob(points, latents) - log_q  # [3, K]
    weights = (log_w - log_w.max(1, keepdim=True).values).exp()
    r = weights.var(1) / weights.mean(1).pow(2)
    assert ((log_p - bound).abs() < r / (2 * k) + 4.5 * (r / k).sqrt()).all(), (log_p, bound, r)


def test_default_chunks_are_sized_for_the_cache_and_give_the_same_bound():
    """The default sample chunk keeps batch x chunk x data size near CHUNK_ELEMENTS; chunking changes only which
    random numbers are drawn, so the same seed through other chunks gives a bound within sampling error."""
    from unittest import mock

    from blackbox_vae.evaluation import CHUNK_ELEMENTS

    inf_net, gen_model = random_sbn("cpu")
    points, _ = binary_data("cpu")
    data = points.repeat(67, 1)  # [201, D]: two full chunks of 100 and one of 1
    sizes = []
    original = type(inf_net).sample_and_log_prob

    def recording(self, n_samples=1):
        sizes.append(n_samples)
        return original(self, n_samples)

    done = []
    with mock.patch.object(type(inf_net), "sample_and_log_prob", recording):
        log_likelihood_bound(inf_net, gen_model, data, n_samples=10, batch_size=100)  # fewer samples than a chunk
        assert sizes == [10] * 3
        chunk = CHUNK_ELEMENTS // (100 * data.shape[1])
        sizes.clear()
        automatic = log_likelihood_bound(inf_net, gen_model, data, n_samples=chunk + 7, batch_size=100,
                                         progress=done.append)
    assert sizes == [chunk, 7] * 3 and done == [100, 100, 1]
    fixed = log_likelihood_bound(inf_net, gen_model, data, n_samples=50, batch_size=1000, sample_chunk=50)
    small = log_likelihood_bound(inf_net, gen_model, data, n_samples=50, batch_size=7, sample_chunk=3)
    error = (fixed.var() / len(fixed) + small.var() / len(small)).sqrt()
    assert (fixed.mean() - small.mean()).abs() < 4.5 * error
    assert automatic.shape == (len(data),)


def test_rejects_bad_chunk_sizes():
    import pytest

    inf_net, gen_model = random_sbn("cpu")
    points, _ = binary_data("cpu")
    for name, value in (("batch_size", 0), ("sample_chunk", 2.5), ("sample_chunk", True)):
        with pytest.raises(ValueError, match=f"`{name}` must be a positive integer; got {value!r}"):
            log_likelihood_bound(inf_net, gen_model, points, n_samples=3, **{name: value})
