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

**External weights** (``accumulator.weights: external``): the ``weights`` memory is then the
external memory the core reads through ``weight_read`` (``MemorySpec.external``; not on chip),
one access per word received, at :data:`EXTERNAL_PJ_PER_BIT` (Horowitz 2014's DRAM, 1.3 nJ per 64
bits: the low end of his 1.3-2.6 nJ, about 20 pJ per bit) plus a write and a read of the on-chip
prefetch buffer (``weight_buffer``: two FIFO banks of ``weight_buffer / 2`` words, each with its
head in a register: ``weight_buffer / 2 - 1`` words of memory) that every word passes. The buffer and the event queue in front of the loop (``event_queue``, ``weight_buffer +
2`` events) are on-chip memories of such a core (:func:`on_chip_bits`); the weight memory is not.

**Traffic** (:func:`layer_traffic`): the words each engine moves for a layer given its
:class:`~hwgen.perf.energy.Work` (per kind, the ``traffic`` hook of ``hwgen.compiler.kinds``). It
is the function the RTL's traffic counters are held to: with an image's exact work it equals
them per instruction (``hwgen.compiler.cycles.check_cycles``, docs/core.md "Memory traffic").
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from contract.config import HwConfig
from contract.program import Layer
from hwgen.perf.energy import Work, conv_geometry

__all__ = ["EXTERNAL_PJ_PER_BIT", "on_chip_bits", "SramModel", "HOROWITZ_SRAM", "DRAM_PJ_PER_64_BITS", "int_add_pj", "int_mult_pj", "MemorySpec",
           "core_memories", "layer_traffic", "memory_aware_pj", "MEMORIES"]

#: Horowitz 2014 (45 nm): bytes of an SRAM -> pJ per 64-bit access
HOROWITZ_SRAM = ((8 * 1024, 10.0), (32 * 1024, 20.0), (1024 * 1024, 100.0))
#: Horowitz 2014: DRAM, pJ per 64-bit access (a range)
DRAM_PJ_PER_64_BITS = (1300.0, 2600.0)
#: external weights: pJ per bit read from the external memory (the low end of Horowitz's DRAM range)
EXTERNAL_PJ_PER_BIT = DRAM_PJ_PER_64_BITS[0] / 64
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
    external: bool = False  # outside the core (external weights): DRAM energy, no on-chip bits
    buffer: "MemorySpec | None" = None   # external: the on-chip buffer every word is written to and read from

    @property
    def macro_bytes(self) -> float:
        """Bytes of the macro (bank) one access reads."""
        return self.depth * self.width / 8

    @property
    def total_bytes(self) -> float:
        return self.macros * self.banks * self.macro_bytes

    @property
    def bits(self) -> int:
        """On-chip bits (0 for the external memory)."""
        return 0 if self.external else self.macros * self.banks * self.depth * self.width

    def access_pj(self, model: SramModel) -> float:
        """Energy of one word access (all its macros); external: the word read from outside
        (:data:`EXTERNAL_PJ_PER_BIT`) plus its write into and read from the prefetch buffer."""
        if self.external:
            return (self.macros * self.width * EXTERNAL_PJ_PER_BIT
                    + (2 * self.buffer.access_pj(model) if self.buffer is not None else 0.0))
        return self.macros * model.access_pj(self.macro_bytes, self.width)


