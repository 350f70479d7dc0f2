"""cocotb side of the core harness: reset, `go`, wait for `finished`. Nothing per cycle: the
harness executes the script and writes the log itself (templates/core_harness.sv)."""
from __future__ import annotations

import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import First, RisingEdge, Timer

TIMEOUT_ENV = "HWGEN_CORE_TIMEOUT_CYCLES"


@cocotb.test()
async def run_script(dut):
    limit = int(os.environ.get(TIMEOUT_ENV, "2000000000"))
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.go.value = 0
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    dut.go.value = 1
    await RisingEdge(dut.clk)
    dut.go.value = 0
    await RisingEdge(dut.clk)
    if not int(dut.finished.value):
        await First(RisingEdge(dut.finished), Timer(limit * 10, unit="ns"))
    assert int(dut.finished.value), f"core harness not finished after {limit} cycles"
