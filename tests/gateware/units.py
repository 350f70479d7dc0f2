"""Whole units in ``amaranth.sim``: small layers in, arrays out, in the golden model's shapes.

For configurations too many to build with Verilator one by one (the fuzzed ones): a unit is
elaborated and simulated in Python, a few thousand cycles a layer. The Verilator harnesses
(``hwgen.sim``) remain the integration proof on the configs in ``configs/hw``.
"""
from __future__ import annotations

import numpy as np
import torch

from contract.config import AccumulatorConfig, LifConfig, SdsaConfig
from golden.intsim import conv_integer, wrap
from golden.lif import lif_integer, thresholds_per_neuron
from hwgen.layout import ConvGeometry, bias_words, descriptor, descriptor_layout, unpad_accumulators, weight_words
from hwgen.units.accumulator import AccumulatorArray
from hwgen.units.lif import LifCore
from hwgen.units.sdsa import SdsaUnit
from tests.gateware.sim import simulate

__all__ = ["run_lif", "golden_lif", "run_acc", "golden_acc", "run_sdsa", "golden_sdsa"]


def run_lif(cfg: LifConfig, currents: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """currents [T, N], thresholds [C] -> (spikes, membranes) [T, N], output always ready."""
    dut = LifCore(cfg)
    T, N = currents.shape
    L = cfg.lanes
    beats, rows = N // L, len(thresholds) // L
    out = []

    async def bench(ctx):
        for r in range(rows):
            ctx.set(dut.thr_write.en, 1)
            ctx.set(dut.thr_write.addr, r)
            ctx.set(dut.thr_write.data, [int(v) for v in thresholds[r * L:(r + 1) * L]])
            await ctx.tick()
        ctx.set(dut.thr_write.en, 0)
        ctx.set(dut.beats, beats)
        ctx.set(dut.thr_rows, rows)
        ctx.set(dut.timesteps, T)
        ctx.set(dut.run.start, 1)
        await ctx.tick()
        ctx.set(dut.run.start, 0)
        ctx.set(dut.spikes.ready, 1)
        flat = currents.reshape(T * beats, L)
        i = 0
        while len(out) < T * beats:
            ctx.set(dut.currents.valid, int(i < len(flat)))
            if i < len(flat):
                ctx.set(dut.currents.payload, [int(v) for v in flat[i]])
            _, _, ready, valid, p = await ctx.tick().sample(dut.currents.ready, dut.spikes.valid, dut.spikes.payload)
            if valid:
                out.append((p.spikes, [p.membranes[j] for j in range(L)]))
            i += bool(ready and i < len(flat))

    simulate(dut, bench, deadline_cycles=10 * T * beats + 100)
    spikes = np.array([[s >> j & 1 for j in range(L)] for s, _ in out]).reshape(T, N)
    return spikes, np.array([m for _, m in out]).reshape(T, N)


def golden_lif(cfg: LifConfig, currents, thresholds):
    T, N = currents.shape
    s, h = lif_integer(torch.as_tensor(currents), thresholds_per_neuron(torch.as_tensor(thresholds), N), cfg)
    return s.numpy(), h.numpy()


def run_acc(cfg: AccumulatorConfig, geo: ConvGeometry, weight, bias, spikes, *, x_lanes=False, fold=False):
    """One layer over spikes [T, C_in, H, W] -> (accumulators [T, C_out, H_out, W_out], ops)."""
    L = cfg.lanes
    d = descriptor(geo, L, x_lanes=x_lanes, fold=fold)
    ww = weight_words(np.asarray(weight), geo.groups, L, x_lanes=x_lanes, fold=d.fold_slots)
    bw = bias_words(np.asarray(bias), geo.groups, L, x_lanes=x_lanes, fold=d.fold_slots)
    dut = AccumulatorArray(cfg)
    T = len(spikes)
    words = []

    async def bench(ctx):
        for port, image in ((dut.weight_write, ww), (dut.bias_write, bw)):
            for a, word in enumerate(image):
                ctx.set(port.en, 1)
                ctx.set(port.addr, a)
                ctx.set(port.data, [int(v) for v in word])
                await ctx.tick()
            ctx.set(port.en, 0)
        ctx.set(dut.desc.as_value(), descriptor_layout(cfg).const(d.as_dict()).as_value().value)
        ctx.set(dut.run.start, 1)
        await ctx.tick()
        ctx.set(dut.run.start, 0)
        ctx.set(dut.sums.ready, 1)
        for t, frame in enumerate(spikes):
            events = [(0, int(c), int(y), int(x)) for c, y, x in np.argwhere(frame)] + [(1, 0, 0, 0)]
            for flush, c, y, x in events:
                ctx.set(dut.events.valid, 1)
                for name, v in (("flush", flush), ("ci", c), ("y", y), ("x", x), ("plane", 0)):
                    ctx.set(getattr(dut.events.payload, name), v)
                while True:
                    _, _, ready, valid, p = await ctx.tick().sample(dut.events.ready, dut.sums.valid, dut.sums.payload)
                    if valid:
                        words.append([p.data[j] for j in range(L)])
                    if ready:
                        break
            ctx.set(dut.events.valid, 0)
            while len(words) < (t + 1) * d.drain_words:
                _, _, valid, p = await ctx.tick().sample(dut.sums.valid, dut.sums.payload)
                if valid:
                    words.append([p.data[j] for j in range(L)])

    simulate(dut, bench, deadline_cycles=200_000)
    a = np.array(words).reshape(T, d.drain_words, L)
    sums = np.stack([unpad_accumulators(a[t], geo, L, x_lanes=x_lanes) for t in range(T)])
    return sums


def golden_acc(cfg: AccumulatorConfig, geo: ConvGeometry, weight, bias, spikes):
    x = torch.as_tensor(spikes, dtype=torch.int64)
    bound = float(np.abs(weight).sum() + np.abs(bias).max() + 1)
    y = conv_integer(x[:, None], torch.as_tensor(weight), torch.as_tensor(bias), stride=geo.stride,
                     padding=geo.padding, groups=geo.groups, bound=bound)[:, 0]
    return wrap(y, cfg.accumulator_width).numpy()


def run_sdsa(cfg: SdsaConfig, q, k, v, *, heads: int, head_dim: int) -> np.ndarray:
    """Spikes [T, C, N] -> A in the golden engine's shape, input always valid, output ready."""
    from hwgen.sim.sdsa import out_beats, pack_beats, unpack_outputs

    dut = SdsaUnit(cfg=cfg)
    T, C, N = np.asarray(q).shape
    beats = pack_beats(cfg, q, k, v, heads=heads, head_dim=head_dim)
    words = [sum(int(b) << i for i, b in enumerate(row)) for row in beats]
    n_out = out_beats(cfg, T=T, N=N, heads=heads, head_dim=head_dim)
    out = []

    async def bench(ctx):
        for port, value in ((dut.tokens, N), (dut.heads, heads), (dut.head_dim, head_dim), (dut.timesteps, T)):
            ctx.set(port, value)
        ctx.set(dut.run.start, 1)
        await ctx.tick()
        ctx.set(dut.run.start, 0)
        ctx.set(dut.out.ready, 1)
        i = 0
        while len(out) < n_out:
            ctx.set(dut.spikes.valid, int(i < len(words)))
            if i < len(words):
                ctx.set(dut.spikes.payload.as_value(), words[i])
            _, _, ready, valid, p = await ctx.tick().sample(dut.spikes.ready, dut.out.valid, dut.out.payload)
            if valid:
                out.append([p[j] for j in range(cfg.out_lanes)])
            i += bool(ready and i < len(words))

    simulate(dut, bench, deadline_cycles=200_000)
    att, padding = unpack_outputs(cfg, np.array(out), T=T, N=N, heads=heads, head_dim=head_dim)
    assert not padding.any(), "padding lanes not zero"
    return att


def golden_sdsa(cfg: SdsaConfig, q, k, v, *, heads: int, head_dim: int) -> np.ndarray:
    from contract.config import HwConfig
    from contract.program import Layer, Program
    from golden.intsim import IntegerEngine

    T, C, N = q.shape
    variant = cfg.variant
    inputs = ["q", "v"] if variant == 2 else ["q", "k", "v"]
    shape = [C, N, 1] if cfg.attention_matrix else [C, 1, 1]
    layer = Layer("attn.sdsa", "sdsa", inputs, shape, attrs=dict(variant=variant, heads=heads, head_dim=head_dim, tokens=N))
    engine = IntegerEngine(Program(header={}, layers=[layer], arrays={}), HwConfig(name="fuzz"))

    def tensor(x):
        return torch.as_tensor(np.asarray(x, dtype=np.int64)).reshape(T, 1, C, N, 1)

    xs = (q, v) if variant == 2 else (q, k, v)
    out = engine.run_layer(layer, *(tensor(x) for x in xs)).numpy()
    return out.reshape(T, C, N) if cfg.attention_matrix else out.reshape(T, C)
