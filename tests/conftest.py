"""Shared fixtures and Hypothesis profiles.

Every test that takes `device` runs on CPU, and on CUDA when present.
Property tests use the "blackbox-quick" Hypothesis profile (5 derandomized
examples per test) unless HYPOTHESIS_PROFILE names another, e.g.
`HYPOTHESIS_PROFILE=blackbox-thorough python -m pytest tests/test_properties.py`.
"""

import os

import pytest
import torch
from hypothesis import settings

from blackbox_vae.testing.strategies import register_profiles

# Under pytest-xdist each worker is a process of its own: one thread each, or their thread pools fight over
# the cores (measured: 2 workers of 2 threads each took three times as long as one process).
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

register_profiles()
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "blackbox-quick"))

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
