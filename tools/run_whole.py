"""A whole ImageNet-sized Meta-SpikeFormer on the simulated core: one real photo, every layer checked.

    python -m tools.run_whole [--model metaspikeformer_15m] [--T 1] [--config configs/hw/metaspikeformer64.yaml]

The model has random weights whose firing rates are made realistic (``--target-rates``, default
0.05 to 0.4, as golden/calibrate.py does on the photo itself); the photo is scikit-learn's
china.jpg through the reference preprocessing at 224 x 224. The program is compiled for the
configuration and run on the Verilated core with per-instruction digests (hwgen/sim/digest.py:
one log line per instruction, a mismatch located by a traced rerun), checked against the golden
engine layer by layer and against the cycle model instruction by instruction. It prints the
cycles, the wall time, simulated synaptic additions per second and the peak memory of the run.
"""
from __future__ import annotations

import argparse
import resource
import shutil
import time
from pathlib import Path

from contract.config import load_config
from golden.photos import photo_path
from hwgen.flow import quantize_checkpoint
from hwgen.sim.runner import REPO_ROOT
from hwgen.sim.simulate import simulate


def _peak_rss_gb() -> tuple[float, float]:
    """Peak resident memory of this process and of its finished children (the simulator), GB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2 ** 20
    return own, children


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="metaspikeformer_15m")
    p.add_argument("--T", type=int, default=1)
    p.add_argument("--config", default=str(REPO_ROOT / "configs" / "hw" / "metaspikeformer64.yaml"))
    p.add_argument("--photo", default="china", choices=("china", "flower"))
    p.add_argument("--target-rates", type=float, nargs=2, default=(0.05, 0.4), metavar=("LOW", "HIGH"))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=str(REPO_ROOT / "build" / "whole"))
    args = p.parse_args(argv)
    out = Path(args.out) / f"{args.model}_t{args.T}_{Path(args.config).stem}"
    photos = out / "photos" / args.photo
    photos.mkdir(parents=True, exist_ok=True)
    shutil.copy(photo_path(args.photo), photos / f"{args.photo}.jpg")
    hw = load_config(args.config)

    t0 = time.perf_counter()
    program = quantize_checkpoint(None, hw, out / "program", model=args.model, random_init=args.seed,
                                  model_args={"T": args.T, "img_size_h": 224, "img_size_w": 224},
                                  images=str(out / "photos"), calib=1, samples=1,
                                  target_rates=tuple(args.target_rates), force=True)
    t_quantize = time.perf_counter() - t0
    t0 = time.perf_counter()
    run = simulate(program, hw, out=out / "run", images=str(out / "photos"), count=1)
    wall = time.perf_counter() - t0
    t = run["totals"]
    own, sim = _peak_rss_gb()
    print(f"\n{args.model} at 224 x 224, T = {args.T}, on {args.photo}.jpg, {hw.name} ({run['lanes']} lanes): "
          f"{t['exact_images']}/{t['images']} image bit-exact on every layer and the logits, cycles equal to the model")
    print(f"cycles {t['cycles_per_image']:,.0f}: bound {t['bound_per_image']:,.0f} (overlapped units by the busiest), "
          f"efficiency {t['efficiency']:.3f}; one unit at a time {t['serial_bound_per_image']:,.0f}; "
          f"ceil(additions / lanes) {t['additions_bound_per_image']:,.0f}, efficiency "
          f"{t['additions_bound_per_image'] / t['cycles_per_image']:.3f}; {t['additions_per_image']:,.0f} synaptic "
          f"additions ({t['additions_per_image'] / t['cycles_per_image']:.1f} per cycle)")
    print(f"wall: quantize {t_quantize:.0f} s, simulate and check {wall:.0f} s (build included when not cached); "
          f"{t['sim_cycles_per_s']:,.0f} cycles/s, {t['additions_per_image'] / t['sim_wall_s'] / 1e6:.2f} M simulated "
          f"additions/s; peak memory {own:.1f} GB (python), {sim:.1f} GB (simulator)")
    print(f"energy {t['energy_pj_per_image'] / 1e9:.3f} mJ in the paper's model; run record {out / 'run' / 'run.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
