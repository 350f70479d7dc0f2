"""Build and run a cocotb testbench on Verilator, with builds cached by content.

A build folder is named after a hash of the source files' contents, the toplevel, the
parameters and the build flags, so a rebuild happens exactly when one of them changed and two
configurations never share (and thrash) one folder.

Safe under concurrency (pytest-xdist workers, two ``hwgen sim`` runs at once): a build holds an
exclusive lock on its folder, and every run executes in a fresh folder of its own under
``<build>/runs/`` (the simulator's working directory: harness files, ``results.xml``), removed
when the run passed and kept for inspection when it failed.

Only the harness's top level is visible to Python (``SimRun.public_depth``): cocotb's runner
verilates with ``--public-flat-rw``, which makes every signal of every module public, so each
port of every stage of a unit stays a variable of its own that Verilator may neither inline nor
optimise away (the split accumulator array simulated at 0.7x the single-module array that way;
with the top alone public both run at the same speed, 2.5x faster). The file-driven harnesses
only touch their top's ports.

How fast a model simulates is set apart from what it means: ``SimRun.build_args`` are the
Verilator flags a run's results depend on (``--x-assign``, ``--x-initial``, warnings), and
``SimRun.speed`` (:class:`SimSpeed`) is how its C++ is compiled, which must not change a result.
Verilator's own makefile compiles the model's per-cycle code and its runtime library (the VPI
the cocotb clock goes through every half cycle) at ``-Os``. At ``-O3`` (``FAST``, the default,
so the core harness's) the digits core's simulator takes 1.3-1.5x less CPU time for about the
same build time; the unit harnesses keep ``-Os`` (``UNITS``). ``python -m tools.bench_verilator``
measures the option sets: ``-march=native``, LTO, ``--output-split`` and ``--x-assign fast``
gained nothing more on this design, ``--threads 2`` was 20-40x slower on 2 busy cores, compiler
PGO about 10% for a second build and a training run.
"""
from __future__ import annotations

import contextlib
import contextvars
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hwgen.toolchain import verilator_env

__all__ = ["SimRun", "SimSpeed", "FAST", "VERILATOR_DEFAULTS", "UNITS", "simulator_options", "build_sim", "run_cocotb", "folder_lock", "REPO_ROOT", "range_bits", "write_if_changed", "cocotb_tests", "unit_sim_run",
           "TEMPLATES", "HARNESS_KIT"]

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = Path(__file__).parent / "templates"
#: the shared harness templates every unit harness is built from
HARNESS_KIT = [TEMPLATES / f"harness_{name}.sv" for name in ("io", "rng", "rom", "source", "sink")]


def cocotb_tests(module: Path) -> list[str]:
    """Names of the ``@cocotb.test`` functions of a testbench file, in file order (read from
    its source, so pytest can give each its own item without importing cocotb code)."""
    import ast

    names = []
    for node in ast.parse(Path(module).read_text()).body:
        if isinstance(node, ast.AsyncFunctionDef) and any(
                "cocotb.test" in ast.unparse(dec) for dec in node.decorator_list):
            names.append(node.name)
    return names


def range_bits(n: int) -> int:
    """Width Amaranth gives ``range(n)``: harness parameters must match the generated ports."""
    return max(1, (n - 1).bit_length())


def write_if_changed(path: Path, text: str) -> None:
    """Rewrite generated Verilog only when it changed, so cached simulator builds stay valid.
    The new text is written to a temporary file and renamed into place: a concurrent reader
    sees the old file or the new one, never a partial one."""
    if path.exists() and path.read_text() == text:
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


@dataclass(frozen=True)
class SimSpeed:
    """How a Verilated model is compiled, for speed only (part of the build folder's hash):
    ``verilator``: extra Verilator flags (``--threads 2``, ``--output-split 20000``, ...);
    ``make``: variables for Verilator's makefile (``OPT_FAST``: the model's per-cycle code,
    ``OPT_GLOBAL``: its runtime library, VPI included; ``OPT_SLOW``: code run once, left at
    Verilator's ``-O0``, which keeps the large initialisation files quick to compile)."""

    verilator: tuple[str, ...] = ()
    make: tuple[str, ...] = ()


