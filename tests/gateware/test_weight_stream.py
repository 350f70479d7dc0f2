"""amaranth.sim tests of the external-weights prefetcher (hwgen/units/weight_stream.py).

The weight-word sequence a layer's events need comes from the memory layouts of
docs/accumulator.md (``hwgen.layout``) in a few lines of Python (``_expected_words``), never from
the stages' code. Both the loop's consumption (KernelWindow + OperationLoop, each op's word and,
where it parks a folded remainder, the parked word) and the prefetcher's requests (bursts
expanded to words) must equal it, for every layer kind; the prefetcher must never reserve more
than the buffer holds, nor ask for a burst longer than ``weight_burst``. Milliseconds each.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from contract.config import load_config
from hwgen.layout import ConvGeometry, descriptor
from hwgen.units import accumulator_stages as stages
from hwgen.units.weight_stream import WeightPrefetcher
from tests.gateware.sim import simulate

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "hw"
#: a small buffer and short bursts, so that credits and the burst limit both bind
CFG = dataclasses.replace(load_config(CONFIGS / "acc_external.yaml").accumulator, weight_buffer=12, weight_burst=5)


def _landing(t, k, stride, n_out):
    return [o for o in range(k) if t - o >= 0 and (t - o) % stride == 0 and (t - o) // stride < n_out]


def _expected_words(geo: ConvGeometry, d, events, L: int) -> list[int]:
    """Weight words in loop order (docs/accumulator.md): per event, the kernel rows that land,
    then the columns, then the G words of the position; with lanes over x, per row the windows
    of lanes kernel columns, the last kernel column first."""
    k, out = geo.kernel, []
    for ci, y, x, _plane in events:
        ys = _landing(y + geo.padding, k, geo.stride, geo.out_h)
        xs = _landing(x + geo.padding, k, geo.stride, geo.out_w)
        if not ys or not xs:
            continue
        if d.x_lanes:
            row = k + L - 1
            for ky in ys:
                out += [d.w_offset + (ci * k + ky) * row + xs[-1] - j * L for j in range(math.ceil(len(xs) / L))]
            continue
        G = math.ceil(geo.cg_out / L)
        gi, cl = divmod(ci, geo.cg_in)
        out += [d.w_offset + ((gi * geo.cg_in + cl) * k + ky) * k * G + kx * G + g for ky in ys for kx in xs for g in range(G)]
    return out


class _Loop(wiring.Component):
    """The loop's own address path: KernelWindow -> OperationLoop."""

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__({"events": In(stream.Signature(stages.event_layout(cfg))),
                          "desc": In(stages.descriptor_signature(cfg)),
                          "op": Out(stream.Signature(stages.op_layout(cfg)))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.window = window = stages.KernelWindow(self._cfg)
        m.submodules.loop = loop = stages.OperationLoop(self._cfg)
        wiring.connect(m, wiring.flipped(self.desc), window.desc, loop.desc)
        wiring.connect(m, wiring.flipped(self.events), window.events)
        wiring.connect(m, window.window, loop.window)
        wiring.connect(m, loop.op, wiring.flipped(self.op))
        m.d.comb += window.accept.eq(1)
        return m


def _set_desc(ctx, dut, d):
    for name, value in d.as_dict().items():
        ctx.set(getattr(dut.desc, name), value)


async def _feed(ctx, dut, d, events, rng=None):
    """The events, a flush after every 7th, with idle cycles."""
    _set_desc(ctx, dut, d)
    for i, (ci, y, x, plane) in enumerate(events):
        for flush in ([0, 1] if i % 7 == 6 else [0]):
            ctx.set(dut.events.valid, 1)
            for name, v in (("flush", flush), ("ci", ci), ("y", y), ("x", x), ("plane", plane)):
                ctx.set(getattr(dut.events.payload, name), v)
            await ctx.tick().until(dut.events.ready)
            ctx.set(dut.events.valid, 0)
            if rng is not None and rng.random() < 0.2:
                await ctx.tick()


def loop_words(cfg, d, events) -> list[int]:
    """What the loop consumes: every op's word, and the parked word (w_addr + 1) where it parks."""
    dut, got = _Loop(cfg), []
    fold = d.fold_slots != 0

    async def take(ctx):
        ctx.set(dut.op.ready, 1)
        idle = 0
        while idle < 30:
            _, _, valid, p = await ctx.tick().sample(dut.op.valid, dut.op.payload)
            idle = 0 if valid else idle + 1
            if valid:
                got.append(p.w_addr)
                if fold and p.last_word:
                    got.append(p.w_addr + 1)

    simulate(dut, lambda ctx: _feed(ctx, dut, d, events), take, deadline_cycles=200_000)
    return got


def prefetched_words(cfg, d, events, seed=0) -> tuple[list[int], list[int], int]:
    """The prefetcher's requests expanded to words, the burst lengths, and the most words it
    ever had reserved beyond those popped. Requests are refused at random; a consumer pops the
    requested words (at most 2 a cycle, at random)."""
    dut = WeightPrefetcher(cfg)
    rng = np.random.default_rng(seed)
    words, lengths, state = [], [], {"outstanding": 0, "most": 0, "idle": 0}

    async def memory(ctx):
        while state["idle"] < 60:
            ctx.set(dut.request.ready, int(rng.random() < 0.7))
            pop = int(min(state["outstanding"], rng.integers(0, 3)))
            ctx.set(dut.popped, pop)
            _, _, valid, ready, p = await ctx.tick().sample(dut.request.valid, dut.request.ready, dut.request.payload)
            state["outstanding"] -= pop
            state["idle"] = 0 if valid else state["idle"] + 1
            if valid and ready:
                words.extend(range(p.addr, p.addr + p.len))
                lengths.append(p.len)
                state["outstanding"] += p.len
                state["most"] = max(state["most"], state["outstanding"])

    simulate(dut, lambda ctx: _feed(ctx, dut, d, events, rng), memory, deadline_cycles=200_000)
    return words, lengths, state["most"]


def assert_same_words(label: str, got: list[int], expected: list[int]) -> None:
    """``==`` on the whole sequence; a failure names the first word that differs."""
    if got == expected:
        return
    i = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
    raise AssertionError(f"{label}: word {i} is {got[i] if i < len(got) else 'missing'}, expected "
                         f"{expected[i] if i < len(expected) else 'nothing'} ({len(got)} words, expected {len(expected)})")


L = CFG.lanes
LAYERS = {   # (geometry, descriptor options, pixel planes)
    "conv 3x3": (ConvGeometry(5, 2 * L + 1, 7, 6, 3, 1, 1), {}, 1),
    "conv 3x3 stride 2": (ConvGeometry(4, L + 3, 9, 8, 3, 2, 1), {}, 1),
    "conv 7x7": (ConvGeometry(2, L, 8, 8, 7, 1, 3), {}, 1),
    "pointwise": (ConvGeometry(9, 3 * L, 5, 5, 1), {}, 1),
    "grouped": (ConvGeometry(4, 6, 5, 5, 3, 1, 1, 2), {}, 1),
    "depthwise, lanes over x": (ConvGeometry(6, 6, 6, 2 * L + 3, 3, 1, 1, 6), {"x_lanes": True}, 1),
    "depthwise 7x7, lanes over x": (ConvGeometry(3, 3, 8, 9, 7, 1, 3, 3), {"x_lanes": True}, 1),
    "folded 3x3": (ConvGeometry(5, 2 * L + 1, 6, 6, 3, 1, 1), {"fold": True}, 1),
    "folded linear": (ConvGeometry(40, L + 1, 1, 1), {"fold": True}, 1),
    "encoding bit planes": (ConvGeometry(3, L + 2, 8, 8, 7, 2, 3), {}, CFG.input_bits),
}


def _events(geo, planes, rng, n=40):
    return [(int(rng.integers(geo.c_in)), int(rng.integers(geo.h)), int(rng.integers(geo.w)), int(rng.integers(planes)))
            for _ in range(n)]


@pytest.mark.parametrize("label", sorted(LAYERS))
def test_prefetcher_requests_the_words_the_loop_consumes(label):
    """For each layer kind: the loop's words, the prefetcher's requested words and the layout's
    sequence are one and the same; no burst is longer than ``weight_burst``; the words reserved
    and not yet consumed never exceed ``weight_buffer``."""
    geo, opts, planes = LAYERS[label]
    rng = np.random.default_rng(sorted(LAYERS).index(label))
    d = descriptor(geo, L, w_offset=3, **opts)
    assert bool(d.fold_slots) == bool(opts.get("fold")), "the folded layers must fold"
    events = _events(geo, planes, rng)
    expected = _expected_words(geo, d, events, L)
    assert_same_words(f"{label}: the loop", loop_words(CFG, d, events), expected)
    words, lengths, most = prefetched_words(CFG, d, events, seed=1)
    assert_same_words(f"{label}: the prefetcher", words, expected)
    assert all(1 <= n <= CFG.weight_burst for n in lengths), lengths
    assert most <= CFG.weight_buffer, f"{most} words outstanding, buffer {CFG.weight_buffer}"


def test_prefetcher_coalesces_contiguous_words_into_full_bursts():
    """Interior events of a 3x3 conv need k*k*G consecutive words: with requests always taken
    and the buffer never short, every burst but each event's last is ``weight_burst`` long."""
    cfg = dataclasses.replace(CFG, weight_buffer=256, weight_burst=8)
    geo = ConvGeometry(3, L, 6, 6, 3, 1, 1)         # G = 1: 9 consecutive words per interior event
    d = descriptor(geo, L)
    events = [(1, 2, 2, 0), (1, 2, 3, 0)]           # both interior, not adjacent in memory
    dut = WeightPrefetcher(cfg)
    got = []

    async def memory(ctx):
        ctx.set(dut.request.ready, 1)
        ctx.set(dut.popped, 0)
        for _ in range(80):
            _, _, valid, p = await ctx.tick().sample(dut.request.valid, dut.request.payload)
            if valid:
                got.append((p.addr, p.len))

    simulate(dut, lambda ctx: _feed(ctx, dut, d, events), memory, deadline_cycles=1000)
    base = 1 * 9
    assert got == [(base, 8), (base + 8, 1), (base, 8), (base + 8, 1)], got


def test_a_wrong_address_is_caught():
    """The comparison is sensitive: one prefetched word off by one fails it, naming the word."""
    geo, opts, planes = LAYERS["conv 3x3"]
    d = descriptor(geo, L, **opts)
    events = _events(geo, planes, np.random.default_rng(7), n=6)
    expected = _expected_words(geo, d, events, L)
    words, _, _ = prefetched_words(CFG, d, events)
    assert_same_words("prefetcher", words, expected)
    wrong = list(words)
    wrong[5] += 1
    with pytest.raises(AssertionError, match=r"prefetcher: word 5 is \d+, expected \d+"):
        assert_same_words("prefetcher", wrong, expected)
