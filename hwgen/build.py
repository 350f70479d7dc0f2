"""`hwgen build`: configuration -> Verilog + manifest + lint report + Yosys statistics, written
atomically.

The output folder is assembled in a temporary sibling and renamed into place only when every
step succeeded, so a failed build leaves the previous folder (or none) exactly as it was.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Value
from amaranth.lib import wiring

from contract.config import HwConfig
from contract.fsutil import OutputExists, atomic_output_dir
from hwgen import __version__
from hwgen.lint import lint, write_waivers
from hwgen.toolchain import tool_versions, verilator_env

__all__ = ["BuildError", "BuildResult", "units_for", "emit_verilog", "build"]


class BuildError(RuntimeError):
    """A build cannot proceed or failed; the message is for the user."""


@dataclass
class BuildResult:
    out: Path
    tops: list[str]
    verilog: list[Path]
    lint_clean: bool
    manifest: dict = field(default_factory=dict)


def units_for(cfg: HwConfig) -> list[tuple[str, wiring.Component]]:
    """(top module name, component) for every unit the configuration describes."""
    units = []
    if cfg.lif is not None:
        from hwgen.units.lif import LifCore
        units.append(("lif_core", LifCore(cfg.lif)))
    if cfg.accumulator is not None:
        from hwgen.units.accumulator import AccumulatorArray
        units.append(("acc_array", AccumulatorArray(cfg.accumulator)))
    if cfg.sdsa is not None:
        from hwgen.units.sdsa import SdsaUnit
        units.append(("sdsa_unit", SdsaUnit(cfg=cfg.sdsa)))
    if cfg.core is not None:
        from hwgen.core.top import NeuromorphicCore
        units.append(("core", NeuromorphicCore(cfg)))
    return units


def _ports(component: wiring.Component) -> list[dict]:
    ports = [{"name": "clk", "direction": "in", "width": 1}, {"name": "rst", "direction": "in", "width": 1}]
    for path, member, value in component.signature.flatten(component):
        name = "__".join(str(p) for p in path)
        ports.append({"name": name, "direction": "in" if member.flow == wiring.In else "out", "width": Value.cast(value).shape().width})
    return ports


@contextlib.contextmanager
def _no_zero_memory_init():
    """Emit memories whose initial contents are all zero without any initial contents.

    Amaranth spells a memory's initial contents bit by bit (``$meminit_v2``): for a 2^21-word
    weight memory that is 2^28 nets, far beyond what generation can handle. No memory of these
    designs is read before it is written (weights, biases, thresholds, program and pixels are
    loaded; accumulators are initialised from the biases; the LIF core reads zero membranes at
    t = 0 without touching its memory; tensors are written by the layer that produces them), and
    SRAM macros have no reset contents either. rtl_tests/test_core.py runs the core with every
    memory and register randomised at start (Verilator ``--x-initial unique``) to hold us to it."""
    from amaranth.back import rtlil

    original = rtlil.ModuleEmitter.emit_memory

    def emit_memory(self, cell_idx, cell):
        if any(cell.init):
            original(self, cell_idx, cell)

    rtlil.ModuleEmitter.emit_memory = emit_memory
    try:
        yield
    finally:
        rtlil.ModuleEmitter.emit_memory = original


def emit_verilog(component: wiring.Component, top: str) -> str:
    verilator_env()  # also pins AMARANTH_USE_YOSYS=builtin
    with _no_zero_memory_init():
        return verilog.convert(component, name=top, emit_src=False)


def _generate(cfg: HwConfig, folder: Path, *, run_lint: bool, run_synth: bool) -> BuildResult:
    units = units_for(cfg)
    if not units:
        raise BuildError(f"{cfg.source}: no unit to build")
    files, entries, reports, clean = [], [], [], True
    for top, component in units:
        path = folder / f"{top}.v"
        path.write_text(emit_verilog(component, top))
        files.append(path)
        entries.append({"top": top, "file": path.name, "ports": _ports(component)})
    waivers = write_waivers(folder / "amaranth_waivers.vlt", files)
    if run_lint:
        for path, (top, _) in zip(files, units):
            ok, report = lint([f"./{path.name}"], top, f"./{waivers.name}", folder)
            clean &= ok
            reports.append(f"== {top}: {'clean' if ok else 'WARNINGS'}\n{report}")
        (folder / "lint.txt").write_text("\n".join(reports))
    synth = {}
    if run_synth:
        from hwgen.synth import SynthError, synth_stats
        for path, (top, _) in zip(files, units):
            try:
                stats = synth_stats(folder, path.name, top)
            except SynthError as e:
                raise BuildError(f"{e}\n(nothing was written; --no-synth builds without Yosys statistics)") from None
            synth[top] = {k: v for k, v in stats.items() if k not in ("cells_by_type", "flow", "memories")}
    manifest = {
        "hwgen": __version__,
        "config_name": cfg.name,
        "config_source": cfg.source,
        "config_hash": cfg.hash,
        "config": cfg.to_dict(),
        "units": entries,
        "lint": ("clean" if clean else "warnings") if run_lint else "skipped",
        "synth": synth or "skipped",
        "tools": tool_versions(),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return BuildResult(folder, [t for t, _ in units], files, clean, manifest)


def build(cfg: HwConfig, out: str | Path, *, force: bool = False, run_lint: bool = True,
          run_synth: bool = True) -> BuildResult:
    """Build every unit of ``cfg`` into ``out``. Refuses a non-empty ``out`` unless ``force``;
    fails (leaving ``out`` untouched) if generation or lint fails."""
    out = Path(out)
    try:
        with atomic_output_dir(out, force=force) as tmp:
            result = _generate(cfg, tmp, run_lint=run_lint, run_synth=run_synth)
            if run_lint and not result.lint_clean:
                report = (tmp / "lint.txt").read_text()
                raise BuildError(f"generated Verilog is not lint clean (nothing was written to {out}):\n{report}")
    except OutputExists as e:
        raise BuildError(str(e)) from None
    result.out = out
    result.verilog = [out / p.name for p in result.verilog]
    return result
