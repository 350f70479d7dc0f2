"""Shared fixtures for the RTL tests: hardware configs under test."""
from pathlib import Path

import pytest

from contract.config import load_config

REPO = Path(__file__).resolve().parents[1]
LIF_CONFIGS = ["lif_small", "lif_wide", "lif_subtract"]

#: Unit testbenches in the default run: every cocotb test on each unit's first config, and on the
#: other configs the random sweep and the lint only (the fuzzed configurations of tests/gateware cover more
#: shapes); ``-m slow`` runs every test on every config.
FULL_CONFIG = {"lif_hw": "lif_small", "acc_hw": "acc_small", "sdsa_cfg": "sdsa3_l4"}
ON_EVERY_CONFIG = {"random_currents", "random_layers", "random_spikes"}


@pytest.hookimpl(tryfirst=True)         # before -m deselects by marker
def pytest_collection_modifyitems(items):
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "lint" in item.name:
            continue                    # every config's Verilog is linted in the default run
        for fixture, full in FULL_CONFIG.items():
            if fixture in params and params[fixture] != full and params.get("testcase") not in ON_EVERY_CONFIG:
                item.add_marker(pytest.mark.slow)


@pytest.fixture(params=LIF_CONFIGS)
def lif_hw(request):
    return load_config(REPO / "configs" / "hw" / f"{request.param}.yaml")

ACC_CONFIGS = ["acc_small", "acc_wide", "acc_odd"]


@pytest.fixture(params=ACC_CONFIGS)
def acc_hw(request):
    return load_config(REPO / "configs" / "hw" / f"{request.param}.yaml")


def _export_digits(tmp_path_factory, checkpoint: str, config: str):
    import torch

    from golden.digits import PIXEL_LEVELS, load_digits_split
    from golden.export import export_program, load_model
    from golden.fold import fold_model
    from golden.quantize import quantize

    hw = load_config(REPO / "configs" / "hw" / config)
    model = load_model(REPO / "checkpoints" / checkpoint)
    _, _, x_test, y_test = load_digits_split(size=32)
    program = quantize(fold_model(model), hw, input_scale=1 / PIXEL_LEVELS, input_shape=list(x_test.shape[1:]),
                       model_name=checkpoint)
    with torch.no_grad():
        logits = model(x_test[:2])
    out = tmp_path_factory.mktemp("digits") / "program"
    export_program(program, out, images=x_test[:2], labels=y_test[:2], float_logits=logits, log=lambda m: None)
    return out


@pytest.fixture(scope="session")
def digits_program(tmp_path_factory):
    """The bundled digits model (SDSA-3, T = 4), quantized for configs/hw/digits.yaml and
    exported with traces of two test images."""
    return _export_digits(tmp_path_factory, "digits_sdsa3_t4.pth", "digits.yaml")


@pytest.fixture(scope="session")
def digits_sdsa1_program(tmp_path_factory):
    """The bundled digits model trained with SDSA-1 (T = 1)."""
    return _export_digits(tmp_path_factory, "digits_sdsa1_t1.pth", "digits_sdsa1.yaml")


@pytest.fixture(scope="session")
def digits_t1_program(tmp_path_factory):
    """The bundled digits model (SDSA-3) at T = 1."""
    return _export_digits(tmp_path_factory, "digits_sdsa3_t1.pth", "digits.yaml")


@pytest.fixture(scope="session")
def digits16_program(tmp_path_factory):
    """The bundled digits model (SDSA-3, T = 1) for 16 lanes: stage 4's heads of 24 are padded."""
    return _export_digits(tmp_path_factory, "digits_sdsa3_t1.pth", "digits16.yaml")


@pytest.fixture
def lint_clean(tmp_path):
    """``lint_clean(component, top, sim_run)``: `verilator --lint-only -Wall` on the generated unit
    alone (the Amaranth waivers of hwgen/lint.py, scoped to the generated file, as `hwgen build`
    writes them), then on its harness and the shared harness kit with it, with the parameters
    the simulation build of ``sim_run`` uses: the hand-written harness gets no waiver."""
    from hwgen.build import emit_verilog
    from hwgen.lint import lint, write_waivers
    from hwgen.sim.runner import TEMPLATES

    def check(component, top: str, sim_run) -> None:
        unit = tmp_path / f"{top}.v"
        unit.write_text(emit_verilog(component, top))
        waivers = write_waivers(tmp_path / "amaranth_waivers.vlt", [unit])
        ok, report = lint([f"./{unit.name}"], top, f"./{waivers.name}", tmp_path)
        assert ok, report
        templates = [Path(src).name for src in sim_run.sources if Path(src).parent == TEMPLATES]
        for name in templates:
            (tmp_path / name).write_text((TEMPLATES / name).read_text())
        ok, report = lint([*(f"-G{k}={v}" for k, v in sim_run.parameters.items()), *(f"./{n}" for n in templates),
                           f"./{unit.name}"], sim_run.toplevel, f"./{waivers.name}", tmp_path)
        assert ok, report
    return check


@pytest.fixture
def golden_break_caught(capfd):
    """``golden_break_caught(run, phrase)``: a run with a deliberately broken golden value must
    fail, and its report must name the first mismatch (``phrase``)."""
    from hwgen.sim.runner import run_cocotb

    def check(run, phrase: str) -> None:
        with pytest.raises((SystemExit, AssertionError)):
            run_cocotb(run)
        out = capfd.readouterr()
        assert phrase in out.out + out.err
    return check


#: the golden value corrupt_image_1 flips: image 1 of a run, the attention neuron, timestep 0, channel 5
BAD_LAYER, BAD_AT = "block3.0.attn.attn_lif", (0, 0, 5, 1, 0)


@pytest.fixture
def corrupt_image_1(monkeypatch):
    """The golden engine, wrong in one spike (BAD_LAYER at BAD_AT) of the second image it is
    asked about; the value is the corrupted layer's name."""
    from golden.intsim import IntegerEngine

    calls = {"n": 0}
    run = IntegerEngine.run

    def wrong_once(self, pixels, **kw):
        env = run(self, pixels, **kw)
        if calls["n"] == 1:
            env[BAD_LAYER] = env[BAD_LAYER].clone()
            env[BAD_LAYER][BAD_AT] ^= 1
        calls["n"] += 1
        return env

    monkeypatch.setattr(IntegerEngine, "run", wrong_once)
    return BAD_LAYER
