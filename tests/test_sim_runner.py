"""hwgen.sim.runner: build options for speed (SimSpeed) apart from the flags results depend on,
part of the build folder's hash, overridable for a benchmark, and what the C++ is compiled with."""
from pathlib import Path

from hwgen.sim.runner import FAST, VERILATOR_DEFAULTS, SimRun, SimSpeed, build_sim, run_cocotb, simulator_options

COUNTER = """\
module counter (input wire clk, input wire rst, output logic [7:0] count);
    always_ff @(posedge clk) count <= rst ? 8'd0 : count + 8'd1;
endmodule
"""

COUNTER_TB = """\
import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge, ReadOnly


@cocotb.test()
async def counts(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    await RisingEdge(dut.clk)
    dut.rst.value = 0
    for _ in range(5):
        await RisingEdge(dut.clk)
    await ReadOnly()
    assert int(dut.count.value) == 5
"""


def _run(tmp_path: Path, **kw) -> SimRun:
    src = tmp_path / "counter.sv"
    if not src.exists():
        src.write_text(COUNTER)
        (tmp_path / "counter_tb.py").write_text(COUNTER_TB)
    return SimRun(name="counter", sources=[src], toplevel="counter", test_module="counter_tb", test_dir=tmp_path,
                  **kw)


def test_speed_is_fast_by_default_and_keeps_the_result_flags(tmp_path):
    run = _run(tmp_path)
    assert run.speed == FAST
    assert "OPT_FAST=-O3" in FAST.make and "OPT_GLOBAL=-O3" in FAST.make
    # what the tests rely on is untouched: X values are zeros (x-initial unique only where asked)
    assert run.build_args[run.build_args.index("--x-assign") + 1] == "0"
    assert run.build_args[run.build_args.index("--x-initial") + 1] == "0"


def test_speed_is_part_of_the_build_folder(tmp_path):
    fast, default = _run(tmp_path), _run(tmp_path, speed=VERILATOR_DEFAULTS)
    assert fast.build_dir() != default.build_dir()
    assert fast.build_dir() == _run(tmp_path, speed=SimSpeed(make=FAST.make)).build_dir()
    threads = _run(tmp_path, speed=SimSpeed(("--threads", "2"), FAST.make))
    assert threads.build_dir() not in (fast.build_dir(), default.build_dir())


def test_simulator_options_apply_inside_the_block_only(tmp_path):
    other = SimSpeed(make=("OPT_FAST=-O1",))
    with simulator_options(other, build_root=tmp_path / "bench"):
        inside = _run(tmp_path)
        explicit = _run(tmp_path, speed=FAST, build_root=tmp_path / "mine")
    after = _run(tmp_path)
    assert inside.speed == other and inside.build_root == tmp_path / "bench"
    assert explicit.speed == FAST and explicit.build_root == tmp_path / "mine"
    assert after.speed == FAST and after.build_root != tmp_path / "bench"


def test_fast_build_compiles_the_model_at_O3_and_runs(tmp_path):
    """A real build: the model's per-cycle code and the runtime library (VPI) at -O3, not
    Verilator's -Os; a benchmark's Verilator flag comes after the default it replaces; the
    cocotb test passes on it."""
    run = _run(tmp_path, build_root=tmp_path / "builds",
               speed=SimSpeed(("--x-assign", "fast"), FAST.make))
    folder = build_sim(run)
    log = (folder / "build.log").read_text()
    # every compile but the run-once (Slow) code: the model, verilated*.cpp (VPI), cocotb's main loop
    compiles = {line.split()[-1]: f" {line} " for line in log.splitlines() if " -c " in line and "Slow" not in line}
    assert any(src.endswith("verilated_vpi.cpp") for src in compiles), compiles
    assert any(src.endswith("verilator.cpp") for src in compiles), compiles
    assert all(" -O3 " in line and " -Os " not in line for line in compiles.values()), compiles
    verilate = (folder / "Vtop__verFiles.dat").read_text().splitlines()[1]
    assert verilate.index("--x-assign fast") > verilate.index("--x-assign 0")
    assert "--public-depth 1" in verilate
    assert run_cocotb(run) == 1


def test_unit_harnesses_keep_verilators_defaults(tmp_path):
    """The unit testbenches spend their time in Python: -O3 would only make their builds slower."""
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    from hwgen.sim.runner import UNITS, unit_sim_run

    class Inverter(wiring.Component):
        a: In(1)
        y: Out(1)

        def elaborate(self, platform):
            m = Module()
            m.d.comb += self.y.eq(~self.a)
            return m

    run = unit_sim_run(Inverter(), top="inverter", harness="lif_harness.sv", name="inv", rtl_dir=tmp_path,
                       parameters={}, test_module="x", test_dir=tmp_path, plan={})
    assert run.speed == UNITS == VERILATOR_DEFAULTS
    assert _run(tmp_path).speed == FAST          # the core harness (hwgen.sim.core makes a plain SimRun)
