"""cocotb testbench: the generated SDSA unit against the golden integer engine, bit for bit.

Every test drives ``sdsa_harness`` (files in, files out, no Python per cycle), runs
``golden.intsim.IntegerEngine`` on an ``sdsa`` layer with the same Q, K, V and compares the
attention integers with ``==`` on whole arrays. The unit's counters are held to the cycle model
of docs/sdsa.md (``hwgen.sim.sdsa.cycle_model``). Seeds are logged; a failure names timestep,
channel, token and the cycle the output beat left the unit. Parameters come from the test plan
(``hwgen.sim.harness``): ``seed``, ``values``, ``cases``, ``replay``.
"""
from __future__ import annotations

import cocotb
import numpy as np
import torch

from contract.compare import assert_exact
from contract.config import HwConfig
from contract.program import Layer, Program
from golden.intsim import IntegerEngine
from hwgen.sim.harness import DEFAULT_SEED, test_plan
from hwgen.sim.sdsa import SdsaHarness, cycle_model, output_beat

PLAN = test_plan()
BASE_SEED = int(PLAN.get("seed", DEFAULT_SEED))
RATES = (0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 0.9)

torch.set_num_threads(1)


class Tally:
    """Values compared per test, for the summary line."""

    def __init__(self):
        self.cases = self.values = 0


def golden(variant: int, q, k, v, *, heads: int, head_dim: int) -> np.ndarray:
    """``IntegerEngine`` on one ``sdsa`` layer: [T, C, N] spikes -> A [T, C, N] or [T, C]."""
    T, C, N = q.shape
    inputs = ["q", "v"] if variant == 2 else ["q", "k", "v"]
    shape = [C, N, 1] if variant in (3, 4) else [C, 1, 1]
    layer = Layer("attn.sdsa", "sdsa", inputs, shape,
                  attrs=dict(variant=variant, heads=heads, head_dim=head_dim, tokens=N))
    engine = IntegerEngine(Program(header={}, layers=[layer], arrays={}), HwConfig(name="sdsa_unit_test"))

    def tensor(x):  # [T, C, N] -> [T, B=1, C, H=N, W=1]
        return torch.as_tensor(np.asarray(x, dtype=np.int64)).reshape(T, 1, C, N, 1)

    zeros = np.zeros_like(q)
    xs = (q, v if v is not None else zeros) if variant == 2 else \
         (q, k, v if v is not None else zeros)
    out = engine.run_layer(layer, *(tensor(x) for x in xs)).numpy()
    return out.reshape(T, C, N) if variant in (3, 4) else out.reshape(T, C)


def spikes(rng, shape, rate):
    return (rng.random(shape) < rate).astype(np.int64)


def random_qkv(rng, T, C, N, rates):
    return tuple(spikes(rng, (T, C, N), r) for r in rates)


async def check(tb: SdsaHarness, tally: Tally, q, k, v, *, heads, head_dim, label, seed=1,
                in_idle=0, out_stall=0, junk_seed=None, exact_cycles=None, corrupt=None):
    """Run one image on the RTL and the golden engine; assert identical A, zero padding lanes,
    and counters equal to the cycle model. ``corrupt`` (flat index) adds one to that golden
    value: the sensitivity check only."""
    cfg = tb.cfg
    res = await tb.run(q, k, v, heads=heads, head_dim=head_dim, seed=seed, in_idle=in_idle,
                       out_stall=out_stall, junk_seed=junk_seed)
    expected = golden(cfg.variant, q, k, v, heads=heads, head_dim=head_dim)
    if corrupt is not None:
        expected = expected.copy()
        expected.reshape(-1)[corrupt] += 1
    T, C, N = q.shape
    L = cfg.lanes

    def locate(idx):
        t, c = idx[0], idx[1]
        h, j = divmod(c, head_dim)
        n = idx[2] if len(idx) > 2 else 0
        beat = output_beat(cfg, t=t, n=n, h=h, j=j, N=N, heads=heads, head_dim=head_dim)
        return f"head {h}, dim {j}, lane {j % L}, output beat {beat} at cycle {int(res.stamps[beat])}"

    axes = ("timestep", "channel", "token") if cfg.attention_matrix else ("timestep", "channel")
    assert_exact(f"[{label}] attention", expected, res.att, axes, locate)
    assert not res.padding.any(), f"[{label}] padding lanes not zero: {res.padding[res.padding != 0][:8]}"
    assert np.all(np.diff(res.stamps) > 0), f"[{label}] output beats not in order"

    model = cycle_model(cfg, q, k, heads=heads, head_dim=head_dim)
    perf = res.perf
    for key in ("additions", "in_beats", "out_beats"):
        assert perf[key] == model[key], f"[{label}] counter {key} = {perf[key]}, cycle model {model[key]}"
    # Every busy cycle issues work, waits for input (starve) or is held by the output (stall).
    busy = perf["cycles"] - perf["stall_cycles"] - perf["starve_cycles"]
    assert busy == model["cycles"], (f"[{label}] cycles {perf['cycles']} - stall {perf['stall_cycles']} - starve "
                                     f"{perf['starve_cycles']} = {busy}, cycle model {model['cycles']}")
    if exact_cycles:
        assert perf["cycles"] == model["cycles"], f"[{label}] full stream: {perf['cycles']} cycles, model {model['cycles']}"
    tally.cases += 1
    tally.values += expected.size
    tb.log.debug("%s: T=%d C=%d (%dx%d) N=%d adds=%d cycles=%d: exact", label, T, C, heads, head_dim, N,
                 perf["additions"], perf["cycles"])
    return res, model


