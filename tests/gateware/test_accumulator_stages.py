"""amaranth.sim tests of each accumulator array stage (hwgen/units/accumulator_stages.py).

Expected values come from the layouts of docs/accumulator.md (``hwgen.layout``) and a few lines
of Python per stage, never from the stage's own code. Milliseconds each, no Verilator.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from contract.config import load_config
from hwgen.layout import ConvGeometry, descriptor
from hwgen.units import accumulator_stages as stages
from hwgen.units.signatures import CounterBank
from tests.gateware.sim import MemoryModel, simulate, stream_get, stream_put

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "hw"
ACC = {name: load_config(CONFIGS / f"{name}.yaml").accumulator for name in ("acc_small", "acc_odd")}


def _set_desc(ctx, dut, desc) -> None:
    for name, value in desc.as_dict().items():
        ctx.set(getattr(dut.desc, name), value)


def _landing(t, k, stride, n_out):
    """Kernel offsets that land an input coordinate t (padded) on an output: docs/accumulator.md."""
    return [o for o in range(k) if t - o >= 0 and (t - o) % stride == 0 and (t - o) // stride < n_out]


@pytest.mark.parametrize("name", sorted(ACC))
def test_kernel_window_bases_and_spans(name):
    """Random events of random dense and grouped layers: the window's kernel rows and columns and
    its first weight and accumulator word follow from the memory layouts; a flush is reported and
    goes no further; nothing is taken while ``accept`` is low."""
    cfg = ACC[name]
    rng = np.random.default_rng(1)
    dut = stages.KernelWindow(cfg)
    cases = []
    for geo in (ConvGeometry(5, 2 * cfg.lanes + 1, 7, 6, 3, 2, 1), ConvGeometry(4, 6, 5, 5, 3, 1, 1, 2),
                ConvGeometry(3, 4, 8, 8, 7, 1, 3)):
        d = descriptor(geo, cfg.lanes, w_offset=3)
        for _ in range(12):
            cases.append((geo, d, int(rng.integers(geo.c_in)), int(rng.integers(geo.h)), int(rng.integers(geo.w))))

    async def bench(ctx):
        ctx.set(dut.accept, 0)
        ctx.set(dut.events.valid, 1)
        await ctx.tick()
        assert not ctx.get(dut.events.ready), "took an event while accept was low"
        ctx.set(dut.events.valid, 0)
        ctx.set(dut.accept, 1)
        for geo, d, ci, y, x in cases:
            _set_desc(ctx, dut, d)
            await stream_put(ctx, dut.events, {"flush": 0, "ci": ci, "y": y, "x": x, "plane": 0})
            w = await stream_get(ctx, dut.window)
            ys = _landing(y + geo.padding, geo.kernel, geo.stride, geo.out_h)
            xs = _landing(x + geo.padding, geo.kernel, geo.stride, geo.out_w)
            assert w.empty == (not ys or not xs)
            if not ys or not xs:
                continue
            G = -(-geo.cg_out // cfg.lanes)
            gi, cl = divmod(ci, geo.cg_in)
            oy, ox = (y + geo.padding - ys[0]) // geo.stride, (x + geo.padding - xs[0]) // geo.stride
            assert (w.ky_n, w.kx_n) == (len(ys), len(xs)), (geo, ci, y, x)
            k = geo.kernel
            assert w.w_base == 3 + (((gi * geo.cg_in + cl) * k + ys[0]) * k + xs[0]) * G
            assert w.a_base == (oy * geo.out_w + ox) * geo.groups * G + gi * G
        ctx.set(dut.events.valid, 1)
        ctx.set(dut.events.payload.flush, 1)
        await ctx.delay(1e-9)
        assert ctx.get(dut.flush) and ctx.get(dut.events.ready)
        await ctx.tick()
        ctx.set(dut.events.valid, 0)
        assert not ctx.get(dut.window.valid), "a flush became a window"

    simulate(dut, bench)


def _loop_words(w, d, stride2):
    """The loop's word order: rows (ky) outer, columns (kx), then the G words of a position."""
    G = d.group_words
    kx_step, ky_step = G << stride2, d.w_stride_ky << stride2
    return [(w["w_base"] + iy * ky_step + ix * kx_step + g, w["a_base"] - iy * d.row_stride - ix * d.words + g,
             int(g == G - 1)) for iy in range(w["ky_n"]) for ix in range(w["kx_n"]) for g in range(G)]


