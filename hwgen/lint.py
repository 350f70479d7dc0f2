"""Verilator lint of generated Verilog.

The waivers below are the only ones in the project. Each rule fires on Amaranth's own output
(it widens and truncates freely, leaves unused bits of views, and emits `initial` blocks for
register reset values); add a rule here only with the generated line that trips it. The waiver
file is written per build and scoped by `-file` to exactly the generated files, so hand-written
wrappers are linted with full -Wall.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from hwgen.toolchain import verilator_bin

__all__ = ["AMARANTH_WAIVED_RULES", "write_waivers", "lint"]

AMARANTH_WAIVED_RULES = (
    "WIDTHEXPAND",     # Amaranth zero/sign-extends operands implicitly
    "WIDTHTRUNC",      # ... and truncates on assignment, by its semantics
    "UNUSEDSIGNAL",    # bits of views and memories it declares but does not read
    "PROCASSINIT",     # `initial` values of registers it also assigns in `always`
    "CASEINCOMPLETE",  # `casez (mode)` from m.Switch without a default arm (accumulator.v)
    "DECLFILENAME",    # submodules are emitted as `module \\core.acc` in the top's file (core.v)
)


def write_waivers(path: Path, generated: list[Path]) -> Path:
    lines = ["`verilator_config", "// Rules Amaranth's generated Verilog trips (hwgen/lint.py)."]
    for f in generated:
        for rule in AMARANTH_WAIVED_RULES:
            # the file as named on the command line: bare (lint) or with a folder (simulation)
            lines.append(f'lint_off -rule {rule} -file "{f.name}"')
            lines.append(f'lint_off -rule {rule} -file "*/{f.name}"')
    path.write_text("\n".join(lines) + "\n")
    return path


def lint(sources: list[str | Path], top: str, waivers: str | Path | None, cwd: Path) -> tuple[bool, str]:
    """Run `verilator --lint-only -Wall`; return (clean, report text)."""
    cmd = [verilator_bin(), "--lint-only", "-Wall", "--top-module", top]
    if waivers is not None:
        cmd.append(str(waivers))
    cmd += [str(s) for s in sources]
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    report = f"$ {' '.join(cmd)}\n{res.stdout}{res.stderr}"
    clean = res.returncode == 0 and "%Warning" not in res.stderr and "%Error" not in res.stderr
    return clean, report
