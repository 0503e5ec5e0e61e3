r"""NVAE's spectral regularization: the sum of the largest singular values of a network's weights.

NVAE (Vahdat & Kautz 2020, section 3.2) adds $\lambda \sum_i s^{(i)}$ to its loss, $s^{(i)}$ the largest
singular value of layer $i$'s weight viewed as a matrix ``[out_channels, -1]``, to keep the encoder's and the
decoder's Lipschitz constants (and so the KL terms of a deep hierarchy) in check. Each $s^{(i)}$ is estimated
by power iteration with persistent vectors (Miyato et al. 2018): per training step

$$
v \leftarrow \frac{W^\top u}{\lVert W^\top u \rVert}, \qquad u \leftarrow \frac{W v}{\lVert W v \rVert}, \qquad
\hat s = u^\top W v,
$$

with $u, v$ held fixed in the gradient, so $\partial \hat s / \partial W = u v^\top$, the gradient of the true
largest singular value once $u, v$ have converged to its singular vectors.

References:
    Vahdat & Kautz (2020). NVAE: a deep hierarchical variational autoencoder. NeurIPS.
    Miyato, Kataoka, Koyama & Yoshida (2018). Spectral normalization for generative adversarial networks. ICLR.
"""

from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SpectralRegularizer", "WATCHED_LAYERS"]

#: The layer types whose ``weight`` the regularizer watches.
WATCHED_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
_EPS = 1e-12  # as torch.nn.utils.spectral_norm: only guards an all-zero weight against 0 / 0


def _weight_matrix(layer: nn.Module) -> Tensor:
    """The layer's weight as NVAE views it: ``[out_channels, in_channels * kh * kw]`` (``[out, in]`` for Linear)."""
    weight = layer.weight
    if isinstance(layer, nn.ConvTranspose2d):
        weight = weight.transpose(0, 1)  # stored [in, out, kh, kw]: rows must be the output channels
    return weight.reshape(weight.shape[0], -1)