def test_operation_loop_walks_the_window_back_to_back():
    """Two windows in a row: every (ky, kx, g) word in order with its weight and accumulator
    address (stride 2, so the column and row steps double), no bubble between the windows, and
    an empty window issues nothing; ``op.ready`` low holds the loop."""
    cfg = ACC["acc_small"]
    geo = ConvGeometry(4, 2 * cfg.lanes + 1, 9, 9, 3, 2, 1)
    d = descriptor(geo, cfg.lanes)
    windows = [dict(w_base=40, a_base=300, ky_n=2, kx_n=3), dict(w_base=7, a_base=120, ky_n=1, kx_n=2)]
    dut = stages.OperationLoop(cfg)
    got, cycles = [], []

    async def feed(ctx):
        _set_desc(ctx, dut, d)
        for w in windows[:1] + [dict(w_base=0, a_base=0, ky_n=1, kx_n=1, empty=1)] + windows[1:]:
            await stream_put(ctx, dut.window, {"plane": 0, "empty": 0, "x_shift": 0, "x_n": 0, "x_segs": 0, **w})

    async def take(ctx):
        cycle = 0
        while len(got) < sum(len(_loop_words(w, d, 1)) for w in windows):
            ctx.set(dut.op.ready, int(cycle % 5 != 3))
            _, _, valid, ready, p = await ctx.tick().sample(dut.op.valid, dut.op.ready, dut.op.payload)
            cycle += 1
            if valid and ready:
                got.append((p.w_addr, p.a_addr, p.last_word))
                cycles.append(cycle)

    simulate(dut, feed, take, deadline_cycles=2000)
    expected = _loop_words(windows[0], d, 1) + _loop_words(windows[1], d, 1)
    assert got == expected
    stalls = sum(1 for c in range(1, cycles[-1] + 1) if c % 5 == 4)
    assert cycles[-1] - cycles[0] + 1 == len(expected) + stalls - (1 if cycles[0] % 5 == 4 else 0), \
        "the loop left a bubble between windows"


def test_fold_slots_park_last_words_and_issue_them_as_one():
    """Folding on (S = 2 on 4 lanes, r = 2): the loop's words go straight through with all
    lanes; with a position's last full word the next one (its half-full last word) is parked,
    and two parked words go out as one op while the loop is held, slot j on lanes c*S + j; after
    a flush the single parked word goes out on its own (slot 1's lanes inactive)."""
    cfg = ACC["acc_small"]
    geo = ConvGeometry(4, cfg.lanes + 2, 1, 1)          # G = 2, r = 2
    d = descriptor(geo, cfg.lanes, fold=True)
    assert d.fold_slots == 2
    dut = stages.FoldSlots(cfg)
    ops = [(10, 100, 0), (20, 200, 1), (30, 300, 1), (40, 400, 1)]
    issued = []

    async def bench(ctx):
        _set_desc(ctx, dut, d)
        for w, a, last in ops:
            ctx.set(dut.op.valid, 1)
            for k, v in dict(w_addr=w, a_addr=a, last_word=last, x_left=0, x_shift=0, plane=0).items():
                ctx.set(getattr(dut.op.payload, k), v)
            while True:
                await ctx.delay(1e-9)
                if ctx.get(dut.issue.valid):
                    issued.append((ctx.get(dut.op.ready), [ctx.get(dut.issue.w_addr[i]) for i in range(4)],
                                   [ctx.get(dut.issue.a_addr[i]) for i in range(4)], ctx.get(dut.issue.active)))
                ready = ctx.get(dut.op.ready)
                await ctx.tick()
                if ready:
                    break
        ctx.set(dut.op.valid, 0)
        ctx.set(dut.flush, 1)
        for _ in range(3):
            await ctx.delay(1e-9)
            if ctx.get(dut.issue.valid):
                issued.append((0, [ctx.get(dut.issue.w_addr[i]) for i in range(4)],
                               [ctx.get(dut.issue.a_addr[i]) for i in range(4)], ctx.get(dut.issue.active)))
            await ctx.tick()
        assert not ctx.get(dut.parked)

    simulate(dut, bench, deadline_cycles=100)
    full = 0b1111
    assert issued == [
        (1, [10] * 4, [100] * 4, full),                          # a full word: straight through
        (1, [20] * 4, [200] * 4, full), (1, [30] * 4, [300] * 4, full),   # each parks word + 1
        (0, [21, 31, 21, 31], [201, 301, 201, 301], full),       # two parked: slot j on lanes c*2 + j
        (1, [40] * 4, [400] * 4, full),                          # the held op goes next
        (0, [41, 31, 41, 31], [401, 301, 401, 301], 0b0101),     # after the flush: slot 0 alone
    ], issued


