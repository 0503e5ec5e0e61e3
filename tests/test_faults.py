"""Faults lose nothing: a full disk, a read-only or vanished directory, a kill mid-save, a stale lock or
temporary file, a setting that fails late, a diverging run. After each: one line, no traceback, the last
good state intact, and a resumed run equal to an uninterrupted one."""

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from blackbox_vae.cli import files, main
from blackbox_vae.cli.checkpoint import load_checkpoint

TINY = ["--steps", "20", "--log-every", "5", "--eval-every", "10", "--checkpoint-every", "10", "--eval-k", "5",
        "--eval-size", "50", "--batch-size", "16", "--progress", "false", "--layers", "8,4"]
ROOT = Path(__file__).resolve().parents[1]


def train(out, *flags):
    return main(["train", "--out", str(out), *TINY, *flags])


def same_state(a: Path, b: Path) -> None:
    """The two runs' checkpoints hold equal parameters, history and metrics (timings aside)."""
    first, second = load_checkpoint(a / "checkpoint.pt"), load_checkpoint(b / "checkpoint.pt")
    assert first["step"] == second["step"]
    for name, tensor in first["loss"].items():
        if isinstance(tensor, torch.Tensor):
            assert torch.equal(tensor, second["loss"][name]), name
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(first["metrics"]) == strip(second["metrics"])


class FailingWrites:
    """Makes the ``fail_at``-th write of a file whose name starts with ``name`` fail with ``code``."""

    def __init__(self, monkeypatch, name: str, code: int, fail_at: int = 1):
        self.name, self.code, self.left = name, code, fail_at
        monkeypatch.setattr(files, "write_atomically", self.write_atomically)
        self.real = FailingWrites._real

    _real = staticmethod(files.write_atomically)

    def write_atomically(self, path, write):
        path = Path(path)

        def failing(handle):
            write(handle)
            if path.name.startswith(self.name):
                self.left -= 1
                if self.left == 0:
                    raise OSError(self.code, os.strerror(self.code))

        return self.real(path, failing)


def no_temporaries(directory: Path) -> None:
    assert not list(Path(directory).glob("*.tmp")), list(Path(directory).glob("*.tmp"))


@pytest.mark.parametrize("name, code, cause", [
    ("checkpoint.pt", errno.ENOSPC, "no space left on the device (ENOSPC)"),
    ("metrics.csv", errno.ENOSPC, "no space left on the device (ENOSPC)"),
    ("checkpoint.pt", errno.EROFS, "the file system is read-only (EROFS)"),
    ("loss_curve.png", errno.ENOSPC, "no space left on the device (ENOSPC)"),
    ("config.json", errno.EROFS, "the file system is read-only (EROFS)"),
])
def test_a_failed_write_in_training_is_one_line_and_resume_equals_an_uninterrupted_run(
        tmp_path, capsys, monkeypatch, name, code, cause):
    assert train(tmp_path / "whole") == 0
    with monkeypatch.context() as patch:
        # the second checkpoint (step 20) fails; the first (step 10) must survive it
        FailingWrites(patch, name, code, fail_at=2 if name in ("checkpoint.pt", "metrics.csv") else 1)
        assert train(tmp_path / "faulty") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"cannot write {tmp_path / 'faulty' / name}: {cause}" in err
    no_temporaries(tmp_path / "faulty")
    if name == "config.json":  # nothing had been written yet
        assert "No checkpoint remains" in err
        assert train(tmp_path / "faulty") == 0
    else:
        saved = load_checkpoint(tmp_path / "faulty" / "checkpoint.pt")["step"]
        assert saved == (10 if name == "checkpoint.pt" else 20)
        assert f"(step {saved}) is kept" in err
        if saved < 20:
            assert train(tmp_path / "faulty", "--resume") == 0
    same_state(tmp_path / "whole", tmp_path / "faulty")


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_real_full_disk_leaves_no_temporary_file_and_keeps_the_checkpoint(tmp_path, capsys):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(disk)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        big = ["--layers", "200", "--steps", "20", "--checkpoint-every", "10"]  # checkpoints of ~ 1.3 MB
        assert main(["train", "--out", str(disk / "run"), *TINY, *big]) == 2
        err = capsys.readouterr().err
        assert "no space left on the device (ENOSPC)" in err and "Traceback" not in err
        no_temporaries(disk / "run")
    finally:
        subprocess.run(["umount", str(disk)])