def random_geometry(cfg, rng):
    heads = int(rng.integers(1, cfg.heads + 1))
    d = int(rng.integers(1, cfg.head_dim + 1))
    N = int(rng.integers(1, cfg.max_tokens + 1))
    T = int(rng.integers(1, min(cfg.max_timesteps, 4) + 1))
    return heads, d, N, T


@cocotb.test()
async def random_spikes(dut):
    """Random Q/K/V at firing rates 0.02 .. 0.9 over random geometries (heads, d, N from 1 to
    the maximum, T 1..4), random backpressure, junk in every ignored input bit."""
    tb = SdsaHarness(dut)
    cfg = tb.cfg
    rng = np.random.default_rng(BASE_SEED)
    tb.log.info("seed %d, config %s", BASE_SEED, cfg)
    tally = Tally()
    target = int(PLAN.get("values", 20000))
    max_cases = int(PLAN.get("cases", 600))
    pressure = [(0, 0), (0, 128), (128, 0), (64, 64), (200, 200)]
    while tally.values < target and tally.cases < max_cases:
        heads, d, N, T = random_geometry(cfg, rng)
        rates = rng.choice(RATES, size=3)
        q, k, v = random_qkv(rng, T, heads * d, N, rates)
        in_idle, out_stall = pressure[tally.cases % len(pressure)]
        await check(tb, tally, q, k, v, heads=heads, head_dim=d, seed=tally.cases + 1,
                    in_idle=in_idle, out_stall=out_stall, junk_seed=tally.cases,
                    label=f"case {tally.cases} heads={heads} d={d} N={N} T={T} rates={list(rates)} "
                          f"idle={in_idle} stall={out_stall}")
    tb.log.info("random spikes: %d cases, %d attention values exact", tally.cases, tally.values)


@cocotb.test()
async def extremes(dut):
    """All spikes (A reaches its bound N*d: the widths' limit), no spikes, one token, one
    channel, and a dense timestep followed by an empty one (state cleared per timestep)."""
    tb = SdsaHarness(dut)
    cfg = tb.cfg
    rng = np.random.default_rng(BASE_SEED + 1)
    tally = Tally()
    H, D, N = cfg.heads, cfg.head_dim, cfg.max_tokens
    ones = np.ones((1, H * D, N), dtype=np.int64)
    res, _ = await check(tb, tally, ones, ones, ones, heads=H, head_dim=D, label="all ones")
    top = N * D if cfg.attention_matrix else N
    assert res.att.max() == top, f"all ones: max A {res.att.max()}, expected the bound {top}"
    zeros = np.zeros_like(ones)
    await check(tb, tally, zeros, zeros, zeros, heads=H, head_dim=D, label="all zeros", junk_seed=7)
    for heads, d in ((1, 1), (H, 1), (1, D)):
        q, k, v = random_qkv(rng, 2, heads * d, 1, (0.5, 0.5, 0.5))
        await check(tb, tally, q, k, v, heads=heads, head_dim=d, label=f"one token heads={heads} d={d}")
    T = min(cfg.max_timesteps, 3)
    q, k, v = (np.zeros((T, H * D, N), dtype=np.int64) for _ in range(3))
    q[0], k[0], v[0] = 1, 1, 1        # dense, then empty: stale K^T V or counters would show
    if T > 2:
        q[2], k[2], v[2] = spikes(rng, (H * D, N), 0.3), 1, 1
    res, _ = await check(tb, tally, q, k, v, heads=H, head_dim=D, label="dense then empty timestep")
    assert not res.att[1].any() and res.att[0].min() > 0
    tb.log.info("extremes: %d cases, %d attention values exact", tally.cases, tally.values)


