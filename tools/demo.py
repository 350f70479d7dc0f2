"""The main demo: a trained Meta-SpikeFormer classifies held-out digits in RTL, bit for bit.

    ./run demo                  (or: python -m tools.demo [--count 50] [--T 1|4] [--retrain])

1. the checkpoint: the bundled digits model (``--retrain`` trains it again, about 2 min);
2. ``hwgen quantize``: fold, quantize to integers, export the program (build/demo/program);
3. ``hwgen build``: the core for configs/hw/digits.yaml, checked to hold the program, linted,
   with Yosys statistics (build/demo/core);
4. ``hwgen sim``: the core on Verilator classifies held-out test images; every layer's spikes and
   currents, at every timestep, and the logits are compared with the golden integer engine;
5. accuracy, cycles per image, efficiency and energy per image, and the per-layer report
   (build/demo/run/report.md, report.png).
"""
from __future__ import annotations

import argparse
import sys
import time

from hwgen.cli import main as hwgen
from hwgen.sim.runner import REPO_ROOT

CONFIG = REPO_ROOT / "configs" / "hw" / "digits.yaml"
CHECKPOINTS = {1: REPO_ROOT / "checkpoints" / "digits_sdsa3_t1.pth", 4: REPO_ROOT / "checkpoints" / "digits_sdsa3_t4.pth"}


def _step(n: int, text: str) -> float:
    print(f"\n[{n}/5] {text}", flush=True)
    return time.perf_counter()


def _done(t0: float) -> None:
    print(f"      ({time.perf_counter() - t0:.0f} s)", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=50, help="held-out test images to classify in RTL (default 50)")
    p.add_argument("--T", type=int, choices=(1, 4), default=1, help="timesteps: the T=1 or the T=4 checkpoint")
    p.add_argument("--retrain", action="store_true", help="train the checkpoint again instead of reusing it")
    args = p.parse_args(argv)
    out = REPO_ROOT / "build" / "demo"
    ckpt = CHECKPOINTS[args.T]

    t0 = _step(1, f"checkpoint {ckpt.relative_to(REPO_ROOT)}")
    if args.retrain or not ckpt.exists():
        from tools import train_digits
        train = ["--out", str(ckpt)] if args.T == 1 else ["--T", "4", "--init", str(CHECKPOINTS[1]), "--out", str(ckpt)]
        if args.T == 4 and not CHECKPOINTS[1].exists():
            train_digits.main(["--out", str(CHECKPOINTS[1])])
        train_digits.main(train)
    else:
        print("      bundled (tools/train_digits.py reproduces it; --retrain to train again)")
    _done(t0)

    t0 = _step(2, "hwgen quantize: fold BatchNorm and RepConv, quantize to 8-bit integers, export the program")
    program = out / "program"
    if hwgen(["quantize", str(ckpt), "--hw", str(CONFIG), "--out", str(program), "--samples", "4", "--force"]):
        return 1
    _done(t0)

    t0 = _step(3, "hwgen build: the core (accumulator array, LIF core, SDSA unit, sequencer, memories); "
                  "lint; Yosys statistics")
    if hwgen(["build", str(CONFIG), "--program", str(program), "--out", str(out / "core"), "--force"]):
        return 1
    _done(t0)

    t0 = _step(4, f"hwgen sim: {args.count} held-out digits through the core on Verilator, every layer checked "
                  "against the golden integer engine")
    if hwgen(["sim", str(program), "--config", str(CONFIG), "--count", str(args.count), "--out", str(out / "run")]):
        return 1
    _done(t0)

    _step(5, "results")
    import json
    run = json.loads((out / "run" / "run.json").read_text())
    t = run["totals"]
    layers = run["layers"]
    acc_layers = [r for r in layers if r["unit"] == "accumulator"]
    print(f"      accuracy in RTL: {100 * t['accuracy']:.2f}% on {t['images']} held-out images "
          f"(T={run['T']}; every layer bit-exact)")
    print(f"      cycles per image: {t['cycles_per_image']:,.0f}; whole-network efficiency (sum of bounds / sum "
          f"of cycles): {t['efficiency']:.3f}")
    print(f"      accumulator array: {sum(r['cycles'] for r in acc_layers):,.0f} cycles for "
          f"{sum(r['additions'] for r in acc_layers):,.0f} synaptic additions per image")
    print(f"      energy per image (paper's model: E_MAC x encoding MACs + E_AC x SOPs): "
          f"{t['energy_pj_per_image'] / 1e6:.3f} uJ")
    print(f"      report: {out / 'run' / 'report.md'} and report.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
