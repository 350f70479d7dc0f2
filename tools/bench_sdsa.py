"""Benchmark the SDSA unit: additions, cycles and efficiency per variant and firing rate, and
cycles against token count.

    python -m tools.bench_sdsa [--variants 3 1] [--out-blocks 1 4] [--rates 0.02 0.1 0.5] [--quick]

Runs the full-stream case (input always valid, output always ready) on each variant's generated
RTL through the file-driven harness (:func:`bench` below; this module is also its cocotb test
module); every image is checked bit-exact against the golden engine and its cycle count against
the cycle model on the way (rtl_tests/sdsa_tb.py's ``check``).

Figures per run: additions (lane-additions the unit counted), cycles, the bound
``ceil(additions / lanes)``, efficiency = bound / cycles, the interface bound (no unit with one
input beat and ``lanes`` output values per cycle can beat it, docs/sdsa.md) with the
efficiency against it, and the dense-scan cycles of the same layer on the same lanes.

Each variant runs once per output width (``out_blocks``: lane blocks per output beat), side by
side: with one block per beat the dense output alone caps SDSA-3 at sparse rates (docs/sdsa.md).
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import tempfile
import time
from pathlib import Path

import cocotb
import numpy as np

from hwgen.sim.runner import REPO_ROOT, run_cocotb
from hwgen.sim.sdsa import sdsa_sim_run
from hwgen.units.sdsa import SdsaConfig

# Sized like the paper's stage 3 at 224 x 224 (N = 14 x 14 tokens); heads x head_dim up to 4 x 64
# (runtime geometries below use part of it), 8 lanes.
BENCH_SHAPE = dict(lanes=8, heads=4, head_dim=64, max_tokens=196, max_timesteps=4)
WIDTHS = {3: dict(count_width=8, acc_width=14), 4: dict(count_width=8, acc_width=14),
          1: dict(count_width=8, acc_width=8), 2: dict(count_width=8, acc_width=8)}
RATES = (0.02, 0.05, 0.1, 0.2, 0.5, 0.9)
GEOMETRIES = ((4, 32), (2, 64), (4, 4))        # (heads, head_dim): d > L, d >> L, d < L
SWEEP_TOKENS = (4, 8, 16, 32, 64, 128, 196)
SWEEP_RATES = (0.05, 0.2)
OUT_BLOCKS = (1, 4)


def config(variant: int, out_blocks: int) -> SdsaConfig:
    return SdsaConfig.from_dict(dict(variant=variant, out_blocks=out_blocks, **BENCH_SHAPE, **WIDTHS[variant]),
                                f"bench variant {variant}, out_blocks {out_blocks}")


def cases(rates, quick: bool) -> list[dict]:
    n = BENCH_SHAPE["max_tokens"]
    out = []
    geometries = GEOMETRIES[:1] if quick else GEOMETRIES
    for g, (heads, d) in enumerate(geometries):
        for r in rates if g == 0 else rates[::2]:
            out.append(dict(kind="rate", heads=heads, head_dim=d, tokens=n, timesteps=1, rate=r))
    for r in SWEEP_RATES[:1] if quick else SWEEP_RATES:
        for t in SWEEP_TOKENS:
            out.append(dict(kind="sweep", heads=4, head_dim=32, tokens=t, timesteps=1, rate=r))
    for i, c in enumerate(out):
        c["seed"] = i
    return out


def run_variant(variant: int, out_blocks: int, spec: list[dict], log_dir: Path) -> list[dict]:
    cfg = config(variant, out_blocks)
    tag = f"v{variant}_p{out_blocks}"
    out = log_dir / f"{tag}.json"
    run = sdsa_sim_run(cfg, name=f"bench_{tag}", test_module="tools.bench_sdsa", test_dir=REPO_ROOT,
                       testcase="bench", plan={"cases": spec, "out": str(out)})
    run.log_file = log_dir / f"{tag}.log"
    run_cocotb(run)
    return json.loads(out.read_text())["rows"]


@cocotb.test()
async def bench(dut):
    """The plan's ``cases``, full stream, each checked exactly and its cycles against the cycle
    model; figures and the simulation wall time to plan ``out``."""
    from hwgen.sim.sdsa import SdsaHarness
    from rtl_tests.sdsa_tb import BASE_SEED, Tally, check, random_qkv

    tb = SdsaHarness(dut)
    cfg = tb.cfg
    tally, rows, wall = Tally(), [], 0.0
    for case in tb.plan["cases"]:
        rng = np.random.default_rng(BASE_SEED + 10 + case["seed"])
        T, N, heads, d = case["timesteps"], case["tokens"], case["heads"], case["head_dim"]
        q, k, v = random_qkv(rng, T, heads * d, N, (case["rate"],) * 3)
        t0 = time.perf_counter()
        res, model = await check(tb, tally, q, k, v, heads=heads, head_dim=d, exact_cycles=True,
                                 label=f"full stream {case}")
        wall += time.perf_counter() - t0
        rows.append({**case, **{f"perf_{k_}": v_ for k_, v_ in res.perf.items()},
                     "dense_cycles": model["dense_cycles"], "io_bound": model["io_bound"],
                     "lanes": cfg.lanes, "variant": cfg.variant})
    Path(tb.plan["out"]).write_text(json.dumps({"rows": rows, "wall_s": wall}))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", type=int, nargs="*", default=[3, 4, 1, 2], choices=(1, 2, 3, 4))
    p.add_argument("--out-blocks", type=int, nargs="*", default=list(OUT_BLOCKS),
                   help="output widths to compare, in lane blocks per beat")
    p.add_argument("--rates", type=float, nargs="*", default=list(RATES))
    p.add_argument("--quick", action="store_true", help="one geometry, one sweep rate")
    args = p.parse_args(argv)
    log_dir = Path(tempfile.mkdtemp(prefix="bench_sdsa_", dir=REPO_ROOT / "build"))
    spec = cases(args.rates, args.quick)
    print(f"SDSA unit, {BENCH_SHAPE}; full stream; every run bit-exact against golden.intsim")
    head = (f"{'var':>3} {'heads x d':>9} {'N':>4} {'rate':>5} {'additions':>10} {'cycles':>8} {'bound':>8}"
            f" {'eff':>5} {'io bound':>8} {'eff io':>6} {'dense':>9} {'vs dense':>8}")
    sweeps = {}
    for variant, blocks in itertools.product(args.variants, args.out_blocks):
        rows = run_variant(variant, blocks, spec, log_dir)
        lanes = BENCH_SHAPE["lanes"]
        print(f"\nSDSA-{variant}, out_blocks {blocks} ({blocks * lanes} values per output beat)\n{head}")
        for r in rows:
            adds, cyc = r["perf_additions"], r["perf_cycles"]
            bound = math.ceil(adds / lanes)
            if r["kind"] == "rate":
                print(f"{variant:>3} {r['heads']:>4} x {r['head_dim']:<3} {r['tokens']:>4} {r['rate']:>5.2f} {adds:>10}"
                      f" {cyc:>8} {bound:>8} {bound / cyc:>5.2f} {r['io_bound']:>8} {r['io_bound'] / cyc:>6.2f}"
                      f" {r['dense_cycles']:>9} {r['dense_cycles'] / cyc:>7.1f}x")
            else:
                sweeps.setdefault((variant, blocks, r["rate"]), []).append((r["tokens"], cyc, bound))
    print("\ncycles against tokens N (heads 4 x d 32), fitted exponent = log-log slope over all N"
          " and over N >= 32")
    print(f"{'var':>3} {'blk':>3} {'rate':>5}  " + " ".join(f"{'N=' + str(n):>8}" for n in SWEEP_TOKENS) + "   slope  N>=32")
    for (variant, blocks, rate), pts in sorted(sweeps.items()):
        n, c = np.array([x[0] for x in pts], float), np.array([x[1] for x in pts], float)
        slope = np.polyfit(np.log(n), np.log(c), 1)[0]
        big = n >= 32
        slope_big = np.polyfit(np.log(n[big]), np.log(c[big]), 1)[0] if big.sum() >= 2 else float("nan")
        print(f"{variant:>3} {blocks:>3} {rate:>5.2f}  " + " ".join(f"{int(x):>8}" for x in c) + f"   {slope:.3f}  {slope_big:.3f}")
    print(f"\n(simulator logs in {log_dir})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
