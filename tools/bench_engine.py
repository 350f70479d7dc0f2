"""Images per second of the integer engine against the float model, side by side in one run.

    python -m tools.bench_engine [--skip-31m]

Models: the bundled digits model (T = 4, batch 64) and a randomly initialized 31M model at
224x224 (T = 1, batch 1). Each measurement is the best of a few repetitions after a warm-up.
"""
from __future__ import annotations

import argparse
import time

import torch

from contract.config import load_config
from golden.export import load_model
from golden.fold import fold_model
from golden.intsim import IntegerEngine
from golden.quantize import quantize
from hwgen.sim.runner import REPO_ROOT


def best_rate(fn, images, reps):
    fn(images)  # warm-up
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(images)
        best = min(best, time.perf_counter() - t0)
    return len(images) / best


def bench(label, model, hw, images, input_scale, reps):
    folded = fold_model(model)
    program = quantize(folded, hw, input_scale=input_scale, input_shape=list(images.shape[1:]),
                       calibration=None if input_scale else _calib(images))
    engine = IntegerEngine(program)
    px = engine.encode(images)
    with torch.no_grad():
        f = best_rate(model, images, reps)
        i = best_rate(lambda _: engine.logits(px), images, reps)
    print(f"{label:<28}{len(images):>6}{f:>14.1f}{i:>14.1f}{f / i:>12.2f}x")


def _calib(images):
    from golden.quantize import Calibration
    return Calibration(float(images.min()), float(images.max()), 1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--skip-31m", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"{'model':<28}{'batch':>6}{'float img/s':>14}{'int img/s':>14}{'int slower':>12}")
    from golden.digits import load_digits_split
    _, _, x_test, _ = load_digits_split(size=32)
    digits = load_model(REPO_ROOT / "checkpoints/digits_sdsa3_t4.pth")
    bench("digits (T=4)", digits, load_config(REPO_ROOT / "configs/hw/digits.yaml"), x_test[:64], 1 / 16, 5)
    if not args.skip_31m:
        m31 = load_model(None, model_name="metaspikeformer_31m", random_init=1, img_size_h=224, img_size_w=224)
        gen = torch.Generator().manual_seed(0)
        bench("31M random init, 224x224", m31, load_config(REPO_ROOT / "configs/hw/metaspikeformer.yaml"),
              torch.rand(1, 3, 224, 224, generator=gen), None, 3)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
