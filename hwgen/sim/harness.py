"""The file-driven harness kit: what every unit's driver shares (pytest side and cocotb side).

A harness (``templates/*_harness.sv``, built from ``harness_source``, ``harness_sink``,
``harness_rom`` and ``harness_rng``) reads its stimuli with ``$readmemh`` on a ``load`` pulse,
runs on ``go`` until it raises ``finished``, and writes its results with ``$writememh`` on
``dump``. Python never runs per cycle: it waits on the ``finished`` edge itself.

Test parameters travel in a *test plan*: a JSON file the pytest side writes
(``hwgen.sim.runner``) and the cocotb side reads with :func:`test_plan` (its path is the
``+hwgen_plan`` plusarg). The plan holds the unit's configuration under ``"config"`` and any
parameter of the test (seed, sizes, input files, a deliberately broken golden value).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from hwgen.hexfile import read_words, write_words

__all__ = ["FileHarness", "test_plan", "PLAN_PLUSARG", "DEFAULT_SEED"]

PLAN_PLUSARG = "hwgen_plan"
DEFAULT_SEED = 20261128
_PLAN: dict | None = None


def test_plan() -> dict:
    """The running test's plan (cocotb side); ``{}`` when the run was given none."""
    global _PLAN
    if _PLAN is None:
        import cocotb

        path = cocotb.plusargs.get(PLAN_PLUSARG)
        _PLAN = json.loads(Path(str(path)).read_text()) if path else {}
    return _PLAN


test_plan.__test__ = False      # not a pytest test


class FileHarness:
    """Clock, reset and the load / go / finished / dump handshake of one harness, and
    :meth:`exchange`: files in, run-time ports set, run, status ports and the result file out."""

    PERIOD_NS = 10

    def __init__(self, dut, workdir: Path | None = None):
        import cocotb
        from cocotb.clock import Clock

        self.dut = dut
        self.log = dut._log
        self.plan = test_plan()
        self.workdir = Path(workdir or Path.cwd())
        self.sim_wall = 0.0           # wall seconds of the last run, `go` to `finished`
        cocotb.start_soon(Clock(dut.clk, self.PERIOD_NS, unit="ns").start())
        self._reset_done = False

    @property
    def seed(self) -> int:
        return int(self.plan.get("seed", DEFAULT_SEED))

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

    async def exchange(self, *, inputs: dict[str, np.ndarray], ports: dict[str, int], status: tuple[str, ...],
                       result: str, result_bits: int, limit_cycles: int,
                       progress: Callable[[], str]) -> tuple[dict[str, int], np.ndarray]:
        """One run: write each ``inputs`` bit matrix to its file, set the run-time ``ports``,
        run, read the ``status`` ports, dump and read ``result`` (``result_bits`` a word)."""
        await self.ensure_reset()
        for name, bits in inputs.items():
            write_words(self.workdir / name, bits)
        res = self.workdir / result
        res.unlink(missing_ok=True)
        for name, value in ports.items():
            getattr(self.dut, name).value = int(value)
        t0 = await self.launch()
        await self.wait_finished(limit_cycles, progress)
        self.sim_wall = time.perf_counter() - t0
        values = {name: int(getattr(self.dut, name).value) for name in status}
        await self.collect()
        return values, (read_words(res, result_bits) if res.exists() else np.zeros((0, result_bits), dtype=np.uint8))
