"""pytest entry for the LIF core testbench (rtl_tests/lif_tb.py), one simulator per config."""
from pathlib import Path

import pytest

from hwgen.sim.lif import lif_sim_run
from hwgen.sim.runner import run_cocotb

HERE = Path(__file__).parent


def test_lif_core_bit_exact(lif_hw):
    """All cocotb tests of lif_tb.py on one config: random, directed and backpressure cases."""
    run = lif_sim_run(lif_hw, test_module="lif_tb", test_dir=HERE, env={"HWGEN_LIF_UPDATES": "40000"})
    run_cocotb(run)


def test_broken_golden_value_is_caught(lif_hw, capfd):
    """The comparison is live: one golden membrane off by one LSB must fail the run and the
    report must name the first mismatch."""
    run = lif_sim_run(lif_hw, test_module="lif_tb", test_dir=HERE, testcase="timesteps_one_and_four",
                      env={"HWGEN_LIF_MUTATE_GOLDEN": "1"})
    with pytest.raises((SystemExit, AssertionError)):
        run_cocotb(run)
    out = capfd.readouterr()
    assert "membrane differs at timestep=" in out.out + out.err
