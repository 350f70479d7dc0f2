"""Running the LIF core in simulation through its file-driven harness.

Two halves:

* :func:`lif_sim_run` (pytest / scripts side) generates the core's Verilog for a config and
  returns a :class:`~hwgen.sim.runner.SimRun` for ``templates/lif_harness.sv``.
* :class:`LifHarness` (cocotb side) writes stimulus files, lets the RTL run on its own and
  reads the results back as arrays shaped like the golden model's.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.config import HwConfig, LifConfig
from hwgen.hexfile import pack_bits, read_words, unpack_fields, write_words
from hwgen.sim.harness import FileHarness
from hwgen.sim.runner import REPO_ROOT, SimRun, range_bits, write_if_changed

__all__ = ["lif_sim_run", "LifHarness", "LifResult", "HARNESS_DEPTH", "CONFIG_ENV"]

TEMPLATES = Path(__file__).parent / "templates"
HARNESS_DEPTH = 1 << 16     # most beats x timesteps per harness run
CONFIG_ENV = "HWGEN_LIF_CONFIG_JSON"  # unique name: os.environ overrides the runner's env


def lif_sim_run(hw: HwConfig, *, test_module: str, test_dir: Path, testcase: str | None = None,
                env: dict | None = None) -> SimRun:
    from hwgen.build import emit_verilog
    from hwgen.units.lif import LifCore

    cfg = hw.lif
    rtl_dir = REPO_ROOT / "build" / "rtl" / f"{hw.name}-{hw.hash}"
    rtl_dir.mkdir(parents=True, exist_ok=True)
    core = rtl_dir / "lif_core.v"
    write_if_changed(core, emit_verilog(LifCore(cfg), "lif_core"))
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
    full_env = {CONFIG_ENV: json.dumps(hw.to_dict())}
    full_env.update(env or {})
    return SimRun(
        name=f"lif-{hw.name}",
        sources=[core, TEMPLATES / "lif_harness.sv", TEMPLATES / "harness_rng.sv"],
        toplevel="lif_harness",
        test_module=test_module,
        test_dir=Path(test_dir),
        parameters=params,
        env=full_env,
        testcase=testcase,
    )


@dataclass
class LifResult:
    spikes: np.ndarray      # [T, N] int64 0/1
    membranes: np.ndarray   # [T, N] int64, pre-reset H
    stamps: np.ndarray      # [T, beats] cycle at which each output beat was taken
    cycles: int             # start .. done


class LifHarness(FileHarness):
    """cocotb-side driver of ``lif_harness``: one :meth:`run` per image."""

    def __init__(self, dut, cfg: LifConfig | None = None, workdir: Path | None = None):
        if cfg is None:
            cfg = HwConfig.from_dict(json.loads(os.environ[CONFIG_ENV]), CONFIG_ENV).lif
        self.cfg = cfg
        super().__init__(dut, workdir)

    async def run(self, currents: np.ndarray, thresholds: np.ndarray, *, seed: int = 1,
                  in_idle: int = 0, out_stall: int = 0, timeout_cycles: int | None = None) -> LifResult:
        """Run one image: ``currents[T, N]`` (N a multiple of lanes), ``thresholds[C]``
        (C a multiple of lanes dividing N). ``in_idle`` / ``out_stall`` are probabilities in
        1/256 of an idle input cycle / a stalled output cycle."""
        cfg, d = self.cfg, self.dut
        await self.ensure_reset()
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

        stim, thr, res = (self.workdir / n for n in ("lif_stim.hex", "lif_thr.hex", "lif_res.hex"))
        write_words(stim, pack_bits(currents.reshape(T * beats, L), cfg.current_width))
        write_words(thr, pack_bits(thresholds.reshape(rows, L), cfg.threshold_width))
        if res.exists():
            res.unlink()

        d.beats.value, d.thr_rows.value, d.timesteps.value = beats, rows, T
        d.seed.value, d.in_idle.value, d.out_stall.value = seed & 0xFFFFFFFF, in_idle, out_stall
        await self.launch()
        limit = timeout_cycles or (T * beats * 64 + 1000)
        await self.wait_finished(limit, lambda: f"{int(d.outputs.value)} of {T * beats} beats out")
        n_out = int(d.outputs.value)
        cycles = int(d.cycles.value)
        if n_out != T * beats:
            raise AssertionError(f"core emitted {n_out} beats, expected {T * beats}")
        await self.collect()
        bits = read_words(res, L + L * cfg.membrane_width + 32)
        spikes = unpack_fields(bits, L, 1, signed=False)
        membranes = unpack_fields(bits, L, cfg.membrane_width, signed=True, offset=L)
        stamps = unpack_fields(bits, 1, 32, signed=False, offset=L + L * cfg.membrane_width)
        return LifResult(
            spikes=spikes.reshape(T, N),
            membranes=membranes.reshape(T, N),
            stamps=stamps.reshape(T, beats),
            cycles=cycles,
        )
