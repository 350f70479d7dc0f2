"""pytest entry for the accumulator array testbench (rtl_tests/acc_tb.py), one simulator per config."""
from pathlib import Path

import pytest

from hwgen.sim.accumulator import acc_sim_run
from hwgen.sim.runner import run_cocotb

HERE = Path(__file__).parent


def test_accumulator_bit_exact(acc_hw):
    """Random layer sweep, edge maps, encoding planes, overflow and backpressure on one config."""
    run_cocotb(acc_sim_run(acc_hw, test_module="acc_tb", test_dir=HERE))


def test_broken_golden_value_is_caught(acc_hw, capfd):
    run = acc_sim_run(acc_hw, test_module="acc_tb", test_dir=HERE, testcase="edge_maps",
                      env={"HWGEN_ACC_MUTATE_GOLDEN": "1"})
    with pytest.raises((SystemExit, AssertionError)):
        run_cocotb(run)
    out = capfd.readouterr()
    assert "accumulator differs at timestep=" in out.out + out.err


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
    run_cocotb(acc_sim_run(hw, test_module="acc_tb", test_dir=HERE, testcase="bench_layers",
                           env={"HWGEN_ACC_BENCH_IN": str(spec), "HWGEN_ACC_BENCH_OUT": str(out)}))
    import json
    rows = json.loads(out.read_text())
    assert [r["label"] for r in rows] == [layer[0] for layer in layers]


def test_generated_verilog_and_harness_lint_clean(acc_hw, tmp_path):
    """`verilator --lint-only -Wall` on the generated unit (Amaranth waivers of hwgen/lint.py,
    scoped to the generated file) and on the harness with it, for every test config."""
    from hwgen.build import emit_verilog
    from hwgen.lint import lint, write_waivers
    from hwgen.sim.accumulator import TEMPLATES
    from hwgen.units.accumulator import AccumulatorArray

    unit = tmp_path / "acc_array.v"
    unit.write_text(emit_verilog(AccumulatorArray(acc_hw.accumulator), "acc_array"))
    for name in ("acc_harness.sv", "harness_rng.sv"):
        (tmp_path / name).write_text((TEMPLATES / name).read_text())
    waivers = write_waivers(tmp_path / "amaranth_waivers.vlt", [unit])
    ok, report = lint(["./acc_array.v"], "acc_array", f"./{waivers.name}", tmp_path)
    assert ok, report
    params = acc_sim_run(acc_hw, test_module="acc_tb", test_dir=HERE).parameters
    ok, report = lint([*(f"-G{k}={v}" for k, v in params.items()), "./acc_harness.sv", "./harness_rng.sv",
                       "./acc_array.v"], "acc_harness", f"./{waivers.name}", tmp_path)
    assert ok, report
