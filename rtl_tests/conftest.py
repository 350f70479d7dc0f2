"""Shared fixtures for the RTL tests: hardware configs under test."""
from pathlib import Path

import pytest

from hwgen.config import load_config

REPO = Path(__file__).resolve().parents[1]
LIF_CONFIGS = ["lif_small", "lif_wide", "lif_subtract"]


@pytest.fixture(params=LIF_CONFIGS)
def lif_hw(request):
    return load_config(REPO / "configs" / "hw" / f"{request.param}.yaml")

ACC_CONFIGS = ["acc_small", "acc_wide", "acc_odd"]


@pytest.fixture(params=ACC_CONFIGS)
def acc_hw(request):
    return load_config(REPO / "configs" / "hw" / f"{request.param}.yaml")
