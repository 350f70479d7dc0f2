"""cocotb side of the core harness: reset, `go`, wait for `finished`. Nothing per cycle: the
harness executes the script and writes the log itself (templates/core_harness.sv)."""
from __future__ import annotations

import os

import cocotb
from cocotb.triggers import First, RisingEdge, Timer

TIMEOUT_ENV = "HWGEN_CORE_TIMEOUT_CYCLES"


@cocotb.test()
async def run_script(dut):
    limit = int(os.environ.get(TIMEOUT_ENV, "2000000000"))
    # the harness's own clock: 10 ns, rising at 5, 15, 25, ...; inputs change between edges
    dut.go.value = 0
    dut.rst.value = 1
    await Timer(30, unit="ns")
    dut.rst.value = 0
    await Timer(20, unit="ns")
    dut.go.value = 1            # seen by exactly one edge
    await Timer(10, unit="ns")
    dut.go.value = 0
    await Timer(10, unit="ns")
    if not int(dut.finished.value):
        await First(RisingEdge(dut.finished), Timer(limit * 10, unit="ns"))
    assert int(dut.finished.value), f"core harness not finished after {limit} cycles"