def test_stale_temporary_files_of_dead_processes_are_removed_at_the_next_start(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), *TINY, "--steps", "10"]) == 0
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"checkpoint.pt.{dead.pid}.tmp"
    stale.write_bytes(b"x" * 1000)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    writing = tmp_path / f"evaluation.json.{alive.pid}.tmp"  # a live process's write: left alone
    writing.write_text("")
    try:
        assert main(["train", "--out", str(tmp_path), "--resume", *TINY]) == 0
    finally:
        alive.kill()
        alive.wait()
    assert not stale.exists() and writing.exists()
    assert f"removed {stale}" in capsys.readouterr().err


def test_a_stale_lock_is_taken_over(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / ".lock").write_text(f'{{"pid": {dead.pid}, "host": "{os.uname().nodename}"}}')
    assert train(tmp_path) == 0
    assert "took over a stale lock" in capsys.readouterr().err


def test_a_run_directory_removed_mid_run_ends_in_one_line(tmp_path, capsys):
    import shutil

    from blackbox_vae.cli import training
    from blackbox_vae.trainer import Callback

    class RemoveDirectory(Callback):
        def on_checkpoint(self, trainer, path):
            shutil.rmtree(path.parent)

    from blackbox_vae.cli import _train_config, build_parser

    config = _train_config(build_parser().parse_args(["train", "--out", str(tmp_path / "run"), *TINY]))
    from blackbox_vae.cli.files import RunFileError

    with pytest.raises(RunFileError, match="its directory no longer exists.*No checkpoint remains"):
        training.train(config, callbacks=[RemoveDirectory()])


def test_a_late_failing_setting_deletes_nothing(tmp_path, capsys):
    assert train(tmp_path) == 0
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()}
    # ARM needs K a multiple of 2 x layers: found on one batch, before --overwrite deletes the run
    assert train(tmp_path, "--loss", "arm", "--n-samples", "3", "--overwrite") == 2
    err = capsys.readouterr().err
    assert "multiple of 2 x 2 layers" in err and "checkpoint" not in err and "--lr" not in err
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()} == before


def test_a_diverging_run_stops_naming_the_step_and_lr_and_keeps_the_good_checkpoint(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), *TINY, "--lr", "1e6", "--steps", "200", "--log-every", "10",
                 "--checkpoint-every", "10", "--eval-every", "100"]) == 2
    err = capsys.readouterr().err
    assert "diverged by step" in err and "--lr, now 1e+06" in err and err.count("\n") == 1, err
    if (tmp_path / "checkpoint.pt").exists():  # only states from before the divergence were saved
        state = load_checkpoint(tmp_path / "checkpoint.pt")
        first = -state["loss"]["_extra_state"]["loss_history"][0]
        assert all(row["train_bound"] >= first - 10 * max(abs(first), 64) for row in state["metrics"])
        assert f"(step {state['step']})" in err
    else:
        assert "No checkpoint was written" in err


def test_evaluate_prints_its_result_before_a_failed_write(tmp_path, capsys, monkeypatch):
    assert train(tmp_path) == 0
    capsys.readouterr()
    FailingWrites(monkeypatch, "evaluation.json", errno.EROFS)
    assert main(["evaluate", str(tmp_path), "--k", "5", "--limit", "20"]) == 2
    captured = capsys.readouterr()
    assert "test log-likelihood (K=5, n=20)" in captured.out
    assert captured.err.count("\n") == 1 and "the result is not recorded: cannot write" in captured.err
    assert not (tmp_path / "evaluation.json").exists()
    no_temporaries(tmp_path)


