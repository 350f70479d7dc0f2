"""cocotb testbench: the generated LIF core against golden.lif, bit for bit.

Every test drives ``lif_harness`` (files in, files out, no Python per cycle), runs the golden
integer LIF on the same currents and thresholds and compares spikes and pre-reset membranes with
``==`` on whole arrays. Seeds are logged; a failure names timestep, neuron, lane, beat and the
cycle the beat left the core. Parameters come from the test plan (``hwgen.sim.harness``):
``seed``, ``updates``, ``stream_updates``, ``mutate_golden``, ``replay``.
"""
from __future__ import annotations

import cocotb
import numpy as np
import torch

from contract.compare import assert_exact
from golden.lif import lif_integer, thresholds_per_neuron
from hwgen.sim.harness import DEFAULT_SEED, test_plan
from hwgen.sim.lif import LifHarness

PLAN = test_plan()
BASE_SEED = int(PLAN.get("seed", DEFAULT_SEED))


def _limits(cfg):
    return -(1 << (cfg.current_width - 1)), (1 << (cfg.current_width - 1)) - 1


# Sensitivity check (rtl_tests/test_lif.py): corrupt one golden membrane by one LSB, the
# comparison must then fail. Never set outside that test.
MUTATE = bool(PLAN.get("mutate_golden"))


