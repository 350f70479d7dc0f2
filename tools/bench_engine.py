"""Images per second of the integer engine against the float model, side by side in one run.

    python -m tools.bench_engine [--skip-31m] [--threads N] [--reps N]

Models: the bundled digits model (T = 4, batch 64) and a randomly initialized 31M model at
224x224 (T = 1, batch 1). The comparison is like for like: both models get the same images
(the float model the float images, the integer engine the same images encoded to its pixels,
the encoding counted in its time), run under ``torch.no_grad`` on the same number of threads,
and after one warm-up run each are timed alternately (float, integer, float, ...) so that a
change of load on the machine hits both; each figure is the best of ``--reps`` repetitions.
``int / float`` is the integer engine's images per second over the float model's: 1.0x or more
means the integer engine is at least as fast.
"""
from __future__ import annotations

import argparse
import time

import torch

from contract.config import load_config
from golden.export import load_model
from golden.fold import fold_model
from golden.intsim import IntegerEngine
from golden.quantize import Calibration, quantize
from hwgen.sim.runner import REPO_ROOT


def best_seconds(fns: dict, reps: int) -> dict[str, float]:
    """Best wall time of each function over ``reps`` alternating rounds, after one warm-up each."""
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def bench(label, model, hw, images, input_scale, reps):
    folded = fold_model(model)
    calibration = None if input_scale else Calibration(float(images.min()), float(images.max()), 1)
    program = quantize(folded, hw, input_scale=input_scale, input_shape=list(images.shape[1:]),
                       calibration=calibration)
    engine = IntegerEngine(program)
    model.eval()
    with torch.no_grad():
        t = best_seconds({"float": lambda: model(images),
                          "int": lambda: engine.logits(engine.encode(images))}, reps)
    f, i = len(images) / t["float"], len(images) / t["int"]
    print(f"{label:<28}{len(images):>6}{f:>14.2f}{i:>14.2f}{i / f:>12.2f}x", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--skip-31m", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=7, help="timed repetitions per model (best of them)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()} (float model and integer engine alike)")
    print(f"{'model':<28}{'batch':>6}{'float img/s':>14}{'int img/s':>14}{'int / float':>12}")
    from golden.digits import load_digits_split
    _, _, x_test, _ = load_digits_split(size=32)
    digits = load_model(REPO_ROOT / "checkpoints/digits_sdsa3_t4.pth")
    bench("digits (T=4)", digits, load_config(REPO_ROOT / "configs/hw/digits.yaml"), x_test[:64], 1 / 16, args.reps)
    if not args.skip_31m:
        m31 = load_model(None, model_name="metaspikeformer_31m", random_init=1, img_size_h=224, img_size_w=224)
        gen = torch.Generator().manual_seed(0)
        bench("31M random init, 224x224", m31, load_config(REPO_ROOT / "configs/hw/metaspikeformer.yaml"),
              torch.rand(1, 3, 224, 224, generator=gen), None, args.reps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
