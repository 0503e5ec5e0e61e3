"""The base of the post-hoc samplers: encode data to codes, fit a density to them, sample and decode."""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional, Sequence

import torch
from torch import Tensor, nn

from blackbox_vae.gen_model import GenModel
from blackbox_vae.inf_net import InfNet
from blackbox_vae.latents import Latents, map_latents
from blackbox_vae.progress import progress_bar
from blackbox_vae.samplers.codes import CodeLayout

__all__ = ["Sampler", "NotFittedError"]

CodeChoice = Literal["auto", "mean", "sample"]
DecodeChoice = Literal["mean", "sample"]


class NotFittedError(RuntimeError):
    """A sampler that models the codes of data was asked for samples before `Sampler.fit`."""


def _positive_int(value: object, name: str, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: `{name}` must be a positive integer; got {value!r}.")
    return value


def _masked_widths(hidden: Optional[Sequence[int]], inputs: int, smallest: int, owner: str) -> list[int]:
    """The hidden widths of a masked autoregressive network over ``inputs`` variables: ``hidden``, or by
    default two layers of ``max(smallest, 2 * inputs)`` units. Pyro's ``AutoRegressiveNN`` needs every
    hidden layer at least as wide as the input (narrower, some variables could not depend on all those
    before them), so a narrower ``hidden`` is refused here, naming the option and the code's size.
    """
    widths = [max(smallest, 2 * inputs)] * 2 if hidden is None else list(hidden)
    if min(widths) < inputs:
        raise ValueError(f"{owner}: every `hidden` width must be at least the number of code variables, "
                         f"{inputs}; got hidden={tuple(widths)}. Leave `hidden` unset for two layers of "
                         f"{max(smallest, 2 * inputs)}.")
    return widths


class Sampler(nn.Module, metaclass=abc.ABCMeta):
    """A post-hoc sampler of a trained model: draws latents from a density fitted to the data's codes.

    `fit` encodes data with the inference network (the posterior mean for continuous latents, a
    sample for discrete ones; ``codes`` chooses) and fits the sampler's density to those codes; `sample`
    draws codes from it and decodes them with the generative model (the mean of p(x|z), or a sample;
    ``decode`` chooses). Hierarchical latents (tuples and dicts of tensors) are modeled jointly: a data
    point's code is all its layers, flattened (`CodeLayout`), and decoded whole.

    A sampler is an ``nn.Module``: it moves with ``.to(device)``, and a fitted sampler round-trips through
    ``state_dict()`` (its fitted density and the codes' layout).

    Args:
        gen_model: the trained p(x, z); decodes latents with ``likelihood_mean`` (or ``sample_data``).
        inf_net: the trained q(z|x), to encode data (samplers that fit nothing do not need it).
        codes: ``"auto"`` (the posterior mean, `InfNet.mean`, for continuous latents; a sample for
            discrete ones), ``"mean"`` or ``"sample"``.
        decode: ``"mean"`` (E[x|z], the default) or ``"sample"`` (x ~ p(x|z)).
        image_shape: the shape of one image, for the PNGs of `sample` (default: a square image when the
            data size is a square number, as 784 = 28 x 28).
        seed: seeds the fitting (initializations, shuffles) so that a fit is reproducible.

    Raises:
        TypeError: for models of the wrong type.
        ValueError: for an unknown ``codes`` or ``decode``.
    """

    #: Whether `sample` needs `fit` first.
    needs_fit: ClassVar[bool] = True
    #: The kinds of code (`blackbox_vae.samplers.codes.code_kind`) the sampler's density can model.
    code_kinds: ClassVar[tuple[str, ...]] = ("real", "binary", "one-hot")
    #: The settings that shape the density sampled (saved in ``state_dict()``: a state loads only into a
    #: sampler of the same settings). How a fit searches (epochs, learning rate, seed) is not among them.
    density_settings: ClassVar[tuple[str, ...]] = ()

    def __init__(self, gen_model: GenModel, inf_net: Optional[InfNet] = None, *, codes: CodeChoice = "auto",
                 decode: DecodeChoice = "mean", image_shape: Optional[Sequence[int]] = None, seed: int = 0):
        super().__init__()
        name = type(self).__name__
        if not isinstance(gen_model, GenModel):
            raise TypeError(f"{name}: `gen_model` must be a GenModel (p(x, z)); got {type(gen_model).__name__}.")
        if inf_net is not None and not isinstance(inf_net, InfNet):
            raise TypeError(f"{name}: `inf_net` must be an InfNet (q(z|x)) or None; got {type(inf_net).__name__}.")
        if codes not in ("auto", "mean", "sample"):
            raise ValueError(f"{name}: `codes` must be 'auto', 'mean' or 'sample'; got {codes!r}.")
        if decode not in ("mean", "sample"):
            raise ValueError(f"{name}: `decode` must be 'mean' or 'sample'; got {decode!r}.")
        self.gen_model, self.inf_net = gen_model, inf_net
        self.codes, self.decode, self.seed = codes, decode, int(seed)
        self.image_shape = tuple(image_shape) if image_shape is not None else None
        self.layout: Optional[CodeLayout] = None
        self.progress: Optional[bool] = False  # of the current fit (see `fit`)
        self.data_shape: Optional[tuple[int, ...]] = None

    # ------------------------------------------------------------------------------ fitting
    def fit(self, data: Tensor, batch_size: int = 256, progress: Optional[bool] = False) -> "Sampler":
        """Encodes ``data`` and fits the sampler's density to the codes.

        Args:
            data: ``[N, *data_shape]`` on the models' device, N >= 1.
            batch_size: data points encoded at a time.
            progress: show the encoding's and the fit's progress (see `blackbox_vae.progress.progress_bar`;
                None: a bar on a terminal, plain lines every few seconds otherwise).

        Returns:
            ``self``.

        Raises:
            ValueError: for empty data, a non-positive ``batch_size``, or codes of a kind this sampler
                cannot model (e.g. real-valued codes for a mixture of Bernoullis).
        """
        name = type(self).__name__
        if not isinstance(data, Tensor) or data.dim() == 0 or data.shape[0] == 0:
            got = tuple(data.shape) if isinstance(data, Tensor) else type(data).__name__
            raise ValueError(f"{name}.fit: `data` must be a tensor [N, *data_shape] with N >= 1; got {got}.")
        _positive_int(batch_size, "batch_size", f"{name}.fit")
        self.data_shape = tuple(data.shape[1:])
        self.progress = progress  # read by the fits' loops
        codes = self.encode(data, batch_size)
        unsupported = self.layout.kinds - set(self.code_kinds)
        if unsupported:
            raise ValueError(f"{name} models {' or '.join(self.code_kinds)} codes; the codes of "
                             f"{type(self.inf_net).__name__} are {', '.join(sorted(unsupported))}. "
                             f"{self._alternatives()}")
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(self.seed)
        try:
            self._fit(codes)
        finally:
            torch.random.set_rng_state(generator_state)
        return self

    def encode(self, data: Tensor, batch_size: int = 256) -> Tensor:
        """The codes of ``data``, ``[N, D]``; also records their `CodeLayout` in ``self.layout``.

        Raises:
            ValueError: without an inference network.
        """
        if self.inf_net is None:
            raise ValueError(f"{type(self).__name__}: encoding data needs `inf_net`; pass the trained InfNet.")
        chunks = []
        with torch.no_grad(), progress_bar(data.shape[0], f"{type(self).__name__}: encoding", "point",
                                           self.progress) as bar:
            for start in range(0, data.shape[0], batch_size):
                bar.update(min(batch_size, data.shape[0] - start))
                inf_net = self.inf_net(data[start:start + batch_size])
                latents = map_latents(lambda t: t[:, 0], inf_net.sample(1))  # [batch, ...]
                if self._use_mean(latents):
                    latents = inf_net.mean()
                if start == 0:
                    self.layout = CodeLayout.of(latents)
                chunks.append(self.layout.flatten(latents))
        return torch.cat(chunks)

    def _use_mean(self, sample: Latents) -> bool:
        if self.codes == "sample":
            return False
        if self.codes == "mean":
            return True
        return self.inf_net.has_mean and CodeLayout.of(sample).kinds == {"real"}

    @property
    def fitted(self) -> bool:
        """Whether `fit` has run (or a fitted state was loaded)."""
        return self.layout is not None

    @abc.abstractmethod
    def _fit(self, codes: Tensor) -> None:
        """Fits the density to codes ``[N, D]`` (``self.layout`` describes them)."""

    @abc.abstractmethod
    def _sample_codes(self, n: int) -> Tensor:
        """``n`` codes ``[n, D]`` from the fitted density."""

    def _alternatives(self) -> str:
        return ("For real-valued codes use GaussianMixtureSampler, FlowSampler or TwoStageSampler; for binary or "
                "one-hot codes, BernoulliMixtureSampler or AutoregressiveSampler.")

    # ----------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, num_samples: int = 1, batch_size: int = 500, output_dir: Optional[str | Path] = None,
               return_gen: bool = True, progress: Optional[bool] = False) -> Optional[Tensor]:
        """Draws ``num_samples`` latents and decodes them.

        Args:
            num_samples: how many, >= 1.
            batch_size: samples drawn and decoded at a time.
            progress: show the sampling's progress (as in `fit`).
            output_dir: if given, writes one PNG per sample (``00000.png``, ...) and ``grid.png`` there.
            return_gen: return the decoded samples (else None).

        Returns:
            ``[num_samples, *data_shape]``, or None.

        Raises:
            NotFittedError: if the sampler needs `fit` and has not been fitted.
            ValueError: for a non-positive ``num_samples`` or ``batch_size``.
        """
        name = type(self).__name__
        _positive_int(num_samples, "num_samples", f"{name}.sample")
        _positive_int(batch_size, "batch_size", f"{name}.sample")
        if self.needs_fit and not self.fitted:
            raise NotFittedError(f"{name} has not been fitted: call `{name}.fit(data)` (it encodes the data and fits "
                                 "the codes' density) before `sample`.")
        chunks = []
        with progress_bar(num_samples, f"{name}: sampling", "sample", progress) as bar:
            for start in range(0, num_samples, batch_size):
                chunks.append(self._decode(self.sample_latents(min(batch_size, num_samples - start))))
                bar.update(chunks[-1].shape[0])
        samples = torch.cat(chunks)
        if output_dir is not None:
            self._write_images(samples, Path(output_dir))
        return samples if return_gen else None

    def sample_latents(self, n: int) -> Latents:
        """``n`` latents (leading dimension ``[n]``) from the fitted density."""
        return self.layout.unflatten(self._sample_codes(n))

    def _decode(self, latents: Latents) -> Tensor:
        if self.decode == "sample":
            return self.gen_model.sample_data(latents)
        return self.gen_model.likelihood_mean(latents)

    def _write_images(self, samples: Tensor, directory: Path) -> None:
        from blackbox_vae.samplers.images import write_images

        write_images(samples, directory, self.image_shape)

    # -------------------------------------------------------------------- saving and restoring
    def settings(self) -> dict[str, Any]:
        """The sampler's class and the settings that shape its density (`density_settings`); how codes are
        decoded is not one (a fitted density may be decoded either way)."""
        values = {name: getattr(self, name) for name in self.density_settings}
        return {"sampler": type(self).__name__, **{k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}}

    def get_extra_state(self) -> dict[str, Any]:
        """The codes' layout, the data shape and the `settings` (the fitted density is in parameters and buffers)."""
        return {"layout": self.layout.to_dict() if self.layout is not None else None,
                "data_shape": list(self.data_shape) if self.data_shape is not None else None,
                "settings": self.settings()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restores what `get_extra_state` saved."""
        self.layout = CodeLayout.from_dict(state["layout"]) if state["layout"] is not None else None
        self.data_shape = tuple(state["data_shape"]) if state["data_shape"] is not None else None

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # A fitted density's parameters are sized by the codes (known at fit time): rebuild them from the
        # saved layout, and resize buffers to the saved ones, before the values are loaded.
        extra = state_dict.get(prefix + "_extra_state")
        if extra is not None and "settings" in extra:  # states saved before settings were recorded have none
            self._check_settings(extra["settings"])
        if extra is not None and extra.get("layout") is not None:
            self._build(CodeLayout.from_dict(extra["layout"]))
        for name, buffer in self._buffers.items():
            saved = state_dict.get(prefix + name)
            if buffer is not None and saved is not None and saved.shape != buffer.shape:
                self._buffers[name] = torch.empty_like(saved, device=buffer.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _check_settings(self, saved: dict[str, Any]) -> None:
        """Raises ValueError naming the first setting in which the saved state's sampler differs from this one."""
        current = self.settings()
        for name in {**saved, **current}:
            if saved.get(name) != current.get(name):
                raise ValueError(f"{type(self).__name__}.load_state_dict: the state is of a sampler with "
                                 f"{name}={saved.get(name)!r}; this one has {name}={current.get(name)!r}. Build the "
                                 f"sampler with the saved settings ({saved}) to load it.")

    def _build(self, layout: CodeLayout) -> None:
        """Creates the density's modules for codes of this layout (samplers with learned networks)."""

    def extra_repr(self) -> str:
        return f"codes={self.codes!r}, decode={self.decode!r}, fitted={self.fitted}"
