"""Post-hoc samplers: generate from a trained model by sampling latents from a density fitted to its codes.

A trained VAE usually generates by decoding prior samples; when the aggregated posterior (the codes of the
training data) differs from the prior, many prior samples fall where the decoder was never trained. A
sampler here is fitted to the codes that the inference network gives the data, and samples from that
instead (as pythae's samplers do for its own models), for any InfNet/GenModel pair of this library,
continuous or discrete:

```python
sampler = GaussianMixtureSampler(gen_model, inf_net, n_components=10).fit(train_data)
images = sampler.sample(64, output_dir="samples/")  # [64, *data_shape], and PNGs
```

| sampler | codes | density |
| --- | --- | --- |
| `PriorSampler` | any | the model's prior (no fit) |
| `GaussianMixtureSampler` | real | a Gaussian mixture (scikit-learn's EM) |
| `FlowSampler` | real | MAF or IAF (Pyro's autoregressive transforms), maximum likelihood |
| `TwoStageSampler` | real | a second Gaussian VAE (Dai & Wipf 2019) |
| `BernoulliMixtureSampler` | binary, one-hot | a mixture of independent Bernoulli/categorical variables (EM) |
| `AutoregressiveSampler` | binary, one-hot | a MADE over the code's variables (Pyro's AutoRegressiveNN) |
| `MarkovChainSampler` | any | the chain x -> z ~ q(z|x) -> x ~ p(x|z) (no fit) |
"""

from blackbox_vae.samplers.autoregressive import AutoregressiveSampler
from blackbox_vae.samplers.base import NotFittedError, Sampler
from blackbox_vae.samplers.categorical_mixture import BernoulliMixtureSampler
from blackbox_vae.samplers.codes import CodeLayout
from blackbox_vae.samplers.flow import FlowSampler
from blackbox_vae.samplers.gaussian_mixture import GaussianMixtureSampler
from blackbox_vae.samplers.markov_chain import MarkovChainSampler
from blackbox_vae.samplers.prior import PriorSampler
from blackbox_vae.samplers.two_stage import TwoStageSampler

__all__ = [
    "Sampler",
    "NotFittedError",
    "CodeLayout",
    "PriorSampler",
    "GaussianMixtureSampler",
    "FlowSampler",
    "TwoStageSampler",
    "BernoulliMixtureSampler",
    "AutoregressiveSampler",
    "MarkovChainSampler",
    "SAMPLERS",
    "SAMPLER_OPTIONS",
    "CHAINS",
    "build_sampler",
]

#: name (as the command line's ``--sampler``) -> class.
SAMPLERS = {
    "prior": PriorSampler,
    "gmm": GaussianMixtureSampler,
    "flow": FlowSampler,
    "two-stage": TwoStageSampler,
    "bernoulli-mixture": BernoulliMixtureSampler,
    "autoregressive": AutoregressiveSampler,
    "markov-chain": MarkovChainSampler,
}


#: The command line's ``--chain NAME`` -> the sampler it stands for, with ``--steps N`` its ``--chain-steps N``:
#: ``limiting`` draws from the limiting distribution of the chain x -> z ~ q(z|x) -> x ~ p(x|z).
CHAINS = {"limiting": "markov-chain"}


#: Command-line options of the samplers: option -> (the samplers that take it, their keyword argument).
#: ``codes``, ``decode`` and ``seed`` apply to every sampler.
SAMPLER_OPTIONS = {
    "components": (("gmm", "bernoulli-mixture"), "n_components"),
    "flow": (("flow",), "flow"),
    "chain_steps": (("markov-chain",), "n_steps"),
    "chain_start": (("markov-chain",), "start"),
    "fit_epochs": (("flow", "two-stage", "autoregressive"), "epochs"),
}


def build_sampler(name: str, gen_model, inf_net=None, **options) -> Sampler:
    """A sampler by its command-line ``name`` (`SAMPLERS`) for ``gen_model`` and ``inf_net``, with options by
    their command-line names (`SAMPLER_OPTIONS`).

    Raises:
        ValueError: for an unknown name, or an option the sampler does not take.
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; expected one of {', '.join(SAMPLERS)}.")
    keywords = {key: options.pop(key) for key in ("codes", "decode", "seed") if key in options}
    for option, value in options.items():
        if option not in SAMPLER_OPTIONS:
            raise ValueError(f"build_sampler: unknown option {option!r}; the options are codes, decode, seed and "
                             f"{', '.join(SAMPLER_OPTIONS)} (the classes, e.g. {SAMPLERS[name].__name__}, take "
                             "their own keyword arguments).")
        takers, keyword = SAMPLER_OPTIONS[option]
        if name not in takers:
            raise ValueError(f"--{option.replace('_', '-')} is an option of the {' and '.join(takers)} sampler"
                             f"{'s' if len(takers) > 1 else ''}, not of --sampler {name}.")
        keywords[keyword] = value
    return SAMPLERS[name](gen_model, inf_net, **keywords)
