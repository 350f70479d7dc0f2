"""Shared test setup: one torch thread (tiny tensors; two threads only contend on 2 cores), and
the bundled digits program."""
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def digits_t4_program(tmp_path_factory):
    """The bundled digits model (SDSA-3, T = 4) quantized for configs/hw/digits.yaml, exported
    without traces."""
    from contract.config import load_config
    from golden.digits import PIXEL_LEVELS
    from golden.export import export_program, load_model
    from golden.fold import fold_model
    from golden.quantize import quantize

    model = load_model(REPO / "checkpoints" / "digits_sdsa3_t4.pth")
    hw = load_config(REPO / "configs" / "hw" / "digits.yaml")
    prog = quantize(fold_model(model), hw, input_scale=1 / PIXEL_LEVELS, input_shape=[1, 32, 32])
    out = tmp_path_factory.mktemp("digits_t4") / "program"
    export_program(prog, out, log=lambda m: None)
    return out
