"""Benchmark the neuromorphic core on the digits model: cycles, bound, efficiency, energy and
simulation speed per image, for T = 1 and T = 4, side by side in one run.

    python -m tools.bench_core [--images 20]

Each row is one `hwgen sim` run (every layer checked bit-exact against the golden engine, every
instruction's cycles against the cycle model) on held-out test images; the per-layer figures are
in build/bench_core/<program>/report.md. The speed table runs the same images twice more on the
same (already built) simulator: once with every memory write logged as text (how runs were checked
before the digests) and once with one digest line per instruction (how `hwgen sim` checks now), and
prints simulated cycles and synaptic additions per second, and their ratio.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from contract.config import load_config
from contract.program import load_program
from golden.intsim import IntegerEngine
from hwgen.compiler import compile_program
from hwgen.sim.core import TRACE_ALL, TRACE_NONE, run_core
from hwgen.sim.runner import REPO_ROOT
from hwgen.sim.simulate import check_image, load_images, simulate

CONFIG = REPO_ROOT / "configs" / "hw" / "digits.yaml"


def _program(checkpoint: str, out) -> None:
    from hwgen.cli import main as hwgen
    if hwgen(["quantize", str(REPO_ROOT / "checkpoints" / checkpoint), "--hw", str(CONFIG), "--out", str(out),
              "--samples", "1", "--calib", "0", "--force"]):
        raise SystemExit(1)


def _speed(program_dir, hw, images: int, work, trace: int) -> tuple[float, float]:
    """(simulated cycles/s, simulated additions/s) of ``images`` images, every layer checked."""
    program = load_program(program_dir)
    image = compile_program(program, hw)
    pixels, _, _ = load_images(program, program_dir, images)
    golden = {k: v.numpy() for k, v in IntegerEngine(program, hw).run(torch.from_numpy(pixels)).items()}
    t0 = time.perf_counter()
    results = run_core(image, pixels, work=work, trace=trace)
    wall = time.perf_counter() - t0
    for b, r in enumerate(results):
        check_image(image, r, golden, b)
    cycles = sum(r.cycles for r in results)
    additions = sum(s.additions for r in results for s in r.layers)
    return cycles / wall, additions / wall


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=20)
    args = p.parse_args(argv)
    hw = load_config(CONFIG)
    root = REPO_ROOT / "build" / "bench_core"
    rows, speeds = [], []
    for ckpt, images in (("digits_sdsa3_t1.pth", args.images), ("digits_sdsa3_t4.pth", max(1, args.images // 4))):
        program = root / ckpt.removesuffix(".pth")
        _program(ckpt, program)
        run = simulate(program, hw, count=images, out=root / f"run_{program.name}", log=lambda m: None)
        t = run["totals"]
        acc = [r for r in run["layers"] if r["unit"] == "accumulator"]
        rows.append((run["T"], images, t["cycles_per_image"], t["bound_per_image"], t["efficiency"],
                     sum(r["bound"] for r in acc) / sum(r["cycles"] for r in acc), t["energy_pj_per_image"] / 1e6,
                     t["accuracy"], t["sim_cycles_per_s"]))
        logged = _speed(program, hw, images, root / f"logged_{program.name}", TRACE_ALL)
        digest = _speed(program, hw, images, root / f"digest_{program.name}", TRACE_NONE)
        speeds.append((run["T"], images, logged, digest))
    print("| T | images | cycles/image | bound | efficiency | accumulator efficiency | energy/image | accuracy | sim cycles/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for T, n, cyc, bound, eff, acc_eff, uj, accuracy, speed in rows:
        print(f"| {T} | {n} | {cyc:,.0f} | {bound:,.0f} | {eff:.3f} | {acc_eff:.3f} | {uj:.3f} uJ | "
              f"{100 * accuracy:.1f}% | {speed:,.0f} |")
    print()
    print("| T | images | writes logged: cycles/s | additions/s | digests: cycles/s | additions/s | digests / logged |")
    print("|---|---|---|---|---|---|---|")
    for T, n, (lc, la), (dc, da) in speeds:
        print(f"| {T} | {n} | {lc:,.0f} | {la / 1e6:.2f} M | {dc:,.0f} | {da / 1e6:.2f} M | {dc / lc:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
