"""amaranth.sim tests of each SDSA unit stage (hwgen/units/sdsa_stages.py).

Expected operation sequences and beats follow docs/sdsa.md (output order, memory words,
beat packing), written out here in a few lines of Python per stage.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from amaranth import Module

from contract.config import load_config
from hwgen.units import sdsa_stages as stages
from hwgen.units.sdsa_stages import OpKind
from tests.gateware.sim import simulate

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "hw"
SDSA3 = load_config(CONFIGS / "sdsa3_l4.yaml").sdsa      # lanes 4, heads 4, head_dim 8, out_blocks 2
SDSA1 = load_config(CONFIGS / "sdsa1_l8.yaml").sdsa


def _bits(row) -> int:
    return sum(int(b) << i for i, b in enumerate(row))


def _geometry(ctx, stage, cfg, heads, d):
    ctx.set(stage.dim_on, (1 << d) - 1)
    ctx.set(stage.head_on, (1 << heads) - 1)
    ctx.set(stage.d, d)
    ctx.set(stage.n_blk, -(-d // cfg.lanes))


def test_block_cursor_walks_output_order_and_fills_beats():
    """(head, block) in output order, the slot of each block in a beat of 2, ``emit`` at a full
    beat or at the timestep's end (three tokens of three one-block heads: the last block sits
    alone in its beat), ``token_done`` after the last head; K^T V steps wrap at the row's last
    block."""
    cfg = SDSA3
    dut = stages.BlockCursor(cfg)
    heads, tokens = 3, (0, 0, 1)         # last_token per token
    seen = []

    async def bench(ctx):
        ctx.set(dut.n_heads, heads)
        ctx.set(dut.n_blk, 1)
        ctx.set(dut.d, 6)
        ctx.set(dut.span, 1)
        for last_token in tokens:
            for _ in range(heads):
                ctx.set(dut.advance, 1)
                ctx.set(dut.last_token, last_token)
                await ctx.delay(1e-9)
                seen.append((ctx.get(dut.head), ctx.get(dut.blk), ctx.get(dut.slot), ctx.get(dut.emit),
                             ctx.get(dut.token_done)))
                await ctx.tick()
        ctx.set(dut.advance, 0)
        steps = []
        for _ in range(5):
            ctx.set(dut.next_row_block, 1)
            await ctx.delay(1e-9)
            steps.append((ctx.get(dut.blk), ctx.get(dut.blk_base), ctx.get(dut.last_blk)))
            await ctx.tick()
        assert steps == [(0, 0, 0), (1, 4, 1), (0, 0, 0), (1, 4, 1), (0, 0, 0)]

    simulate(dut, bench)
    expected, slot = [], 0
    for last_token in tokens:
        for h in range(heads):
            emit = int(slot + 1 == cfg.out_blocks or (h == heads - 1 and last_token))
            expected.append((h, 0, slot, emit, int(h == heads - 1)))
            slot = 0 if emit else slot + 1
    assert seen == expected
    assert expected[-1][2:4] == (0, 1), "the test must end a timestep on a half-filled beat"


def _with_cursor(stage_cls, cfg, heads=4):
    m = Module()
    m.submodules.cursor = cursor = stages.BlockCursor(cfg)
    m.submodules.stage = stage = stage_cls(cfg)
    for port in ("head", "blk", "blk_base", "last_blk", "slot"):
        if port in stage.signature.members:
            m.d.comb += getattr(stage, port).eq(getattr(cursor, port))
    m.d.comb += [cursor.n_heads.eq(heads), cursor.n_blk.eq(stage.n_blk), cursor.d.eq(stage.d)]
    if hasattr(stage, "next_row_block"):
        m.d.comb += cursor.next_row_block.eq(stage.next_row_block)
    if hasattr(stage, "file"):
        m.d.comb += [cursor.advance.eq(stage.file), cursor.span.eq(getattr(stage, "span", 1)), cursor.last_token.eq(1)]
    return m, stage, cursor


def _collect(ctx, stage, limit=200):
    async def run():
        ops = []
        for _ in range(limit):
            await ctx.delay(1e-9)
            if ctx.get(stage.issue):
                op = stage.op
                ops.append((ctx.get(op.kind), ctx.get(op.addr), ctx.get(op.bits), ctx.get(op.fresh), ctx.get(op.first),
                            ctx.get(op.last), ctx.get(stage.adds)))
            take = ctx.get(stage.take)
            await ctx.tick()
            if take:
                return ops
        raise AssertionError("the beat was never taken")
    return run()


def test_kv_pass_issues_every_k_spike_times_every_v_block():
    """One beat: every K spike (h, i), lowest head and dimension first, adds V_h's blocks 0..B-1
    into KV row (h, i) (word (h*D + i)*B + b), lanes beyond d masked; the beat is taken with the
    last block of the last spike, and each row is flagged as written."""
    cfg = SDSA3
    m, dut, _ = _with_cursor(stages.KvPass, cfg)
    D, L, heads, d = cfg.head_dim, cfg.lanes, 3, 7
    rng = np.random.default_rng(3)
    k = (rng.random((cfg.heads, D)) < 0.4).astype(int)
    v = (rng.random((cfg.heads, D)) < 0.5).astype(int)
    touched_rows = {(0, 1)}
    got = {}

    async def bench(ctx):
        _geometry(ctx, dut, cfg, heads, d)
        ctx.set(dut.payload.k, [_bits(r) for r in k])
        ctx.set(dut.payload.v, [_bits(r) for r in v])
        ctx.set(dut.touched, [sum(1 << i for hh, i in touched_rows if hh == h) for h in range(cfg.heads)])
        ctx.set(dut.go, 1)
        got["ops"] = await _collect(ctx, dut)

    simulate(m, bench)
    expected = []
    for h in range(heads):
        for i in range(d):
            if k[h, i]:
                for b in range(2):
                    lanes = [v[h, b * L + j] if b * L + j < d else 0 for j in range(L)]
                    expected.append((OpKind.KV_ADD, (h * D + i) * 2 + b, _bits(lanes), int((h, i) not in touched_rows),
                                     0, 0, min(L, d - b * L)))
    assert got["ops"] == expected


def test_qa_pass_adds_live_rows_and_zero_heads():
    """One token, heads 0..3 x blocks 0..1 in output order: each Q spike of the head on a
    written KV row adds row (head, i)'s block b (``first`` on the block's first, ``last`` on its
    last); a head with none issues one ZERO op that finishes both its blocks (a beat holds 2)."""
    cfg = SDSA3
    m, dut, _ = _with_cursor(stages.QaPass, cfg)
    D, L, heads, d = cfg.head_dim, cfg.lanes, 4, 8
    q = np.zeros((cfg.heads, D), dtype=int)
    q[0, [1, 5]] = 1
    q[1, 2] = 1          # row (1, 2) not written: head 1 is a zero head
    q[3, [0, 7]] = 1
    touched = np.zeros((cfg.heads, D), dtype=int)
    touched[0, [1, 5]] = touched[3, [0, 7]] = 1
    got = {}

    async def bench(ctx):
        _geometry(ctx, dut, cfg, heads, d)
        ctx.set(dut.payload.q, [_bits(r) for r in q])
        ctx.set(dut.touched, [_bits(r) for r in touched])
        ctx.set(dut.go, 1)
        ops = []
        for _ in range(40):
            await ctx.delay(1e-9)
            ops.append((ctx.get(dut.op.kind), ctx.get(dut.op.addr) if ctx.get(dut.op.kind) == OpKind.A_ADD else None,
                        ctx.get(dut.op.first), ctx.get(dut.op.last), ctx.get(dut.span)))
            if len(ops) == 10:
                break
            await ctx.tick()
        got["ops"] = ops

    simulate(m, bench)
    A, Z = OpKind.A_ADD, OpKind.ZERO
    expected = []
    for h in range(heads):
        live = [i for i in range(D) if q[h, i] and touched[h, i]]
        if not live:
            expected.append((Z, None, 0, 1, 2))
            continue
        for b in range(2):
            expected += [(A, (h * D + i) * 2 + b, int(j == 0), int(j == len(live) - 1), 1) for j, i in enumerate(live)]
    assert got["ops"] == expected


def test_count_pass_and_drain_pass_count_spiking_blocks():
    """SDSA-1 (q AND k): per beat one COUNT_ADD per block of 8 channels holding a spike, in
    (head, block) order, word h*B + b; the drain then reads each written block and zeroes the
    others, in output order."""
    cfg = SDSA1
    L, D, H = cfg.lanes, cfg.head_dim, cfg.heads
    B = cfg.blocks
    rng = np.random.default_rng(4)
    q = (rng.random((H, D)) < 0.3).astype(int)
    k = (rng.random((H, D)) < 0.6).astype(int)
    dut = stages.CountPass(cfg)
    got = {}

    async def bench(ctx):
        _geometry(ctx, dut, cfg, H, D)
        ctx.set(dut.payload.q, [_bits(r) for r in q])
        ctx.set(dut.payload.k, [_bits(r) for r in k])
        ctx.set(dut.go, 1)
        got["ops"] = await _collect(ctx, dut)

    simulate(dut, bench)
    s = q & k
    blocks = [(h, b) for h in range(H) for b in range(B) if s[h, b * L:(b + 1) * L].any()]
    assert got["ops"] == [(OpKind.COUNT_ADD, h * B + b, _bits(s[h, b * L:(b + 1) * L]), 1, 0, 0,
                           min(L, D - b * L)) for h, b in blocks]

    m, drain, _ = _with_cursor(stages.DrainPass, cfg, heads=H)
    written = {(0, 0), (1, B - 1)}

    async def bench_drain(ctx):
        _geometry(ctx, drain, cfg, H, D)
        ctx.set(drain.touched, [sum(1 << b for hh, b in written if hh == h) for h in range(H)])
        ctx.set(drain.go, 1)
        ops = []
        for _ in range(H * B):
            await ctx.delay(1e-9)
            ops.append((ctx.get(drain.op.kind), ctx.get(drain.op.addr), ctx.get(drain.op.last)))
            await ctx.tick()
        got["drain"] = ops

    simulate(m, bench_drain)
    assert got["drain"] == [(OpKind.READ_OUT if (h, b) in written else OpKind.ZERO, h * B + b, 1)
                            for h in range(H) for b in range(B)]


def _accumulate(cfg, ops) -> list[list[int]]:
    """Run ``ops`` (kind, addr, bits, fresh, first, last) through the Accumulate stage, one a
    cycle; each op's result lanes."""
    dut = stages.Accumulate(cfg)
    results = []

    async def bench(ctx):
        ctx.set(dut.advance, 1)
        # stage 0 addresses op n while op n-1 is in stage 1
        for n in range(len(ops) + 1):
            if n:
                ctx.set(dut.s1, {"valid": 1, "op": dict(zip(("kind", "addr", "bits", "fresh", "first", "last"), ops[n - 1])),
                                 "slot": 0, "span": 1, "emit": 0})
            if n < len(ops):
                ctx.set(dut.read_addr, ops[n][1])
            await ctx.delay(1e-9)
            if n:
                results.append([ctx.get(dut.result[i]) for i in range(cfg.lanes)])
            await ctx.tick()

    simulate(dut, bench)
    return results


