"""Program -> core image: instructions, tensor placement and memory contents (docs/core.md).

The compiler turns each layer of an exported program (``contract.program``) into one instruction
(``hwgen.core.isa``), places every tensor in the int or spike memory (first fit, a tensor's
words freed after its last reader) and refuses, naming the layer, the memory and the shortfall,
a program that the configured core cannot hold. The result also says where every layer's output
lives, which is how a testbench turns the core's write log back into golden-shaped tensors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from contract.config import HwConfig
from contract.program import INPUT, Layer, Program
from hwgen.compiler.padding import pad_heads
from hwgen.compiler.placement import ParameterPlacement, place_parameters
from hwgen.core.isa import Op, Target, instruction_layout, pack

__all__ = ["CoreFitError", "Region", "CoreImage", "compile_program"]


class CoreFitError(ValueError):
    """The program cannot run on this core; the message names the layer and what is short."""


@dataclass(frozen=True)
class Region:
    """Where a tensor lives: ``timesteps`` blocks of ``step`` words from ``base``; a block holds
    ``positions`` x ``words`` words (position-major, ``lanes`` channels per word)."""

    memory: str          # "ints" or "spikes"
    base: int
    timesteps: int
    positions: int
    words: int
    channels: int
    shape: tuple         # per-timestep shape as stored (head-padded channels included)
    index: np.ndarray | None = field(default=None, compare=False)   # head padding: stored channel of each real one

    @property
    def step(self) -> int:
        return self.positions * self.words

    @property
    def size(self) -> int:
        return self.timesteps * self.step


class _Allocator:
    """First fit over one memory; remembers its high-water mark."""

    def __init__(self, name: str, depth: int):
        self.name, self.depth = name, depth
        self.free = [(0, depth)]
        self.peak = 0

    def alloc(self, size: int, layer: str) -> int:
        for i, (start, length) in enumerate(self.free):
            if length >= size:
                self.free[i] = (start + size, length - size)
                self.peak = max(self.peak, start + size)
                return start
        used = self.depth - sum(length for _, length in self.free)
        raise CoreFitError(f"{layer}: the {self.name} memory is full: {size} more words needed with {used} of "
                           f"{self.depth} in use: {used + size - self.depth} words short (core.{self.name[:-1]}_depth)")

    def release(self, base: int, size: int) -> None:
        self.free.append((base, size))
        self.free.sort()
        merged = []
        for start, length in self.free:
            if merged and merged[-1][0] + merged[-1][1] == start:
                merged[-1] = (merged[-1][0], merged[-1][1] + length)
            else:
                merged.append((start, length))
        self.free = merged


@dataclass
class CoreImage:
    """A program compiled for one core configuration."""

    hw: HwConfig
    program: Program
    instructions: list[dict]
    regions: dict[str, Region]          # tensor name -> placement (inputs of a slice included)
    layers: list[Layer]                 # per instruction: the layer it runs
    outputs: list[str]                  # per instruction: the tensor it writes
    preloaded: list[str] = field(default_factory=list)   # tensors the host writes before a run
    peak: dict[str, int] = field(default_factory=dict)
    placement: ParameterPlacement | None = None           # weights, biases, thresholds

    @property
    def lanes(self) -> int:
        return self.hw.lif.lanes

    def instruction_words(self) -> list[int]:
        layout = instruction_layout(self.hw)
        return [pack(layout, fields) for fields in self.instructions] + [pack(layout, {"op": Op.END})]

    def static_loads(self) -> list[tuple[Target, int, int]]:
        """(memory, address, word) for the program, weights, biases and thresholds."""
        loads = [(Target.PROGRAM, a, w) for a, w in enumerate(self.instruction_words())]
        targets = {"weights": Target.WEIGHTS, "biases": Target.BIASES, "thresholds": Target.THRESHOLDS}
        for name, words in self.placement.images.items():
            loads += [(targets[name], a, w) for a, w in enumerate(pack_lanes(words, self.placement.width(name)))]
        return loads

    def pixel_loads(self, pixels: np.ndarray) -> list[tuple[Target, int, int]]:
        """One integer image ``[C, H, W]`` -> pixel memory words, position-major."""
        bits = self.hw.accumulator.input_bits
        flat = np.asarray(pixels, dtype=np.int64).transpose(1, 2, 0).reshape(-1) & ((1 << bits) - 1)
        return [(Target.PIXELS, a, int(v)) for a, v in enumerate(flat)]

    def tensor_loads(self, name: str, value: np.ndarray) -> list[tuple[Target, int, int]]:
        """A golden tensor ``[T, ...]`` -> the words of its region (to preload a slice's inputs)."""
        r = self.regions[name]
        words = to_words(np.asarray(value), r, self.lanes)
        width = self.hw.accumulator.accumulator_width if r.memory == "ints" else 1
        target = Target.INTS if r.memory == "ints" else Target.SPIKES
        return [(target, r.base + a, w) for a, w in enumerate(pack_lanes(words, width))]


def pack_lanes(values: np.ndarray, width: int) -> list[int]:
    """``values[words, lanes]`` -> one integer per word, lane 0 in the low bits (two's complement)."""
    mask = (1 << width) - 1
    out = []
    for row in np.asarray(values, dtype=np.int64).tolist():
        word = 0
        for lane, v in enumerate(row):
            word |= (v & mask) << (lane * width)
        out.append(word)
    return out


def to_words(value: np.ndarray, r: Region, lanes: int) -> np.ndarray:
    """Golden tensor ``[T, C, (H, W)]`` -> words ``[T * positions * words, lanes]`` of region ``r``."""
    T = value.shape[0]
    if r.index is not None:
        padded = np.zeros((T, r.channels, *value.shape[2:]), dtype=np.int64)
        padded[:, r.index] = value
        value = padded
    flat = value.reshape(T, r.channels, r.positions).transpose(0, 2, 1)      # [T, P, C]
    padded = np.zeros((T, r.positions, r.words * lanes), dtype=np.int64)
    padded[:, :, :r.channels] = flat
    return padded.reshape(-1, lanes)


def from_words(words: np.ndarray, r: Region, lanes: int) -> np.ndarray:
    """Inverse of :func:`to_words`: ``[T * positions * words, lanes]`` -> ``[T, *shape]``."""
    a = words.reshape(r.timesteps, r.positions, r.words * lanes)[:, :, :r.channels]
    return a.transpose(0, 2, 1).reshape(r.timesteps, *r.shape)


def _same_section(program: Program, hw: HwConfig, section: str, keys=None) -> None:
    have = program.header["hw"].get(section) or {}
    want = hw.to_dict().get(section) or {}
    for key in keys or sorted(set(have) | set(want)):
        if have.get(key) != want.get(key):
            raise CoreFitError(f"{section}.{key}: the program was quantized for {have.get(key)!r}, the core has "
                               f"{want.get(key)!r} ({hw.source}); quantize again with this configuration")


def compile_program(program: Program, hw: HwConfig, *, layers: slice | None = None) -> CoreImage:
    """Compile ``program`` (or the ``layers`` slice of it: tensors it reads from earlier layers
    become preloaded inputs) for the core described by ``hw``."""
    if hw.core is None:
        raise CoreFitError(f"{hw.source}: no 'core' section: this configuration describes no core")
    # the semantics must agree; capacities are checked layer by layer below
    _same_section(program, hw, "lif", ["lanes", "current_width", "membrane_width", "frac_bits", "threshold_width",
                                       "leak_shift", "reset"])
    _same_section(program, hw, "accumulator", ["lanes", "weight_width", "accumulator_width", "bias_width",
                                               "input_bits"])
    L, T = hw.lif.lanes, program.T
    acc, lif, sdsa = hw.accumulator, hw.lif, hw.sdsa
    program, channel_maps = pad_heads(program, L, (1 << lif.threshold_width) - 1)
    by_name = {l.name: l for l in program.layers}
    if layers is not None:
        # a slice gets its own weight, bias and threshold memories: placed from offset 0
        program = Program(program.header, list(program.layers[layers]), program.arrays)
    # placed for the core's configuration (its capacities, the program header's semantics)
    placement = place_parameters(Program({**program.header, "hw": hw.to_dict()}, program.layers, program.arrays))
    for line in placement.shortfalls():
        raise CoreFitError(line.replace("the hardware has", "the core has"))
    placed = placement.layers
    todo = list(program.layers)
    if len(todo) + 1 > hw.core.program_depth:
        raise CoreFitError(f"program: {len(todo)} layers + END need {len(todo) + 1} instructions, the core holds "
                           f"{hw.core.program_depth}: {len(todo) + 1 - hw.core.program_depth} short (core.program_depth)")
    if T > lif.max_timesteps:
        raise CoreFitError(f"program: T = {T} > lif.max_timesteps = {lif.max_timesteps}")

    mems = {"ints": _Allocator("ints", hw.core.int_depth), "spikes": _Allocator("spikes", hw.core.spike_depth)}
    regions: dict[str, Region] = {}
    preloaded: list[str] = []
    last_use = {}
    for i, layer in enumerate(todo):
        for n in layer.inputs:
            last_use[n] = i

    def need(cond: bool, layer: Layer, what: str) -> None:
        if not cond:
            raise CoreFitError(f"{layer.name} ({layer.kind}): {what}")

    def words_of(channels: int) -> int:
        return math.ceil(channels / L)

    def place(name: str, memory: str, positions: int, channels: int, shape, timesteps: int = T) -> Region:
        size = timesteps * positions * words_of(channels)
        base = mems[memory].alloc(size, name)
        regions[name] = Region(memory, base, timesteps, positions, words_of(channels), channels, tuple(shape),
                               channel_maps.get(name))
        return regions[name]

    def tensor(name: str, layer: Layer) -> Region:
        """The region of an input tensor, placing it for preloading when a slice starts after it."""
        if name in regions:
            return regions[name]
        src = by_name[name]
        kind = "spikes" if src.kind in ("lif", "mask") else "ints"
        shape = tuple(src.shape)
        channels = shape[0]
        positions = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        preloaded.append(name)
        return place(name, kind, positions, channels, shape, 1 if src.kind == "readout" else T)

    instructions, outputs = [], []
    for i, layer in enumerate(todo):
        a, kind = layer.attrs, layer.kind
        out_shape = tuple(layer.shape)
        if kind in ("conv", "linear"):
            d = placed[layer.name].descriptor
            if kind == "conv":
                c_in, h, w = a["in_shape"]
                pixels = a["input"] == "pixels"
                need(d["words"] == words_of(a["out_channels"]), layer,
                     f"grouped conv with {a['out_channels'] // a['groups']} output channels per group: the core "
                     f"needs them in multiples of lanes ({L})")
                need(a["kernel"] <= acc.max_kernel, layer, f"kernel {a['kernel']} > accumulator.max_kernel {acc.max_kernel}")
                need(max(h, w) <= acc.max_size, layer, f"input {h}x{w} > accumulator.max_size {acc.max_size}")
            else:
                c_in, h, w, pixels = a["in_features"], 1, 1, False
            need(c_in <= acc.max_channels, layer, f"{c_in} input channels > accumulator.max_channels {acc.max_channels}")
            need(d["drain_words"] <= acc.accumulator_depth, layer,
                 f"needs {d['drain_words']} accumulator words, the array has {acc.accumulator_depth}")
            if pixels:
                need(layer.inputs[0] == INPUT, layer, "pixel input must be the image")
                need(c_in * h * w <= hw.core.pixel_depth, layer,
                     f"the image has {c_in * h * w} pixels, core.pixel_depth is {hw.core.pixel_depth}")
                src_base, src_step, in_words = 0, 0, c_in       # the image is the same every timestep
            else:
                src = tensor(layer.inputs[0], layer)
                src_base, src_step, in_words = src.base, src.step, src.words
            res = tensor(a["residual"], layer) if kind == "conv" and a.get("residual") else None
            positions = int(np.prod(out_shape[1:])) if len(out_shape) > 1 else 1
            out = place(layer.name, "ints", positions, out_shape[0], out_shape)
            if res is not None:
                need(res.step == out.step, layer, "residual and output differ in shape")
            fields = dict(op=Op.CONV, timesteps=T, a_base=src_base, a_step=src_step, in_h=h, in_w=w,
                          in_words=in_words, pixels=int(pixels), dst_base=out.base, dst_step=out.step, desc=d)
            if res is not None:
                fields.update(residual=1, b_base=res.base, b_step=res.step)
        elif kind == "lif":
            src = tensor(layer.inputs[0], layer)
            channels = a["channels"]
            beats = src.step
            need(beats <= lif.beats, layer, f"{beats * L} neurons, the LIF core holds {lif.neurons} (lif.neurons)")
            # channels past C in the last word of a position: zero currents, the largest
            # threshold (hwgen.compiler.placement pads them), so they never fire and stay zero downstream
            out = place(layer.name, "spikes", src.positions, channels, out_shape)
            fields = dict(op=Op.LIF, timesteps=T, a_base=src.base, dst_base=out.base, beats=beats,
                          count=T * beats, thr_base=placed[layer.name].threshold_offset, thr_rows=src.words,
                          input_shift=a["input_shift"])
        elif kind == "sdsa":
            q, k, v = (tensor(a[f], layer) if a.get(f) else None for f in ("q", "k", "v"))
            heads, d, n = a["heads"], a["head_dim"], a["tokens"]
            need(a["variant"] == sdsa.variant, layer, f"SDSA-{a['variant']}, the core has SDSA-{sdsa.variant}")
            need(d % L == 0, layer, f"head dimension {d}: the core needs a multiple of lanes ({L})")
            need(heads <= sdsa.heads and d <= sdsa.head_dim and n <= sdsa.max_tokens, layer,
                 f"{heads} heads of {d} over {n} tokens exceed the SDSA unit ({sdsa.heads} x {sdsa.head_dim}, "
                 f"{sdsa.max_tokens} tokens)")
            positions = n if sdsa.attention_matrix else 1
            out = place(layer.name, "ints", positions, heads * d, out_shape)
            fields = dict(op=Op.SDSA, timesteps=T, a_base=q.base, a_step=q.step,
                          b_base=k.base if k else 0, c_base=v.base if v else 0, dst_base=out.base,
                          dst_step=out.step, tokens=n, heads=heads, head_dim=d, head_words=d // L,
                          in_words=q.words)
        elif kind == "mask":
            mask, v = (tensor(n, layer) for n in layer.inputs)
            out = place(layer.name, "spikes", v.positions, v.channels, out_shape)
            fields = dict(op=Op.MASK, timesteps=T, a_base=v.base, b_base=mask.base, b_step=mask.step,
                          dst_base=out.base, tokens=v.positions, in_words=v.words, count=v.size)
        elif kind == "token_sum":
            src = tensor(layer.inputs[0], layer)
            out = place(layer.name, "ints", 1, src.channels, out_shape)
            fields = dict(op=Op.REDUCE, a_base=src.base, a_step=src.step, outer=T, count=src.positions,
                          in_stride=src.words, in_words=src.words, dst_base=out.base)
        elif kind == "readout":
            need(len(layer.inputs) == 1, layer, f"{len(layer.inputs)} heads: the core sums one head")
            src = tensor(layer.inputs[0], layer)
            out = place(layer.name, "ints", 1, src.channels, out_shape, timesteps=1)
            fields = dict(op=Op.REDUCE, a_base=src.base, a_step=0, outer=1, count=T, in_stride=src.step,
                          in_words=src.words, dst_base=out.base)
        else:
            raise CoreFitError(f"{layer.name}: layer kind {kind!r} has no instruction")
        instructions.append(fields)
        outputs.append(layer.name)
        for n in set(layer.inputs):
            if last_use.get(n) == i and n in regions:
                r = regions[n]
                mems[r.memory].release(r.base, r.size)
    return CoreImage(hw, program, instructions, regions, list(todo), outputs, preloaded,
                     {name: alloc.peak for name, alloc in mems.items()}, placement)