@cocotb.test()
async def backpressure(dut):
    """Heavy random input idling and output stalls: results exact, counters account for every
    cycle, stalls and starvation actually happen."""
    tb = SdsaHarness(dut)
    cfg = tb.cfg
    rng = np.random.default_rng(BASE_SEED + 2)
    tally = Tally()
    for i, (in_idle, out_stall) in enumerate([(0, 230), (230, 0), (180, 180)]):
        heads, d, N = cfg.heads, cfg.head_dim, min(cfg.max_tokens, 24)
        q, k, v = random_qkv(rng, 2, heads * d, N, (0.3, 0.3, 0.3))
        res, _ = await check(tb, tally, q, k, v, heads=heads, head_dim=d, seed=100 + i, in_idle=in_idle,
                             out_stall=out_stall, label=f"backpressure idle={in_idle} stall={out_stall}")
        if out_stall:
            assert res.perf["stall_cycles"] > 0, "output stalls were not seen by the unit"
        if in_idle:
            assert res.perf["starve_cycles"] > 0, "input idling was not seen by the unit"
    tb.log.info("backpressure: %d cases, %d attention values exact", tally.cases, tally.values)


@cocotb.test()
async def corrupted_golden_is_caught(dut):
    """The comparison is live: one golden value off by one (first, middle, last element) must
    fail the check, and the report must name the first mismatch."""
    tb = SdsaHarness(dut)
    cfg = tb.cfg
    rng = np.random.default_rng(BASE_SEED + 3)
    heads, d, N = cfg.heads, cfg.head_dim, min(cfg.max_tokens, 8)
    q, k, v = random_qkv(rng, 2, heads * d, N, (0.4, 0.4, 0.4))
    size = q.size if cfg.attention_matrix else 2 * heads * d
    for index in (0, size // 2, size - 1):
        try:
            await check(tb, Tally(), q, k, v, heads=heads, head_dim=d, label="corrupted", corrupt=index)
        except AssertionError as e:
            assert "attention differs at timestep=" in str(e) and "(1 mismatches of" in str(e), str(e)
            tb.log.info("corrupted golden value %d caught: %s", index, str(e).splitlines()[0])
        else:
            raise AssertionError(f"a golden value off by one at flat index {index} was not caught")


@cocotb.test()
async def full_stream(dut):
    """Input always valid, output always ready: cycles equal the cycle model exactly
    (tools/bench_sdsa.py runs its sweeps the same way)."""
    tb = SdsaHarness(dut)
    cfg = tb.cfg
    tally = Tally()
    for seed, rate in enumerate((0.02, 0.1, 0.3, 0.9)):
        rng = np.random.default_rng(BASE_SEED + 10 + seed)
        q, k, v = random_qkv(rng, 1, cfg.heads * cfg.head_dim, cfg.max_tokens, (rate,) * 3)
        await check(tb, tally, q, k, v, heads=cfg.heads, head_dim=cfg.head_dim, exact_cycles=True,
                    label=f"full stream rate {rate}")
    tb.log.info("full stream: %d cases, %d attention values exact, cycles = model", tally.cases, tally.values)


@cocotb.test(skip="replay" not in PLAN)
async def replay_traces(dut):
    """Attention layers of an exported program (plan ``replay``: an .npz of q, k, v spikes
    [T, C, N] and the traced attention integers), checked against the golden engine and the
    trace itself."""
    tb = SdsaHarness(dut)
    tally = Tally()
    spec = np.load(PLAN["replay"])
    for i in range(int(spec["count"])):
        q, k, v = (spec[f"{n}{i}"].astype(np.int64) for n in ("q", "k", "v"))
        heads, head_dim = int(spec[f"heads{i}"]), int(spec[f"head_dim{i}"])
        label = str(spec[f"label{i}"])
        res, _ = await check(tb, tally, q, k, v, heads=heads, head_dim=head_dim, label=label)
        assert_exact(f"[{label}] traced attention", spec[f"a{i}"].astype(np.int64), res.att,
                     ("timestep", "channel", "token") if tb.cfg.attention_matrix else ("timestep", "channel"))
        tb.log.info("%s: T=%d heads=%d d=%d tokens=%d: RTL == golden == trace", label, q.shape[0], heads, head_dim,
                    q.shape[2])