def core_memories(hw: HwConfig) -> dict[str, MemorySpec]:
    """The core's memories for ``hw`` (a config with a ``core`` section), by name."""
    acc, lif, sdsa, core = hw.accumulator, hw.lif, hw.sdsa, hw.core
    L = lif.lanes
    from hwgen.core.isa import instruction_layout          # the instruction word's width

    bank = acc.weight_bank_words
    banks = math.ceil(acc.weight_depth / bank)
    extra = []
    if acc.external_weights:
        from hwgen.units.accumulator import event_layout

        # the FIFOs (Amaranth's SyncFIFOBuffered) hold depth - 1 words in memory, their head in a register
        buffer = MemorySpec("weight_buffer", 2, acc.weight_buffer // 2 - 1, L * acc.weight_width,
                            "accumulator.weight_buffer, lanes, weight_width",
                            "prefetch buffer: two banks (FIFOs; each one word more in its output register)")
        weights = MemorySpec("weights", 1, acc.weight_depth, L * acc.weight_width,
                             "accumulator.weight_depth (address space), weight_width",
                             f"external memory (weight_read), {EXTERNAL_PJ_PER_BIT:.1f} pJ/bit + the prefetch buffer",
                             external=True, buffer=buffer)
        extra = [buffer, MemorySpec("event_queue", 1, acc.event_queue - 1, event_layout(acc).size,
                                    "accumulator.weight_buffer (weight_buffer + 2 events)",
                                    "events ahead of the loop while their weights are fetched (a FIFO, its "
                                    "head in a register)")]
    else:
        weights = MemorySpec("weights", L, bank, acc.weight_width, "accumulator.weight_depth, weight_width",
                             "one memory per lane" + (f", {banks} banks of {bank} words" if banks > 1 else ""), banks)
    return {m.name: m for m in [
        MemorySpec("pixels", 1, core.pixel_depth, acc.input_bits, "core.pixel_depth, accumulator.input_bits"),
        MemorySpec("spikes", 1, core.spike_depth, L, "core.spike_depth, lanes"),
        MemorySpec("ints", 1, core.int_depth, L * acc.accumulator_width, "core.int_depth, accumulator_width"),
        weights,
        MemorySpec("biases", 1, acc.bias_depth, L * acc.bias_width, "accumulator.bias_depth, bias_width"),
        MemorySpec("accumulators", L * acc.buffers, acc.accumulator_depth, acc.accumulator_width,
                   "accumulator.accumulator_depth, accumulator_width, buffers",
                   "one memory per lane" + (f" and buffer ({acc.buffers})" if acc.buffers > 1 else "")),
        MemorySpec("membranes", 1, lif.beats, L * lif.membrane_width, "lif.neurons, membrane_width"),
        MemorySpec("thresholds", 1, lif.threshold_depth, L * lif.threshold_width,
                   "lif.threshold_depth, threshold_width"),
        MemorySpec("kv", 1, sdsa.memory_depth, L * sdsa.count_width, "sdsa.heads, head_dim, count_width",
                   "K^T V rows (SDSA-3/4) or counters (SDSA-1/2)"),
        MemorySpec("program", 1, core.program_depth, instruction_layout(hw).size, "core.program_depth"),
        *extra,
    ]}


def on_chip_bits(hw: HwConfig) -> dict[str, int]:
    """Bits of every on-chip memory of the core (:func:`core_memories`; the external weight
    memory has none), by name, and their ``total``."""
    bits = {name: m.bits for name, m in core_memories(hw).items() if not m.external}
    return {**bits, "total": sum(bits.values())}


def _positions(shape) -> int:
    return int(np.prod(shape[1:])) if len(shape) > 1 else 1


def layer_traffic(layer: Layer, work: Work, T: int, lanes: int, inputs: dict[str, Layer]) -> dict[str, list[float]]:
    """Words read and written per memory, ``{memory: [reads, writes]}``, for one layer as the
    core runs it (padded heads included) doing ``work`` over ``T`` timesteps; ``inputs`` maps the
    layer's input names to their layers (for the shapes of what it reads).

    This is the model the RTL's traffic counters (``hwgen.core.top.TRAFFIC_COUNTERS``) are held
    to: given the exact work of one image (:func:`hwgen.perf.energy.datapath_work` on its
    tensors, or the cycle model's own walk, ``hwgen.compiler.cycles``) it gives exactly the
    counts the core reports for the layer's instruction (docs/core.md, "Memory traffic"); from
    rates, their expectation.

    Per instruction: one program word (its fetch). CONV: the feeder reads every input word each
    timestep (a pixel per read for the encoding conv: the pixel memory); every accumulator
    operation reads a weight word and reads and writes an accumulator word; each timestep the
    walker reads the D = positions x words accumulator words and a bias word for each, and writes
    them back zero (the accumulators are clean between layers: no initialisation); the drain writer
    writes D words of the int memory and reads the residual's D words when it has one. LIF: per
    beat (lanes neurons) an int word in, a spike word out, a membrane word read and written, a
    threshold word read. SDSA: the gatherer reads a word of each of the variant's fields (q, k, v;
    q, k; q) per token word, in both passes of SDSA-3/4; every operation but a ZERO one reads a
    K^T V or counter word, the updates write it back; the output words go to the int memory.
    MASK: v and mask words in, one out. REDUCE: its words in, one word out per sum."""
    from hwgen.compiler.kinds import core_kind      # amaranth: only when traffic is asked for

    words = lambda c: math.ceil(c / lanes)                                      # noqa: E731
    out = {"program": [1.0, 0.0]}

    def add(memory: str, reads: float = 0.0, writes: float = 0.0) -> None:
        r = out.setdefault(memory, [0.0, 0.0])
        r[0] += reads
        r[1] += writes

    core_kind(layer.kind).traffic(layer, work, T, words, add)
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
