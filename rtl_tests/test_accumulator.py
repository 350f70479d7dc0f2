"""pytest entry for the accumulator array testbench (rtl_tests/acc_tb.py): one item per cocotb
test and config (``pytest -k folded_remainder`` runs that test alone), one build per config."""
from pathlib import Path

import pytest

from hwgen.sim.accumulator import acc_sim_run
from hwgen.sim.runner import cocotb_tests, run_cocotb

HERE = Path(__file__).parent
#: every test of acc_tb.py but the replay of layers from a file (test_digits_model_layers_replay)
TESTS = [name for name in cocotb_tests(HERE / "acc_tb.py") if name != "replay_layers"]


@pytest.mark.parametrize("testcase", TESTS)
def test_accumulator_bit_exact(acc_hw, testcase):
    """One cocotb test of acc_tb.py on one config: random layer sweep, edge maps, lanes over x,
    folded remainder, encoding planes, overflow, backpressure."""
    run_cocotb(acc_sim_run(acc_hw, test_module="acc_tb", test_dir=HERE, testcase=testcase, plan={}))


def test_broken_golden_value_is_caught(acc_hw, golden_break_caught):
    run = acc_sim_run(acc_hw, test_module="acc_tb", test_dir=HERE, testcase="edge_maps",
                      plan={"mutate_golden": True})
    golden_break_caught(run, "accumulator differs at timestep=")


def test_digits_model_layers_replay(tmp_path, digits_program):
    """Every conv and linear layer of the digits model, on its exported traced spikes (and the
    encoding layer on the traced pixels' bit planes), runs on the RTL of configs/hw/digits.yaml
    and equals both the golden engine and the exported trace, accumulator for accumulator."""
    from contract.config import load_config
    from hwgen.sim.accumulator import layers_from_program, write_layer_specs

    hw = load_config(HERE.parent / "configs" / "hw" / "digits.yaml")
    layers = layers_from_program(digits_program, hw.accumulator)
    assert sum(1 for layer in layers if layer[5] > 1) == 1, "the encoding layer must be among them"
    spec = tmp_path / "layers.npz"
    write_layer_specs(spec, layers)
    out = tmp_path / "out.json"
    run_cocotb(acc_sim_run(hw, test_module="acc_tb", test_dir=HERE, testcase="replay_layers",
                           plan={"layers_in": str(spec), "layers_out": str(out)}))
    import json
    rows = json.loads(out.read_text())
    assert [r["label"] for r in rows] == [layer[0] for layer in layers]


def test_generated_verilog_and_harness_lint_clean(acc_hw, lint_clean):
    """`verilator --lint-only -Wall` on the generated unit and on the harness with it, for every
    test config (rtl_tests/conftest.py: lint_clean)."""
    from hwgen.units.accumulator import AccumulatorArray

    lint_clean(AccumulatorArray(acc_hw.accumulator), "acc_array", acc_sim_run(acc_hw, test_module="acc_tb", test_dir=HERE))
