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