class SpectralRegularizer(nn.Module):
    """The sum of the largest singular values of every Conv2d, ConvTranspose2d and Linear weight of a module.

    Each weight keeps two buffers, named after it with ``'.'`` replaced by ``'__'`` (``"up.0.weight"`` gives
    ``up__0__weight_u`` ``[out]`` and ``up__0__weight_v`` ``[in * kh * kw]``), and the buffer ``initialized``
    says whether the first, longer, iteration has run: all are in the state_dict, so a resumed run continues the
    same iteration exactly. The buffers are made on each weight's device and in its dtype and follow ``.to()``;
    vectors on another device or dtype than their weight are converted for the computation. The watched
    module is not moved, saved or counted with the regularizer (it is no submodule of it).

    Args:
        module: the network whose layers to regularize (also its own layers, when it is one).
        n_power_iterations: power iterations per call to `forward`.
        init_iterations: power iterations of the first call, from the random initial vectors.

    Raises:
        TypeError: when ``module`` is not an ``nn.Module``.
        ValueError: when ``module`` has no watched layer, or an iteration count is not a positive integer.
    """

    def __init__(self, module: nn.Module, n_power_iterations: int = 1, init_iterations: int = 10):
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"SpectralRegularizer: `module` must be an nn.Module; got {type(module).__name__}.")
        for name, count in (("n_power_iterations", n_power_iterations), ("init_iterations", init_iterations)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ValueError(f"SpectralRegularizer: `{name}` must be a positive integer; got {count!r}.")
        self.n_power_iterations, self.init_iterations = n_power_iterations, init_iterations
        # A plain reference inside a list, not a submodule: as a submodule, the watched parameters would be the
        # regularizer's too (twice in an optimizer over both, twice in a checkpoint), and a model that holds its
        # own regularizer would form a cycle that state_dict() and .to() recurse around forever.
        self._watched = [module]
        self._layers: dict[str, str] = {}  # weight name -> the path of its layer in `module`
        seen = set()
        for path, layer in module.named_modules():
            if not isinstance(layer, WATCHED_LAYERS) or id(layer.weight) in seen:
                continue  # a weight shared by two layers is regularized once
            seen.add(id(layer.weight))
            name = f"{path}.weight" if path else "weight"
            matrix = _weight_matrix(layer).detach()  # [out, in]
            u, v = (F.normalize(torch.randn(n, dtype=matrix.dtype, device=matrix.device), dim=0, eps=_EPS)
                    for n in matrix.shape)
            key = name.replace(".", "__")
            self.register_buffer(f"{key}_u", u)
            self.register_buffer(f"{key}_v", v)
            self._layers[name] = path
        if not self._layers:
            raise ValueError(f"SpectralRegularizer: `module` ({type(module).__name__}) has no "
                             f"{', '.join(t.__name__ for t in WATCHED_LAYERS)} layer to regularize.")
        self.register_buffer("initialized", torch.tensor(False))

    @property
    def weight_names(self) -> list[str]:
        """The watched weights' names in the module (as in its ``named_parameters``), in order."""
        return list(self._layers)

    def _vectors(self, name: str) -> tuple[Tensor, Tensor]:
        key = name.replace(".", "__")
        return getattr(self, f"{key}_u"), getattr(self, f"{key}_v")

    def _matrices(self) -> dict[str, Tensor]:
        module = self._watched[0]
        return {name: _weight_matrix(module.get_submodule(path)) for name, path in self._layers.items()}

    def forward(self) -> Tensor:
        """Runs the power iterations (updating the buffers) and returns the sum of the estimates.

        The first call runs ``init_iterations``, later ones ``n_power_iterations``; the weights are batched by
        shape, as in NVAE. No gradient flows through u and v.

        Returns:
            ``[]``, sum over the weights of u^T W v, differentiable in the weights (gradient u v^T for each).
        """
        iterations = self.n_power_iterations if bool(self.initialized) else self.init_iterations
        matrices = self._matrices()
        groups: dict[tuple, list[str]] = defaultdict(list)
        for name, matrix in matrices.items():
            groups[(matrix.shape, matrix.dtype, matrix.device)].append(name)
        sigmas = []
        for names in groups.values():
            weights = torch.stack([matrices[name] for name in names])  # [G, out, in]
            with torch.no_grad():
                vectors = [self._vectors(name) for name in names]
                u = torch.stack([u for u, _ in vectors]).to(weights)  # [G, out]
                v = torch.stack([v for _, v in vectors]).to(weights)  # [G, in]
                for _ in range(iterations):
                    v = F.normalize(torch.einsum("go,goi->gi", u, weights), dim=-1, eps=_EPS)
                    u = F.normalize(torch.einsum("goi,gi->go", weights, v), dim=-1, eps=_EPS)
                for (u_buffer, v_buffer), u_new, v_new in zip(vectors, u, v):
                    u_buffer.copy_(u_new)
                    v_buffer.copy_(v_new)
            sigmas.append(torch.einsum("go,goi,gi->g", u, weights, v))  # [G]
        self.initialized.fill_(True)
        return torch.cat(sigmas).sum()

    @torch.no_grad()
    def estimates(self) -> dict[str, Tensor]:
        """The current estimate u^T W v of each weight's largest singular value, without updating u and v.

        Before the first `forward` the vectors are random, and so are these numbers.

        Returns:
            ``{weight name: [] detached tensor}``, in the order of `weight_names`.
        """
        estimates = {}
        for name, matrix in self._matrices().items():
            u, v = (vector.to(matrix) for vector in self._vectors(name))
            estimates[name] = u @ matrix @ v
        return estimates

    def extra_repr(self) -> str:
        return (f"{len(self._layers)} weights, n_power_iterations={self.n_power_iterations}, "
                f"init_iterations={self.init_iterations}")