def test_accumulate_read_modify_write_and_a_blocks():
    """KV_ADD writes word + bits back (a fresh word counts from zero; back-to-back hits of one
    word see the value just written); A_ADD sums rows into the block from ``first``; READ_OUT
    passes a counter block; ZERO is zero."""
    KV, A, RO, Z = OpKind.KV_ADD, OpKind.A_ADD, OpKind.READ_OUT, OpKind.ZERO
    ops = [(KV, 3, 0b1011, 1, 0, 0), (KV, 3, 0b0011, 0, 0, 0), (KV, 5, 0b0110, 1, 0, 0),
           (A, 3, 0, 0, 1, 0), (A, 5, 0, 0, 0, 1), (RO, 5, 0, 0, 0, 1), (Z, 3, 0, 0, 0, 1),
           (KV, 3, 0b0001, 1, 0, 0), (A, 3, 0, 0, 1, 1)]       # a new timestep: row 3 starts again
    results = _accumulate(SDSA3, ops)
    row3, row5 = [2, 2, 0, 1], [0, 1, 1, 0]
    assert results[3] == row3 and results[4] == [a + b for a, b in zip(row3, row5)]
    assert results[5] == row5 and results[6] == [0] * 4
    assert results[8] == [1, 0, 0, 0], "a fresh word must count from zero"


