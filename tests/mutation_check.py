"""Mutation check: plant one bug at a time in a copy of the package and report which tests catch it.

Run:  python tests/mutation_check.py [--jobs 2] [--only NAME ...] [--list]

Each mutant is a textual edit of one source file (a dropped stop-gradient, a flipped sign, a wrong
normalizer, ...) together with the tests meant to catch it. For each, the package and the tests are
copied to a temporary directory, the edit is applied there, and pytest runs the named tests against the
copy; the mutant is caught when at least one of them fails. The report lists, per mutant, the tests
that failed. Exit status 1 if any mutant survives (or an edit no longer applies: the list must follow
the code, and tests/test_mutation_check.py checks that it does).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXACT = "tests/test_loss_registry.py::test_expected_gradient_is_exact"


@dataclass(frozen=True)
class Mutant:
    name: str  # what is broken
    path: str  # the file, relative to the repository root
    original: str  # text that occurs exactly once in it
    replacement: str
    tests: tuple[str, ...]  # pytest node ids or file paths, with an optional "-k" expression after " -k "


MUTANTS = [
    # ------------------------------------------------------------------ score function
    Mutant("score function: leave-one-out baseline includes the sample's own signal",
           "blackbox_vae/losses/score_function.py",
           "return (total - learning_signal) / (self.n_samples - 1)  # [batch, K]",
           "return total / self.n_samples  # [batch, K]",
           (f"{EXACT} -k score-function-loo",)),
    Mutant("score function: stop-gradient dropped from the learning signal",
           "blackbox_vae/losses/score_function.py",
           "learning_signal = (log_p - log_q).detach()  # [batch, K]",
           "learning_signal = (log_p - log_q)  # [batch, K]",
           (f"{EXACT} -k score-function",)),
    Mutant("score function: the running mean is updated before it is read",
           "blackbox_vae/losses/score_function.py",
           "        surrogate = log_p + advantage * log_q  # [batch, K]\n"
           "        self._update_average(learning_signal)  # after the baseline was read",
           "        self._update_average(learning_signal)\n"
           "        advantage = learning_signal - self._baseline(learning_signal)\n"
           "        surrogate = log_p + advantage * log_q  # [batch, K]",
           ("tests/test_loss_state.py -k read_before",)),
    # ------------------------------------------------------------------------- VIMCO
    Mutant("VIMCO: learning signal with a flipped sign",
           "blackbox_vae/losses/vimco.py",
           "surrogate = bound + (learning_signal * log_q).sum(dim=1)  # [batch]",
           "surrogate = bound - (learning_signal * log_q).sum(dim=1)  # [batch]",
           (f"{EXACT} -k vimco",)),
    Mutant("VIMCO: the geometric mean of the other weights divided by K instead of K - 1",
           "blackbox_vae/losses/_importance.py",
           "geometric_mean_others = (log_weights.sum(dim=1, keepdim=True) - log_weights) / (k - 1)  # [batch, K]: g_k",
           "geometric_mean_others = (log_weights.sum(dim=1, keepdim=True) - log_weights) / k  # [batch, K]: g_k",
           (f"{EXACT} -k vimco", "tests/test_relaxed_and_importance.py -k vimco")),
    Mutant("VIMCO: signals as a difference of two bounds of size |log w| (float32 precision lost at large K)",
           "blackbox_vae/losses/_importance.py",
           "    log_weights = log_weights - log_weights.max(dim=1, keepdim=True).values  # [batch, K], max 0\n"
           "    k = log_weights.shape[1]\n"
           "    others = log_sum_exp_others(log_weights)  # [batch, K]: A_k\n"
           "    geometric_mean_others = (log_weights.sum(dim=1, keepdim=True) - log_weights) / (k - 1)  # [batch, K]: g_k\n"
           "    return softplus(log_weights - others) - softplus(geometric_mean_others - others)",
           "    k = log_weights.shape[1]\n"
           "    others = log_sum_exp_others(log_weights)  # [batch, K]: A_k\n"
           "    geometric_mean_others = (log_weights.sum(dim=1, keepdim=True) - log_weights) / (k - 1)  # [batch, K]: g_k\n"
           "    return torch.logaddexp(others, log_weights) - torch.logaddexp(others, geometric_mean_others)",
           ("tests/test_relaxed_and_importance.py -k precision",)),
    # -------------------------------------------------------------------------- NVIL
    Mutant("NVIL: variance normalization by max(1, v) instead of max(1, sqrt(v))",
           "blackbox_vae/losses/nvil.py",
           "advantage = centred / self.signal_variance.value().to(centred.dtype).sqrt().clamp_min(1.0)",
           "advantage = centred / self.signal_variance.value().to(centred.dtype).clamp_min(1.0)",
           (f"{EXACT} -k nvil",)),
    Mutant("NVIL: the normalization scales p's gradient too",
           "blackbox_vae/losses/nvil.py",
           "surrogate = log_p + advantage * log_q  # [batch, K]",
           "surrogate = (log_p + centred * log_q) / self.signal_variance.value().sqrt().clamp_min(1.0)",
           (f"{EXACT} -k nvil",)),
    Mutant("NVIL: the baseline network regresses onto the signal, not the signal minus the running mean",
           "blackbox_vae/losses/nvil.py",
           "target = learning_signal - (self.signal_mean.value().to(residual.dtype) if self.running_mean else 0.0)",
           "target = learning_signal",
           (f"{EXACT} -k nvil",)),
    # --------------------------------------------------------------------------- RWS
    Mutant("RWS: weights normalized over the batch instead of the samples",
           "blackbox_vae/losses/rws.py",
           "normalized_weights = torch.softmax(log_weights, dim=1)  # [batch, K]",
           "normalized_weights = torch.softmax(log_weights, dim=0)  # [batch, K]",
           (f"{EXACT} -k rws",)),
    Mutant("RWS: wake-sleep adds the two phi updates instead of averaging them",
           "blackbox_vae/losses/rws.py",
           "phi_objective = (wake_phi + sleep_phi) / 2",
           "phi_objective = wake_phi + sleep_phi",
           (f"{EXACT} -k rws",)),
    Mutant("RWS: the sleep phase ascends the wrong sign",
           "blackbox_vae/losses/rws.py",
           "return dreamed_log_q(self, self.n_dreams or batch, device).mean()",
           "return -dreamed_log_q(self, self.n_dreams or batch, device).mean()",
           (f"{EXACT} -k rws",)),
    Mutant("RWS: the sleep phase leaves q holding the dreams' parameters",
           "blackbox_vae/losses/rws.py",
           "        sleep_phi = self._sleep_phi(data.shape[0], data.device) if self.phi_update != \"wake\" else None\n"
           "        _, log_q, log_p = self._draw(data)",
           "        _, log_q, log_p = self._draw(data)\n"
           "        sleep_phi = self._sleep_phi(data.shape[0], data.device) if self.phi_update != \"wake\" else None",
           ("tests/test_loss_state.py -k sleep",)),
    # -------------------------------------------------------------------- symmetric
    Mutant("Symmetric: the sleep term also trains the parameters q borrows from p",
           "blackbox_vae/losses/symmetric.py",
           "        if shared:",
           "        if False:",
           ("tests/test_symmetric.py -k player",)),
    Mutant("Symmetric: q descends its dream utility",
           "blackbox_vae/losses/symmetric.py",
           "surrogate = -(wake_utility + sleep_utility)",
           "surrogate = -(wake_utility - sleep_utility)",
           (f"{EXACT} -k symmetric",)),
    Mutant("Symmetric: the flip noise is never applied",
           "blackbox_vae/losses/symmetric.py",
           "            data = self._flipped(data)",
           "            pass",
           (f"{EXACT} -k symmetric",)),
    # ------------------------------------------------------------- Gumbel-softmax
    Mutant("Gumbel-softmax: the temperature is ignored (always 1)",
           "blackbox_vae/losses/gumbel_softmax.py",
           "_, log_q, log_p = self._draw(data, \"relaxed_rsample\", temperature=temperature,",
           "_, log_q, log_p = self._draw(data, \"relaxed_rsample\", temperature=1.0,",
           (f"{EXACT} -k gumbel",)),
    Mutant("straight-through: the relaxed gradient with a flipped sign",
           "blackbox_vae/relaxed.py",
           "return hard + (relaxed - relaxed.detach())",
           "return hard - (relaxed - relaxed.detach())",
           (f"{EXACT} -k straight",)),
    Mutant("Gumbel-softmax: evaluation calls advance the temperature schedule",
           "blackbox_vae/losses/gumbel_softmax.py",
           "if self.training and torch.is_grad_enabled():",
           "if True:",
           ("tests/test_loss_state.py -k temperature",)),
    # -------------------------------------------------------------------------- ELBO
    Mutant("ELBO: the pathwise gradient through log q dropped (a detached entropy term)",
           "blackbox_vae/losses/elbo.py",
           "negative_elbo = -(log_p - log_q).mean()",
           "negative_elbo = -(log_p - log_q.detach()).mean()",
           (f"{EXACT} -k elbo",)),
    Mutant("ELBO warm-up: the KL coefficient not applied (the plain ELBO's gradient during the warm-up)",
           "blackbox_vae/losses/elbo.py",
           "return negative_elbo.detach(), -(log_likelihood - beta * kl).mean()",
           "return negative_elbo.detach(), -(log_likelihood - kl).mean()",
           ("tests/test_nvae.py -k weighted_objective",)),
    Mutant("ELBO KL balancing: the group weights not detached (they get a gradient of their own)",
           "blackbox_vae/losses/elbo.py",
           "kl = (kl_groups * _balancing_coefficients(kl_groups.detach(), latents)).sum(-1)",
           "kl = (kl_groups * _balancing_coefficients(kl_groups, latents)).sum(-1)",
           ("tests/test_nvae.py -k weighted_objective",)),
    Mutant("NVAE: the posterior not residual (q's parameters absolute, not offsets to the prior's)",
           "blackbox_vae/models/nvae/model.py",
           "return Normal.from_raw(prior.raw_mean + delta_mean, prior.raw_log_scale + delta_log_scale)",
           "return Normal.from_raw(delta_mean, delta_log_scale)",
           ("tests/test_nvae.py -k residual",)),
    Mutant("NVAE: p reuses a walk after its parameters changed",
           "blackbox_vae/models/nvae/model.py",
           "if cache is not None and cache.latents is latents and cache.versions == self._versions():",
           "if cache is not None and cache.latents is latents:",
           ("tests/test_nvae.py -k walk_cache",)),
    # -------------------------------------------------------------------------- IWAE
    Mutant("IWAE: the ELBO (a mean of log-weights) instead of the K-sample bound",
           "blackbox_vae/losses/iwae.py",
           "negative_bound = -log_mean_exp(log_p - log_q).mean()",
           "negative_bound = -(log_p - log_q).mean()",
           (f"{EXACT} -k iwae-reparam",)),
    Mutant("IWAE: STL and DReG coefficients swapped",
           "blackbox_vae/losses/iwae.py",
           "coefficient = normalized if self.gradient == \"stl\" else normalized.pow(2)",
           "coefficient = normalized.pow(2) if self.gradient == \"stl\" else normalized",
           (f"{EXACT} -k 'iwae-stl or iwae-dreg'",)),
    Mutant("DReG: the path term not pushed back along the sample (q gets no path gradient)",
           "blackbox_vae/losses/iwae.py",
           "            (partial * sample).sum()",
           "            (partial * sample.detach()).sum()",
           (f"{EXACT} -k 'iwae-stl or iwae-dreg'",)),
    # --------------------------------------------------------------------------- ZGR
    Mutant("ZGR (Bernoulli): the score term's probabilities not detached",
           "blackbox_vae/zgr.py",
           "log_p_sample = -F.binary_cross_entropy_with_logits(logits, sample, reduction=\"none\")  # log p(x)\n"
           "    return _with_gradient(sample, 0.5 * (probs + (sample - probs.detach()) * log_p_sample))",
           "log_p_sample = -F.binary_cross_entropy_with_logits(logits, sample, reduction=\"none\")  # log p(x)\n"
           "    return _with_gradient(sample, 0.5 * (probs + (sample - probs) * log_p_sample))",
           ("tests/test_zgr.py -k darn", f"{EXACT} -k zgr")),
    Mutant("ZGR (categorical): the score term dropped (half the straight-through Jacobian)",
           "blackbox_vae/zgr.py",
           "log_p_sample = (sample * log_probs).sum(-1, keepdim=True)  # log p(x)\n"
           "    return _with_gradient(sample, 0.5 * (probs + (sample - probs.detach()) * log_p_sample))",
           "log_p_sample = (sample * log_probs).sum(-1, keepdim=True)  # log p(x)\n"
           "    return _with_gradient(sample, 0.5 * probs)",
           ("tests/test_zgr.py -k 'linear or jacobian or two_class'",)),
    Mutant("ZGRLoss: analytic_kl=True differentiates the plain estimate instead of the closed-form ELBO",
           "blackbox_vae/losses/zgr.py",
           "return negative_elbo.detach(), -analytic.mean()",
           "return negative_elbo.detach(), negative_elbo",
           ("tests/test_hvae.py -k closed_form_elbo",)),
    Mutant("HVAE: ZGR samples of a layer cut the gradient path to the layers q conditions it on",
           "blackbox_vae/models/hvae.py",
           "return self._ancestral(n_samples, bernoulli_zgr)[0]",
           "return self._ancestral(n_samples, lambda logits: bernoulli_zgr(logits.detach()) + 0 * logits)[0]",
           (f"{EXACT} -k zgr-analytic",)),
    Mutant("HVAE ladder: the closed-form KL taken the wrong way round, KL(p || q)",
           "blackbox_vae/models/hvae.py",
           "            elbo = elbo - _bernoulli_kl(logits, p_logits).sum(-1)",
           "            elbo = elbo - _bernoulli_kl(p_logits, logits).sum(-1)",
           ("tests/test_hvae.py -k analytic",)),
    Mutant("HVAE reverse: a lower layer's entropy dropped from the closed-form ELBO",
           "blackbox_vae/models/hvae.py",
           "            elbo = elbo + q_layer.entropy().sum(-1)",
           "            elbo = elbo + 0 * q_layer.entropy().sum(-1)",
           ("tests/test_hvae.py -k analytic",)),
    # --------------------------------------------------------------------- ARM / DisARM
    Mutant("ARM: the pair's coefficient u - 1/2 taken with the wrong sign",
           "blackbox_vae/losses/arm.py",
           "return _expand(f_anti - f, u) * (u - 0.5)",
           "return _expand(f_anti - f, u) * (0.5 - u)",
           (f"{EXACT} -k arm",)),
    Mutant("DisARM: the antithetic member's sign (-1)^b' replaced by (-1)^b",
           "blackbox_vae/losses/arm.py",
           "* (1 - 2 * b_anti) * (b != b_anti)",
           "* (1 - 2 * b) * (b != b_anti)",
           (f"{EXACT} -k disarm",)),
    Mutant("DisARM: the factor sigmoid(|a|) dropped",
           "blackbox_vae/losses/arm.py",
           "* (b != b_anti) * torch.sigmoid(logits.abs())",
           "* (b != b_anti) * 0.5",
           (f"{EXACT} -k disarm",)),
    Mutant("ARM/DisARM: the later layers are not redrawn given each member of the pair (the layer-wise form broken)",
           "blackbox_vae/losses/arm.py",
           "                    for later in order[step + 1:]:",
           "                    for later in ():",
           (f"{EXACT} -k deep",)),
    Mutant("ARM/DisARM: q's drawing order ignored (layers drawn in the tuple's order)",
           "blackbox_vae/losses/arm.py",
           "order = (inf_net.layer_order or tuple(range(n_layers)))",
           "order = (tuple(range(n_layers)))",
           (f"{EXACT} -k reverse",)),
    # ------------------------------------------------------------------- REBAR / RELAX
    Mutant("REBAR/RELAX: the pathwise correction -grad c(z~) dropped",
           "blackbox_vae/losses/rebar.py",
           "torch.autograd.grad((control - control_tilde).sum(), logits, create_graph=True)",
           "torch.autograd.grad(control.sum(), logits, create_graph=True)",
           (f"{EXACT} -k rebar", f"{EXACT} -k relax")),
    # (Taking the score term's control variate at z rather than at z~ is no bias: z and z~ have the same joint law
    # with b, so that estimator is unbiased too, with more variance. The exact tests cannot catch it, and don't.)
    Mutant("REBAR/RELAX: the score d log q(b) / d a taken with the wrong sign",
           "blackbox_vae/losses/rebar.py",
           "score = b - probs.detach()  # d log q(b) / d a",
           "score = probs.detach() - b",
           (f"{EXACT} -k rebar", f"{EXACT} -k relax")),
    Mutant("REBAR/RELAX: z~ drawn from the wrong conditional (the two cases of b swapped)",
           "blackbox_vae/losses/rebar.py",
           "torch.where(b > 0, 1 - probs + v * probs, v * (1 - probs))",
           "torch.where(b > 0, v * (1 - probs), 1 - probs + v * probs)",
           (f"{EXACT} -k rebar", f"{EXACT} -k relax")),
    Mutant("RELAX: the learned network's gradient path through the relaxed sample cut",
           "blackbox_vae/losses/rebar.py",
           "learned = self.control_variate(data, relaxed)",
           "learned = self.control_variate(data, relaxed.detach())",
           (f"{EXACT} -k relax",)),
    # ------------------------------------------------------------------- ARSM
    # (Not subtracting the mean over m, or subtracting it over the other index, keeps ARSM unbiased: the
    # subtracted term is the same for every class c, and sum_j (1/C - pi_j) = 0. Not mutants, then.)
    Mutant("ARSM: the pseudo-actions drawn by argmax (not draws from q)",
           "blackbox_vae/losses/arsm.py",
           "actions = scores.argmin(dim=-1).movedim(3, 2)",
           "actions = scores.argmax(dim=-1).movedim(3, 2)",
           (f"{EXACT} -k arsm",)),
    Mutant("ARSM: the coefficient 1/C - pi_j taken with the wrong sign",
           "blackbox_vae/losses/arsm.py",
           "weights = 1.0 / n_classes - torch.softmax(log_pi, dim=-1)",
           "weights = torch.softmax(log_pi, dim=-1) - 1.0 / n_classes",
           (f"{EXACT} -k arsm",)),
    Mutant("ARSM: the exact draw's f(z) left out of the swap table's diagonal",
           "blackbox_vae/losses/arsm.py",
           "table[:, :, diagonal, diagonal] = f[:, :, :1]",
           "table[:, :, diagonal, diagonal] = 0.0",
           (f"{EXACT} -k arsm",)),
    # ------------------------------------------------------------------- the unordered set estimator
    Mutant("unordered set: the leave-one-out ratio R(S, s) dropped (each value weighted by q(s) alone)",
           "blackbox_vae/losses/unordered_set.py",
           "weight = torch.exp(log_q_set + log_without_one - log_set.unsqueeze(1))",
           "weight = torch.exp(log_q_set)",
           (f"{EXACT} -k unordered",)),
    Mutant("unordered set: each value's own term p(s) f(s) left out of its baseline",
           "blackbox_vae/losses/_without_replacement.py",
           "baselines = log_prob.exp() * values  # the s' = s term",
           "baselines = 0 * values  # the s' = s term",
           ("tests/test_unordered_set.py -k baselines", f"{EXACT} -k unordered")),
    Mutant("unordered set: beam search keeps the raw perturbed values (not conditioned on the parent's maximum)",
           "blackbox_vae/losses/_without_replacement.py",
           "perturbed, flat = conditioned.flatten(1).topk(k, dim=1)",
           "perturbed, flat = torch.where(torch.isfinite(parent), gumbels, -math.inf).flatten(1).topk(k, dim=1)",
           ("tests/test_unordered_set.py -k sampler", f"{EXACT} -k unordered")),
    # ------------------------------------------------------------------- the output-bias initialization
    Mutant("output bias: the data's mean written unclipped (a pixel never on gets an infinite logit)",
           "blackbox_vae/models/output_bias.py",
           "mean = data.double().mean(0).clamp(clip, 1 - clip)",
           "mean = data.double().mean(0)",
           ("tests/test_output_bias.py",)),
    Mutant("output bias: the command line's default (None) taken as off",
           "blackbox_vae/cli/training.py",
           'if config.output_bias is not False and dataset.likelihood == "bernoulli":',
           'if config.output_bias and dataset.likelihood == "bernoulli":',
           ("tests/test_output_bias.py",)),
    Mutant("output bias: a resumed run records the resuming command's value, not the checkpoint's",
           "blackbox_vae/cli/training.py",
           '    config.output_bias = TrainConfig.from_saved(saved, f"{path} (its config)").output_bias\n',
           "",
           ("tests/test_output_bias.py",)),
    Mutant("data parallel: the running statistics are not synchronized over the processes",
           "blackbox_vae/trainer.py",
           "            run.loss.synchronize_statistics()\n", "",
           ("tests/test_distributed.py -m slow",)),
    Mutant("data parallel: each process trains on the whole batch instead of its share",
           "blackbox_vae/data/batches.py",
           "        return batch[self._rows]", "        return batch",
           ("tests/test_distributed.py -k shares",)),
    Mutant("data parallel: the loss history is the main process's share's, not averaged",
           "blackbox_vae/trainer.py",
           "    history[progress.reduced:] = run.processes.mean(history[progress.reduced:], run.device)\n", "",
           ("tests/test_distributed.py -m slow",)),
    Mutant("data parallel: a resumed process takes the main process's generator state",
           "blackbox_vae/trainer.py",
           'torch.set_rng_state(state["rng"]["ranks"][rank] if "ranks" in state["rng"] else state["rng"]["torch"])',
           'torch.set_rng_state(state["rng"]["torch"])',
           ("tests/test_distributed.py -m slow",)),
    Mutant("data parallel: NVIL's variance leaves out the spread between the shares' means",
           "blackbox_vae/losses/base.py",
           "        return whole_mean, variances.mean() + (means - whole_mean).pow(2).mean()",
           "        return whole_mean, variances.mean()",
           ("tests/test_distributed.py -m slow",)),
    Mutant("bf16: a model's bf16 log-probabilities are kept in bf16 (weights and bounds lose digits)",
           "blackbox_vae/losses/base.py",
           "            log_prob = log_prob.float()\n", "            pass\n",
           ("tests/test_precision.py",)),
    Mutant("bf16: every run, fp32 too, takes its steps under autocast",
           "blackbox_vae/trainer.py",
           'enabled=run.config.precision == "bf16"', "enabled=True",
           ("tests/test_precision.py",)),
    Mutant("lr schedule: the iwae stages counted in steps, not epochs",
           "blackbox_vae/cli/schedules.py",
           "    epoch, stage = step // steps_per_epoch, 0", "    epoch, stage = step, 0",
           ("tests/test_schedules.py",)),
    Mutant("evaluate: the default chunk of samples ignores the data's size (all K samples at once)",
           "blackbox_vae/evaluation.py",
           "CHUNK_ELEMENTS // (batch_size * max(1, data[0].numel()))", "n_samples",
           ("tests/test_evaluation.py",)),
    Mutant("a pathwise estimator accepts a generative model that declares differentiable = False",
           "blackbox_vae/losses/base.py",
           'if self.needs_differentiable_gen_model and not getattr(gen_model, "differentiable", True):',
           "if False:",
           ("tests/test_black_box.py -k pathwise",)),
    # ------------------------------------------------------------------ testing kit
    Mutant("assert_unbiased: non-finite draws no longer fail",
           "blackbox_vae/testing/statistics.py",
           "    if bool(non_finite.any()):\n        draw, index",
           "    if False:\n        draw, index",
           ("tests/test_testing_kit.py -k non_finite",)),
    Mutant("assert_unbiased: the Bonferroni correction dropped (a looser threshold would be fine; a tighter one is "
           "a wrong false-failure rate)",
           "blackbox_vae/testing/statistics.py",
           "z = NormalDist().inv_cdf(1 - false_failure_rate / (2 * n_comparisons))",
           "z = NormalDist().inv_cdf(1 - false_failure_rate * n_comparisons / 2)",
           ("tests/test_testing_kit.py -k critical",)),
    # ------------------------------------------------------------------ own data, own models, the Trainer
    Mutant("own data: the split permutation ignores its seed",
           "blackbox_vae/data/user_dataset.py",
           "order = np.random.default_rng(split_seed).permutation(n)",
           "order = np.random.default_rng(0).permutation(n)",
           ("tests/test_own_data.py -k seeded_permutation",)),
    Mutant("own data: a memory-mapped batch comes back in sorted, not requested, order",
           "blackbox_vae/data/mapped.py",
           "values[order] = self.array[rows[order]]",
           "values[:] = self.array[rows[order]]",
           ("tests/test_own_data.py -k memory_mapped",)),
    Mutant("own data: standardization leaves the scale, dividing by 1 instead of the training split's deviation",
           "blackbox_vae/data/user_dataset.py",
           "        std = _std(train, mean).clamp_min(1e-6)  # a constant column keeps its scale",
           "        std = torch.ones_like(mean)",
           ("tests/test_own_data.py -k standardized",)),
    Mutant("snapshots: the grids draw from the training generator",
           "blackbox_vae/callbacks.py",
           "        with torch.random.fork_rng(devices=[device] if device.type == \"cuda\" else []):",
           "        if True:",
           ("tests/test_own_data.py -k leave_the_run",)),
    Mutant("factory models: the contract checks are skipped",
           "blackbox_vae/models/factory.py",
           "            check_inf_net(inf_net, example)\n",
           "            pass\n",
           ("tests/test_trainer.py -k bad_factory",)),
    Mutant("trainer: the learning-rate schedule ignores a given optimizer's own rate",
           "blackbox_vae/trainer.py",
           "        group[\"lr\"] = base * factor",
           "        group[\"lr\"] = run.config.lr * factor",
           ("tests/test_trainer.py -k given_optimizer",)),
    Mutant("faults: a failed write leaves its temporary file behind",
           "blackbox_vae/cli/files.py",
           "            temporary.unlink(missing_ok=True)\n",
           "            pass\n",
           ("tests/test_faults.py -k failed_write",)),
    Mutant("faults: stale temporary files of dead processes are kept",
           "blackbox_vae/cli/files.py",
           "        if match is None or _alive(int(match[\"pid\"]), None):",
           "        if True:",
           ("tests/test_faults.py -k stale_temporary",)),
    Mutant("faults: the checkpoint is written in place, not whole or not at all",
           "blackbox_vae/cli/files.py",
           "    temporary = _temporary_path(path)\n",
           "    temporary = path\n",
           ("tests/test_faults.py -k 'failed_write and checkpoint'",)),
    Mutant("faults: evaluate reports its result only after writing evaluation.json",
           "blackbox_vae/cli/commands.py",
           "    if report is not None:\n        report(result)\n",
           "",
           ("tests/test_faults.py -k evaluate_prints",)),
    Mutant("faults: a diverging run goes on",
           "blackbox_vae/trainer.py",
           "    if train_bound < first - margin:",
           "    if False:",
           ("tests/test_faults.py -k diverging",)),
    Mutant("faults: a sampler state loads into a sampler of other settings",
           "blackbox_vae/samplers/base.py",
           "            self._check_settings(extra[\"settings\"])\n",
           "            pass\n",
           ("tests/test_faults.py -k sampler_state",)),
    Mutant("faults: MNIST's loader accepts Fashion-MNIST's files",
           "blackbox_vae/data/datasets.py",
           "    if data_set != what or file_kind != kind:",
           "    if False:",
           ("tests/test_faults.py -k 'fashion or published'",)),
    Mutant("faults: sizes beyond memory are not refused",
           "blackbox_vae/models/size.py",
           "    if free is not None and needed > free:",
           "    if False:",
           ("tests/test_faults.py -k refused_against_the_free_memory",)),
    Mutant("faults: a failed TensorBoard write ends in a traceback",
           "blackbox_vae/callbacks.py",
           "        with writing(self._folder(trainer)):  # a full disk: one line, as for the run's own files",
           "        if True:",
           ("tests/test_faults.py -k tensorboard_write",)),
    Mutant("faults: NaN in tensor rows given to the Trainer goes unnamed",
           "blackbox_vae/trainer.py",
           "        _check_finite(self.train_rows, \"data\")\n",
           "",
           ("tests/test_faults.py -k non_finite_rows",)),
    Mutant("progress: without a terminal a long fit prints no lines",
           "blackbox_vae/progress.py",
           "        if now - self.last >= self.every:",
           "        if False:",
           ("tests/test_faults.py -k plain_lines_without_a_terminal",)),
    Mutant("progress: the GMM's EM, one call per iteration, restarts at every call",
           "blackbox_vae/samplers/gaussian_mixture.py",
           "warm_start=True)",
           "warm_start=False)",
           ("tests/test_faults.py -k progress_of_em",)),
    Mutant("arsm: pseudo-actions laid out sample-major, read draw-major (wrong only for K > 1)",
           "blackbox_vae/losses/arsm.py",
           "        log_p = log_p.view(batch, k, n_evaluations)\n",
           "        log_p = log_p.view(batch, n_evaluations, k).transpose(1, 2)\n",
           ("tests/test_loss_registry.py -k 'expected_gradient_is_exact and arsm'",)),
    Mutant("arsm: q's class logits used as log-probabilities without log_softmax",
           "blackbox_vae/losses/arsm.py",
           "log_q_classes = torch.log_softmax(phi.detach(), dim=-1)",
           "log_q_classes = phi.detach()",
           ("tests/test_arsm.py -k recorded_log_q",)),
    Mutant("unordered set: q's class logits used as log-probabilities without log_softmax",
           "blackbox_vae/losses/unordered_set.py",
           "log_probs = torch.log_softmax(logits, dim=-1).reshape(",
           "log_probs = logits.reshape(",
           ("tests/test_loss_registry.py -k 'expected_gradient_is_exact and unordered-set'",)),
    Mutant("base: the score-function family scores latents that keep q's sampling path",
           "blackbox_vae/losses/base.py",
           "                latents = map_latents(_detached, inf_net.sample(k))\n",
           "                latents = inf_net.sample(k)\n",
           ("tests/test_loss_registry.py -k 'expected_gradient_is_exact and score-function'",)),
    Mutant("dreams: drawn with their gradient path (no no_grad, no detach): the sleep phase moves p",
           "blackbox_vae/losses/_dreams.py",
           "    with torch.no_grad():\n        dreamed_data, dreamed_latents = loss.gen_model.sample(n_dreams)\n"
           "        dreamed_data, dreamed_latents = dreamed_data.detach(), map_latents(torch.Tensor.detach, dreamed_latents)\n",
           "    dreamed_data, dreamed_latents = loss.gen_model.sample(n_dreams)\n",
           ("tests/test_loss_registry.py -k 'expected_gradient_is_exact and (symmetric or rws-sleep)'",)),
    Mutant("rebar: the pathwise term without create_graph (the control variate's gradient loses it)",
           "blackbox_vae/losses/rebar.py",
           "create_graph=True)[0]",
           "retain_graph=True)[0]",
           ("tests/test_rebar.py -k gradient_of_its_variance",)),
    Mutant("rebar: the control variate ascends its variance objective",
           "blackbox_vae/losses/rebar.py",
           "surrogate = -(q_surrogate + log_p.mean(1)).mean() + variance_surrogate",
           "surrogate = -(q_surrogate + log_p.mean(1)).mean() - variance_surrogate",
           ("tests/test_rebar.py -k gradient_of_its_variance",)),
    Mutant("nvil: the running statistics read after this batch's update",
           "blackbox_vae/losses/nvil.py",
           "        residual = learning_signal - input_baseline.detach()  # [batch, K]\n",
           "        residual = learning_signal - input_baseline.detach()  # [batch, K]\n"
           "        self.signal_mean.update(self._batch_moments(residual)[0])\n",
           ("tests/test_loss_state.py -k nvil_reads",)),
    Mutant("moving average: decay and 1 - decay swapped",
           "blackbox_vae/losses/_moving_average.py",
           "        self.total.mul_(self.decay).add_((1 - self.decay) * x.to(self.total.dtype))\n"
           "        self.weight.mul_(self.decay).add_(1 - self.decay)\n",
           "        self.total.mul_(1 - self.decay).add_(self.decay * x.to(self.total.dtype))\n"
           "        self.weight.mul_(1 - self.decay).add_(self.decay)\n",
           ("tests/test_loss_state.py -k moving_average_weighs",)),
    Mutant("K = batch: the leave-one-out baseline's sum without keepdim (silent only when K = batch)",
           "blackbox_vae/losses/score_function.py",
           "total = learning_signal.sum(dim=1, keepdim=True)",
           "total = learning_signal.sum(dim=1)",
           ("tests/test_loss_registry.py -k 'expected_gradient_is_exact and k-is-batch'",)),
    Mutant("K = batch: VIMCO's geometric mean of the others without keepdim",
           "blackbox_vae/losses/_importance.py",
           "(log_weights.sum(dim=1, keepdim=True) - log_weights)",
           "(log_weights.sum(dim=1) - log_weights)",
           ("tests/test_relaxed_and_importance.py -k vimco_learning_signals_match",)),
    Mutant("K = batch: RWS's normalized weights by a logsumexp without keepdim",
           "blackbox_vae/losses/rws.py",
           "normalized_weights = torch.softmax(log_weights, dim=1)",
           "normalized_weights = (log_weights - torch.logsumexp(log_weights, 1)).exp()",
           ("tests/test_loss_registry.py -k 'expected_gradient_is_exact and k-is-batch'",)),
    Mutant("K = batch: DReG's normalized weights by a logsumexp without keepdim",
           "blackbox_vae/losses/iwae.py",
           "normalized = torch.softmax(log_weights.detach(), dim=1)",
           "normalized = (log_weights.detach() - torch.logsumexp(log_weights.detach(), 1)).exp()",
           ("tests/test_loss_registry.py -k 'expected_gradient_is_exact and k-is-batch'",)),
    Mutant('exact refs: layered configurations expanded as one tensor',
           'blackbox_vae/testing/enumeration.py',
           '    return map_latents(lambda t: t.unsqueeze(0).expand(batch, *t.shape), configurations)',
           '    return configurations.unsqueeze(0).expand(batch, *configurations.shape)',
           ('tests/test_testing_kit_layered.py -k brute_force_loop',)),
    Mutant('product_configurations: first layer fastest',
           'blackbox_vae/testing/enumeration.py',
           '    rows = iter(index.unbind(1))',
           '    rows = iter(integer_configurations(counts[::-1], dtype=torch.long, device=index.device).flip(1).unbind(1))',
           ('tests/test_testing_kit_layered.py -k builds_the_product',)),
    Mutant('configurations_for: q-mass check skipped',
           'blackbox_vae/testing/enumeration.py',
           '    if abs(mass - 1) > tolerance:',
           '    if False:',
           ('tests/test_testing_kit_layered.py -k checks_the_supports',)),
    Mutant('configurations_for: layer_kinds categorical read as Bernoulli',
           'blackbox_vae/testing/enumeration.py',
           '_SUPPORT_OF_KIND = {"bernoulli": "bernoulli", "categorical": "one-hot", "one-hot": "one-hot"}',
           '_SUPPORT_OF_KIND = {"bernoulli": "bernoulli", "categorical": "bernoulli", "one-hot": "one-hot"}',
           ('tests/test_testing_kit_layered.py -k builds_the_product',)),
    Mutant('check_inf_net: no normalization check',
           'blackbox_vae/testing/contracts.py',
           '        proposal = _proposal_for([leaf[0] for _, leaf in latent_leaves(draws)])',
           '        proposal = None',
           ('tests/test_testing_kit_layered.py -k check_inf_net_catches_a_dropped_layer_term',)),
    Mutant('check_gen_model: no normalization check',
           'blackbox_vae/testing/contracts.py',
           '        proposal = _proposal_for([x] + [leaf for _, leaf in latent_leaves(z)])',
           '        proposal = None',
           ('tests/test_testing_kit_layered.py -k check_gen_model_catches_a_dropped_prior_term',)),
    Mutant('normalization check: weights not divided by the proposal',
           'blackbox_vae/testing/contracts.py',
           '    weights = (log_prob - log_r).exp()',
           '    weights = log_prob.exp()',
           ('tests/test_testing_kit_layered.py -k check_inf_net_catches_a_dropped_layer_term',)),
    Mutant("detection_probability: the sample standard error's spread ignored",
           'blackbox_vae/testing/statistics.py',
           '    shifted, spread = threshold * (1 - 1 / (4 * nu)), math.sqrt(1 + threshold**2 / (2 * nu))',
           '    shifted, spread = threshold, 1.0',
           ('tests/test_testing_kit.py -k detectable_bias',)),
    Mutant('ARM/DisARM: a layer_kinds declaring a non-Bernoulli layer accepted when the loss is built',
           'blackbox_vae/losses/arm.py',
           '        if kinds is not None and any(kind != BERNOULLI for kind in kinds):',
           '        if False:',
           ('tests/test_layer_refusals.py -k antithetic_refuse_a_declared',)),
    Mutant("ARM/DisARM: q's log_prob not checked against bernoulli_logits (a one-hot layer trains)",
           'blackbox_vae/losses/arm.py',
           '        if not bool(wrong.any()):\n            return',
           '        if True:\n            return',
           ('tests/test_layer_refusals.py -k written_for_a_one_hot',)),
    Mutant("ARM/DisARM: the first call's check of the drawn values in {0, 1} skipped",
           'blackbox_vae/losses/arm.py',
           '            self._check_values(inf_net, base, layers)',
           '            pass',
           ('tests/test_layer_refusals.py -k values_other',)),
    Mutant('ARM/DisARM: the mismatched log_prob blamed on no layer (a one-hot layer not named)',
           'blackbox_vae/losses/arm.py',
           'one_hot = [layer for layer in order if is_one_hot(layers[layer])]',
           'one_hot = []',
           ('tests/test_layer_refusals.py -k written_for_a_one_hot',)),
    Mutant('ARM/DisARM: the model marked checked before its check passed (a refused model trains on the next call)',
           'blackbox_vae/losses/arm.py',
           '        checking = not self._draws_checked  # the first call\n',
           '        checking = not self._draws_checked  # the first call\n        set_call_state(self, "_draws_checked", True)\n',
           ('tests/test_layer_refusals.py -k written_for_a_one_hot',)),
    Mutant('ARM/DisARM: no tolerance for rounding in the log_prob check (sound float32 models refused)',
           'blackbox_vae/losses/arm.py',
           'tolerance = 1e-3 + 16 * eps * (log_q.abs() + sum(t.abs() for t in terms))',
           'tolerance = 0 * eps * log_q',
           ('tests/test_layer_refusals.py -k supported_models_pass',)),
    Mutant('one-layer estimators: several declared layers accepted when the loss is built',
           'blackbox_vae/losses/_one_layer.py',
           '    if count is not None and count > 1:',
           '    if False:',
           ("tests/test_layer_refusals.py -k 'refuse_declared_layers or layer_order'",)),
    Mutant('one-layer estimators: a declared layer_order ignored (only layer_kinds read)',
           'blackbox_vae/losses/_layers.py',
           '    return len(order) if order is not None else None',
           '    return None',
           ('tests/test_layer_refusals.py -k layer_order',)),
    Mutant('one-layer estimators: a drawn value other than 0 and 1 accepted',
           'blackbox_vae/losses/_one_layer.py',
           '    value = non_binary_value(layer)\n',
           '    value = None\n',
           ('tests/test_layer_refusals.py -k values_other',)),
    Mutant('ARSM / unordered set: a categorical draw that is not one-hot accepted',
           'blackbox_vae/losses/_one_layer.py',
           '    elif hook == "categorical_logits" and not is_one_hot(layer):',
           '    elif False:',
           ('tests/test_layer_refusals.py -k not_one_hot',)),
    Mutant('advice: ARM/DisARM suggested for any model with bernoulli_logits (one with a one-hot layer too)',
           'blackbox_vae/losses/_layers.py',
           '    return kinds is not None and all(kind == BERNOULLI for kind in kinds) and inf_net.has_bernoulli_logits',
           '    return inf_net.has_bernoulli_logits',
           ("tests/test_layer_refusals.py -k 'antithetic_refuse_a_declared or missing_hook'",)),
    Mutant("advice: a missing hook's refusal ignores the declared layer kinds",
           'blackbox_vae/losses/base.py',
           '                                  declared_kinds(inf_net))',
           '                                  None)',
           ('tests/test_arsm.py -k latents_without_class_logits',)),
    Mutant('DistributionInfNet: layer_kinds claims Bernoulli before the first forward',
           'blackbox_vae/inf_net.py',
           '            return None\n        if _bernoulli_probs(self.params_) is not None:',
           '            return ("bernoulli",)\n        if _bernoulli_probs(self.params_) is not None:',
           ('tests/test_layer_refusals.py -k distribution_inf_net_declares',)),
    Mutant("threads: the adaptive policy ignores the other processes (all cores, however busy)",
           "blackbox_vae/threads.py",
           "        free = self.cores - self.others()\n",
           "        free = self.cores\n",
           ("tests/test_threads.py -k idle",)),
    Mutant("threads: --threads N not applied",
           "blackbox_vae/threads.py",
           "    if threads:\n        torch.set_num_threads(threads)\n        return None\n",
           "    if threads:\n        return None\n",
           ("tests/test_threads.py -k flag_sets",)),
    Mutant("optimizer: the default Adam's update differs from torch's Adam (amsgrad)",
           "blackbox_vae/trainer.py",
           "    return torch.optim.Adam(parameters, lr=lr, fused=fused or None)",
           "    return torch.optim.Adam(parameters, lr=lr, fused=fused or None, amsgrad=True)",
           ("tests/test_trainer.py -k fused_adam",)),
    Mutant("draw_bernoulli: ones drawn with another probability",
           "blackbox_vae/models/deep_sbn.py",
           "    return (torch.rand_like(probs) < probs).to(probs.dtype)",
           "    return (torch.rand_like(probs) < probs.sqrt()).to(probs.dtype)",
           ("tests/test_threads.py -k draw_bernoulli",)),
    Mutant("trainer: a resumed run does not restore the batch stream",
           "blackbox_vae/trainer.py",
           "        stream.load_state_dict(state[\"stream\"])\n",
           "",
           ("tests/test_trainer.py -k sigkill",)),

]


def _targets(test: str) -> list[str]:
    """A test's pytest arguments: a node id, with ``-k EXPRESSION`` or ``-m slow`` (quoted as in a shell)."""
    return shlex.split(test)


