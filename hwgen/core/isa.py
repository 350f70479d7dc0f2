"""The core's instruction set: one instruction per program layer (docs/core.md, "Instructions").

An instruction is a flat record whose field widths come from the hardware configuration, so the
sequencer (``hwgen.core.top``) and the compiler (``hwgen.compiler``) read one layout:
:func:`instruction_layout` is the only place a field is declared (the accumulator descriptor
inside it is ``hwgen.layout.Descriptor``), and :func:`pack` turns a field dictionary into the
integer the instruction memory holds, through the layout's own ``const``.

Addresses are in words of the tensor memories (``lanes`` neurons of one position per word).
A tensor keeps its timesteps back to back: timestep ``t`` of a tensor at ``base`` with ``step``
words per timestep starts at ``base + t * step``.
"""
from __future__ import annotations

import enum

from amaranth.lib import data

from contract.config import HwConfig
from hwgen.layout import descriptor_layout

__all__ = ["Op", "Target", "instruction_layout", "pack", "address_width"]


class Op(enum.IntEnum):
    END = 0
    CONV = 1     # accumulator array: spike (or pixel) events -> currents (+ residual) -> int memory
    LIF = 2      # LIF core: int memory currents -> spike memory
    SDSA = 3     # SDSA unit: q, k, v spikes -> attention integers -> int memory
    MASK = 4     # spike AND: v & mask (SDSA-1/2) -> spike memory
    REDUCE = 5   # integer sums: token sum, readout over timesteps -> int memory


class Target(enum.IntEnum):
    """``load.sel``: which memory a load word goes to."""
    PROGRAM = 0
    WEIGHTS = 1
    BIASES = 2
    THRESHOLDS = 3
    PIXELS = 4
    INTS = 5
    SPIKES = 6


def address_width(hw: HwConfig) -> int:
    """Bits of a memory address in the core: tensor addresses in instructions, and the load
    port, which reaches every word of every memory (weights included)."""
    core, acc, lif = hw.core, hw.accumulator, hw.lif
    return max(core.int_depth, core.spike_depth, core.pixel_depth, core.program_depth, acc.weight_depth,
               acc.bias_depth, lif.threshold_depth).bit_length() + 1


def instruction_layout(hw: HwConfig) -> data.StructLayout:
    """Fields (unused ones are zero for a given op):

    ``a``/``b``/``c`` are source tensors, ``dst`` the result; ``*_step`` words per timestep.
    CONV: ``a`` spikes (or pixels), ``b`` residual; feeder geometry ``in_h, in_w, in_words``;
    ``desc`` the accumulator descriptor. LIF: ``a`` currents, ``beats`` per timestep, ``count`` = T * beats.
    SDSA: ``a, b, c`` = q, k, v; ``tokens, heads, head_dim, head_words`` (= head_dim / lanes).
    MASK: ``a`` = v, ``b`` = mask, ``tokens`` positions of ``in_words`` words.
    REDUCE: ``dst[o, g] = sum_i a[o * a_step + i * in_stride + g]`` for ``o < outer``,
    ``g < in_words``, ``i < count``.
    ``chain`` (CONV and the LIF right after it, which reads exactly the CONV's output): the two
    run together, the LIF core taking each drained sum as it is written (docs/core.md, "Overlap").
    """
    acc, lif, sdsa = hw.accumulator, hw.lif, hw.sdsa
    aw = address_width(hw)
    big = max(lif.neurons * lif.max_timesteps, hw.core.int_depth, hw.core.spike_depth) + 1
    return data.StructLayout({
        "op": 3,
        "timesteps": range(lif.max_timesteps + 1),
        "a_base": aw, "a_step": aw,
        "b_base": aw, "b_step": aw,
        "c_base": aw,
        "dst_base": aw, "dst_step": aw,
        "residual": 1,
        "pixels": 1,
        "chain": 1,
        "in_h": range(acc.max_size + 1),
        "in_w": range(acc.max_size + 1),
        "in_words": range(max(acc.max_channels, lif.channels // lif.lanes, sdsa.heads * sdsa.head_dim) + 1),
        "count": range(big),
        "outer": range(lif.max_timesteps + 1),
        "in_stride": aw,
        "beats": range(lif.beats + 1),
        "thr_base": range(max(lif.threshold_depth, 2)),
        "thr_rows": range(lif.threshold_rows + 1),
        "input_shift": range(32),
        "tokens": range(sdsa.max_tokens + 1),
        "heads": range(sdsa.heads + 1),
        "head_dim": range(sdsa.head_dim + 1),
        "head_words": range(sdsa.head_dim // sdsa.lanes + 1),
        "desc": descriptor_layout(acc),
    })


def _check_fits(layout: data.StructLayout, fields: dict) -> None:
    """``layout.const`` truncates silently: name the first field whose value does not fit."""
    for name, value in fields.items():
        field = layout[name]
        if isinstance(field.shape, data.StructLayout):
            _check_fits(field.shape, value)
        elif not 0 <= int(value) < (1 << field.width):
            raise ValueError(f"instruction field {name} = {value} does not fit {field.width} bits")


def pack(layout: data.StructLayout, fields: dict) -> int:
    """Field dictionary (``desc`` may be a nested dictionary) -> instruction word; fields not
    given are zero."""
    _check_fits(layout, fields)
    return layout.const({name: int(v) if not isinstance(v, dict) else v for name, v in fields.items()}).as_value().value
