"""Accuracy of the digits models: float against the integer engine at 8, 6 and 4 weight bits.

    python -m tools.accuracy_table [--out docs/accuracy.md]

For each bundled checkpoint (T = 1 and T = 4) it folds and quantizes the model for
configs/hw/digits.yaml, runs the whole held-out test split through the float model and the
integer engine, and writes a Markdown table of test accuracy, plus, per layer, the fraction of
output spikes identical between the float and the 8-bit integer model.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from contract.config import load_config
from golden.digits import PIXEL_LEVELS, load_digits_split
from golden.export import load_model
from golden.fold import fold_model
from golden.intsim import IntegerEngine
from golden.quantize import quantize
from hwgen.sim.runner import REPO_ROOT

CHECKPOINTS = {1: "checkpoints/digits_sdsa3_t1.pth", 4: "checkpoints/digits_sdsa3_t4.pth"}
BITS = (8, 6, 4)


def spike_agreement(folded, engine, images, batch=128):
    """Per LIF layer: fraction of output spikes equal between float and integer."""
    same, total = {}, {}
    for i in range(0, len(images), batch):
        x = images[i:i + batch]
        with torch.no_grad():
            ref = folded.trace(x)
        env = engine.run(engine.encode(x))
        for layer in engine.program.layers:
            if layer.kind == "lif":
                eq = (env[layer.name].float() == ref[layer.name]).sum().item()
                same[layer.name] = same.get(layer.name, 0) + eq
                total[layer.name] = total.get(layer.name, 0) + ref[layer.name].numel()
    return {k: same[k] / total[k] for k in same}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO_ROOT / "docs" / "accuracy.md"))
    p.add_argument("--hw", default=str(REPO_ROOT / "configs" / "hw" / "digits.yaml"))
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    hw = load_config(args.hw)
    _, _, x_test, y_test = load_digits_split(size=32)
    rows, agreement = [], {}
    for T, ckpt in CHECKPOINTS.items():
        t0 = time.perf_counter()
        model = load_model(REPO_ROOT / ckpt)
        folded = fold_model(model)
        with torch.no_grad():
            float_acc = (model(x_test).argmax(1) == y_test).float().mean().item()
        row = {"T": T, "checkpoint": ckpt, "float": float_acc}
        for bits in BITS:
            program = quantize(folded, hw, weight_bits=bits, input_scale=1 / PIXEL_LEVELS,
                               input_shape=list(x_test.shape[1:]), model_name=ckpt)
            engine = IntegerEngine(program)
            row[bits] = (engine.classify(x_test) == y_test).float().mean().item()
            if bits == 8:
                agreement[T] = spike_agreement(folded, engine, x_test)
        rows.append(row)
        print(f"T={T}: float {float_acc:.4f}, " + ", ".join(f"int{b} {row[b]:.4f}" for b in BITS)
              + f" ({time.perf_counter() - t0:.0f} s)")

    lines = ["# Digits: float against integer accuracy", "",
             f"Produced by `python -m tools.accuracy_table` on the {len(y_test)} held-out test images of "
             "scikit-learn's digits (`golden.digits.load_digits_split`, seed 0), hardware config "
             f"`{Path(args.hw).name}`. Integer = the integer engine running the quantized program.", "",
             "| T | float | int 8-bit | int 6-bit | int 4-bit | 8-bit loss (pp) |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['T']} | {100 * r['float']:.2f}% | " + " | ".join(f"{100 * r[b]:.2f}%" for b in BITS)
                     + f" | {100 * (r['float'] - r[8]):+.2f} |")
    lines += ["", "## Output spikes identical between float and 8-bit integer, per layer", "",
              "| layer | " + " | ".join(f"T={T}" for T in agreement) + " |",
              "|---|" + "---|" * len(agreement)]
    names = list(next(iter(agreement.values())))
    for name in names:
        lines.append(f"| `{name}` | " + " | ".join(f"{100 * agreement[T][name]:.2f}%" for T in agreement) + " |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
