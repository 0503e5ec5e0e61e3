"""The same models three ways: blackbox_vae, Pyro, and hand-written PyTorch. Median time per gradient step.

Run:
    python benchmarks/pyro_comparison.py [--device cuda] [--compile] [--repeats 30] [--quick] [--only GROUP]
        [--out benchmarks/results/pyro_comparison]

Models (batch 64, binary data):
- SBN 784-200 and the small 100-20 model: score function (ours ScoreFunctionLoss without baseline vs
  Pyro TraceGraph_ELBO vs hand-written REINFORCE) and RWS (ours RWSLoss wake-phi vs Pyro
  ReweightedWakeSleep(insomnia=1) vs hand-written), with ours on DeepSBNInfNet/DeepSBNGenModel.
- the same 784-200 (and 100-20) architecture with Gaussian latents: reparameterized ELBO (ours ELBOLoss vs
  Pyro Trace_ELBO vs hand-written) and the importance-weighted bound (ours IWAELoss vs Pyro
  RenyiELBO(alpha=0) vs hand-written), ours on GaussianMLPInfNet/GaussianMLPGenModel.
- VIMCO (which Pyro lacks): ours (O(K) leave-one-out) vs a hand-written VIMCO with the usual K x K
  leave-one-out matrix, K in {2, 10, 50, 200, 1000}.
- ``--only user --batch-size 32 --out benchmarks/results/user_models``: RWS and VIMCO at K = 10 on SBNs
  written the way users write them (only forward/sample/log_prob; `user_style_models.py`), with validation
  on, against the same arithmetic by hand: the library's own cost per step.

All Pyro ELBOs vectorize particles (``vectorize_particles=True``); validation is off in all three
(``pyro.enable_validation(False)``, ``validate=False``, ``validate_args=False``). Each cell is the median
of ``--repeats`` steps (forward and backward), the implementations interleaved step by step after
warm-up, in one process. The whole-step columns add the optimizer: ours with the Trainer's (fused Adam), the
hand-written step with the default ``torch.optim.Adam``, as a user writes it. "Pyro / ours before" is the ratio of
the results file this run replaces. Results go to ``--out`` as Markdown and JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyro
import pyro.distributions as pdist
import torch
from pyro.infer import ReweightedWakeSleep, RenyiELBO, Trace_ELBO, TraceGraph_ELBO
from pyro.nn import PyroModule
from torch.profiler import ProfilerActivity, profile
from torch.nn.functional import binary_cross_entropy_with_logits, softplus

from blackbox_vae import ELBOLoss, IWAELoss, RWSLoss, ScoreFunctionLoss, VIMCOLoss
from blackbox_vae.models import DeepSBNGenModel, DeepSBNInfNet, GaussianMLPGenModel, GaussianMLPInfNet
from blackbox_vae.trainer import default_optimizer

sys.path.insert(0, str(Path(__file__).resolve().parent))  # user_style_models.py, beside this file


def bce_log_prob(logits, value):
    logits, value = torch.broadcast_tensors(logits, value)
    return -binary_cross_entropy_with_logits(logits, value, reduction="none").sum(-1)


# ----------------------------------------------------------------------------------------- Pyro programs
class SBNGuide(PyroModule):
    """q(z_1|x) q(z_2|z_1) ... with the networks of a DeepSBNInfNet; one site per stochastic layer."""

    def __init__(self, q: DeepSBNInfNet):
        super().__init__()
        self.q_layers = q.conditionals

    def forward(self, x):
        below = x
        with pyro.plate("data", x.shape[0]):
            for index, layer in enumerate(self.q_layers):
                below = pyro.sample(f"z{index + 1}", pdist.Bernoulli(logits=layer(below), validate_args=False)
                                    .to_event(1))


class SBNModel(PyroModule):
    """p(z_L) p(z_{L-1}|z_L) ... p(x|z_1) with the networks of a DeepSBNGenModel."""

    def __init__(self, p: DeepSBNGenModel):
        super().__init__()
        self.p_prior, self.p_layers = p.prior_logits, p.conditionals

    def forward(self, x):
        n_layers = len(self.p_layers)
        with pyro.plate("data", x.shape[0]):
            above = pyro.sample(f"z{n_layers}", pdist.Bernoulli(logits=self.p_prior, validate_args=False)
                                .expand([x.shape[0], self.p_prior.shape[0]]).to_event(1))
            for index in reversed(range(1, n_layers)):
                above = pyro.sample(f"z{index}", pdist.Bernoulli(logits=self.p_layers[index](above),
                                                                 validate_args=False).to_event(1))
            pyro.sample("x", pdist.Bernoulli(logits=self.p_layers[0](above), validate_args=False).to_event(1),
                        obs=x)


class GaussianGuide(PyroModule):
    def __init__(self, q: GaussianMLPInfNet):
        super().__init__()
        self.q_net = q.encoder

    def forward(self, x):
        loc, raw = self.q_net(x).chunk(2, -1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", pdist.Normal(loc, softplus(raw) + 1e-4, validate_args=False).to_event(1))


class GaussianModel(PyroModule):
    def __init__(self, p: GaussianMLPGenModel):
        super().__init__()
        self.p_net = p.decoder
        self.latent_dim = p.latent_dim

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            zeros = x.new_zeros(self.latent_dim)
            z = pyro.sample("z", pdist.Normal(zeros, 1.0, validate_args=False).to_event(1))
            pyro.sample("x", pdist.Bernoulli(logits=self.p_net(z), validate_args=False).to_event(1), obs=x)


def pyro_step(elbo, model, guide):
    return lambda x: elbo.loss_and_grads(model, guide, x)


# ---------------------------------------------------------------------------------- hand-written steps
def hand_sbn(q: DeepSBNInfNet, p: DeepSBNGenModel, k: int, estimator: str):
    encoders, decoders, prior = list(q.conditionals), list(p.conditionals), p.prior_logits

    def step(x):
        logits_q = encoders[0](x).unsqueeze(1)  # [B, 1, H]
        z = torch.bernoulli(torch.sigmoid(logits_q.detach()).expand(-1, k, -1))  # [B, K, H]
        log_q = bce_log_prob(logits_q, z)  # [B, K]
        log_p = bce_log_prob(decoders[0](z), x.unsqueeze(1))  # [B, K]
        for encoder, decoder in zip(encoders[1:], decoders[1:]):  # the layers above, if any
            logits_q = encoder(z)
            z_above = torch.bernoulli(torch.sigmoid(logits_q.detach()))
            log_q = log_q + bce_log_prob(logits_q, z_above)
            log_p = log_p + bce_log_prob(decoder(z_above), z)
            z = z_above
        log_p = log_p + bce_log_prob(prior, z)
        log_w = (log_p - log_q).detach()
        if estimator == "score function":
            surrogate = log_p + log_w * log_q
            (-surrogate.mean()).backward()
        else:  # rws, wake-phi
            weights = torch.softmax(log_w, dim=1)
            (-(weights * (log_p + log_q)).sum(1).mean()).backward()
    return step


def hand_vimco_quadratic(q: DeepSBNInfNet, p: DeepSBNGenModel, k: int):
    """The usual hand-written VIMCO: the leave-one-out bounds from a K x K masked matrix (O(K^2))."""
    encoder, decoder, prior = q.conditionals[0], p.conditionals[0], p.prior_logits
    mask = None

    def step(x):
        nonlocal mask
        logits_q = encoder(x).unsqueeze(1)
        z = torch.bernoulli(torch.sigmoid(logits_q.detach()).expand(-1, k, -1))
        log_q = bce_log_prob(logits_q, z)
        log_p = bce_log_prob(prior, z) + bce_log_prob(decoder(z), x.unsqueeze(1))
        log_w = log_p - log_q
        bound = torch.logsumexp(log_w, 1) - math.log(k)
        w = log_w.detach()
        if mask is None or mask.device != w.device:
            mask = torch.eye(k, dtype=torch.bool, device=w.device)
        geometric = (w.sum(1, keepdim=True) - w) / (k - 1)  # [B, K]
        replaced = w.unsqueeze(1).expand(-1, k, -1).masked_scatter(
            mask.expand(w.shape[0], -1, -1), geometric)  # [B, K, K]: row k has w_k replaced
        without = torch.logsumexp(replaced, 2) - math.log(k)
        (-(bound + ((bound.detach().unsqueeze(1) - without) * log_q).sum(1)).mean()).backward()
    return step


def hand_gaussian(q: GaussianMLPInfNet, p: GaussianMLPGenModel, k: int, estimator: str):
    encoder, decoder = q.encoder, p.decoder
    log_2pi = math.log(2 * math.pi)

    def step(x):
        loc, raw = encoder(x).chunk(2, -1)
        scale = softplus(raw) + 1e-4  # [B, H]
        eps = torch.randn(x.shape[0], k, loc.shape[-1], device=x.device)
        z = loc.unsqueeze(1) + scale.unsqueeze(1) * eps  # [B, K, H]
        log_q = (-0.5 * eps.pow(2) - scale.log().unsqueeze(1) - 0.5 * log_2pi).sum(-1)
        log_p = (-0.5 * z.pow(2) - 0.5 * log_2pi).sum(-1) + bce_log_prob(decoder(z), x.unsqueeze(1))
        log_w = log_p - log_q
        objective = log_w.mean(1) if estimator == "elbo" else torch.logsumexp(log_w, 1) - math.log(k)
        (-objective.mean()).backward()
    return step


def ours_step(loss):
    return lambda x: loss(x).backward()


def with_whole_steps(steps: dict, params) -> dict:
    """Adds the whole steps, optimizer included: ours with the Trainer's optimizer (`default_optimizer`: fused Adam)
    as "ours + Adam", the hand-written one with the default ``torch.optim.Adam`` as "hand + Adam" (the
    gradients are cleared before every timed step, as ``zero_grad(set_to_none=True)`` does)."""
    def whole(step, optimizer):
        def run(x):
            step(x)
            optimizer.step()
        return run
    return {**steps, "ours + Adam": whole(steps["ours"], default_optimizer(params, 1e-3)),
            "hand + Adam": whole(steps["hand"], torch.optim.Adam(params, lr=1e-3))}


def with_compiled(steps: dict, loss, compile_step: bool) -> dict:
    """Adds ``torch.compile(loss)``'s step as "compiled" (fresh compiler caches per cell: no recompile limits)."""
    if not compile_step:
        return steps
    torch.compiler.reset()
    return {**steps, "compiled": ours_step(torch.compile(loss))}


