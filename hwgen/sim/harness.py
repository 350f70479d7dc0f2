"""What every file-driven harness driver shares (cocotb side).

A harness (``templates/*_harness.sv``) reads its stimuli with ``$readmemh`` on a ``load``
pulse, runs on ``go`` until it raises ``finished``, and writes its results with ``$writememh``
on ``dump``. Python never runs per cycle: it waits on the ``finished`` edge itself.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

__all__ = ["FileHarness"]


class FileHarness:
    """Clock, reset and the load / go / finished / dump handshake of one harness."""

    PERIOD_NS = 10

    def __init__(self, dut, workdir: Path | None = None):
        import cocotb
        from cocotb.clock import Clock

        self.dut = dut
        self.log = dut._log
        self.workdir = Path(workdir or Path.cwd())
        cocotb.start_soon(Clock(dut.clk, self.PERIOD_NS, unit="ns").start())
        self._reset_done = False

    async def pulse(self, sig) -> None:
        """Drive ``sig`` high for exactly one rising edge."""
        from cocotb.triggers import RisingEdge

        sig.value = 1
        await RisingEdge(self.dut.clk)
        sig.value = 0

    async def reset(self) -> None:
        from cocotb.triggers import RisingEdge

        d = self.dut
        for s in (d.load, d.go, d.dump):
            s.value = 0
        d.rst.value = 1
        for _ in range(2):
            await RisingEdge(d.clk)
        d.rst.value = 0
        await RisingEdge(d.clk)
        self._reset_done = True

    async def ensure_reset(self) -> None:
        if not self._reset_done:
            await self.reset()

    async def launch(self) -> float:
        """Pulse ``load`` then ``go``; return the wall time at ``go``."""
        from cocotb.triggers import RisingEdge

        await self.pulse(self.dut.load)
        t0 = time.perf_counter()
        await self.pulse(self.dut.go)
        await RisingEdge(self.dut.clk)  # let `go` clear `finished` before polling it
        return t0

    async def wait_finished(self, limit_cycles: int, progress: Callable[[], str]) -> None:
        """Wait for ``finished`` (at most ``limit_cycles``), then one more edge. On timeout,
        raise naming how far the run got (``progress()``)."""
        from cocotb.triggers import First, RisingEdge, Timer

        d = self.dut
        if not int(d.finished.value):
            await First(RisingEdge(d.finished), Timer(limit_cycles * self.PERIOD_NS, unit="ns"))
            if not int(d.finished.value):
                raise TimeoutError(f"{d._name} not finished after {limit_cycles} cycles ({progress()})")
        await RisingEdge(d.clk)

    async def collect(self) -> None:
        """Pulse ``dump`` and let the result file be written."""
        from cocotb.triggers import RisingEdge

        await self.pulse(self.dut.dump)
        await RisingEdge(self.dut.clk)
