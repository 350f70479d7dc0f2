"""Benchmark the accumulator array: synaptic additions, cycles, the bound, efficiency, and the
dense-scan cycles of the same layer (every input a spike), side by side.

    python -m tools.bench_accumulator [--config configs/hw/digits.yaml] [--program DIR]

Random layers (conv 3x3, pointwise, linear, depthwise 7x7) at firing rates 0.05, 0.1, 0.2, 0.5;
with ``--program`` (a `hwgen quantize` folder with traces) also every conv and linear layer of
that model on its traced spikes. Every layer runs on the generated RTL and is checked exactly.

Cycle accounting (counters of the unit):
  accumulate = ops + starved        cycles issuing weight words, and bubbles between them
  drain, init                       one cycle per accumulator word per timestep / per layer
  efficiency = ceil(additions / lanes) / accumulate;  total efficiency uses all busy cycles
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from contract.config import load_config
from hwgen.layout import ConvGeometry
from hwgen.sim.accumulator import acc_sim_run, layers_from_program, write_layer_specs
from hwgen.sim.runner import REPO_ROOT, run_cocotb

RATES = (0.05, 0.1, 0.2, 0.5)


def random_layers(cfg, rng):
    L = cfg.lanes
    shapes = [
        ("conv3x3", ConvGeometry(32, 4 * L, 8, 8, 3, 1, 1)),
        ("conv3x3 16x16", ConvGeometry(min(cfg.max_channels, 64), 4 * L, 16, 16, 3, 1, 1)),
        ("pointwise", ConvGeometry(32, 4 * L, 8, 8, 1, 1, 0)),
        ("linear", ConvGeometry(min(cfg.max_channels, 128), 2 * L, 1, 1, 1, 1, 0)),
    ]
    if "grouped" in cfg.kinds:
        shapes.append(("depthwise7x7", ConvGeometry(16, 16, 8, 8, 7, 1, 3, 16)))
    layers = []
    for name, geo in shapes:
        w = rng.integers(-20, 21, size=(geo.c_out, geo.cg_in, geo.kernel, geo.kernel))
        b = rng.integers(-50, 51, size=geo.c_out)
        for rate in RATES:
            x = (rng.random((1, geo.c_in, geo.h, geo.w)) < rate).astype(np.int64)
            layers.append((f"{name} rate {rate}", geo, w, b, x, 1))
        layers.append((f"{name} dense", geo, w, b, np.ones((1, geo.c_in, geo.h, geo.w), dtype=np.int64), 1))
    return layers


def dense_ops(geo: ConvGeometry, lanes: int, x_lanes: bool) -> int:
    """Weight words issued if every input were a spike (border-aware), i.e. dense-scan cycles.
    With lanes over x (depthwise), one word per kernel row and ``lanes`` output columns."""
    def span(t, n_out):
        return sum(1 for k in range(geo.kernel) if (t - k) % geo.stride == 0 and 0 <= (t - k) // geo.stride < n_out and t >= k)
    ys = sum(span(y + geo.padding, geo.out_h) for y in range(geo.h))
    if x_lanes:
        return geo.c_in * ys * sum(math.ceil(span(x + geo.padding, geo.out_w) / lanes) for x in range(geo.w))
    xs = sum(span(x + geo.padding, geo.out_w) for x in range(geo.w))
    return geo.c_in * ys * xs * math.ceil(geo.cg_out / lanes)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(REPO_ROOT / "configs/hw/digits.yaml"))
    p.add_argument("--program", help="a `hwgen quantize` output folder: also bench its real layers")
    p.add_argument("--json", help="write the rows as JSON here")
    args = p.parse_args(argv)
    hw = load_config(args.config)
    cfg = hw.accumulator
    rng = np.random.default_rng(7)
    layers = random_layers(cfg, rng)
    if args.program:
        layers = layers_from_program(Path(args.program), cfg) + layers
    work = Path(tempfile.mkdtemp(prefix="bench_acc_", dir=REPO_ROOT / "build"))
    write_layer_specs(work / "layers.npz", layers)
    run = acc_sim_run(hw, test_module="acc_tb", test_dir=REPO_ROOT / "rtl_tests", testcase="replay_layers",
                      plan={"layers_in": str(work / "layers.npz"), "layers_out": str(work / "out.json")})
    run.log_file = work / "sim.log"
    t0 = time.perf_counter()
    run_cocotb(run)
    wall = time.perf_counter() - t0
    rows = json.loads((work / "out.json").read_text())
    L = cfg.lanes
    print(f"config {hw.name}: {L} lanes; every layer below was checked bit-exact against the golden engine")
    print(f"{'layer':<34}{'T':>2}{'additions':>11}{'bound':>9}{'accum':>8}{'eff':>6}{'drain':>7}{'init':>6}"
          f"{'total eff':>10}{'dense':>9}{'dense/ev':>9}")
    total_cycles = 0
    for r, (label, geo, *_rest) in zip(rows, layers):
        c = r["counters"]
        bound = math.ceil(c["additions"] / L)
        accum = c["ops"] + c["starved"]
        init = r["descriptor"]["drain_words"]
        dense = dense_ops(geo, L, bool(r["descriptor"]["x_lanes"])) * r["timesteps"] * (r["planes"] if r["planes"] > 1 else 1)
        eff = bound / accum if accum else float("nan")
        total = bound / c["busy"] if c["busy"] else float("nan")
        total_cycles += r["harness_cycles"]
        r.update(bound=bound, accumulate=accum, efficiency=eff, total_efficiency=total, dense_cycles=dense)
        print(f"{label[:33]:<34}{r['timesteps']:>2}{c['additions']:>11}{bound:>9}{accum:>8}{eff:>6.2f}{c['drain']:>7}"
              f"{init:>6}{total:>10.2f}{dense:>9}{dense / max(accum, 1):>9.1f}")
    sim_wall = sum(r["sim_s"] for r in rows)
    big = max(rows, key=lambda r: r["harness_cycles"])
    print(f"simulation (RTL alone, files in and out, no Python per cycle): {total_cycles} cycles in {sim_wall:.2f} s "
          f"= {total_cycles / sim_wall:,.0f} cycles/s; largest layer ({big['label']}): "
          f"{big['harness_cycles'] / big['sim_s']:,.0f} cycles/s ({wall:.0f} s in all with build and golden checks)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
