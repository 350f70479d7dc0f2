"""Overlap on the digits model: the cycles that are not accumulation, one unit at a time against
overlapped, side by side in one run (docs/core.md, "Overlap").

    python -m tools.bench_overlap [--images 10] [--rtl-images 2]

For T = 1 and T = 4 on 8 lanes (configs/hw/digits.yaml) and 64 lanes (configs/hw/digits64.yaml)
each program runs on the same core in two ways: "one unit at a time" (no CONV -> LIF chaining, one
accumulator bank) and "overlapped" (chained, the config's two banks). Cycles come from the cycle
model over ``--images`` test images; the RTL runs the first ``--rtl-images`` of them in both ways
and checks every layer against the golden engine and every instruction's cycles, additions,
events and memory traffic against the model (``check_image``), so the table is the RTL's.
"Accumulation" is the CONVs' ACCUM phases (the model's ``operations`` and ``accumulate_other``);
everything else (drains, LIF, SDSA, MASK, REDUCE, the sequencer) is "not accumulation". The
bounds are those of hwgen.compiler.cycles.network_bounds.
"""
from __future__ import annotations

import argparse
import sys

import torch

from contract.config import HwConfig, load_config
from contract.program import load_program
from golden.intsim import IntegerEngine
from hwgen.compiler import compile_program
from hwgen.compiler.cycles import instruction_cycles, network_bounds
from hwgen.compiler.kinds import core_kind
from hwgen.sim.core import TRACE_NONE, run_core
from hwgen.sim.runner import REPO_ROOT
from hwgen.sim.simulate import check_image, load_images

CONFIGS = ("digits", "digits64")
CHECKPOINTS = {1: "digits_sdsa3_t1.pth", 4: "digits_sdsa3_t4.pth"}


def _program(checkpoint: str, config, out) -> None:
    from hwgen.cli import main as hwgen
    if hwgen(["quantize", str(REPO_ROOT / "checkpoints" / checkpoint), "--hw", str(config), "--out", str(out),
              "--samples", "1", "--calib", "0", "--force"]):
        raise SystemExit(1)


def one_bank(hw: HwConfig) -> HwConfig:
    """The same core with one accumulator bank."""
    raw = hw.to_dict()
    raw["accumulator"]["buffers"] = 1
    raw["name"] = f"{hw.name}_1bank"
    return HwConfig.from_dict(raw, f"{hw.source} (buffers: 1)")


def breakdown(image, golden, n: int) -> dict:
    """Per image (mean of ``n``): cycles, accumulation, the rest, and the network bounds."""
    cycles = accumulation = 0
    bounds = {"overlapped": 0.0, "serial": 0.0, "additions": 0.0}
    for b in range(n):
        model = instruction_cycles(image, golden, b)
        rows = []
        for m, fields, layer in zip(model, image.instructions, image.layers):
            cycles += m.cycles
            if "operations" in m.terms:
                accumulation += m.terms["operations"] + m.terms["accumulate_other"]
            kind = core_kind(layer.kind)
            rows.append({"bound": kind.cycle_bound(fields, m.additions, image.lanes), "unit": kind.unit})
        for key, value in network_bounds(rows, image.instructions).items():
            bounds[key] += value
    return {"cycles": cycles / n, "accumulation": accumulation / n, "other": (cycles - accumulation) / n,
            **{k: v / n for k, v in bounds.items()}}


def rtl_check(image, pixels, golden, n: int, work) -> None:
    """Run ``n`` images on the Verilated core; every layer and counter checked (raises on a mismatch)."""
    for b, result in enumerate(run_core(image, pixels[:n], work=work, trace=TRACE_NONE)):
        check_image(image, result, golden, b)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=10)
    p.add_argument("--rtl-images", type=int, default=2)
    args = p.parse_args(argv)
    root = REPO_ROOT / "build" / "bench_overlap"
    rows = []
    for T, checkpoint in CHECKPOINTS.items():
        for name in CONFIGS:
            config = REPO_ROOT / "configs" / "hw" / f"{name}.yaml"
            hw = load_config(config)
            program_dir = root / f"{name}_t{T}"
            _program(checkpoint, config, program_dir)
            program = load_program(program_dir)
            pixels, _, _ = load_images(program, program_dir, args.images)
            golden = {k: v.numpy() for k, v in IntegerEngine(program, hw).run(torch.from_numpy(pixels)).items()}
            for label, core, chain in (("one unit at a time", one_bank(hw), False), ("overlapped", hw, True)):
                image = compile_program(program, core, chain=chain)
                figures = breakdown(image, golden, args.images)
                rtl_check(image, pixels, golden, args.rtl_images, root / "sim" / f"{core.name}_t{T}_{chain}")
                rows.append((T, hw.accumulator.lanes, label, figures))
                print(f"T = {T}, {hw.accumulator.lanes} lanes, {label}: {args.rtl_images} image(s) exact in RTL, "
                      "cycles equal to the model", flush=True)
    print()
    print(f"Digits test images: the cycle model over {args.images}, the RTL on the first {args.rtl_images} of them.")
    print()
    print("| T | lanes | core | cycles/image | accumulation | not accumulation | fall | cycles / serial bound | "
          "cycles / overlapped bound | cycles / ceil(additions/lanes) |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    serial_other = {}
    for T, lanes, label, f in rows:
        key = (T, lanes)
        fall = ""
        if label == "one unit at a time":
            serial_other[key] = f["other"]
        else:
            fall = f"{1 - f['other'] / serial_other[key]:.0%}"
        print(f"| {T} | {lanes} | {label} | {f['cycles']:,.0f} | {f['accumulation']:,.0f} | {f['other']:,.0f} | {fall} | "
              f"{f['cycles'] / f['serial']:.3f} | {f['cycles'] / f['overlapped']:.3f} | "
              f"{f['cycles'] / f['additions']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
