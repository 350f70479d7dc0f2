"""amaranth.sim tests of each core engine (hwgen/core/engines.py) on its own: memories are
models behind the engine's read ports, streams are driven and taken by the testbench, and the
result is compared with the instruction's meaning in docs/core.md, written out in Python."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contract.config import load_config
from hwgen.core import engines
from tests.gateware.sim import MemoryModel, simulate

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "hw"
HW = load_config(CONFIGS / "digits.yaml")            # 8 lanes, SDSA-3
HW1 = load_config(CONFIGS / "digits_sdsa1.yaml")     # SDSA-1
L = HW.lif.lanes


def _words(rng, n, bits):
    return [int(v) for v in rng.integers(0, 1 << bits, size=n)]


def _signed_word(values, width):
    return sum((int(v) & ((1 << width) - 1)) << (i * width) for i, v in enumerate(values))


async def _start(ctx, dut, instr):
    ctx.set(dut.instr, instr)
    start = dut.run.start if hasattr(dut, "run") else dut.start
    ctx.set(start, 1)
    await ctx.tick()
    ctx.set(start, 0)


def _collect_writes(port, writes):
    async def process(ctx):
        async for _clk, _rst, en, addr, data in ctx.tick().sample(port.en, port.addr, port.data):
            if en:
                writes.append((addr, data))
    return process


def _done_counter(dut, seen):
    async def process(ctx):
        async for _clk, _rst, done, busy in ctx.tick().sample(dut.run.done, dut.run.busy):
            seen["done"] = seen.get("done", 0) + done
            seen["busy"] = seen.get("busy", 0) + busy
    return process


@pytest.mark.parametrize("pixels", [0, 1])
def test_event_feeder_emits_one_event_per_spike_then_a_flush(pixels):
    """Spike words (or pixels): every set bit becomes an event (ci, y, x) (pixel mode: plane j
    of pixel channel ci) in scan order, a flush ends each timestep; ``done`` pulses once."""
    rng = np.random.default_rng(5)
    T, h, w, g = 2, 3, 2, 2
    n = T * 16
    words = [int(v) & int(m) for v, m in zip(_words(rng, n, 8), _words(rng, n, 8))]
    dut = engines.EventFeeder(HW)
    mem = MemoryModel(dut.pixels if pixels else dut.spikes, {100 + i: v for i, v in enumerate(words)})
    events, seen = [], {}

    async def bench(ctx):
        await _start(ctx, dut, {"a_base": 100, "a_step": 16, "timesteps": T, "in_h": h, "in_w": w, "in_words": g,
                                "pixels": pixels})
        ctx.set(dut.events.ready, 1)
        for _ in range(400):
            _, _, valid, p = await ctx.tick().sample(dut.events.valid, dut.events.payload)
            if valid:
                events.append((p.flush, p.ci, p.y, p.x, p.plane))
                if len([e for e in events if e[0]]) == T:
                    break

    simulate(dut, bench, processes=[mem.process, _done_counter(dut, seen)])
    expected = []
    for t in range(T):
        for pos in range(h * w):
            y, x = divmod(pos, w)
            for j in range(g):
                word = words[t * 16 + pos * g + j]
                for bit in range(8):
                    if word >> bit & 1:
                        expected.append((0, j, y, x, bit) if pixels else (0, j * L + bit, y, x, 0))
        expected.append((1, 0, 0, 0, 0))
    got = [(f, 0, 0, 0, 0) if f else e for e in events for f in [e[0]]]
    assert got == expected
    assert seen["done"] == 1


def test_drain_writer_adds_the_residual_and_strides_timesteps():
    rng = np.random.default_rng(6)
    aw = HW.accumulator.accumulator_width
    T, n = 2, 5
    sums = [[int(v) for v in rng.integers(-1000, 1000, size=L)] for _ in range(T * n)]
    res = {200 + t * 50 + i: [int(v) for v in rng.integers(-500, 500, size=L)] for t in range(T) for i in range(n)}
    dut = engines.DrainWriter(HW)
    mem = MemoryModel(dut.residual, {a: _signed_word(v, aw) for a, v in res.items()})
    writes, seen = [], {}

    async def bench(ctx):
        await _start(ctx, dut, {"timesteps": T, "residual": 1, "b_base": 200, "b_step": 50, "dst_base": 1000,
                                "dst_step": 64})
        for i, s in enumerate(sums):
            ctx.set(dut.sums.valid, 1)
            ctx.set(dut.sums.payload.data, s)
            ctx.set(dut.sums.payload.last, int(i % n == n - 1))
            await ctx.tick().until(dut.sums.ready)
            ctx.set(dut.sums.valid, 0)
            if i % 3 == 1:
                await ctx.tick()
        for _ in range(3):
            await ctx.tick()

    simulate(dut, bench, processes=[mem.process, _collect_writes(dut.out, writes), _done_counter(dut, seen)])
    expected = [(1000 + t * 64 + i, [a + b for a, b in zip(sums[t * n + i], res[200 + t * 50 + i])])
                for t in range(T) for i in range(n)]
    assert [(a, [d[k] for k in range(L)]) for a, d in writes] == expected
    assert seen["done"] == 1


def test_lif_streamer_shifts_currents_and_writes_spikes():
    rng = np.random.default_rng(7)
    aw = HW.accumulator.accumulator_width
    count = 6
    src = [[int(v) for v in rng.integers(-100, 100, size=L)] for _ in range(count)]
    dut = engines.LifStreamer(HW)
    mem = MemoryModel(dut.source, {40 + i: _signed_word(v, aw) for i, v in enumerate(src)})
    currents, writes, seen = [], [], {}

    async def bench(ctx):
        await _start(ctx, dut, {"a_base": 40, "count": count, "dst_base": 300, "input_shift": 2})
        ctx.set(dut.currents.ready, 1)
        k = 0
        for _ in range(60):
            _, _, valid, p = await ctx.tick().sample(dut.currents.valid, dut.currents.payload)
            if valid:
                currents.append([p[i] for i in range(L)])
            ctx.set(dut.spikes.valid, int(k < count and len(currents) > k))
            ctx.set(dut.spikes.payload.spikes, k * 7 % 256)
            if k < count and len(currents) > k:
                k += 1

    simulate(dut, bench, processes=[mem.process, _collect_writes(dut.out, writes), _done_counter(dut, seen)])
    assert currents == [[v << 2 for v in row] for row in src]
    assert writes == [(300 + k, k * 7 % 256) for k in range(count)]
    assert seen["done"] == 1


@pytest.mark.parametrize("hw", [HW, HW1], ids=["sdsa3", "sdsa1"])
def test_token_gatherer_builds_beats_word_by_word(hw):
    """Word w of a token lands at bit head * head_dim + (w mod head_words) * lanes of its field,
    head = w div head_words; SDSA-3 reads every timestep's tokens twice (K^T V pass, A pass)."""
    rng = np.random.default_rng(8)
    cfg = hw.sdsa
    heads, head_words, N, T = 2, 2, 3, 2
    in_words = heads * head_words
    fields = ("q", "k", "v") if cfg.attention_matrix else ("q", "k")
    bases = {"q": 0, "k": 1000, "v": 2000}
    mems = {f: {bases[f] + t * 64 + i: int(rng.integers(0, 256)) for t in range(T) for i in range(N * in_words)}
            for f in fields}
    dut = engines.TokenGatherer(hw)
    models = [MemoryModel(getattr(dut, f), mems[f]) for f in fields]
    beats = []

    async def bench(ctx):
        await _start(ctx, dut, {"a_base": 0, "b_base": 1000, "c_base": 2000, "a_step": 64, "timesteps": T,
                                "tokens": N, "in_words": in_words, "head_words": head_words})
        passes = 2 if cfg.attention_matrix else 1
        for i in range(T * N * passes):
            if i % 2:                        # hold the beat a cycle now and then
                ctx.set(dut.beat.ready, 0)
                await ctx.tick()
            ctx.set(dut.beat.ready, 1)
            p, = await ctx.tick().sample(dut.beat.payload).until(dut.beat.valid)
            beats.append({f: getattr(p, f).as_value().value for f in fields})

    simulate(dut, bench, processes=[m.process for m in models])
    expected = []
    for t in range(T):
        for _pass in range(2 if cfg.attention_matrix else 1):
            for n in range(N):
                beat = {}
                for f in fields:
                    value = 0
                    for w in range(in_words):
                        h, j = divmod(w, head_words)
                        value |= mems[f][bases[f] + t * 64 + n * in_words + w] << (h * cfg.head_dim + j * cfg.lanes)
                    beat[f] = value
                expected.append(beat)
    assert beats == expected


