"""The reproduction experiments: models, estimators, budgets, and the published figures beside them.

Each experiment is a model on a data set and a list of runs (an estimator at one K). A budget fixes the
optimization and the evaluation protocol for every run of an experiment, so that estimators are compared on
equal terms. ``reduced`` is the CPU budget; ``full`` the published protocol's length, for a GPU.
"""

from __future__ import annotations

import re

from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class Budget:
    steps: int
    batch_size: int
    lr: float
    eval_every: int  # steps between validation bounds (the learning curves)
    eval_k: int  # samples of the validation bound
    eval_size: Optional[int]  # validation rows (None: all 10,000)
    test_k: int  # samples of the final test bound (`blackbox-vae evaluate --k`)
    test_limit: Optional[int]  # test rows, a fixed random subset (None: all 10,000)
    headline_test_k: Optional[int] = None  # also evaluate the headline runs with this K


BUDGETS = {
    # Every run sees 3,000 x 24 = 72,000 examples (1.4 epochs of the 50,000 training images).
    "reduced": Budget(steps=3000, batch_size=24, lr=1e-3, eval_every=500, eval_k=100, eval_size=1000,
                      test_k=1000, test_limit=1000, headline_test_k=5000),
    # Ten times the reduced budget (14 epochs), for the headline runs: how the gap to the papers closes.
    "extended": Budget(steps=30_000, batch_size=24, lr=1e-3, eval_every=3000, eval_k=100, eval_size=1000,
                       test_k=1000, test_limit=1000, headline_test_k=5000),
    # A few steps of everything: checks that the pipeline runs end to end.
    "smoke": Budget(steps=20, batch_size=24, lr=1e-3, eval_every=10, eval_k=10, eval_size=100, test_k=10,
                    test_limit=50, headline_test_k=20),
    # The papers' length: hundreds of epochs. For a GPU.
    "full": Budget(steps=300_000, batch_size=24, lr=3e-4, eval_every=10_000, eval_k=1000, eval_size=None,
                   test_k=5000, test_limit=None),
}


