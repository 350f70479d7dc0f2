"""Benchmark the neuromorphic core on the digits model: cycles, bound, efficiency, energy and
simulation speed per image, for T = 1 and T = 4, side by side in one run.

    python -m tools.bench_core [--images 20]

Each row is one `hwgen sim` run (every layer checked bit-exact against the golden engine) on
held-out test images; the per-layer figures are in build/bench_core/<program>/report.md.
"""
from __future__ import annotations

import argparse
import sys

from contract.config import load_config
from hwgen.sim.runner import REPO_ROOT
from hwgen.sim.simulate import simulate

CONFIG = REPO_ROOT / "configs" / "hw" / "digits.yaml"


def _program(checkpoint: str, out) -> None:
    from hwgen.cli import main as hwgen
    if hwgen(["quantize", str(REPO_ROOT / "checkpoints" / checkpoint), "--hw", str(CONFIG), "--out", str(out),
              "--samples", "1", "--force"]):
        raise SystemExit(1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=20)
    args = p.parse_args(argv)
    hw = load_config(CONFIG)
    root = REPO_ROOT / "build" / "bench_core"
    rows = []
    for ckpt, images in (("digits_sdsa3_t1.pth", args.images), ("digits_sdsa3_t4.pth", max(1, args.images // 4))):
        program = root / ckpt.removesuffix(".pth")
        _program(ckpt, program)
        run = simulate(program, hw, count=images, out=root / f"run_{program.name}", log=lambda m: None)
        t = run["totals"]
        acc = [r for r in run["layers"] if r["unit"] == "accumulator"]
        rows.append((run["T"], images, t["cycles_per_image"], t["bound_per_image"], t["efficiency"],
                     sum(r["bound"] for r in acc) / sum(r["cycles"] for r in acc), t["energy_pj_per_image"] / 1e6,
                     t["accuracy"], t["sim_cycles_per_s"]))
    print("| T | images | cycles/image | bound | efficiency | accumulator efficiency | energy/image | accuracy | sim cycles/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for T, n, cyc, bound, eff, acc_eff, uj, accuracy, speed in rows:
        print(f"| {T} | {n} | {cyc:,.0f} | {bound:,.0f} | {eff:.3f} | {acc_eff:.3f} | {uj:.3f} uJ | "
              f"{100 * accuracy:.1f}% | {speed:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
