"""pytest entry for the SDSA unit testbench (rtl_tests/sdsa_tb.py), one simulator per config.

The hardware configs are configs/hw/sdsa*.yaml (the ``sdsa:`` section of HwConfig).
"""
from pathlib import Path

import pytest

from contract.config import ConfigError, load_config
from hwgen.sim.runner import cocotb_tests, run_cocotb
from hwgen.sim.sdsa import sdsa_sim_run
from hwgen.units.sdsa import SdsaConfig, SdsaUnit

HERE = Path(__file__).parent

# configs/hw/sdsa*.yaml between them: all four variants; lanes 1, 3, 4, 8 (powers of two and
# not); lanes below, equal to and above head_dim, head_dim not a multiple of lanes (partial
# blocks); widths at their proven minimum (sdsa3_l4, sdsa1_l8) and wider than needed; output
# beats of 1 (sdsa2_l1), 2 (sdsa3_l4, sdsa1_l8) and 3 (sdsa4_l3) lane blocks.
CONFIG_DIR = HERE.parent / "configs" / "hw"
SDSA_CONFIGS = {name: load_config(CONFIG_DIR / f"{name}.yaml").to_dict()["sdsa"]
                for name in ("sdsa3_l4", "sdsa4_l3", "sdsa1_l8", "sdsa2_l1")}


#: every test of sdsa_tb.py but the replay, which needs an exported program (test_replay_digits.py)
TESTS = [name for name in cocotb_tests(HERE / "sdsa_tb.py") if name != "replay_traces"]


@pytest.fixture(params=sorted(SDSA_CONFIGS))
def sdsa_cfg(request):
    return request.param, load_config(CONFIG_DIR / f"{request.param}.yaml").sdsa


@pytest.mark.parametrize("testcase", TESTS)
def test_sdsa_unit_bit_exact(sdsa_cfg, testcase):
    """One cocotb test of sdsa_tb.py on one config: random rates and geometries with
    backpressure, extremes, heavy backpressure, a corrupted golden value that must be caught,
    full-stream cycle counts (``pytest -k extremes`` runs that test alone)."""
    name, cfg = sdsa_cfg
    run_cocotb(sdsa_sim_run(cfg, name=name, test_module="sdsa_tb", test_dir=HERE, testcase=testcase,
                            plan={"values": 60000, "cases": 600}))


def test_generated_verilog_and_harness_lint_clean(sdsa_cfg, lint_clean):
    """`verilator --lint-only -Wall` on the generated unit alone and on harness + unit
    (rtl_tests/conftest.py: lint_clean)."""
    name, cfg = sdsa_cfg
    lint_clean(SdsaUnit(cfg=cfg), "sdsa_unit", sdsa_sim_run(cfg, name=name, test_module="sdsa_tb", test_dir=HERE))


def test_sdsa4_is_sdsa3_hardware():
    """SDSA-4 differs from SDSA-3 only in the attention neuron's (learned) threshold: the unit
    generated for either is the same Verilog (docs/sdsa.md)."""
    from hwgen.build import emit_verilog

    raw = SDSA_CONFIGS["sdsa4_l3"]
    v3, v4 = (emit_verilog(SdsaUnit(cfg=SdsaConfig.from_dict(dict(raw, variant=v))), "sdsa_unit") for v in (3, 4))
    assert v3 == v4


@pytest.mark.parametrize("key, value, words", [
    ("count_width", 4, "count_width = 4: must be >= 5"),          # max_tokens 20 needs 5 bits
    ("acc_width", 6, "acc_width = 6: must be >= 8"),              # A <= 20 * 7 = 140
    ("variant", 5, "variant = 5: must be one of 1, 2, 3, 4"),
    ("lanes", 0, "lanes = 0: must be >= 1"),
])
def test_config_errors_name_key_and_value(key, value, words):
    raw = dict(SDSA_CONFIGS["sdsa4_l3"], count_width=8, acc_width=12)
    raw[key] = value
    with pytest.raises(ConfigError) as e:
        SdsaConfig.from_dict(raw, "cfg.yaml")
    assert f"cfg.yaml: sdsa.{words}" in str(e.value)
