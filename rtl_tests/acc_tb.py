"""cocotb testbench: the generated accumulator array against the golden integer conv.

Each test runs whole layers through ``acc_harness`` (weights, biases and spike events from
files; drained accumulators to a file) and compares every output accumulator, every timestep,
with ``golden.intsim.conv_integer`` wrapped to the accumulator width (docs/arithmetic.md), using
``==`` on whole arrays. Seeds are logged; a failure names timestep, channel and position.
Parameters come from the test plan (``hwgen.sim.harness``): ``seed``, ``layers``,
``mutate_golden``, ``layers_in`` / ``layers_out``, ``cycles_out``; with external weights
(``accumulator.weights: external``) the memory model's ``mem_latency`` and ``mem_bandwidth``.
"""
from __future__ import annotations

import dataclasses
import json
import time

import cocotb
import numpy as np
import torch

from contract.compare import assert_exact
from golden.intsim import conv_integer, wrap
from hwgen.layout import ConvGeometry, fold_slots
from hwgen.sim.accumulator import AccHarness
from hwgen.sim.harness import DEFAULT_SEED, test_plan

PLAN = test_plan()
BASE_SEED = int(PLAN.get("seed", DEFAULT_SEED))
MUTATE = bool(PLAN.get("mutate_golden"))   # sensitivity check only
#: the unit reads its weights from the harness's memory model (docs/accumulator.md)
EXTERNAL = PLAN.get("config", {}).get("accumulator", {}).get("weights") == "external"
SUMMARY = {"layers": 0, "accumulators": 0, "additions": 0}


def golden(cfg, geo, weight, bias, inputs, *, planes=1, signed_planes=False):
    x = torch.as_tensor(inputs, dtype=torch.int64)
    if planes > 1 and signed_planes:   # two's complement pixels
        x = torch.where(x >= (1 << (planes - 1)), x - (1 << planes), x)
    bound = float(np.abs(weight).reshape(len(weight), -1).sum(1).max() * max(1, int(np.abs(x).max()) if x.numel() else 1)
                  + np.abs(bias).max())
    y = conv_integer(x[:, None], torch.as_tensor(weight), torch.as_tensor(bias), stride=geo.stride,
                     padding=geo.padding, groups=geo.groups, bound=bound)[:, 0]
    exact = y.numpy()
    out = wrap(y, cfg.accumulator_width).numpy()
    if MUTATE:
        out[-1, -1, -1, -1] += 1
    return out, exact


async def check(tb, geo, weight, bias, inputs, *, label, **kw):
    planes = kw.get("planes", 1)
    res = await tb.run(geo, weight, bias, inputs, **kw)
    exp, exact = golden(tb.cfg, geo, weight, bias, inputs, planes=planes, signed_planes=kw.get("signed_planes", False))
    assert_exact(f"[{label}] accumulator", exp, res.sums, ("timestep", "channel", "y", "x"))
    # the additions counter counts exactly the synaptic operations the event list implies
    nz = [(inputs[t] >> j) & 1 if planes > 1 else inputs[t] for t in range(len(inputs)) for j in range(planes)]
    expected_adds = sum(_additions(geo, frame) for frame in nz)
    assert res.counters["additions"] == expected_adds, f"[{label}] additions {res.counters['additions']} != {expected_adds}"
    assert res.counters["events"] == int(sum(f.sum() for f in nz)), f"[{label}] event count"
    _check_weight_counters(tb, geo, res, nz, label)
    SUMMARY["layers"] += 1
    SUMMARY["accumulators"] += exp.size
    SUMMARY["additions"] += expected_adds
    tb.log.info("%s: %s T=%d events=%d additions=%d cycles=%d counters=%s: exact", label, geo, len(inputs),
                res.counters["events"], expected_adds, res.cycles, res.counters)
    return res, exp, exact


def _check_weight_counters(tb, geo, res, frames, label):
    """External weights: one word received per word the loop consumes (every op's word, and for
    a folded layer each position's parked last word: G per position hit), and stalls counted
    within the busy cycles. On chip both counters stay 0."""
    c = res.counters
    if not EXTERNAL:
        assert c["weight_stalls"] == c["weight_words"] == 0, f"[{label}] weight counters on chip: {c}"
        return
    hits = sum(_offsets(geo, y, x) for frame in frames for _, y, x in np.argwhere(frame != 0))
    words = c["ops"] if res.descriptor.x_lanes else hits * res.descriptor.group_words
    assert c["weight_words"] == words, f"[{label}] {c['weight_words']} weight words received, the loop needs {words}"
    assert c["weight_stalls"] <= c["busy"], f"[{label}] weight stalls {c['weight_stalls']} > busy {c['busy']}"
    tb.log.info("[%s] memory latency %d, %d word(s)/cycle: %d words in %d requests, %d weight stall cycles",
                label, res.memory["latency"], res.memory["bandwidth"], words, res.memory["requests"], c["weight_stalls"])


