"""Running the LIF core in simulation through its file-driven harness.

Two halves:

* :func:`lif_sim_run` (pytest / scripts side) generates the core's Verilog for a config and
  returns a :class:`~hwgen.sim.runner.SimRun` for ``templates/lif_harness.sv``.
* :class:`LifHarness` (cocotb side) writes stimulus files, lets the RTL run on its own and
  reads the results back as arrays shaped like the golden model's.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.config import HwConfig, LifConfig
from hwgen.hexfile import pack_bits, unpack_fields
from hwgen.sim.harness import FileHarness
from hwgen.sim.runner import REPO_ROOT, SimRun, range_bits, unit_sim_run

__all__ = ["lif_sim_run", "LifHarness", "LifResult", "HARNESS_DEPTH"]

HARNESS_DEPTH = 1 << 16     # most beats x timesteps per harness run


def lif_sim_run(hw: HwConfig, *, test_module: str, test_dir: Path, testcase: str | None = None,
                plan: dict | None = None) -> SimRun:
    """The LIF harness for ``hw.lif``; ``plan`` (test parameters) gets the config added."""
    from hwgen.units.lif import LifCore

    cfg = hw.lif
    params = {
        "LANES": cfg.lanes,
        "CURRENT_WIDTH": cfg.current_width,
        "MEMBRANE_WIDTH": cfg.membrane_width,
        "THRESHOLD_WIDTH": cfg.threshold_width,
        "BEATS_WIDTH": range_bits(cfg.beats + 1),
        "ROWS_WIDTH": range_bits(cfg.threshold_rows + 1),
        "ROW_ADDR_WIDTH": range_bits(max(cfg.threshold_depth, 2)),
        "STEPS_WIDTH": range_bits(cfg.max_timesteps + 1),
        "DEPTH": HARNESS_DEPTH,
    }
    return unit_sim_run(LifCore(cfg), top="lif_core", harness="lif_harness.sv", name=f"lif-{hw.name}",
                        rtl_dir=REPO_ROOT / "build" / "rtl" / f"{hw.name}-{hw.hash}", parameters=params,
                        test_module=test_module, test_dir=test_dir, testcase=testcase,
                        plan={**(plan or {}), "config": hw.to_dict()})


@dataclass
class LifResult:
    spikes: np.ndarray      # [T, N] int64 0/1
    membranes: np.ndarray   # [T, N] int64, pre-reset H
    stamps: np.ndarray      # [T, beats] cycle at which each output beat was taken
    cycles: int             # start .. done


class LifHarness(FileHarness):
    """cocotb-side driver of ``lif_harness``: one :meth:`run` per image."""

    def __init__(self, dut, cfg: LifConfig | None = None, workdir: Path | None = None):
        super().__init__(dut, workdir)
        self.cfg = cfg or HwConfig.from_dict(self.plan["config"], "test plan").lif

    async def run(self, currents: np.ndarray, thresholds: np.ndarray, *, seed: int = 1,
                  in_idle: int = 0, out_stall: int = 0, timeout_cycles: int | None = None) -> LifResult:
        """Run one image: ``currents[T, N]`` (N a multiple of lanes), ``thresholds[C]``
        (C a multiple of lanes dividing N). ``in_idle`` / ``out_stall`` are probabilities in
        1/256 of an idle input cycle / a stalled output cycle."""
        cfg = self.cfg
        currents = np.asarray(currents, dtype=np.int64)
        thresholds = np.asarray(thresholds, dtype=np.int64)
        T, N = currents.shape
        L = cfg.lanes
        beats, rows = N // L, len(thresholds) // L
        if N % L or len(thresholds) % L or beats % rows or beats > cfg.beats or rows > cfg.threshold_rows:
            raise ValueError(f"geometry N={N}, C={len(thresholds)} does not fit lanes={L}, "
                             f"neurons<={cfg.neurons}, channels<={cfg.channels}")
        if T * beats > HARNESS_DEPTH or not 1 <= T <= cfg.max_timesteps:
            raise ValueError(f"T={T} x beats={beats} exceeds the harness depth {HARNESS_DEPTH} or max_timesteps")
        width = L + L * cfg.membrane_width
        status, bits = await self.exchange(
            inputs={"lif_stim.hex": pack_bits(currents.reshape(T * beats, L), cfg.current_width),
                    "lif_thr.hex": pack_bits(thresholds.reshape(rows, L), cfg.threshold_width)},
            ports=dict(beats=beats, thr_rows=rows, timesteps=T, seed=seed & 0xFFFFFFFF, in_idle=in_idle,
                       out_stall=out_stall),
            status=("outputs", "cycles"), result="lif_res.hex", result_bits=width + 32,
            limit_cycles=timeout_cycles or (T * beats * 64 + 1000),
            progress=lambda: f"{int(self.dut.outputs.value)} of {T * beats} beats out")
        if status["outputs"] != T * beats:
            raise AssertionError(f"core emitted {status['outputs']} beats, expected {T * beats}")
        return LifResult(
            spikes=unpack_fields(bits, L, 1, signed=False).reshape(T, N),
            membranes=unpack_fields(bits, L, cfg.membrane_width, signed=True, offset=L).reshape(T, N),
            stamps=unpack_fields(bits, 1, 32, signed=False, offset=width).reshape(T, beats),
            cycles=status["cycles"],
        )
