"""External weights against on-chip weights on conv layers (docs/accumulator.md, "Weights from
external memory"): the conv layers of ``rtl_tests/acc_tb.CONV_LAYERS`` run exact on
configs/hw/acc_small.yaml (weights on chip) and on configs/hw/acc_external.yaml (the same unit,
weights from the harness's memory model) at each memory latency and bandwidth; prints the
cycles, the slowdown, the weight stalls and the requests per layer as a markdown table.

    .venv/bin/python -m tools.bench_external_weights [--latency 20 100 400] [--bandwidth 1 2] [--buffer WORDS]

``--buffer`` replaces acc_external's ``weight_buffer`` (and the event queue it sizes).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from contract.config import HwConfig, load_config
from hwgen.sim.accumulator import acc_sim_run
from hwgen.sim.runner import run_cocotb

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "rtl_tests"


def layer_cycles(config: str, buffer: int | None = None, **plan) -> list[dict]:
    """acc_tb.conv_layer_cycles on one config (``buffer``: its ``weight_buffer`` replaced): per
    layer its cycles, counters and memory."""
    hw = load_config(REPO / "configs" / "hw" / f"{config}.yaml")
    if buffer is not None:
        raw = hw.to_dict()
        raw["name"] = f"{raw['name']}_buffer{buffer}"
        raw["accumulator"]["weight_buffer"] = buffer
        hw = HwConfig.from_dict(raw, f"{config} with weight_buffer = {buffer}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cycles.json"
        run_cocotb(acc_sim_run(hw, test_module="acc_tb", test_dir=TESTS, testcase="conv_layer_cycles",
                               plan={"cycles_out": str(out), **plan}))
        return json.loads(out.read_text())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=int, nargs="+", default=[20, 100, 400])
    ap.add_argument("--bandwidth", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--buffer", type=int, help="acc_external's weight_buffer replaced (words)")
    args = ap.parse_args(argv)
    onchip = layer_cycles("acc_small")
    if args.buffer:
        print(f"weight_buffer = {args.buffer} words")
    print("| layer | on chip | latency | words/cycle | external | slowdown | weight stalls | words | requests |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for bandwidth in args.bandwidth:
        for latency in args.latency:
            for a, b in zip(onchip, layer_cycles("acc_external", args.buffer, mem_latency=latency,
                                                       mem_bandwidth=bandwidth)):
                c = b["counters"]
                print(f"| {a['label']} | {a['cycles']} | {latency} | {bandwidth} | {b['cycles']} | "
                      f"{b['cycles'] / a['cycles'] - 1:+.1%} | {c['weight_stalls']} | {c['weight_words']} | "
                      f"{b['memory']['requests']} |")


if __name__ == "__main__":
    main()