@dataclass(frozen=True)
class Run:
    label: str  # estimator, as in the tables
    flags: tuple[str, ...]  # blackbox-vae train flags selecting the estimator
    n_samples: int
    published: Optional[float] = None  # test log-likelihood in the paper, nats
    source: str = ""  # where the published figure comes from
    headline: bool = False  # evaluated also with the budget's headline_test_k

    @property
    def name(self) -> str:
        """A file-name-safe id, e.g. ``vimco-k5``, ``score-function-mean-baseline-k50``."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.label.lower()).strip("-")
        return f"{slug}-k{self.n_samples}"


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    model_flags: tuple[str, ...]
    data_flags: tuple[str, ...]
    runs: tuple[Run, ...] = field(default_factory=tuple)


STATIC = ("--data", "binarized-mnist", "--data-dir", "{data}/binarized_mnist")
DYNAMIC = ("--data", "mnist", "--data-dir", "{data}/mnist", "--binarization", "dynamic")

# Discrete-latent estimators, each at the K it applies to.
_SBN_ESTIMATORS = (
    ("score function", ("--loss", "score-function"), (1, 5, 50)),
    ("score function, mean baseline", ("--loss", "score-function", "--baseline", "mean"), (1, 5, 50)),
    ("score function, leave-one-out", ("--loss", "score-function", "--baseline", "leave-one-out"), (5, 50)),
    ("NVIL", ("--loss", "nvil"), (1, 5, 50)),
    ("VIMCO", ("--loss", "vimco"), (5, 50)),
    ("RWS (wake)", ("--loss", "rws", "--phi-update", "wake"), (5, 50)),
    ("RWS (wake-sleep)", ("--loss", "rws", "--phi-update", "wake-sleep"), (5, 50)),
    ("Gumbel-softmax", ("--loss", "gumbel-softmax", "--temperature", "anneal"), (1, 5, 50)),
    ("Gumbel-softmax, straight-through", ("--loss", "gumbel-softmax", "--temperature", "anneal",
                                          "--straight-through", "true"), (1, 5, 50)),
    # K counts evaluations of p, a multiple of 2 x layers: 6 and 48 serve one and three layers alike
    ("ARM", ("--loss", "arm"), (6, 48)),
    ("DisARM", ("--loss", "disarm"), (6, 48)),
)


# One stochastic layer only. REBAR's and RELAX's K counts samples, each costing three evaluations of p (b, z
# and z~): 2 and 16 make 6 and 48 evaluations, as ARM's and DisARM's K. The unordered set's K distinct
# samples are K evaluations, as VIMCO's.
_ONE_LAYER_ESTIMATORS = (
    ("REBAR", ("--loss", "rebar"), (2, 16)),
    ("RELAX", ("--loss", "relax"), (2, 16)),
    ("unordered set", ("--loss", "unordered-set"), (5, 50)),
)


def _sbn_runs(published: dict[tuple[str, int], tuple[float, str]], headline: tuple[str, int] | None = None,
              extra: tuple = ()):
    return tuple(
        Run(label, flags, k, *published.get((label, k), (None, "")), headline=(label, k) == headline)
        for label, flags, ks in (*_SBN_ESTIMATORS, *extra) for k in ks
    )


VIMCO_PAPER = ("Mnih & Rezende (2016), SBN 200-200-200, VIMCO K=5 (figure as quoted by the reproduction brief; "
               "the paper's table was not available to check here)")
IWAE_STATIC = "Burda et al. (2016), Appendix D, Table 3 (fixed binarization of Larochelle, 50,000 training images)"
IWAE_PAPER = "Burda et al. (2016), Table 1 (binarized by sampling, Salakhutdinov & Murray 2008)"

EXPERIMENTS = {
    experiment.name: experiment
    for experiment in (
        Experiment(
            "sbn-200", "Sigmoid belief network, one stochastic layer of 200 (static binarization)",
            ("--model", "sbn", "--layers", "200"), STATIC,
            _sbn_runs({}, headline=("VIMCO", 5), extra=_ONE_LAYER_ESTIMATORS),
        ),
        Experiment(
            "sbn-200-200-200", "Sigmoid belief network, three stochastic layers of 200 (static binarization)",
            ("--model", "sbn", "--layers", "200,200,200"), STATIC,
            _sbn_runs({("VIMCO", 5): (-93.6, VIMCO_PAPER)}, headline=("VIMCO", 5)),
        ),
        Experiment(
            "gaussian-50", "Gaussian latents, one stochastic layer of 50, 200-200 tanh MLPs (static binarization)",
            ("--model", "gaussian", "--layers", "50", "--hidden", "200,200"), STATIC,
            (
                Run("VAE (ELBO)", ("--loss", "elbo"), 1, -88.71, IWAE_STATIC),
                Run("VAE (ELBO)", ("--loss", "elbo"), 5, -88.83, IWAE_STATIC),
                Run("IWAE", ("--loss", "iwae"), 5, -87.63, IWAE_STATIC, headline=True),
                Run("IWAE", ("--loss", "iwae"), 50, -87.10, IWAE_STATIC, headline=True),
                Run("IWAE, DReG", ("--loss", "iwae", "--gradient", "dreg"), 5),
                Run("IWAE, DReG", ("--loss", "iwae", "--gradient", "dreg"), 50),
            ),
        ),
        Experiment(
            "gaussian-50-dynamic", "Gaussian latents, one stochastic layer of 50 (dynamic binarization of MNIST)",
            ("--model", "gaussian", "--layers", "50", "--hidden", "200,200"), DYNAMIC,
            (
                Run("VAE (ELBO)", ("--loss", "elbo"), 1, -86.76, IWAE_PAPER),
                Run("IWAE", ("--loss", "iwae"), 50, -84.78, IWAE_PAPER),
            ),
        ),
    )
}
