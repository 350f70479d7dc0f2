"""The memory-aware energy model: the core's on-chip memories, the words each layer reads and
writes in them, and an energy per access from the memory's size and word width (docs/energy.md).

**Energy per access.** M. Horowitz, "1.1 Computing's energy problem (and what we can do about
it)", ISSCC 2014, pp. 10-14, gives for 45 nm (0.9 V) a 64-bit read of an 8 KB SRAM at 10 pJ, of a
32 KB SRAM at 20 pJ and of a 1 MB SRAM at 100 pJ, and DRAM at 1.3-2.6 nJ per 64 bits.
:class:`SramModel` interpolates these points linearly in (log size, log energy) and extends the
end segments beyond them (slope 0.50 below 8 KB, 0.46 above 1 MB; results outside the points
are flagged as extrapolated); energy scales linearly with the word width (``width / 64``), and a
write costs what a read costs. Integer arithmetic uses the same paper's 45 nm figures: add 0.03 pJ
(8 bit) and 0.1 pJ (32 bit), multiply 0.2 pJ (8 bit) and 3.1 pJ (32 bit), linear in the width.

**Memories** (:func:`core_memories`) are those the core generates (``hwgen/core/top.py``,
``hwgen/units``), each as its physical macros: the weight and accumulator memories are one
memory per lane (the weight memory in banks of ``weight_bank_words``, one bank active per
access), so one word access is ``lanes`` accesses of a macro of ``depth x width``; the others are
one macro of ``lanes``-wide words.

**Traffic** (:func:`layer_traffic`) is analytical: the words each engine moves for a layer given
its :class:`~hwgen.perf.energy.Work`, from the engines' documented behaviour (docs/core.md,
docs/accumulator.md, docs/sdsa.md). It is the one function the RTL's memory counters will be
held to when they exist; until then it is the model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from contract.config import HwConfig
from contract.program import Layer
from hwgen.perf.energy import Work, conv_geometry

__all__ = ["SramModel", "HOROWITZ_SRAM", "DRAM_PJ_PER_64_BITS", "int_add_pj", "int_mult_pj", "MemorySpec",
           "core_memories", "layer_traffic", "memory_aware_pj", "MEMORIES"]

#: Horowitz 2014 (45 nm): bytes of an SRAM -> pJ per 64-bit access
HOROWITZ_SRAM = ((8 * 1024, 10.0), (32 * 1024, 20.0), (1024 * 1024, 100.0))
#: Horowitz 2014: DRAM, pJ per 64-bit access (a range)
DRAM_PJ_PER_64_BITS = (1300.0, 2600.0)
#: Horowitz 2014 (45 nm): integer add and multiply, bits -> pJ
INT_ADD_PJ = ((8, 0.03), (32, 0.1))
INT_MULT_PJ = ((8, 0.2), (32, 3.1))
#: the memories in the order the report lists them
MEMORIES = ("pixels", "spikes", "ints", "weights", "biases", "accumulators", "membranes", "thresholds", "kv",
            "program")


def _linear(points, x: float) -> float:
    (x0, y0), (x1, y1) = points
    return max(0.0, y0 + (x - x0) * (y1 - y0) / (x1 - x0))


def int_add_pj(bits: int) -> float:
    """Energy of one integer addition of ``bits`` bits (Horowitz 2014, linear in the width)."""
    return _linear(INT_ADD_PJ, bits)


def int_mult_pj(bits: int) -> float:
    """Energy of one integer multiplication of ``bits`` x ``bits`` (Horowitz 2014, linear in the width)."""
    return _linear(INT_MULT_PJ, bits)


@dataclass(frozen=True)
class SramModel:
    """Energy per access of an SRAM from its size and word width (see the module docstring)."""

    points: tuple[tuple[int, float], ...] = HOROWITZ_SRAM

    def access_pj(self, size_bytes: float, width_bits: int) -> float:
        """pJ per access of one ``width_bits`` word of a ``size_bytes`` SRAM."""
        xs = np.log([p[0] for p in self.points])
        ys = np.log([p[1] for p in self.points])
        x = math.log(max(size_bytes, 1.0))
        i = int(np.clip(np.searchsorted(xs, x) - 1, 0, len(xs) - 2))      # the segment (extended at the ends)
        slope = (ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i])
        return float(math.exp(ys[i] + slope * (x - xs[i])) * width_bits / 64)

    def extrapolated(self, size_bytes: float) -> bool:
        return not self.points[0][0] <= size_bytes <= self.points[-1][0]


@dataclass(frozen=True)
class MemorySpec:
    """One memory of the core as generated: ``macros`` physical memories accessed together for
    one word (``lanes`` for the per-lane memories), each of ``banks`` banks of ``depth`` words of
    ``width`` bits (one bank active per access)."""

    name: str
    macros: int
    depth: int
    width: int
    config: str             # the config keys that size it
    note: str = ""
    banks: int = 1

    @property
    def macro_bytes(self) -> float:
        """Bytes of the macro (bank) one access reads."""
        return self.depth * self.width / 8

    @property
    def total_bytes(self) -> float:
        return self.macros * self.banks * self.macro_bytes

    def access_pj(self, model: SramModel) -> float:
        """Energy of one word access (all its macros)."""
        return self.macros * model.access_pj(self.macro_bytes, self.width)


def core_memories(hw: HwConfig) -> dict[str, MemorySpec]:
    """The core's memories for ``hw`` (a config with a ``core`` section), by name."""
    acc, lif, sdsa, core = hw.accumulator, hw.lif, hw.sdsa, hw.core
    L = lif.lanes
    from hwgen.core.isa import instruction_layout          # the instruction word's width

    bank = acc.weight_bank_words
    banks = math.ceil(acc.weight_depth / bank)
    return {m.name: m for m in [
        MemorySpec("pixels", 1, core.pixel_depth, acc.input_bits, "core.pixel_depth, accumulator.input_bits"),
        MemorySpec("spikes", 1, core.spike_depth, L, "core.spike_depth, lanes"),
        MemorySpec("ints", 1, core.int_depth, L * acc.accumulator_width, "core.int_depth, accumulator_width"),
        MemorySpec("weights", L, bank, acc.weight_width, "accumulator.weight_depth, weight_width",
                   "one memory per lane" + (f", {banks} banks of {bank} words" if banks > 1 else ""), banks),
        MemorySpec("biases", 1, acc.bias_depth, L * acc.bias_width, "accumulator.bias_depth, bias_width"),
        MemorySpec("accumulators", L, acc.accumulator_depth, acc.accumulator_width,
                   "accumulator.accumulator_depth, accumulator_width", "one memory per lane"),
        MemorySpec("membranes", 1, lif.beats, L * lif.membrane_width, "lif.neurons, membrane_width"),
        MemorySpec("thresholds", 1, lif.threshold_depth, L * lif.threshold_width,
                   "lif.threshold_depth, threshold_width"),
        MemorySpec("kv", 1, sdsa.memory_depth, L * sdsa.count_width, "sdsa.heads, head_dim, count_width",
                   "K^T V rows (SDSA-3/4) or counters (SDSA-1/2)"),
        MemorySpec("program", 1, core.program_depth, instruction_layout(hw).size, "core.program_depth"),
    ]}


