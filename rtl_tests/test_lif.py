"""pytest entry for the LIF core testbench (rtl_tests/lif_tb.py): one item per cocotb test and
config (``pytest -k random_currents`` runs that test alone), one Verilator build per config."""
from pathlib import Path

import pytest

from hwgen.sim.lif import lif_sim_run
from hwgen.sim.runner import cocotb_tests, run_cocotb

HERE = Path(__file__).parent
#: every test of lif_tb.py but the replay, which needs an exported program (test_replay_digits.py)
TESTS = [name for name in cocotb_tests(HERE / "lif_tb.py") if name != "replay_traces"]


@pytest.mark.parametrize("testcase", TESTS)
def test_lif_core_bit_exact(lif_hw, testcase):
    """One cocotb test of lif_tb.py on one config: random, directed, backpressure, full stream."""
    run_cocotb(lif_sim_run(lif_hw, test_module="lif_tb", test_dir=HERE, testcase=testcase, plan={"updates": 40000}))


def test_broken_golden_value_is_caught(lif_hw, golden_break_caught):
    """The comparison is live: one golden membrane off by one LSB must fail the run and the
    report must name the first mismatch."""
    run = lif_sim_run(lif_hw, test_module="lif_tb", test_dir=HERE, testcase="timesteps_one_and_four",
                      plan={"mutate_golden": True})
    golden_break_caught(run, "membrane differs at timestep=")