#: what the runner builds with: -O3 for the per-cycle code and the runtime library
FAST = SimSpeed(make=("OPT_FAST=-O3", "OPT_GLOBAL=-O3"))
#: Verilator's own makefile defaults (-Os), the runner's before; tools/bench_verilator.py compares with it
VERILATOR_DEFAULTS = SimSpeed()
#: the unit harnesses' (unit_sim_run): their tests spend their time in Python, not in the model
#: (lif_small random_currents 6.9 s at -Os, 8.4 s at -O3; acc_small random_layers 8.7 s, 9.1 s),
#: and -O3 builds them 5-6 s slower (lif 12.8 -> 17.6 s, acc 11.6 -> 18.1 s), a dozen builds a suite
UNITS = VERILATOR_DEFAULTS
_OPTIONS: contextvars.ContextVar[tuple[SimSpeed, Path | None]] = contextvars.ContextVar(
    "hwgen_sim_options", default=(FAST, None))


@contextlib.contextmanager
def simulator_options(speed: SimSpeed, build_root: Path | None = None):
    """Inside the block every :class:`SimRun` made without its own ``speed`` (or ``build_root``)
    gets these: how a benchmark builds the same harness with other options (``hwgen.sim.core``
    makes its runs itself), into a folder of its own."""
    token = _OPTIONS.set((speed, Path(build_root) if build_root is not None else None))
    try:
        yield
    finally:
        _OPTIONS.reset(token)


def _default_speed() -> SimSpeed:
    return _OPTIONS.get()[0]


def _default_build_root() -> Path:
    return _OPTIONS.get()[1] or REPO_ROOT / "build" / "sim"


@contextlib.contextmanager
def folder_lock(folder: Path):
    """Hold an exclusive lock on ``folder`` (a build) until the block ends."""
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass
class SimRun:
    """One Verilator build plus one cocotb test process."""

    name: str                      # readable prefix of the build folder
    sources: list[Path]            # Verilog/SystemVerilog; a .vlt must not be last
    toplevel: str
    test_module: str               # cocotb module name, importable from test_dir
    test_dir: Path
    parameters: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    plusargs: list[str] = field(default_factory=list)
    plan: dict | None = None       # the test plan (JSON), read by the cocotb side (hwgen.sim.harness)
    testcase: str | list[str] | None = None
    log_file: Path | None = None   # send the simulator's output here instead of the console
    build_root: Path = field(default_factory=_default_build_root)
    # Verilator flags the results depend on (X values: zeros; -O3: Verilator's own optimisation)
    build_args: tuple[str, ...] = ("-Wno-fatal", "--x-assign", "0", "--x-initial", "0", "-O3")
    # how the C++ is compiled (speed only); FAST unless simulator_options says otherwise
    speed: SimSpeed = field(default_factory=_default_speed)
    # How many module levels Python can reach through VPI: 1 is the harness's own signals and
    # ports (all a file-driven harness needs); None is every signal (cocotb's --public-flat-rw),
    # for a testbench that peeks inside the unit, at the cost of simulation speed.
    public_depth: int | None = 1
    # Built with tracing (the design's $dumpfile/$dumpvars write a VCD); its own build folder.
    waves: bool = False

    def build_dir(self) -> Path:
        h = hashlib.sha256()
        for src in self.sources:
            h.update(Path(src).name.encode())
            h.update(Path(src).read_bytes())
        h.update(json.dumps([self.toplevel, sorted(self.parameters.items()), list(self.build_args),
                             self.public_depth, self.waves, list(self.speed.verilator), list(self.speed.make)],
                            default=str).encode())
        return self.build_root / f"{self.name}{'-traced' if self.waves else ''}-{h.hexdigest()[:12]}"


