"""The mutation check (tests/mutation_check.py) stays in step with the code: every edit applies, and every
exported estimator has a planted bug. Running the mutants takes minutes: `.ci/run` runs the script itself."""

import inspect
from pathlib import Path

import pytest

import blackbox_vae
from mutation_check import MUTANTS, ROOT, apply


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name[:60] for m in MUTANTS])
def test_every_mutant_applies_to_the_current_code(mutant, tmp_path):
    target = tmp_path / mutant.path
    target.parent.mkdir(parents=True)
    target.write_text((ROOT / mutant.path).read_text())
    apply(mutant, tmp_path)
    assert target.read_text() != (ROOT / mutant.path).read_text()


def test_every_exported_loss_has_a_mutant():
    losses = [getattr(blackbox_vae, n) for n in blackbox_vae.__all__]
    losses = [c for c in losses if isinstance(c, type) and issubclass(c, blackbox_vae.Loss) and c is not blackbox_vae.Loss]
    mutated = {mutant.path for mutant in MUTANTS}
    for loss_class in losses:
        path = Path(inspect.getsourcefile(loss_class)).resolve().relative_to(ROOT).as_posix()
        assert path in mutated, f"{loss_class.__name__} ({path}) has no mutant in tests/mutation_check.py"