def test_stream_writer_writes_consecutive_words():
    dut = engines.StreamWriter(HW)
    writes = []

    async def bench(ctx):
        await _start(ctx, dut, {"dst_base": 77})
        for k in range(5):
            ctx.set(dut.beats.valid, int(k != 2))
            ctx.set(dut.beats.payload, [k + lane for lane in range(L)])
            await ctx.tick()
        ctx.set(dut.beats.valid, 0)
        await ctx.tick()

    simulate(dut, bench, processes=[_collect_writes(dut.out, writes)])
    assert [(a, [d[i] for i in range(L)]) for a, d in writes] == \
        [(77 + i, [k + lane for lane in range(L)]) for i, k in enumerate((0, 1, 3, 4))]


def test_mask_engine_ands_each_token_with_its_timestep_mask():
    rng = np.random.default_rng(9)
    T, N, g = 2, 3, 2
    v = {10 + i: int(rng.integers(0, 256)) for i in range(T * N * g)}
    mask = {500 + t * 20 + j: int(rng.integers(0, 256)) for t in range(T) for j in range(g)}
    dut = engines.MaskEngine(HW1)
    models = [MemoryModel(dut.v, v), MemoryModel(dut.mask, mask)]
    writes, seen = [], {}

    async def bench(ctx):
        await _start(ctx, dut, {"a_base": 10, "b_base": 500, "b_step": 20, "dst_base": 900, "count": T * N * g,
                                "tokens": N, "in_words": g})
        for _ in range(40):
            await ctx.tick()

    simulate(dut, bench, processes=[m.process for m in models] + [_collect_writes(dut.out, writes), _done_counter(dut, seen)])
    assert writes == [(900 + s, v[10 + s] & mask[500 + (s // (N * g)) * 20 + s % g]) for s in range(T * N * g)]
    assert seen["done"] == 1


def test_reduce_engine_sums_strided_words():
    rng = np.random.default_rng(10)
    aw = HW.accumulator.accumulator_width
    outer, g, count, stride, a_step = 2, 2, 3, 4, 30
    src = {a: [int(x) for x in rng.integers(-1000, 1000, size=L)] for a in range(100)}
    dut = engines.ReduceEngine(HW)
    mem = MemoryModel(dut.source, {a: _signed_word(v, aw) for a, v in src.items()})
    writes, seen = [], {}

    async def bench(ctx):
        await _start(ctx, dut, {"a_base": 5, "a_step": a_step, "in_stride": stride, "count": count, "in_words": g,
                                "outer": outer, "dst_base": 60})
        for _ in range(40):
            await ctx.tick()

    simulate(dut, bench, processes=[mem.process, _collect_writes(dut.out, writes), _done_counter(dut, seen)])
    expected = [(60 + o * g + j, [sum(src[5 + o * a_step + i * stride + j][lane] for i in range(count))
                                  for lane in range(L)]) for o in range(outer) for j in range(g)]
    assert [(a, [d[k] for k in range(L)]) for a, d in writes] == expected
    assert seen["done"] == 1
