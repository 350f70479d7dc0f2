"""pytest entry for the LIF core testbench (rtl_tests/lif_tb.py), one simulator per config."""
from pathlib import Path

from hwgen.sim.lif import lif_sim_run
from hwgen.sim.runner import run_cocotb

HERE = Path(__file__).parent


def test_lif_core_bit_exact(lif_hw):
    """All cocotb tests of lif_tb.py on one config: random, directed and backpressure cases."""
    run = lif_sim_run(lif_hw, test_module="lif_tb", test_dir=HERE,
                      testcase=None, env={"HWGEN_LIF_UPDATES": "40000"})
    run.testcase = None
    run_cocotb(run)
