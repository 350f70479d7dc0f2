"""Verilator build options side by side on the digits T = 1 core run: build seconds, simulated
cycles and synaptic additions per second, ratio to Verilator's own defaults (the runner's before).

    python -m tools.bench_verilator [--images 20] [--repeat 2] [--sets NAME,...] [--list]

Every option set builds the core harness afresh into build/bench_verilator/<set>/ (timed alone,
`hwgen.sim.runner.build_sim`). Then the sets take turns (round robin, ``--repeat`` rounds, so a
change of load on a shared machine hits them all) running the same held-out images the way
`tools.bench_core` measures speed: one `hwgen.sim.core.run_core` with one digest line per
instruction (TRACE_NONE), every layer of every image checked against the golden engine and every
instruction's counters against the cycle model (`check_image`); its wall time (the Verilog, the
script, the simulator process) gives the rates, from the best round. "simulator CPU s" is the
simulator process's CPU time (least load-sensitive). A line above the table says where a run's
wall time goes besides the simulator. Runs against the working tree's core: do not edit
hwgen/core while it runs.
"""
from __future__ import annotations

import argparse
import resource
import shutil
import sys
import time
from pathlib import Path

import torch

from contract.config import load_config
from contract.program import load_program
from golden.intsim import IntegerEngine
from hwgen.compiler import compile_program
from hwgen.sim import core as sim_core
from hwgen.sim.core import TRACE_NONE, run_core
from hwgen.sim.runner import FAST, REPO_ROOT, VERILATOR_DEFAULTS, SimSpeed, build_sim, simulator_options
from hwgen.sim.simulate import check_image, load_images
from tools.bench_core import CONFIG, _program

_O3 = FAST.make
#: name -> (what it is, the options); the first is the baseline of the ratio
SETS: dict[str, tuple[str, SimSpeed]] = {
    "old": ("Verilator's make defaults: -Os (the runner's before)", VERILATOR_DEFAULTS),
    "O2": ("OPT_FAST/OPT_GLOBAL=-O2", SimSpeed(make=("OPT_FAST=-O2", "OPT_GLOBAL=-O2"))),
    "O3": ("OPT_FAST/OPT_GLOBAL=-O3 (the runner's default now)", FAST),
    "native": ("-O3 -march=native", SimSpeed(make=("OPT_FAST=-O3 -march=native", "OPT_GLOBAL=-O3 -march=native"))),
    "xfast": ("-O3, --x-assign fast --x-initial fast", SimSpeed(("--x-assign", "fast", "--x-initial", "fast"), _O3)),
    "split": ("-O3, --output-split 20000 --output-split-cfuncs 20000",
              SimSpeed(("--output-split", "20000", "--output-split-cfuncs", "20000"), _O3)),
    "lto": ("-O3 -flto", SimSpeed(("-LDFLAGS", "-O3 -flto=auto"),
                                 ("OPT_FAST=-O3 -flto=auto", "OPT_GLOBAL=-O3 -flto=auto"))),
    "threads2": ("-O3, --threads 2 (minutes: not in the default list)", SimSpeed(("--threads", "2"), _O3)),
}
DEFAULT_SETS = ("old", "O2", "O3", "native", "xfast", "split")


def _simulator_run(image, hw, work: Path):
    """The core harness's SimRun for this program, as run_core makes it (for the timed build)."""
    work.mkdir(parents=True, exist_ok=True)
    return sim_core.core_sim_run(hw, work=work, script=work / "core_script.txt", log=work / "core_log.txt",
                                 watchdog=sim_core._watchdog(image))


def build(name: str, speed: SimSpeed, image, hw, root: Path) -> float:
    """A fresh build of the core harness with ``speed`` into build/bench_verilator/<name>/; seconds."""
    builds = root / name
    shutil.rmtree(builds, ignore_errors=True)
    with simulator_options(speed, build_root=builds):
        t0 = time.perf_counter()
        build_sim(_simulator_run(image, hw, root / f"work_{name}"))
        return time.perf_counter() - t0


