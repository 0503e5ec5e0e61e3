"""A Gaussian mixture fitted to the codes (scikit-learn's GaussianMixture), sampled with torch."""

from __future__ import annotations

import warnings
from typing import Any, Literal, Optional

import torch
from torch import Tensor
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.progress import progress_bar
from blackbox_vae.samplers.base import Sampler, _positive_int

__all__ = ["GaussianMixtureSampler"]

CovarianceType = Literal["full", "diag", "tied", "spherical"]


class GaussianMixtureSampler(Sampler):
    """A mixture of ``n_components`` Gaussians fitted to the codes by EM (``sklearn.mixture.GaussianMixture``).

    The fitted weights, means and Cholesky factors of the covariances are kept in buffers, so sampling
    runs in torch on the models' device and the fitted sampler round-trips through ``state_dict()``.
    Works for any code; made for real-valued ones.

    Args:
        gen_model: as `Sampler`.
        inf_net: as `Sampler`.
        n_components: mixture components.
        covariance_type: ``"full"``, ``"diag"``, ``"tied"`` or ``"spherical"`` (as scikit-learn's).
        max_iter: EM iterations at most.
        **options: `Sampler`'s keyword arguments (``codes``, ``decode``, ``image_shape``, ``seed``).

    Raises:
        ValueError: for a non-positive ``n_components`` or an unknown ``covariance_type``.
    """

    code_kinds = ("real", "binary", "one-hot")
    density_settings = ("n_components", "covariance_type")

    def __init__(self, gen_model: GenModel, inf_net: Optional[InfNet] = None, n_components: int = 10,
                 covariance_type: CovarianceType = "full", max_iter: int = 200, **options: Any):
        super().__init__(gen_model, inf_net, **options)
        self.n_components = _positive_int(n_components, "n_components", type(self).__name__)
        if covariance_type not in ("full", "diag", "tied", "spherical"):
            raise ValueError(f"GaussianMixtureSampler: `covariance_type` must be 'full', 'diag', 'tied' or "
                             f"'spherical'; got {covariance_type!r}.")
        self.covariance_type, self.max_iter = covariance_type, _positive_int(max_iter, "max_iter", "GaussianMixtureSampler")
        self.register_buffer("weights", torch.empty(0))
        self.register_buffer("means", torch.empty(0))
        self.register_buffer("scale_tril", torch.empty(0))

    def _fit(self, codes: Tensor) -> None:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture  # scikit-learn is a dependency of the command line

        if codes.shape[0] < self.n_components:
            raise ValueError(f"GaussianMixtureSampler: {codes.shape[0]} codes cannot fit {self.n_components} "
                             "components; fit on more data or lower `n_components`.")
        # One EM iteration per call, warm-started from the last (scikit-learn carries the lower bound and
        # the convergence test across warm-started calls): the same fit as one call with max_iter, with a
        # progress bar over its iterations.
        mixture = GaussianMixture(self.n_components, covariance_type=self.covariance_type, max_iter=1,
                                  random_state=self.seed, reg_covar=1e-6, warm_start=True)
        array = codes.double().cpu().numpy()
        with progress_bar(self.max_iter, "GaussianMixtureSampler: EM", "iteration", self.progress) as bar, \
                warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # raised by every call of one iteration
            for _ in range(self.max_iter):
                mixture.fit(array)
                bar.update()
                bar.set_postfix_str(f"lower bound {mixture.lower_bound_:.4f}")
                if mixture.converged_:
                    break
        if not mixture.converged_:
            warnings.warn(f"GaussianMixtureSampler: EM did not converge in max_iter={self.max_iter} iterations; "
                          "raise `max_iter` for a better fit.", ConvergenceWarning, stacklevel=3)
        dimension = codes.shape[1]
        cholesky = torch.as_tensor(mixture.covariances_, dtype=torch.float64)
        cholesky = {"full": lambda c: torch.linalg.cholesky(c),
                    "tied": lambda c: torch.linalg.cholesky(c).expand(self.n_components, dimension, dimension),
                    "diag": lambda c: torch.diag_embed(c.sqrt()),
                    "spherical": lambda c: c.sqrt()[:, None, None] * torch.eye(dimension, dtype=torch.float64),
                    }[self.covariance_type](cholesky)
        like = dict(dtype=codes.dtype, device=codes.device)
        self.weights = torch.as_tensor(mixture.weights_).to(**like)
        self.means = torch.as_tensor(mixture.means_).to(**like)
        self.scale_tril = cholesky.contiguous().to(**like)

    def mixture(self) -> MixtureSameFamily:
        """The fitted mixture as a torch distribution over codes ``[D]``."""
        return MixtureSameFamily(Categorical(probs=self.weights),
                                 MultivariateNormal(self.means, scale_tril=self.scale_tril))

    def _sample_codes(self, n: int) -> Tensor:
        return self.mixture().sample((n,))

    def extra_repr(self) -> str:
        return f"n_components={self.n_components}, covariance_type={self.covariance_type!r}, {super().extra_repr()}"