def _offsets(geo, y, x):
    """Kernel offsets of an input spike at (y, x) that land on an output position."""
    ty, tx = y + geo.padding, x + geo.padding
    ny = sum(1 for ky in range(geo.kernel) if (ty - ky) % geo.stride == 0 and 0 <= (ty - ky) // geo.stride < geo.out_h and ty - ky >= 0)
    nx = sum(1 for kx in range(geo.kernel) if (tx - kx) % geo.stride == 0 and 0 <= (tx - kx) // geo.stride < geo.out_w and tx - kx >= 0)
    return ny * nx


def _additions(geo, frame):
    """Synaptic additions of one spike map: for each spike, kernel offsets that land on an
    output position, times the output channels of its group."""
    return sum(_offsets(geo, y, x) for _, y, x in np.argwhere(frame != 0)) * geo.cg_out


def random_weights(cfg, rng, geo, scale=1.0):
    top = (1 << (cfg.weight_width - 1)) - 1
    lim = max(1, int(top * scale))
    w = rng.integers(-lim, lim + 1, size=(geo.c_out, geo.cg_in, geo.kernel, geo.kernel))
    btop = (1 << (cfg.bias_width - 1)) - 1
    b = rng.integers(-min(btop, 500), min(btop, 500) + 1, size=geo.c_out)
    return w, b


def lacks_kind(tb, kind: str) -> bool:
    """The config has no hardware for this layer kind: say so, and the test has nothing to do."""
    if kind in tb.cfg.kinds:
        return False
    tb.log.info("config has no %s layers: nothing to test", kind)
    return True


def random_geometry(cfg, rng):
    kinds = cfg.kinds
    for _ in range(100):
        k = int(rng.choice([1, 3, 7] if cfg.max_kernel >= 7 else [1, 3]))
        stride = int(rng.choice([1, 2]))
        pad = int(rng.integers(0, k // 2 + 1))
        h = int(rng.integers(1, min(cfg.max_size, 12) + 1))
        w = int(rng.integers(1, min(cfg.max_size, 12) + 1))
        if h + 2 * pad < k or w + 2 * pad < k:
            continue
        groups = 1
        c_in = int(rng.integers(1, min(cfg.max_channels, 24) + 1))
        c_out = int(rng.integers(1, 3 * cfg.lanes + 3))
        if "grouped" in kinds and rng.random() < 0.3:
            if rng.random() < 0.5:        # depthwise
                groups, c_in = c_in, c_in
                c_out = c_in
            else:                          # grouped, power-of-two inputs per group
                cg_in = int(rng.choice([1, 2, 4]))
                groups = int(rng.integers(2, 4))
                c_in = cg_in * groups
                c_out = groups * int(rng.integers(1, cfg.lanes + 2))
        geo = ConvGeometry(c_in, c_out, h, w, k, stride, pad, groups)
        words = geo.out_h * geo.out_w * groups * -(-geo.cg_out // cfg.lanes)
        wwords = c_in // groups * k * k * -(-geo.cg_out // cfg.lanes) * groups
        if words <= cfg.accumulator_depth and wwords <= cfg.weight_depth:
            return geo
    raise RuntimeError("no geometry fits this config")


@cocotb.test()
async def random_layers(dut):
    """A sweep of random geometries (kernel 1/3/7, stride 1/2, padding, depthwise and grouped,
    channel counts not multiples of lanes) at random firing rates, T = 1 or 2."""
    tb = AccHarness(dut)
    cfg = tb.cfg
    rng = np.random.default_rng(BASE_SEED)
    tb.log.info("seed %d, config %s", BASE_SEED, cfg)
    n = int(PLAN.get("layers", 24))
    for i in range(n):
        geo = random_geometry(cfg, rng)
        w, b = random_weights(cfg, rng, geo, scale=0.1)
        rate = float(rng.choice([0.05, 0.2, 0.5]))
        T = int(rng.integers(1, 3))
        spikes = (rng.random((T, geo.c_in, geo.h, geo.w)) < rate).astype(np.int64)
        await check(tb, geo, w, b, spikes, label=f"random layer {i} {geo}", seed=i + 1,
                    w_offset=int(rng.integers(0, 5)), b_offset=int(rng.integers(0, 3)))


@cocotb.test()
async def edge_maps(dut):
    """Empty spike maps, all-ones spike maps, 1x1 spatial (a linear layer), one channel."""
    tb = AccHarness(dut)
    cfg = tb.cfg
    rng = np.random.default_rng(BASE_SEED + 1)
    cases = [
        ("empty map", ConvGeometry(5, cfg.lanes + 1, 6, 5, 3, 1, 1), 0.0),
        ("all ones", ConvGeometry(3, cfg.lanes * 2 - 1, 5, 6, 3, 2, 1), 1.0),
        ("all ones 7x7", ConvGeometry(2, 3, 7, 7, 7, 1, 3), 1.0),
        ("linear 1x1 spatial", ConvGeometry(min(cfg.max_channels, 40), 2 * cfg.lanes + 1, 1, 1, 1, 1, 0), 0.4),
        ("single channel", ConvGeometry(1, 1, 4, 4, 3, 1, 0), 0.5),
    ]
    for label, geo, rate in cases:
        w, b = random_weights(cfg, rng, geo, scale=0.05)
        spikes = (rng.random((2, geo.c_in, geo.h, geo.w)) < rate).astype(np.int64)
        await check(tb, geo, w, b, spikes, label=label)


@cocotb.test()
async def depthwise_lanes_over_x(dut):
    """Depthwise convs with stride 1 run with lanes over output columns: kernels 1, 3, 7 (7 on
    fewer than 7 lanes needs several operations per kernel row), output widths below, at and
    above a multiple of lanes, borders, T = 2. Each layer also runs with lanes over channels:
    both exact, and the lanes-over-x run issues exactly one operation per kernel row and lanes
    columns."""
    tb = AccHarness(dut)
    cfg = tb.cfg
    if lacks_kind(tb, "grouped"):
        return
    rng = np.random.default_rng(BASE_SEED + 5)
    L = cfg.lanes
    shapes = [(1, 0), (3, 1), (3, 0)] + ([(7, 3), (7, 2)] if cfg.max_kernel >= 7 else [])   # (kernel, padding)
    for i, (k, pad) in enumerate(shapes):
        c = int(rng.integers(2, min(cfg.max_channels, 12) + 1))
        w_in = [L - 1, 2 * L, 2 * L + 3][i % 3] + k - 1 - 2 * pad
        w_in = max(w_in, k - 2 * pad, 1)
        h = int(rng.integers(max(1, k - 2 * pad), min(cfg.max_size, 9) + 1))
        geo = ConvGeometry(c, c, h, min(w_in, cfg.max_size), k, 1, pad, c)
        w, b = random_weights(cfg, rng, geo, scale=0.3)
        spikes = (rng.random((2, c, geo.h, geo.w)) < 0.4).astype(np.int64)
        res, _, _ = await check(tb, geo, w, b, spikes, label="depthwise, lanes over x", x_lanes=True)
        await check(tb, geo, w, b, spikes, label="depthwise, lanes over channels", x_lanes=False)
        ops = 0
        for t, ci, y, x in np.argwhere(spikes):
            rows = sum(1 for ky in range(k) if 0 <= y + pad - ky < geo.out_h)
            cols = sum(1 for kx in range(k) if 0 <= x + pad - kx < geo.out_w)
            ops += rows * -(-cols // L) if cols else 0
        assert res.counters["ops"] == ops, f"{geo}: {res.counters['ops']} operations, expected {ops}"


@cocotb.test()
async def folded_remainder(dut):
    """Dense layers whose last word per position is at most half full (C_out = G*lanes + r,
    r <= lanes / 2) park those words and issue S of them as one operation: linear, pointwise
    and 3x3 layers, T = 2, each also run unfolded on the same data; both exact, and the folded
    run issues exactly (G - 1) words per position hit plus ceil(last words / S) per timestep."""
    tb = AccHarness(dut)
    cfg = tb.cfg
    L = cfg.lanes
    if L < 2:
        tb.log.info("one lane: nothing to fold")
        return
    rng = np.random.default_rng(BASE_SEED + 6)
    shapes = [ConvGeometry(min(cfg.max_channels, 40), L + 1, 1, 1),
              ConvGeometry(min(cfg.max_channels, 40), 2 * L + L // 2, 1, 1),
              ConvGeometry(9, L + 1, 6, 5, 1, 1, 0),
              ConvGeometry(7, 2 * L + 1, 6, 6, 3, 1, 1),
              ConvGeometry(5, L + 1, 7, 7, 3, 2, 1)]
    for geo in shapes:
        slots = fold_slots(geo, L)
        assert slots >= 2, f"{geo} does not fold on {L} lanes"
        w, b = random_weights(cfg, rng, geo, scale=0.2)
        spikes = (rng.random((2, geo.c_in, geo.h, geo.w)) < 0.3).astype(np.int64)
        res, _, _ = await check(tb, geo, w, b, spikes, label=f"folded, {slots} slots", fold=True)
        await check(tb, geo, w, b, spikes, label="not folded", fold=False)
        G = -(-geo.c_out // L)
        ops = 0
        for frame in spikes:
            hits = sum(_offsets(geo, y, x) for _, y, x in np.argwhere(frame))
            ops += hits * (G - 1) + -(-hits // slots)
        assert res.counters["ops"] == ops, f"{geo}: {res.counters['ops']} operations, expected {ops}"


@cocotb.test()
async def encoding_layer(dut):
    """Multi-bit pixels as bit planes: unsigned, and two's complement (top plane negative)."""
    tb = AccHarness(dut)
    cfg = tb.cfg
    rng = np.random.default_rng(BASE_SEED + 2)
    if lacks_kind(tb, "encoding"):
        return
    bits = cfg.input_bits
    geo = ConvGeometry(min(3, cfg.max_channels), cfg.lanes + 2, 8, 8, 3 if cfg.max_kernel < 7 else 7, 2, 3 if cfg.max_kernel >= 7 else 1)
    w, b = random_weights(cfg, rng, geo, scale=0.02)
    pixels = rng.integers(0, 1 << bits, size=(1, geo.c_in, geo.h, geo.w))
    await check(tb, geo, w, b, pixels, label="encoding unsigned", planes=bits)
    await check(tb, geo, w, b, pixels, label="encoding signed", planes=bits, signed_planes=True)


@cocotb.test()
async def overflow_wraps(dut):
    """Weights chosen to overflow the accumulator: it wraps (two's complement), as the spec
    says; the quantizer is what keeps real programs away from this."""
    tb = AccHarness(dut)
    cfg = tb.cfg
    top = (1 << (cfg.weight_width - 1)) - 1
    k = 7 if cfg.max_kernel >= 7 else 3
    # pixels on every bit plane reach the limit soonest; spikes (0/1) need more channels
    planes = cfg.input_bits if "encoding" in cfg.kinds else 1
    pix = (1 << planes) - 1
    c_in = -(-(1 << (cfg.accumulator_width - 1)) // (top * pix * k * k)) + 1
    assert c_in <= cfg.max_channels and c_in * k * k <= cfg.weight_depth, f"config cannot overflow: needs {c_in} channels"
    geo = ConvGeometry(c_in, cfg.lanes, k, k, k, 1, k // 2)
    w = np.full((geo.c_out, c_in, k, k), top)
    w[1::2] = -top - 1
    b = np.zeros(geo.c_out, dtype=np.int64)
    spikes = np.full((1, c_in, geo.h, geo.w), pix, dtype=np.int64)
    res, exp, exact = await check(tb, geo, w, b, spikes, label="overflow", planes=planes)
    assert np.abs(exact).max() >= (1 << (cfg.accumulator_width - 1)), \
        f"test did not reach overflow: max |sum| {np.abs(exact).max()} for {cfg.accumulator_width} bits"
    assert not np.array_equal(exp, exact)


@cocotb.test()
async def backpressure(dut):
    """Idle event cycles and drained words refused at random."""
    tb = AccHarness(dut)
    cfg = tb.cfg
    rng = np.random.default_rng(BASE_SEED + 3)
    for i, (idle, stall) in enumerate([(128, 0), (0, 160), (200, 200)]):
        geo = ConvGeometry(6, cfg.lanes + 1, 6, 6, 3, 1, 1)
        w, b = random_weights(cfg, rng, geo, scale=0.1)
        spikes = (rng.random((2, geo.c_in, geo.h, geo.w)) < 0.3).astype(np.int64)
        await check(tb, geo, w, b, spikes, label=f"backpressure idle={idle} stall={stall}",
                    seed=50 + i, in_idle=idle, out_stall=stall)


#: conv layers of the slowdown measurement (external against on-chip weights): label, geometry,
#: firing rate, T
CONV_LAYERS = [
    ("3x3 conv, 16 -> 16, 16x16", ConvGeometry(16, 16, 16, 16, 3, 1, 1), 0.15, 2),
    ("3x3 conv stride 2, 16 -> 32, 16x16", ConvGeometry(16, 32, 16, 16, 3, 2, 1), 0.15, 2),
    ("1x1 conv, 32 -> 32, 8x8", ConvGeometry(32, 32, 8, 8, 1, 1, 0), 0.2, 2),
    ("3x3 conv, 8 -> 18 (folded), 12x12", ConvGeometry(8, 18, 12, 12, 3, 1, 1), 0.2, 2),
    ("7x7 conv, 3 -> 8, 16x16", ConvGeometry(3, 8, 16, 16, 7, 1, 3), 0.2, 2),
]


@cocotb.test()
async def weight_stalls_reported(dut):
    """External weights: a linear layer (two accumulator words) at the plan's memory latency,
    twice. The first run may hide the latency under the clearing of the accumulators after
    reset; on the second the loop has its first event at once and waits for its first words:
    weight stalls >= latency - drain_words (the most a walk of the layer's accumulator words
    after ``start``, where the array has one, can overlap), counted; exactly the words it
    consumes are received; exact both times."""
    tb = AccHarness(dut)
    if not EXTERNAL:
        tb.log.info("weights on chip: no weight stalls to report")
        return
    rng = np.random.default_rng(BASE_SEED + 7)
    geo = ConvGeometry(min(tb.cfg.max_channels, 40), 2 * tb.cfg.lanes, 1, 1)
    w, b = random_weights(tb.cfg, rng, geo, scale=0.1)
    spikes = (rng.random((2, geo.c_in, geo.h, geo.w)) < 0.5).astype(np.int64)
    for run in ("after reset", "again"):
        res, _, _ = await check(tb, geo, w, b, spikes, label=f"weight stalls, {run}")
        tb.log.info("weight stalls %s: %d of %d cycles (latency %d, %d word(s)/cycle)", run,
                    res.counters["weight_stalls"], res.cycles, res.memory["latency"], res.memory["bandwidth"])
    least = res.memory["latency"] - res.descriptor.drain_words
    assert res.counters["weight_stalls"] >= least, \
        f"{res.counters['weight_stalls']} weight stalls: the first words cannot come before {least} cycles"


@cocotb.test(skip="cycles_out" not in PLAN)
async def conv_layer_cycles(dut):
    """The conv layers of CONV_LAYERS, each exact; harness cycles and counters to plan
    ``cycles_out`` (JSON), for the slowdown of external weights against on-chip weights."""
    tb = AccHarness(dut)
    rows = []
    for i, (label, geo, rate, T) in enumerate(CONV_LAYERS):
        rng = np.random.default_rng(BASE_SEED + 100 + i)
        w, b = random_weights(tb.cfg, rng, geo, scale=0.1)
        spikes = (rng.random((T, geo.c_in, geo.h, geo.w)) < rate).astype(np.int64)
        res, _, _ = await check(tb, geo, w, b, spikes, label=label)
        rows.append({"label": label, "geometry": list(dataclasses.astuple(geo)), "rate": rate, "timesteps": T,
                     "fold_slots": res.descriptor.fold_slots, "cycles": res.cycles, "counters": res.counters,
                     "memory": res.memory})
    with open(PLAN["cycles_out"], "w") as fh:
        json.dump(rows, fh)


@cocotb.test(skip="layers_in" not in PLAN)
async def replay_layers(dut):
    """Layers listed in plan ``layers_in`` (an .npz of ``hwgen.sim.accumulator.write_layer_specs``),
    each checked exactly, and against its exported trace where it has one; counters and wall
    time go to plan ``layers_out`` (JSON)."""
    tb = AccHarness(dut)
    spec = np.load(PLAN["layers_in"], allow_pickle=False)
    n = int(spec["count"])
    results = []
    for i in range(n):
        g = [int(v) for v in spec[f"geo{i}"]]
        geo = ConvGeometry(*g)
        planes = int(spec[f"planes{i}"])
        t0 = time.perf_counter()
        res, _, _ = await check(tb, geo, spec[f"w{i}"], spec[f"b{i}"], spec[f"x{i}"], label=str(spec[f"label{i}"]),
                                planes=planes)
        if f"e{i}" in spec:   # replay of an exported trace: the RTL must equal the traced integers too
            assert_exact(f"[{spec[f'label{i}']}] traced accumulator", spec[f"e{i}"], res.sums,
                         ("timestep", "channel", "y", "x"))
        results.append({"label": str(spec[f"label{i}"]), "geometry": g, "planes": planes,
                        "timesteps": int(spec[f"x{i}"].shape[0]), "counters": res.counters,
                        "harness_cycles": res.cycles, "wall_s": time.perf_counter() - t0, "sim_s": res.sim_wall,
                        "descriptor": res.descriptor.as_dict()})
    with open(PLAN["layers_out"], "w") as fh:
        json.dump(results, fh)
    tb.log.info("checked: %s", SUMMARY)