def test_accumulate_counts_spike_blocks():
    """SDSA-1/2's COUNT_ADD writes counter + bits back like KV_ADD (fresh from zero), and
    READ_OUT gives the block's counts."""
    C, RO = OpKind.COUNT_ADD, OpKind.READ_OUT
    ops = [(C, 2, 0b0101, 1, 0, 0), (C, 2, 0b0110, 0, 0, 0), (C, 4, 0b1000_0001, 1, 0, 0), (C, 2, 0b0100, 0, 0, 0),
           (RO, 2, 0, 0, 0, 1), (RO, 4, 0, 0, 0, 1), (C, 2, 0b0001, 1, 0, 0), (RO, 2, 0, 0, 0, 1)]
    results = _accumulate(SDSA1, ops)
    lanes = SDSA1.lanes
    assert results[4] == [1, 1, 3, 0] + [0] * (lanes - 4)
    assert results[5] == [1] + [0] * (lanes - 2) + [1]
    assert results[7] == [1] + [0] * (lanes - 1), "a fresh counter word must count from zero"


def test_beat_packer_fills_beats_and_pads_the_last():
    """Out_blocks 2: blocks filed at slots 0, 1 go out as one beat; a ZERO op spanning two slots
    fills a beat at once; a timestep ending at slot 0 pads the beat with a zero block; output
    backpressure holds ``advance`` low."""
    cfg = SDSA3
    dut = stages.BeatPacker(cfg)
    A = OpKind.A_ADD
    blocks = [([1, 2, 3, 4], 0, 1, 0), ([5, 6, 7, 8], 1, 1, 1), ([0, 0, 0, 0], 0, 2, 1), ([9, 9, 9, 9], 0, 1, 1)]
    beats = []

    async def bench(ctx):
        ctx.set(dut.out.ready, 1)
        for values, slot, span, emit in blocks:
            ctx.set(dut.s1, {"valid": 1, "op": {"kind": A, "last": 1}, "slot": slot, "span": span, "emit": emit})
            ctx.set(dut.result, values)
            await ctx.tick()
            if ctx.get(dut.out.valid):
                beats.append([ctx.get(dut.out.payload[i]) for i in range(8)])
        ctx.set(dut.s1.valid, 0)
        ctx.set(dut.out.ready, 0)
        await ctx.delay(1e-9)
        assert not ctx.get(dut.advance), "a waiting beat did not hold the pipeline"

    simulate(dut, bench)
    assert beats == [[1, 2, 3, 4, 5, 6, 7, 8], [0] * 8, [9, 9, 9, 9, 0, 0, 0, 0]]


def test_beat_packer_starts_each_beat_empty():
    """Out_blocks 3: after a full beat goes out the next one starts from zero blocks, so a
    timestep that ends one block into a beat pads it with zeros, not with the last beat's."""
    cfg = load_config(CONFIGS / "sdsa4_l3.yaml").sdsa
    assert cfg.out_blocks == 3
    dut = stages.BeatPacker(cfg)
    blocks = [([1] * 3, 0, 0), ([2] * 3, 1, 0), ([3] * 3, 2, 1), ([4] * 3, 0, 1)]
    beats = []

    async def bench(ctx):
        ctx.set(dut.out.ready, 1)
        for values, slot, emit in blocks:
            ctx.set(dut.s1, {"valid": 1, "op": {"kind": OpKind.A_ADD, "last": 1}, "slot": slot, "span": 1, "emit": emit})
            ctx.set(dut.result, values)
            await ctx.tick()
            if ctx.get(dut.out.valid):
                beats.append([ctx.get(dut.out.payload[i]) for i in range(9)])

    simulate(dut, bench)
    assert beats == [[1, 1, 1, 2, 2, 2, 3, 3, 3], [4, 4, 4] + [0] * 6]