@pytest.mark.parametrize("bank_depth", [0, 16])
def test_weight_memory_reads_each_lane_at_its_own_address(bank_depth):
    """Words written through the load port read back per lane at independent addresses, the
    cycle after ``en``, and hold while ``en`` is low; with banks of 16 words the high address
    bits pick the bank."""
    cfg = dataclasses.replace(ACC["acc_odd"], weight_depth=64, weight_bank_depth=bank_depth)
    assert (cfg.weight_bank_words == 16) == (bank_depth == 16)
    dut = stages.WeightMemory(cfg)
    rng = np.random.default_rng(2)
    words = rng.integers(-128, 128, size=(64, cfg.lanes))

    async def bench(ctx):
        for a, word in enumerate(words):
            ctx.set(dut.write.en, 1)
            ctx.set(dut.write.addr, a)
            ctx.set(dut.write.data, [int(v) for v in word])
            await ctx.tick()
        ctx.set(dut.write.en, 0)
        for _ in range(20):
            addrs = [int(v) for v in rng.integers(0, 64, size=cfg.lanes)]
            for lane, a in enumerate(addrs):
                ctx.set(dut.read[lane].addr, a)
                ctx.set(dut.read[lane].en, 1)
            await ctx.tick()
            for lane in range(cfg.lanes):
                ctx.set(dut.read[lane].en, 0)
                ctx.set(dut.read[lane].addr, 0)
            await ctx.tick()     # en low: the data holds
            for lane, a in enumerate(addrs):
                assert ctx.get(dut.read[lane].data) == words[a, lane], (lane, a)

    simulate(dut, bench)


def test_adder_lanes_add_shifted_weights_of_active_lanes():
    """An issued operation reads weights and accumulators and writes, the cycle after, the sum
    of the active lanes: the weight shifted by the plane, negated on the top plane of signed
    pixels; inactive lanes write nothing."""
    cfg = ACC["acc_small"]
    dut = stages.AdderLanes(cfg)
    geo = ConvGeometry(3, 4, 4, 4, 3, 1, 1)
    weights = {7: [5, -3, 2, -8]}
    accs = {lane: {20 + lane: 100 * (lane + 1)} for lane in range(4)}
    mems = [MemoryModel(dut.weights[lane], {a: w[lane] for a, w in weights.items()}) for lane in range(4)]
    mems += [MemoryModel(dut.acc_read[lane], accs[lane]) for lane in range(4)]
    results = []

    async def bench(ctx):
        for signed_planes, plane, active in ((0, 0, 0b1111), (0, 2, 0b0101), (1, cfg.input_bits - 1, 0b1110)):
            d = descriptor(geo, cfg.lanes, signed_planes=bool(signed_planes))
            _set_desc(ctx, dut, d)
            for name, value in (("valid", 1), ("active", active), ("plane", plane), ("x_shift", 0)):
                ctx.set(getattr(dut.issue, name), value)
            for lane in range(4):
                ctx.set(dut.issue.w_addr[lane], 7)
                ctx.set(dut.issue.a_addr[lane], 20 + lane)
            await ctx.tick()
            ctx.set(dut.issue.valid, 0)
            await ctx.delay(1e-9)
            assert ctx.get(dut.writing)
            results.append([(ctx.get(dut.acc_write[i].en), ctx.get(dut.acc_write[i].addr),
                             ctx.get(dut.acc_write[i].data)) for i in range(4)])
            await ctx.tick()
            assert not ctx.get(dut.writing)

    simulate(dut, bench, processes=[m.process for m in mems], deadline_cycles=100)
    top = cfg.input_bits - 1
    w = weights[7]
    assert results[0] == [(1, 20 + i, 100 * (i + 1) + w[i]) for i in range(4)]
    assert results[1] == [(int(i % 2 == 0), 20 + i, 100 * (i + 1) + (w[i] << 2 if i % 2 == 0 else 0)) for i in range(4)]
    assert results[2] == [(int(i > 0), 20 + i, 100 * (i + 1) - (w[i] << top if i > 0 else 0)) for i in range(4)]


