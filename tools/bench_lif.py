"""Benchmark the LIF core: neuron updates per cycle against lanes, and simulation speed.

    python -m tools.bench_lif [--updates N] [CONFIG ...]

Runs the full-stream case (input always valid, output always ready) on each config's
generated RTL through the file-driven harness; every image is checked bit-exact on the way.
The simulator runs :func:`full_stream_bench` below (this module is also its cocotb test module).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cocotb

from contract.config import load_config
from hwgen.sim.lif import lif_sim_run
from hwgen.sim.runner import REPO_ROOT, run_cocotb

DEFAULT_CONFIGS = ["lif_small", "lif_wide", "lif_subtract"]


def bench(name: str, updates: int, log_dir: Path) -> dict:
    hw = load_config(REPO_ROOT / "configs" / "hw" / f"{name}.yaml")
    out = log_dir / f"{name}.json"
    run = lif_sim_run(hw, test_module="tools.bench_lif", test_dir=REPO_ROOT, testcase="full_stream_bench",
                      plan={"out": str(out), "updates": updates})
    run.log_file = log_dir / f"{name}.log"
    run_cocotb(run)
    return json.loads(out.read_text())


@cocotb.test()
async def full_stream_bench(dut):
    """Full-stream images until plan ``updates`` neuron updates, each checked exactly against
    golden.lif; figures to plan ``out``."""
    import numpy as np

    from contract.compare import assert_exact
    from hwgen.sim.lif import LifHarness
    from rtl_tests.lif_tb import BASE_SEED, golden, random_case

    tb = LifHarness(dut)
    cfg = tb.cfg
    rng = np.random.default_rng(BASE_SEED + 4)
    updates = cycles = images = 0
    wall = 0.0
    while updates < tb.plan["updates"]:
        currents, thresholds = random_case(cfg, rng, cfg.max_timesteps, cfg.beats, cfg.threshold_rows, spread=0.3)
        t0 = time.perf_counter()
        res = await tb.run(currents, thresholds)
        wall += time.perf_counter() - t0
        exp_s, exp_h = golden(cfg, currents, thresholds)
        assert_exact(f"[image {images}] membrane", exp_h, res.membranes, ("timestep", "neuron"))
        assert_exact(f"[image {images}] spike", exp_s, res.spikes, ("timestep", "neuron"))
        updates += currents.size
        cycles += res.cycles
        images += 1
    Path(tb.plan["out"]).write_text(json.dumps({"config": cfg.__dict__, "images": images, "updates": updates,
                                                "cycles": cycles, "lanes": cfg.lanes, "wall_s": wall}))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("configs", nargs="*", default=DEFAULT_CONFIGS, help="names under configs/hw/")
    p.add_argument("--updates", type=int, default=500_000, help="neuron updates per config")
    args = p.parse_args(argv)
    log_dir = Path(tempfile.mkdtemp(prefix="bench_lif_", dir=REPO_ROOT / "build"))
    print(f"{'config':<14}{'lanes':>6}{'updates':>10}{'cycles':>9}{'upd/cycle':>11}{'sim upd/s':>12}{'cycles/s':>11}")
    for name in args.configs:
        r = bench(name, args.updates, log_dir)
        print(f"{name:<14}{r['lanes']:>6}{r['updates']:>10}{r['cycles']:>9}{r['updates'] / r['cycles']:>11.3f}"
              f"{r['updates'] / r['wall_s']:>12,.0f}{r['cycles'] / r['wall_s']:>11,.0f}")
    print(f"(simulator logs in {log_dir})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