def timed_run(name: str, speed: SimSpeed, image, pixels, golden, root: Path) -> dict:
    """One run_core on the build of ``name``, every image checked: wall seconds, the simulator
    process's CPU seconds, cycles and additions."""
    with simulator_options(speed, build_root=root / name):
        cpu0, t0 = _children_cpu(), time.perf_counter()
        results = run_core(image, pixels, work=root / f"work_{name}", trace=TRACE_NONE)
        wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    for b, r in enumerate(results):
        check_image(image, r, golden, b)
    return {"wall_s": wall, "cpu_s": cpu, "cycles": sum(r.cycles for r in results),
            "additions": sum(s.additions for r in results for s in r.layers)}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def overheads(image, hw, pixels, program, root: Path) -> tuple[dict, str]:
    """What a run spends outside the simulator, and the golden engine and checks beside it."""
    sim_core._core_verilog(hw)              # the first call also imports and starts Yosys
    t0 = time.perf_counter()
    sim_core._core_verilog(hw)
    emit = time.perf_counter() - t0
    t0 = time.perf_counter()
    sim_core.write_script(image, pixels, root / "script_probe.txt")
    script = time.perf_counter() - t0
    t0 = time.perf_counter()
    golden = {k: v.numpy() for k, v in IntegerEngine(program, hw).run(torch.from_numpy(pixels)).items()}
    engine = time.perf_counter() - t0
    return golden, (f"outside the simulator, per run_core: Verilog emitted {emit:.2f} s, script written "
                    f"{script:.2f} s; beside it: golden engine {engine:.2f} s for {len(pixels)} images")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--repeat", type=int, default=2, help="timed runs per option set (the best is shown)")
    p.add_argument("--sets", default=",".join(DEFAULT_SETS), help=f"of {', '.join(SETS)}")
    p.add_argument("--list", action="store_true", help="print the option sets and exit")
    args = p.parse_args(argv)
    if args.list:
        for name, (what, speed) in SETS.items():
            print(f"{name:9s} {what}: verilator {' '.join(speed.verilator) or '-'}; make {' '.join(speed.make) or '-'}")
        return 0
    names = [n.strip() for n in args.sets.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETS]
    if unknown:
        p.error(f"unknown option set(s) {', '.join(unknown)}: choose from {', '.join(SETS)}")
    root = REPO_ROOT / "build" / "bench_verilator"
    program_dir = root / "digits_sdsa3_t1"
    _program("digits_sdsa3_t1.pth", program_dir)
    hw = load_config(CONFIG)
    program = load_program(program_dir)
    image = compile_program(program, hw)
    pixels, _, _ = load_images(program, program_dir, args.images)
    golden, where = overheads(image, hw, pixels, program, root)
    builds = {}
    for name in names:
        builds[name] = build(name, SETS[name][1], image, hw, root)
        print(f"  {name}: built in {builds[name]:.1f} s", file=sys.stderr, flush=True)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for rep in range(args.repeat):           # round robin: a load change on the machine hits every set
        for name in names:
            runs[name].append(timed_run(name, SETS[name][1], image, pixels, golden, root))
            print(f"  {name}: run {rep + 1}: {runs[name][-1]['wall_s']:.2f} s", file=sys.stderr, flush=True)
    rows = []
    for name in names:
        best = min(runs[name], key=lambda r: r["wall_s"])
        rows.append({"name": name, "build_s": builds[name], **best, "cpu_s": min(r["cpu_s"] for r in runs[name]),
                     "additions_per_s": best["additions"] / best["wall_s"], "cycles_per_s": best["cycles"] / best["wall_s"]})
    base = rows[0]
    print(f"digits T = 1, {args.images} images, {base['cycles']:,} cycles, {base['additions']:,} synaptic additions "
          f"({base['additions'] / base['cycles']:.2f} per cycle); best of {args.repeat} runs; every layer checked")
    print(where)
    print()
    print(f"| option set | build s | run s | simulator CPU s | sim cycles/s | sim additions/s | vs {names[0]} |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']}: {SETS[r['name']][0]} | {r['build_s']:.1f} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | "
              f"{r['cycles_per_s']:,.0f} | {r['additions_per_s'] / 1e6:.2f} M | "
              f"{r['additions_per_s'] / base['additions_per_s']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