def golden(cfg, currents, thresholds):
    T, N = currents.shape
    th = thresholds_per_neuron(torch.as_tensor(thresholds), N)
    s, h = lif_integer(torch.as_tensor(currents), th, cfg)
    s, h = s.numpy(), h.numpy()
    if MUTATE:
        h[T - 1, N // 2] += 1
    return s, h


async def check(tb: LifHarness, currents, thresholds, *, label, seed=1, in_idle=0, out_stall=0):
    """Run one image on the RTL and the golden model; assert both outputs are identical."""
    cfg = tb.cfg
    res = await tb.run(currents, thresholds, seed=seed, in_idle=in_idle, out_stall=out_stall)
    exp_s, exp_h = golden(cfg, currents, thresholds)

    def locate(idx):
        t, n = idx
        beat = n // cfg.lanes
        return f"lane {n % cfg.lanes}, beat {beat}, output cycle {int(res.stamps[t, beat])}"

    axes = ("timestep", "neuron")
    assert_exact(f"[{label}] membrane", exp_h, res.membranes, axes, locate)
    assert_exact(f"[{label}] spike", exp_s, res.spikes, axes, locate)
    stamps = res.stamps.reshape(-1)
    assert np.all(np.diff(stamps) > 0), f"[{label}] output beats not in order: {stamps[:20]}"
    T, N = currents.shape
    tb.log.info("%s: T=%d N=%d updates=%d spikes=%d cycles=%d: exact", label, T, N, T * N,
                int(exp_s.sum()), res.cycles)
    return res


def random_case(cfg, rng, T, beats, rows, *, spread=1.0):
    lo, hi = _limits(cfg)
    N, C = beats * cfg.lanes, rows * cfg.lanes
    currents = rng.integers(int(lo * spread), int(hi * spread) + 1, size=(T, N))
    th_hi = min((1 << cfg.threshold_width) - 1, hi)
    thresholds = rng.integers(0, th_hi + 1, size=C)
    return currents, thresholds


def geometry(cfg, rng):
    rows = int(rng.integers(1, cfg.threshold_rows + 1))
    per = cfg.beats // rows
    beats = rows * int(rng.integers(1, per + 1))
    return beats, rows


@cocotb.test()
async def random_currents(dut):
    """Random currents and thresholds over random geometries, T from 1 to max."""
    tb = LifHarness(dut)
    cfg = tb.cfg
    rng = np.random.default_rng(BASE_SEED)
    tb.log.info("seed %d, config %s", BASE_SEED, cfg)
    updates, case = 0, 0
    target = int(PLAN.get("updates", 40000))
    while updates < target:
        T = int(rng.integers(1, cfg.max_timesteps + 1))
        beats, rows = geometry(cfg, rng)
        currents, thresholds = random_case(cfg, rng, T, beats, rows, spread=float(rng.choice([0.05, 0.3, 1.0])))
        await check(tb, currents, thresholds, label=f"random case {case}", seed=case + 1)
        updates += currents.size
        case += 1


@cocotb.test()
async def threshold_edges(dut):
    """Currents that put H exactly at the threshold, one LSB below and one above."""
    tb = LifHarness(dut)
    cfg = tb.cfg
    k = cfg.leak_shift
    lo, hi = _limits(cfg)
    rows = cfg.threshold_rows
    C = rows * cfg.lanes
    rng = np.random.default_rng(BASE_SEED + 1)
    thresholds = rng.integers(1, min((1 << cfg.threshold_width) - 1, hi >> k) + 1, size=C)
    # At t = 0 (V = 0): H = (X << F) >> k, so X = th << k lands exactly on th << F.
    th_n = np.tile(thresholds, 3)
    offsets = np.repeat(np.array([-1, 0, 1]), C)
    x = np.clip((th_n << k) + offsets, lo, hi)
    currents = x[None, :]
    res = await check(tb, currents, thresholds, label="threshold -1/0/+1")
    assert res.spikes[0, C:2 * C].all() and not res.spikes[0, :C].any(), "edge case did not separate"


@cocotb.test()
async def extreme_currents(dut):
    """Most negative and most positive currents held for every timestep: the membrane walks
    to its width limits (X << F) without wrapping."""
    tb = LifHarness(dut)
    cfg = tb.cfg
    lo, hi = _limits(cfg)
    T = cfg.max_timesteps
    L = cfg.lanes
    f = cfg.frac_bits
    pattern = np.array([lo, hi, lo, hi, lo + 1, hi - 1, 0, -1])
    currents = np.tile(np.resize(pattern, 8 * L), (T, 1))
    max_th = (1 << cfg.threshold_width) - 1
    for thresholds, label in ((np.full(L, max_th), "max threshold"), (np.zeros(L, dtype=np.int64), "zero threshold")):
        res = await check(tb, currents, thresholds, label=f"extremes, {label}")
    # With the zero threshold every neuron fires; with the largest one the membrane must have
    # approached the limits of its width (membrane_width == current_width + frac_bits here).
    res = await check(tb, currents, np.full(L, max_th), label="extremes, limits")
    assert res.membranes.min() == (lo << f) >> cfg.leak_shift or T > 1
    assert res.membranes.min() < (lo << f) // 2 and res.membranes.max() > (hi << f) // 2 or max_th < hi


@cocotb.test()
async def consecutive_spikes(dut):
    """A strong constant current spikes on consecutive timesteps (hard and subtract reset)."""
    tb = LifHarness(dut)
    cfg = tb.cfg
    lo, hi = _limits(cfg)
    T = cfg.max_timesteps
    thresholds = np.full(cfg.lanes, 1)
    currents = np.full((T, 2 * cfg.lanes), hi)
    res = await check(tb, currents, thresholds, label="consecutive spikes")
    assert res.spikes.all(), "expected a spike on every timestep"


@cocotb.test()
async def timesteps_one_and_four(dut):
    """The same neurons at T = 1 and T = 4 (and the configured maximum)."""
    tb = LifHarness(dut)
    cfg = tb.cfg
    rng = np.random.default_rng(BASE_SEED + 2)
    for T in sorted({1, min(4, cfg.max_timesteps), cfg.max_timesteps}):
        currents, thresholds = random_case(cfg, rng, T, cfg.beats, cfg.threshold_rows, spread=0.3)
        await check(tb, currents, thresholds, label=f"T={T}")


@cocotb.test()
async def backpressure(dut):
    """Random idle input cycles and ready held low at random, including one beat per timestep
    (each beat then reads the membrane row written back in the same cycle)."""
    tb = LifHarness(dut)
    cfg = tb.cfg
    rng = np.random.default_rng(BASE_SEED + 3)
    for i, (in_idle, out_stall) in enumerate([(0, 128), (128, 0), (100, 200), (230, 230)]):
        for beats in (1, 2, cfg.beats // 4 or 1):
            T = cfg.max_timesteps
            currents, thresholds = random_case(cfg, rng, T, beats, 1, spread=0.3)
            res = await check(tb, currents, thresholds, label=f"backpressure idle={in_idle} stall={out_stall} beats={beats}",
                              seed=1000 + i, in_idle=in_idle, out_stall=out_stall)
            if out_stall >= 128 and T * beats > 8:
                assert res.cycles > T * beats, "stalls did not slow the run: backpressure not exercised"


@cocotb.test()
async def full_stream_throughput(dut):
    """No idle input, no stall: one beat per cycle. Every image is still checked exactly
    (tools/bench_lif.py measures simulation speed the same way)."""
    tb = LifHarness(dut)
    cfg = tb.cfg
    rng = np.random.default_rng(BASE_SEED + 4)
    T = cfg.max_timesteps
    target = int(PLAN.get("stream_updates", 200000))
    updates = cycles = images = 0
    while updates < target:
        currents, thresholds = random_case(cfg, rng, T, cfg.beats, cfg.threshold_rows, spread=0.3)
        res = await tb.run(currents, thresholds)
        exp_s, exp_h = golden(cfg, currents, thresholds)
        assert_exact(f"[image {images}] membrane", exp_h, res.membranes, ("timestep", "neuron"))
        assert_exact(f"[image {images}] spike", exp_s, res.spikes, ("timestep", "neuron"))
        # Pipeline fill and drain are all the overhead a full stream may have.
        beats = currents.size // cfg.lanes
        assert res.cycles <= beats + 4, f"{res.cycles} cycles for {beats} beats at full stream"
        updates += currents.size
        cycles += res.cycles
        images += 1
    tb.log.info("full stream: %d updates in %d cycles = %.3f per cycle (lanes %d)",
                updates, cycles, updates / cycles, cfg.lanes)


@cocotb.test(skip="replay" not in PLAN)
async def replay_traces(dut):
    """LIF layers of an exported program (plan ``replay``: an .npz of currents [T, N] in the
    core's neuron order, per-channel thresholds, traced spikes and membranes): the RTL's
    membranes, carried across the T timesteps, must equal the golden engine and the trace."""
    tb = LifHarness(dut)
    spec = np.load(PLAN["replay"])
    for i in range(int(spec["count"])):
        currents, thresholds = spec[f"x{i}"].astype(np.int64), spec[f"th{i}"].astype(np.int64)
        label = str(spec[f"label{i}"])
        res = await check(tb, currents, thresholds, label=label)
        assert_exact(f"[{label}] traced membrane", spec[f"h{i}"].astype(np.int64), res.membranes, ("timestep", "neuron"))
        assert_exact(f"[{label}] traced spike", spec[f"s{i}"].astype(np.int64), res.spikes, ("timestep", "neuron"))