def test_walker_clears_then_drains_every_word_plus_its_bias():
    """Clear writes zero into every accumulator word (all ``accumulator_depth``, not only the
    layer's); drain streams every word of the layer in address order plus its bias word,
    ``last`` on the final one, under backpressure, and writes zero back behind each word taken."""
    cfg = ACC["acc_small"]
    geo = ConvGeometry(3, 2 * cfg.lanes, 2, 3, 1)        # 6 positions x 2 words
    d = descriptor(geo, cfg.lanes, b_offset=5)
    dut = stages.Walker(cfg)
    bias = {5: [1, 2, 3, 4], 6: [5, 6, 7, 8]}
    acc = {lane: {a: 1000 * lane + a for a in range(d.drain_words)} for lane in range(4)}
    mems = [MemoryModel(dut.bias, {a: sum((v & 0xFFFF) << (16 * i) for i, v in enumerate(w)) for a, w in bias.items()})]
    mems += [MemoryModel(dut.acc_read[lane], acc[lane]) for lane in range(4)]
    cleared, writes, out = [], [], []

    def written(ctx, into):
        if ctx.get(dut.acc_write[0].en):
            into.append((ctx.get(dut.acc_write[0].addr), [ctx.get(dut.acc_write[i].data) for i in range(4)]))

    async def bench(ctx):
        _set_desc(ctx, dut, d)
        ctx.set(dut.restart, 1)
        await ctx.tick()
        ctx.set(dut.restart, 0)
        ctx.set(dut.clear, 1)
        while not ctx.get(dut.done):
            await ctx.tick()
            written(ctx, cleared)
        ctx.set(dut.clear, 0)
        ctx.set(dut.restart, 1)
        await ctx.tick()
        ctx.set(dut.restart, 0)
        ctx.set(dut.drain, 1)
        cycle = 0
        while True:
            ctx.set(dut.sums.ready, int(cycle % 3 != 1))
            await ctx.delay(1e-9)
            written(ctx, writes)
            v, r = ctx.get(dut.sums.valid), ctx.get(dut.sums.ready)
            if v and r:
                out.append(([ctx.get(dut.sums.payload.data[i]) for i in range(4)], ctx.get(dut.sums.payload.last)))
                if out[-1][1]:
                    break
            await ctx.tick()
            cycle += 1
        await ctx.tick()

    simulate(dut, bench, processes=[m.process for m in mems], deadline_cycles=4 * cfg.accumulator_depth + 500)
    assert cleared == [(a, [0] * 4) for a in range(cfg.accumulator_depth)]
    assert writes == [(a, [0] * 4) for a in range(d.drain_words)]
    assert out == [([1000 * i + a + bias[5 + a % 2][i] for i in range(4)], int(a == d.drain_words - 1))
                   for a in range(d.drain_words)]


def test_counter_bank_adds_steps_and_clear_wins():
    dut = CounterBank({"a": 1, "b": 7})

    async def bench(ctx):
        for step_a, step_b, clear in ((1, 5, 0), (1, 7, 0), (0, 3, 0), (1, 1, 1), (1, 2, 0)):
            ctx.set(dut.step.a, step_a)
            ctx.set(dut.step.b, step_b)
            ctx.set(dut.clear, clear)
            await ctx.tick()
        assert (ctx.get(dut.counters.a), ctx.get(dut.counters.b)) == (1, 2)

    simulate(dut, bench)
