"""The main demo: build the default LIF core and prove it bit-exact in simulation.

    ./run demo            (or: python -m tools.demo [--config configs/hw/lif_small.yaml])

1. `hwgen build` the config into build/demo/<name> (Verilog, manifest, lint report);
2. simulate the generated RTL on Verilator through the file-driven harness: random currents
   and thresholds, checked against the golden integer LIF neuron by neuron, timestep by
   timestep, then a full-stream run for throughput.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from hwgen.build import BuildError, build
from hwgen.config import ConfigError, load_config
from hwgen.sim.lif import lif_sim_run
from hwgen.sim.runner import REPO_ROOT, run_cocotb


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(REPO_ROOT / "configs/hw/lif_small.yaml"))
    p.add_argument("--updates", type=int, default=200_000, help="neuron updates to check")
    args = p.parse_args(argv)
    try:
        hw = load_config(args.config)
    except ConfigError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 2
    out = REPO_ROOT / "build" / "demo" / hw.name
    print(f"[1/2] hwgen build {args.config} (Verilog, lint, Yosys statistics; the first Yosys run on a "
          "machine compiles it, about 1.5 min)")
    try:
        result = build(hw, out, force=True)
    except BuildError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    print(f"      Verilog: {result.verilog[0]} (lint {result.manifest['lint']})")
    for top, st in result.manifest["synth"].items():
        print(f"      {top}: {st['cells']} cells, {st['flip_flops']} flip-flops, {st['memory_bits']} memory bits")
    print(f"      manifest: {out / 'manifest.json'}")

    print(f"[2/2] simulating {hw.name} on Verilator against the golden integer LIF "
          f"({args.updates:,} neuron updates; first run compiles the model, ~15 s)")
    figures = out / "sim.json"
    run = lif_sim_run(hw, test_module="lif_tb", test_dir=REPO_ROOT / "rtl_tests",
                      testcase=["random_currents", "backpressure", "full_stream_throughput"],
                      env={"HWGEN_BENCH_OUT": str(figures), "HWGEN_BENCH_UPDATES": str(args.updates),
                           "HWGEN_LIF_UPDATES": str(args.updates)})
    run.log_file = out / "sim.log"
    t0 = time.perf_counter()
    try:
        run_cocotb(run)
    except (AssertionError, SystemExit, RuntimeError) as e:
        print(f"demo: simulation FAILED ({e}); log: {run.log_file}", file=sys.stderr)
        return 1
    r = json.loads(figures.read_text())
    print(f"      result: PASS, bit-exact: {2 * args.updates:,}+ neuron updates (random currents, random "
          f"backpressure, full stream), 0 mismatches in spikes and membranes")
    print(f"      throughput: {r['updates'] / r['cycles']:.2f} neuron updates/cycle with {r['lanes']} lanes; "
          f"simulation {r['updates'] / r['wall_s']:,.0f} updates/s ({time.perf_counter() - t0:.0f} s in all)")
    print(f"      log: {run.log_file}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