# ------------------------------------------------------------------------------------------- timing
def time_interleaved(steps: dict, data, params, repeats: int, device) -> dict:
    def one(step):
        for parameter in params:
            parameter.grad = None
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step(data)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for step in steps.values():
        for _ in range(3):
            one(step)
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            times[name].append(one(step))
    result = {name: statistics.median(t) for name, t in times.items()}
    for name, step in steps.items():
        result[f"{name} peak MiB"] = peak_memory_mib(lambda: one(step), device)
    return result


def peak_memory_mib(run, device) -> float:
    """Peak memory allocated by one step above what was allocated before it, in MiB.

    CUDA: the caching allocator's peak statistic. CPU: torch has no such statistic, so the profiler
    records every allocation and free of the step and the peak of the running total is taken.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run()
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    with tempfile.TemporaryDirectory() as folder:
        trace = Path(folder) / "trace.json"
        prof.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text())["traceEvents"]
    # Replay the step's allocations and frees in order; frees of blocks allocated before the step do not count.
    live, current, peak = {}, 0, 0
    for event in sorted((e for e in events if e.get("name") == "[memory]"), key=lambda e: e["ts"]):
        address, size = event["args"]["Addr"], event["args"]["Bytes"]
        if size > 0:
            live[address] = size
            current += size
            peak = max(peak, current)
        elif address in live:
            current -= live.pop(address)
    return peak / 2**20


def sbn_cells(data_dim, layers, ks, batch, repeats, device, compile_step):
    rows = []
    x = torch.bernoulli(torch.full((batch, data_dim), 0.13, device=device))
    for k in ks:
        torch.manual_seed(0)
        q, p = DeepSBNInfNet(data_dim, layers).to(device), DeepSBNGenModel(data_dim, layers).to(device)
        guide, model = SBNGuide(q), SBNModel(p)
        params = list(q.parameters()) + list(p.parameters())
        pairs = {
            "score function vs TraceGraph_ELBO": (
                ScoreFunctionLoss(q, p, k, validate=False),
                TraceGraph_ELBO(num_particles=k, vectorize_particles=True, max_plate_nesting=1),
                hand_sbn(q, p, k, "score function")),
            "RWS vs ReweightedWakeSleep": (
                RWSLoss(q, p, max(k, 2), phi_update="wake", validate=False),
                ReweightedWakeSleep(num_particles=max(k, 2), insomnia=1.0, vectorize_particles=True,
                                    max_plate_nesting=1),
                hand_sbn(q, p, max(k, 2), "rws")),
        }
        for pair, (ours, elbo, hand) in pairs.items():
            kk = ours.n_samples
            steps = with_whole_steps({"ours": ours_step(ours), "pyro": pyro_step(elbo, model, guide), "hand": hand},
                                     params)
            result = time_interleaved(with_compiled(steps, ours, compile_step), x, params, repeats, device)
            rows.append({"model": "SBN " + "-".join(map(str, [data_dim, *layers])), "pair": pair, "K": kk, **result})
    return rows


def gaussian_cells(data_dim, latent_dim, ks, batch, repeats, device, compile_step):
    rows = []
    x = torch.bernoulli(torch.full((batch, data_dim), 0.13, device=device))
    for k in ks:
        torch.manual_seed(0)
        q = GaussianMLPInfNet(data_dim, latent_dim, hidden=()).to(device)
        p = GaussianMLPGenModel(data_dim, latent_dim, hidden=(), likelihood="bernoulli").to(device)
        guide, model = GaussianGuide(q), GaussianModel(p)
        params = list(q.parameters()) + list(p.parameters())
        pairs = {
            "ELBO vs Trace_ELBO": (ELBOLoss(q, p, k, validate=False),
                                   Trace_ELBO(num_particles=k, vectorize_particles=True, max_plate_nesting=1),
                                   hand_gaussian(q, p, k, "elbo")),
            "IWAE vs RenyiELBO(alpha=0)": (IWAELoss(q, p, k, validate=False),
                                           RenyiELBO(alpha=0, num_particles=k, vectorize_particles=True,
                                                     max_plate_nesting=1),
                                           hand_gaussian(q, p, k, "iwae")),
        }
        for pair, (ours, elbo, hand) in pairs.items():
            steps = with_whole_steps({"ours": ours_step(ours), "pyro": pyro_step(elbo, model, guide), "hand": hand},
                                     params)
            result = time_interleaved(with_compiled(steps, ours, compile_step), x, params, repeats, device)
            rows.append({"model": f"Gaussian {data_dim}-{latent_dim}", "pair": pair, "K": k, **result})
    return rows


def vimco_cells(ks, batch, repeats, device, compile_step):
    rows = []
    x = torch.bernoulli(torch.full((batch, 784), 0.13, device=device))
    for k in ks:
        torch.manual_seed(0)
        q, p = DeepSBNInfNet(784, [200]).to(device), DeepSBNGenModel(784, [200]).to(device)
        params = list(q.parameters()) + list(p.parameters())
        ours = VIMCOLoss(q, p, k, validate=False)
        steps = with_compiled(with_whole_steps({"ours": ours_step(ours), "hand": hand_vimco_quadratic(q, p, k)},
                                               params), ours, compile_step)
        result = time_interleaved(steps, x, params, max(3, repeats // (1 + k // 100)), device)
        rows.append({"model": "SBN 784-200", "pair": "VIMCO vs hand-written (K x K)", "K": k, **result})
    return rows


def user_cells(layer_sets, k, batch, repeats, device, compile_step):
    """RWS (wake) and VIMCO on user-style models (only forward/sample/log_prob), validation on, against the same
    arithmetic by hand (`benchmarks/user_style_models.py`): the library's own cost on a user's model."""
    from user_style_models import UserSBNGenModel, UserSBNInfNet, hand_step

    rows = []
    x = torch.bernoulli(torch.full((batch, 784), 0.13, device=device))
    for layers in layer_sets:
        torch.manual_seed(0)
        q, p = UserSBNInfNet(784, layers).to(device), UserSBNGenModel(784, layers).to(device)
        params = list(q.parameters()) + list(p.parameters())
        for name, ours, estimator in (("RWS (wake), user-style models", RWSLoss(q, p, k, phi_update="wake"), "rws"),
                                      ("VIMCO, user-style models", VIMCOLoss(q, p, k), "vimco")):
            steps = with_compiled(with_whole_steps({"ours": ours_step(ours), "hand": hand_step(q, p, k, estimator)},
                                                   params), ours, compile_step)
            result = time_interleaved(steps, x, params, repeats, device)
            rows.append({"model": "SBN " + "-".join(map(str, [784, *layers])), "pair": name, "K": k, **result})
    return rows


def markdown(rows, before: dict | None = None) -> str:
    """The table; ``before``: the previous run's Pyro / ours per (model, pair, K), shown beside this run's."""
    compiled = any("compiled" in row for row in rows)
    columns = ["model", "estimators (ours vs Pyro)", "K", "ours ms", "Pyro ms", "hand-written ms"]
    columns += ["compiled ms"] if compiled else []
    columns += ["Pyro / ours"] + (["Pyro / ours before"] if before else []) + ["ours / hand"]
    columns += ["compiled / hand"] if compiled else []
    columns += ["ours + Adam ms", "hand + default Adam ms", "hand + default Adam / ours + Adam"]
    columns += ["peak MiB ours / Pyro / hand"]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]

    def ms(row, name):
        return f"{row[name] * 1e3:.3f}" if name in row else "—"

    for row in rows:
        cells = [row["model"], row["pair"], str(row["K"]), ms(row, "ours"), ms(row, "pyro"), ms(row, "hand")]
        cells += [ms(row, "compiled")] if compiled else []
        cells += [f"{row['pyro'] / row['ours']:.2f}x" if "pyro" in row else "—"]
        if before:
            old = before.get((row["model"], row["pair"], row["K"]))
            cells += [f"{old:.2f}x" if old else "—"]
        cells += [f"{row['ours'] / row['hand']:.3f}"]
        cells += [f"{row['compiled'] / row['hand']:.3f}" if "compiled" in row else "—"] if compiled else []
        cells += [ms(row, "ours + Adam"), ms(row, "hand + Adam"),
                  f"{row['hand + Adam'] / row['ours + Adam']:.3f}" if "hand + Adam" in row else "—"]
        cells += [" / ".join(f"{row[f'{name} peak MiB']:.1f}" if f"{name} peak MiB" in row else "—"
                             for name in ("ours", "pyro", "hand"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="fewer cells (K in {1, 5}; VIMCO K up to 200)")
    parser.add_argument("--only", choices=("sbn", "gaussian", "small", "vimco", "user"), help="one group of cells "
                        "(user: user-style models at batch 32, K = 10, validation on; not in the default run)")
    parser.add_argument("--ks", type=int, nargs="+", help="K values of the 784-dimensional models (default 1 5 50)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(loss) (column 'compiled')")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/pyro_comparison"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    pyro.enable_validation(False)
    torch.distributions.Distribution.set_default_validate_args(False)
    ks = tuple(args.ks) if args.ks else (1, 5) if args.quick else (1, 5, 50)
    common = dict(batch=args.batch_size, repeats=args.repeats, device=device, compile_step=args.compile)
    rows = []
    if args.only in (None, "sbn"):
        rows += sbn_cells(784, [200], ks, **common)
        rows += sbn_cells(784, [200, 200, 200], ks, **common)
    if args.only in (None, "gaussian"):
        rows += gaussian_cells(784, 200, ks, **common)
    if args.only in (None, "small"):
        rows += sbn_cells(100, [20], (2, 5), **common)
        rows += gaussian_cells(100, 20, (2, 5), **common)
    if args.only in (None, "vimco"):
        rows += vimco_cells((2, 10, 50, 200) if args.quick else (2, 10, 50, 200, 1000), **common)
    if args.only == "user":  # its own table (--out benchmarks/results/user_models): other batch, K and validation
        rows += user_cells(([200], [200, 200], [200, 200, 200]), 10, **common)
    machine = (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, device {device}"
               + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    setup = (f"torch {torch.__version__}, pyro {pyro.__version__}, {machine}; batch {args.batch_size}; "
             f"median of {args.repeats} interleaved steps")
    before = None
    if args.out.with_suffix(".json").exists():  # the previous run's ratios, for the "before" column
        previous = json.loads(args.out.with_suffix(".json").read_text())["rows"]
        before = {(row["model"], row["pair"], row["K"]): row["pyro"] / row["ours"] for row in previous if "pyro" in row}
    text = f"{setup}\n\n{markdown(rows, before)}\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps({"setup": setup, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