def _verilator_runner(public_depth: int | None, speed: SimSpeed = VERILATOR_DEFAULTS):
    """cocotb's Verilator runner; with ``public_depth``, ``--public-flat-rw`` (which cocotb
    always passes) becomes ``--public-depth N``: signals below that depth are private, so
    Verilator inlines the units' stage boundaries and drops their port copies. ``speed``: its
    make variables go to the make command (its Verilator flags come with the build arguments)."""
    from cocotb_tools.runner import Verilator

    class _Verilator(Verilator):
        def _build_command(self):
            cmds = super()._build_command()
            verilate, make = cmds[0], cmds[1]
            if public_depth is not None:
                if "--public-flat-rw" in verilate:
                    verilate.remove("--public-flat-rw")
                verilate[1:1] = ["--public-depth", str(public_depth)]
            make += list(speed.make)
            return cmds

    return _Verilator()


def build_sim(run: SimRun) -> Path:
    """Build ``run``'s simulator if its folder holds none for these sources and options (under
    the folder's lock); return the folder. ``run.speed``'s Verilator flags come after
    ``run.build_args``, so a benchmark's flag wins over the default it replaces."""
    return _build(run)[0]


def _build(run: SimRun):
    """(build folder, the cocotb runner that built it: its test() needs the build's sources)."""
    verilator_env()
    build_dir = run.build_dir()
    build_dir.mkdir(parents=True, exist_ok=True)
    runner = _verilator_runner(run.public_depth, run.speed)
    with folder_lock(build_dir):
        runner.build(
            sources=[Path(s).resolve() for s in run.sources],
            hdl_toplevel=run.toplevel,
            parameters=run.parameters,
            build_args=[*run.build_args, *run.speed.verilator],
            build_dir=build_dir,
            log_file=build_dir / "build.log",
            waves=run.waves,
        )
    return build_dir, runner


def run_cocotb(run: SimRun, *, results_name: str = "results.xml") -> int:
    """Build (if needed) and run; return how many cocotb tests ran.

    Raises ``AssertionError`` naming the failing tests when any cocotb test failed (under pytest
    the runner itself raises SystemExit first; both fail the calling test).
    """
    from cocotb_tools.check_results import get_results

    build_dir, runner = _build(run)
    (build_dir / "runs").mkdir(exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{run.test_module}-", dir=build_dir / "runs")).resolve()
    results = run_dir / results_name
    # The runner hands the simulator this process's sys.path as PYTHONPATH.
    for folder in (str(run.test_dir), str(REPO_ROOT)):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    env = {k: str(v) for k, v in run.env.items()}
    plusargs = list(run.plusargs)
    if run.plan is not None:
        from hwgen.sim.harness import PLAN_PLUSARG

        (run_dir / "plan.json").write_text(json.dumps(run.plan, indent=1, default=str))
        plusargs.append(f"+{PLAN_PLUSARG}={run_dir / 'plan.json'}")
    runner.test(
        test_module=run.test_module,
        hdl_toplevel=run.toplevel,
        build_dir=build_dir,
        test_dir=run_dir,
        results_xml=str(results),
        extra_env=env,
        plusargs=plusargs,
        testcase=run.testcase,
        log_file=run.log_file,
    )
    total, failed = get_results(results)
    if failed:
        raise AssertionError(f"{failed} of {total} cocotb tests failed in {run.test_module} "
                             f"({run.toplevel}); see {results} and the log above")
    if total == 0:
        raise AssertionError(f"no cocotb test ran in {run.test_module} (filter {run.testcase!r})")
    shutil.rmtree(run_dir, ignore_errors=True)    # passed: nothing to inspect
    return total


def unit_sim_run(component, *, top: str, harness: str, name: str, rtl_dir: Path, parameters: dict,
                 test_module: str, test_dir: Path, plan: dict, testcase=None) -> SimRun:
    """The run of one unit's harness: the unit's Verilog (rewritten only when it changed), the
    harness template and the shared kit; ``plan`` goes to the cocotb side."""
    from hwgen.build import emit_verilog

    rtl_dir.mkdir(parents=True, exist_ok=True)
    unit = rtl_dir / f"{top}.v"
    write_if_changed(unit, emit_verilog(component, top))
    return SimRun(name=name, sources=[unit, TEMPLATES / harness, *HARNESS_KIT], toplevel=harness.removesuffix(".sv"),
                  test_module=test_module, test_dir=Path(test_dir), parameters=parameters, plan=plan,
                  testcase=testcase, speed=UNITS)
