"""The example runs end to end, and both estimators actually train."""

import importlib.util
from pathlib import Path

import pytest
import torch

from blackbox_vae import ScoreFunctionLoss
from blackbox_vae.data import correlated_gaussian_2d
from blackbox_vae.models import SBNGenModel, SBNInfNet
from blackbox_vae.testing import bernoulli_configurations, exact_log_marginal

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gaussian_2d_example_trains_and_saves_a_png(tmp_path, capsys):
    out = tmp_path / "gaussian_2d.png"
    final_loss = load_example("gaussian_2d").main(["--steps", "300", "--out", str(out)])
    printed = capsys.readouterr().out
    assert out.stat().st_size > 10_000 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "final loss" in printed
    # The first steps' loss is the untrained model's; training must have brought it down.
    first = float(printed.split("step")[1].split()[-1])
    assert final_loss < first


def test_correlated_gaussian_2d_has_the_asked_correlation():
    data = correlated_gaussian_2d(50_000, correlation=-0.6, scales=(2.0, 1.0), mean=(1.0, -1.0), seed=3)
    assert data.shape == (50_000, 2) and data.dtype == torch.float32
    # Standard errors at n=50000: mean ~0.009, correlation ~0.003; 5 of them as bounds.
    torch.testing.assert_close(data.mean(0), torch.tensor([1.0, -1.0]), atol=0.045, rtol=0)
    assert abs(torch.corrcoef(data.T)[0, 1].item() + 0.6) < 0.015
    assert torch.equal(data, correlated_gaussian_2d(50_000, correlation=-0.6, scales=(2.0, 1.0),
                                                    mean=(1.0, -1.0), seed=3))
    with pytest.raises(ValueError, match=r"`correlation` must be in \(-1, 1\); got 1.0"):
        correlated_gaussian_2d(10, correlation=1.0)


@pytest.mark.parametrize("baseline", [None, "leave-one-out"])
def test_score_function_training_raises_the_exact_log_likelihood(baseline):
    """Train an SBN on data from another SBN; the exact (enumerated) log p(x) must improve."""
    torch.manual_seed(0)
    teacher = SBNGenModel(8, 4)
    with torch.no_grad():
        for p in teacher.parameters():
            p.mul_(3)
    data, _ = teacher.sample(512)
    inf_net, gen_model = SBNInfNet(8, 4), SBNGenModel(8, 4)
    configurations = bernoulli_configurations(4)
    before = exact_log_marginal(gen_model, data, configurations).mean().item()
    loss = ScoreFunctionLoss(inf_net, gen_model, n_samples=4, baseline=baseline)
    optimizer = torch.optim.Adam(loss.parameters(), lr=0.03)
    for _ in range(300):
        optimizer.zero_grad()
        loss(data[torch.randint(512, (64,))]).backward()
        optimizer.step()
    after = exact_log_marginal(gen_model, data, configurations).mean().item()
    best = exact_log_marginal(teacher, data, configurations).mean().item()  # about 1.4 nats above `before`
    # Most of the gap to the data-generating model must close (measured: 97% to 99%).
    assert after > before + 0.8 * (best - before), (before, after, best)


@pytest.mark.slow  # a long end-to-end run: in `pytest -m slow` (and .ci/run)
def test_estimators_compare_example_runs_every_estimator(tmp_path, capsys):
    out = tmp_path / "compare.png"
    results = load_example("estimators_compare").main([
        "--seconds", "0.3", "--n-evals", "2", "--eval-k", "5", "--n-valid", "50", "--variance-draws", "5",
        "--variance-warmup", "3", "--out", str(out)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.with_suffix(".json").exists()
    assert len(results) == 8
    for name, result in results.items():
        (first_seconds, _, _), (last_seconds, steps, bound) = result["curve"][0], result["curve"][-1]
        assert first_seconds == 0 and last_seconds >= 0.3 and steps > 0 and bound < 0, name
        assert result["inf_net_gradient_variance"] > 0