def apply(mutant: Mutant, root: Path) -> None:
    """Applies the mutant's edit under ``root``; raises ValueError unless its text occurs exactly once."""
    path = root / mutant.path
    text = path.read_text()
    if text.count(mutant.original) != 1:
        raise ValueError(f"{mutant.name}: the text to replace occurs {text.count(mutant.original)} times in "
                         f"{mutant.path} (expected once); update tests/mutation_check.py.")
    path.write_text(text.replace(mutant.original, mutant.replacement))


def run(mutant: Mutant) -> tuple[list[str], float, str]:
    """Runs the mutant's tests on a mutated copy: ``(failed test ids, seconds, output tail)``."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mutant-") as directory:
        copy = Path(directory)
        shutil.copytree(ROOT / "blackbox_vae", copy / "blackbox_vae", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(ROOT / "tests", copy / "tests", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
        apply(mutant, copy)
        failed: list[str] = []
        output = ""
        env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
        for test in mutant.tests:
            completed = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", "-n", "0",
                                        *_targets(test)], cwd=copy, env=env, capture_output=True, text=True)
            output += completed.stdout[-1500:]
            failed += re.findall(r"^FAILED (\S+)", completed.stdout, flags=re.M)
            if completed.returncode < 0:  # pytest itself killed (say, out of memory): the mutant broke the run
                failed.append(f"{test} (pytest killed by signal {-completed.returncode})")
    return failed, time.perf_counter() - started, output


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once")
    parser.add_argument("--only", nargs="+", help="substrings of the names of the mutants to test")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args(argv)
    mutants = [m for m in MUTANTS if not args.only or any(s in m.name for s in args.only)]
    if args.list:
        print("\n".join(m.name for m in mutants))
        return 0
    for mutant in mutants:  # every edit must still apply to the current code
        with tempfile.TemporaryDirectory() as directory:
            shutil.copytree(ROOT / "blackbox_vae", Path(directory) / "blackbox_vae")
            apply(mutant, Path(directory))
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(run, mutants))
    survivors = 0
    for mutant, (failed, seconds, output) in zip(mutants, results):
        status = "caught" if failed else "SURVIVED"
        survivors += not failed
        print(f"[{status}] {mutant.name} ({seconds:.0f} s)")
        for test in failed:
            print(f"    {test}")
        if not failed:
            print("    " + output.strip().replace("\n", "\n    "))
    print(f"{len(mutants) - survivors} of {len(mutants)} mutants caught")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