def test_evaluate_says_when_limit_exceeds_the_split(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), *TINY, "--data", "gaussian-2d", "--model", "gaussian",
                 "--layers", "2", "--hidden", "8", "--loss", "elbo", "--n-samples", "1"]) == 0
    assert main(["evaluate", str(tmp_path), "--k", "2", "--limit", "100000"]) == 0
    assert "is more than the" in capsys.readouterr().err


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_sample_ends_in_one_line_when_its_image_cannot_be_written(tmp_path, capsys, monkeypatch, code):
    assert train(tmp_path) == 0
    capsys.readouterr()
    FailingWrites(monkeypatch, "samples", code)
    assert main(["sample", str(tmp_path), "-n", "4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot write {tmp_path / 'samples.png'}" in err
    no_temporaries(tmp_path)


def test_sample_out_without_a_suffix_writes_and_names_a_png(tmp_path, capsys):
    assert train(tmp_path) == 0
    assert main(["sample", str(tmp_path), "-n", "4", "--out", str(tmp_path / "grid")]) == 0
    assert f"wrote {tmp_path / 'grid.png'}" in capsys.readouterr().out
    assert (tmp_path / "grid.png").is_file() and not (tmp_path / "grid").exists()
    assert main(["sample", str(tmp_path), "-n", "4", "--out", str(tmp_path / "grid.txt")]) == 2


def test_read_only_run_directory_on_resume_is_one_line(tmp_path, capsys, monkeypatch):
    assert main(["train", "--out", str(tmp_path), *TINY, "--steps", "10"]) == 0
    real_open = os.open

    def read_only(path, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    assert main(["train", "--out", str(tmp_path), "--resume", *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot lock" in err and "read-only (EROFS)" in err


def test_mnist_files_that_are_fashion_mnist_are_named(tmp_path, capsys):
    fashion = ROOT.parent / "shared" / "data" / "fashion_mnist"
    if not fashion.is_dir():
        pytest.skip("the shared Fashion-MNIST files are not here")
    assert main(["train", "--out", str(tmp_path), "--data", "mnist", "--data-dir", str(fashion), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "holds Fashion-MNIST's train images (by its checksum), not MNIST's" in err and "--data fashion-mnist" in err


@pytest.mark.slow
def test_kill_9_during_saves_never_loses_the_last_checkpoint(tmp_path):
    """A run killed (SIGKILL) at random points, while it saves every step, resumes to the uninterrupted run."""
    flags = [*TINY, "--steps", "60", "--checkpoint-every", "1", "--log-every", "1"]
    assert main(["train", "--out", str(tmp_path / "whole"), *flags]) == 0
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "blackbox_vae", "train", "--out", str(out), *flags]
    generator = torch.Generator().manual_seed(1)
    for attempt in range(8):
        process = subprocess.Popen(command + (["--resume"] if (out / "checkpoint.pt").exists() else []),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        try:
            # the process needs a few seconds to start (imports), then saves every few milliseconds
            process.wait(timeout=4.0 + 4.0 * torch.rand((), generator=generator).item())
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
        if process.returncode == 0:
            break
        if (out / "checkpoint.pt").exists() and load_checkpoint(out / "checkpoint.pt")["step"] == 60:
            break  # killed after its last save (its digest matches: intact)
    else:
        resume = ["--resume"] if (out / "checkpoint.pt").exists() else []
        assert main(["train", "--out", str(out), *resume, *flags]) == 0
    if process.returncode != 0:  # a kill's leftovers go at the next start
        from blackbox_vae.cli.files import remove_stale_temporaries

        remove_stale_temporaries(out)
    no_temporaries(out)
    same_state(tmp_path / "whole", out)


@pytest.mark.parametrize("saved, loaded, setting", [
    ({"name": "flow", "flow": "maf"}, {"name": "flow", "flow": "iaf"}, "flow='maf'"),
    ({"name": "gmm", "components": 3}, {"name": "gmm", "components": 5}, "n_components=3"),
    ({"name": "gmm", "components": 3}, {"name": "flow"}, "sampler='GaussianMixtureSampler'"),
])
def test_a_sampler_state_loads_only_into_a_sampler_of_its_settings(saved, loaded, setting):
    from blackbox_vae.models.registry import build_models
    from blackbox_vae.samplers import build_sampler

    inf_net, gen_model = build_models("gaussian", 4, layers=[2], hidden=[8])
    options = {"fit_epochs": 2} if saved["name"] == "flow" else {}
    fitted = build_sampler(saved.pop("name"), gen_model, inf_net, **saved, **options).fit(torch.randn(40, 4))
    other = build_sampler(loaded.pop("name"), gen_model, inf_net, **loaded)
    with pytest.raises(ValueError, match=f"the state is of a sampler with {setting}"):
        other.load_state_dict(fitted.state_dict())
    same = build_sampler("gmm" if "components" in saved else "flow", gen_model, inf_net, **saved)
    same.load_state_dict(fitted.state_dict())  # the same settings load


def test_resume_beside_a_run_before_its_first_checkpoint_says_in_use(tmp_path, capsys):
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".lock").write_text(f'{{"pid": {alive.pid}, "host": "{os.uname().nodename}"}}')
        assert main(["train", "--out", str(tmp_path), "--resume", *TINY]) == 2
    finally:
        alive.kill()
        alive.wait()
    err = capsys.readouterr().err
    assert "is in use" in err and f"process {alive.pid}" in err and "no checkpoint" not in err


def test_a_checkpoint_of_another_run_is_refused(tmp_path, capsys):
    assert train(tmp_path / "sbn") == 0
    assert main(["train", "--out", str(tmp_path / "gaussian"), *TINY, "--model", "gaussian", "--layers", "2",
                 "--hidden", "8", "--loss", "iwae"]) == 0
    (tmp_path / "sbn" / "checkpoint.pt").write_bytes((tmp_path / "gaussian" / "checkpoint.pt").read_bytes())
    capsys.readouterr()
    for command in (["train", "--out", str(tmp_path / "sbn"), "--resume", *TINY, "--steps", "30"],
                    ["evaluate", str(tmp_path / "sbn"), "--k", "2", "--limit", "5"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "is not the checkpoint of the run" in err and "'sbn' in config.json, 'gaussian'" in err, err


def test_files_of_another_published_set_are_refused_and_unknown_ones_noted(tmp_path, capsys, monkeypatch):
    """The check itself, on small files standing in for the published ones (their digests planted)."""
    import hashlib

    from blackbox_vae.data import checksums, load_dataset

    sys.path.insert(0, str(Path(__file__).parent))
    from test_data import fake_mnist

    arrays = fake_mnist(tmp_path)
    digest = hashlib.sha256(arrays["train"][0].tobytes()).hexdigest()
    load_dataset("mnist", tmp_path, "static")  # contents of no published file: trained on, with a note
    assert "is not the published MNIST train images" in capsys.readouterr().err
    monkeypatch.setitem(checksums.PUBLISHED, digest, ("Fashion-MNIST", "train images"))
    with pytest.raises(Exception, match="holds Fashion-MNIST's train images .* not MNIST's train images"):
        load_dataset("mnist", tmp_path, "static")
    load_dataset("fashion-mnist", tmp_path, "static")  # the set it is: accepted


@pytest.mark.parametrize("flags", [
    ["--model", "nvae", "--data", "digits", "--arch", "encoder_channels=100000", "--arch", "image_size=8",
     "--arch", "scales=1", "--arch", "preprocess_blocks=1", "--arch", "postprocess_blocks=1"],
    ["--model", "nvae", "--data", "digits", "--arch", "groups_per_scale=100000"],
    ["--data", "digits", "--layers", "100000", "--hidden", "1000000"],
], ids=["nvae-channels", "nvae-groups", "sbn-widths"])
def test_sizes_that_cannot_fit_in_memory_are_refused_up_front(tmp_path, capsys, flags):
    assert main(["train", "--out", str(tmp_path / "run"), "--steps", "1", *flags]) == 2
    err = capsys.readouterr().err
    assert "parameters: training needs at least" in err and "GiB free" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_a_model_is_refused_against_the_free_memory_it_is_given(tmp_path, capsys, monkeypatch):
    """The refusal compares with the memory free now: a small model, on a machine said to have 1 KiB free.

    (The huge sizes above would be allocated, and the test process killed, if the check were gone.)
    """
    from blackbox_vae.models import size

    monkeypatch.setattr(size, "available_memory", lambda device: 1024)
    assert main(["train", "--out", str(tmp_path / "run"), "--steps", "1", "--data", "digits"]) == 2
    assert "GiB free" in capsys.readouterr().err and not (tmp_path / "run").exists()
    monkeypatch.setattr(size, "available_memory", lambda device: None)  # unknown: trained
    assert main(["train", "--out", str(tmp_path / "run"), "--steps", "1", "--data", "digits"]) == 0


def test_sample_refuses_a_count_that_cannot_fit_and_says_what_it_fits(tmp_path, capsys):
    assert train(tmp_path) == 0
    capsys.readouterr()
    assert main(["sample", str(tmp_path), "-n", "100000000000"]) == 2
    assert "so lower -n" in capsys.readouterr().err
    assert main(["sample", str(tmp_path), "-n", "4", "--sampler", "bernoulli-mixture"]) == 0
    err = capsys.readouterr().err
    assert "fitting --sampler bernoulli-mixture to the codes of" in err and "fitted --sampler" in err


@pytest.mark.parametrize("sampler, model", [("gmm", "gaussian"), ("bernoulli-mixture", "sbn"), ("flow", "gaussian")])
def test_sampler_fits_and_sampling_report_progress_in_plain_lines_without_a_terminal(tmp_path, capsys, monkeypatch,
                                                                                   sampler, model):
    from blackbox_vae import progress

    flags = ["-n", "4", "--sampler", sampler, *(["--fit-epochs", "3"] if sampler == "flow" else ["--components", "2"])]
    """Without a terminal (capsys's stderr is none), a long fit prints a plain line every few seconds; here every
    update, as if each took longer than PLAIN_LINE_SECONDS. One quicker than that prints nothing of the kind."""
    assert train(tmp_path, "--data", "digits", "--model", model) == 0
    capsys.readouterr()
    monkeypatch.setattr(progress, "PLAIN_LINE_SECONDS", 1e9)
    assert main(["sample", str(tmp_path), *flags]) == 0
    assert "s (" not in capsys.readouterr().err  # only the fit's start and end
    monkeypatch.setattr(progress, "PLAIN_LINE_SECONDS", 0.0)
    assert main(["sample", str(tmp_path), *flags]) == 0
    err = capsys.readouterr().err
    assert "Sampler: encoding: " in err and " points (" in err
    unit = "epoch" if sampler == "flow" else "iteration"
    assert f"Sampler: {'fitting' if sampler == 'flow' else 'EM'}: 1/" in err and f"{unit}s (" in err
    assert "Sampler: sampling: " in err and "\r" not in err  # plain lines, not a redrawn bar


def test_the_progress_of_em_is_the_same_fit_as_one_call(tmp_path):
    """The GMM's EM, run one warm-started iteration per call for its progress bar, ends where scikit-learn's
    single call with max_iter does."""
    from sklearn.mixture import GaussianMixture

    from blackbox_vae.samplers.gaussian_mixture import GaussianMixtureSampler

    codes = torch.randn(600, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    codes[:200] += 3
    sampler = GaussianMixtureSampler.__new__(GaussianMixtureSampler)
    torch.nn.Module.__init__(sampler)
    sampler.n_components, sampler.covariance_type, sampler.max_iter, sampler.seed = 3, "full", 100, 4
    sampler.progress = False
    for name in ("weights", "means", "scale_tril"):
        sampler.register_buffer(name, torch.empty(0))
    sampler._fit(codes)
    reference = GaussianMixture(3, covariance_type="full", max_iter=100, random_state=4, reg_covar=1e-6)
    reference.fit(codes.numpy())
    assert torch.allclose(sampler.means, torch.as_tensor(reference.means_), rtol=0, atol=1e-10)
    assert torch.allclose(sampler.weights, torch.as_tensor(reference.weights_), rtol=0, atol=1e-10)


@pytest.mark.parametrize("argument", ["data", "valid"])
def test_non_finite_rows_given_to_the_trainer_are_named_before_training(tmp_path, argument):
    """A NaN in tensor rows is named by row and column when the Trainer is built, not blamed on q's logits later."""
    from blackbox_vae import ELBOLoss, Trainer
    from blackbox_vae.models import GaussianMLPGenModel, GaussianMLPInfNet

    rows = torch.randn(40, 3)
    bad = rows.clone()
    bad[17, 2] = float("nan")
    loss = ELBOLoss(GaussianMLPInfNet(3, 2, [8]), GaussianMLPGenModel(2, 3, [8]), 1)
    data, valid = (bad, rows[:10]) if argument == "data" else (rows, bad)
    with pytest.raises(ValueError, match=f"`{argument}` row 18, column 3 is nan"):
        Trainer(loss, data, tmp_path / "run", valid=valid)
    Trainer(loss, rows, tmp_path / "run", valid=rows[:10])  # finite: accepted


@pytest.mark.slow  # a long end-to-end run: in `pytest -m slow` (and .ci/run)
def test_a_snapshot_that_cannot_be_written_is_one_line_and_resume_equals_an_uninterrupted_run(
        tmp_path, capsys, monkeypatch):
    snapshots = ["--data", "digits", "--snapshot-every", "10"]
    assert train(tmp_path / "whole", *snapshots) == 0
    with monkeypatch.context() as patch:
        FailingWrites(patch, "step-0000020", errno.ENOSPC)
        assert train(tmp_path / "faulty", *snapshots) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"cannot write {tmp_path / 'faulty' / 'snapshots' / 'step-0000020.png'}: no space left" in err
    no_temporaries(tmp_path / "faulty" / "snapshots")
    saved = load_checkpoint(tmp_path / "faulty" / "checkpoint.pt")["step"]
    assert f"(step {saved}) is kept" in err
    if saved < 20:
        assert train(tmp_path / "faulty", *snapshots, "--resume") == 0
    same_state(tmp_path / "whole", tmp_path / "faulty")


def test_a_tensorboard_write_that_fails_is_one_line(tmp_path, capsys, monkeypatch):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(SummaryWriter, "add_scalar", full_disk)
    assert train(tmp_path, "--data", "digits", "--tensorboard", "true") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"cannot write {tmp_path / 'tensorboard'}: no space left on the device (ENOSPC)" in err
