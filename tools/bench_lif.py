"""Benchmark the LIF core: neuron updates per cycle against lanes, and simulation speed.

    python -m tools.bench_lif [--updates N] [CONFIG ...]

Runs the full-stream case (input always valid, output always ready) on each config's
generated RTL through the file-driven harness; every image is checked bit-exact on the way.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from contract.config import load_config
from hwgen.sim.lif import lif_sim_run
from hwgen.sim.runner import REPO_ROOT, run_cocotb

DEFAULT_CONFIGS = ["lif_small", "lif_wide", "lif_subtract"]


def bench(name: str, updates: int, log_dir: Path) -> dict:
    hw = load_config(REPO_ROOT / "configs" / "hw" / f"{name}.yaml")
    out = log_dir / f"{name}.json"
    run = lif_sim_run(hw, test_module="lif_tb", test_dir=REPO_ROOT / "rtl_tests",
                      testcase="full_stream_throughput",
                      env={"HWGEN_BENCH_OUT": str(out), "HWGEN_BENCH_UPDATES": str(updates)})
    run.log_file = log_dir / f"{name}.log"
    run_cocotb(run)
    return json.loads(out.read_text())


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