def _positions(shape) -> int:
    return int(np.prod(shape[1:])) if len(shape) > 1 else 1


def layer_traffic(layer: Layer, work: Work, T: int, lanes: int, inputs: dict[str, Layer]) -> dict[str, list[float]]:
    """Words read and written per memory, ``{memory: [reads, writes]}``, for one layer as the
    core runs it (padded heads included) doing ``work`` over ``T`` timesteps; ``inputs`` maps the
    layer's input names to their layers (for the shapes of what it reads).

    Per instruction: one program word. CONV: the feeder scans every input word each timestep
    (one pixel per read for the encoding conv); every accumulator operation reads a weight word
    and reads and writes an accumulator word; the start writes D = positions x words accumulator
    words with their biases and each timestep's drain reads the D words and writes their biases
    back (D bias reads each time); the drain writer writes D result words and reads the residual's
    D words. LIF: per beat (lanes neurons) an int word in, a spike word out, a membrane word read
    and written, a threshold row read. SDSA: the gatherer reads q, k and v words (three ports) per
    token beat, two passes (3/4) or one (1/2); K^T V updates read and write a KV word, the A pass
    reads them; the output words go to the int memory. MASK: v and mask words in, one out.
    REDUCE: its words in, one word out per sum."""
    words = lambda c: math.ceil(c / lanes)                                      # noqa: E731
    out = {"program": [1.0, 0.0]}

    def add(memory: str, reads: float = 0.0, writes: float = 0.0) -> None:
        r = out.setdefault(memory, [0.0, 0.0])
        r[0] += reads
        r[1] += writes

    kind, a = layer.kind, layer.attrs
    P, C = _positions(layer.shape), layer.shape[0]
    if kind in ("conv", "linear"):
        geo = conv_geometry(layer)
        D = geo.out_h * geo.out_w * geo.groups * words(geo.cg_out)
        if kind == "conv" and a.get("input") == "pixels":
            add("pixels", reads=T * geo.h * geo.w * geo.c_in)
        else:
            add("spikes", reads=T * geo.h * geo.w * words(geo.c_in))
        add("weights", reads=work.weight_words)
        add("accumulators", reads=work.weight_words + T * D, writes=work.weight_words + (T + 1) * D)
        add("biases", reads=(T + 1) * D)
        add("ints", writes=T * D)
        if a.get("residual") or "border" in layer.arrays:     # the membrane shortcut, or the border correction
            add("ints", reads=T * D)
    elif kind == "lif":
        beats = T * P * words(C)
        add("ints", reads=beats)
        add("spikes", writes=beats)
        add("membranes", reads=beats, writes=beats)
        add("thresholds", reads=beats)
    elif kind == "sdsa":
        N, G = a["tokens"], words(a["heads"] * a["head_dim"])
        passes = 2 if a["variant"] in (3, 4) else 1
        add("spikes", reads=T * passes * N * 3 * G)
        add("kv", reads=work.kv_updates + work.kv_reads, writes=work.kv_updates)
        add("ints", writes=T * P * words(C))
    elif kind == "mask":
        n = T * P * words(C)
        add("spikes", reads=2 * n, writes=n)
    elif kind == "token_sum":
        src = inputs[layer.inputs[0]]
        add("ints", reads=T * _positions(src.shape) * words(C), writes=T * words(C))
    elif kind == "readout":
        add("ints", reads=T * len(layer.inputs) * words(C), writes=words(C))
    return out


def memory_aware_pj(layer: Layer, work: Work, traffic: dict[str, list[float]], hw: HwConfig,
                    memories: dict[str, MemorySpec], model: SramModel = SramModel()) -> dict[str, float]:
    """Energy of one layer in the memory-aware model: ``{"compute": pJ, <memory>: pJ, ...}``.

    Compute: every synaptic addition at the accumulator width (an upper bound for the SDSA
    unit's narrower counts), a MAC (paper counting's encoding conv) as an 8-bit multiply plus an
    accumulator-width addition, a LIF update as three membrane-width operations (subtract, add,
    compare), a reduce addition at the accumulator width."""
    acc_bits, mem_bits = hw.accumulator.accumulator_width, hw.lif.membrane_width
    mult_bits = max(hw.accumulator.input_bits, hw.accumulator.weight_width)
    compute = (work.additions * int_add_pj(acc_bits) + work.macs * (int_mult_pj(mult_bits) + int_add_pj(acc_bits))
               + work.neuron_updates * 3 * int_add_pj(mem_bits) + work.vector_adds * int_add_pj(acc_bits))
    out = {"compute": compute}
    for name, (reads, writes) in traffic.items():
        out[name] = (reads + writes) * memories[name].access_pj(model)
    return out
