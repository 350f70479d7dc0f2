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
from hwgen.compiler.kinds import core_kind
from hwgen.compiler.padding import pad_heads
from hwgen.compiler.placement import LayerPlacement, ParameterPlacement, place_parameters
from hwgen.core.isa import Op, Target, instruction_layout, pack

__all__ = ["CoreFitError", "Region", "CoreImage", "Compilation", "compile_program"]


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
    constants: dict[str, np.ndarray] = field(default_factory=dict)   # int tensors loaded with the program

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
        for name, value in self.constants.items():       # e.g. the encoding conv's border correction
            loads += self.tensor_loads(name, value[None])
        return loads

    def input_loads(self, image: np.ndarray) -> list[tuple[Target, int, int]]:
        """What the host writes for one image: its spike frames ``[T, C, H, W]`` into the spike
        memory (a spike-input program), or its integer pixels ``[C, H, W]`` into the pixel memory
        when an instruction reads them; nothing else."""
        if INPUT in self.regions:
            return self.tensor_loads(INPUT, image)
        if any(f.get("pixels") for f in self.instructions):
            return self.pixel_loads(image)
        return []

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


class Compilation:
    """What the per-kind instruction builders (:mod:`hwgen.compiler.kinds`) use while one
    program is compiled: the core's configuration, the placed parameters, and the tensor
    memories with every region placed so far."""

    def __init__(self, hw: HwConfig, T: int, placement: ParameterPlacement, layers: dict[str, Layer],
                 channel_maps: dict[str, np.ndarray], arrays: dict[str, np.ndarray]):
        self.hw, self.T, self.lanes = hw, T, hw.lif.lanes
        self.arrays = arrays
        self.placement = placement
        self.layers = layers                # every layer of the (padded) program, by name
        self.channel_maps = channel_maps
        self.mems = {"ints": _Allocator("ints", hw.core.int_depth), "spikes": _Allocator("spikes", hw.core.spike_depth)}
        self.regions: dict[str, Region] = {}
        self.preloaded: list[str] = []
        self.constants: dict[str, np.ndarray] = {}
        self._groups: dict[str, tuple[str, ...]] = {}      # tensor -> the tensors stored back to back with it
        self._reserved: dict[str, int] = {}                # group members not placed yet -> their base

    def adjacent(self, names) -> None:
        """Store tensors ``names`` (same memory and shape) back to back, in this order, when the
        first of them is placed: one engine pass then reads them as one longer tensor."""
        for name in names:
            self._groups[name] = tuple(names)

    def constant(self, name: str, value: np.ndarray) -> Region:
        """An int tensor ``value`` ``[C, H, W]`` the program carries (loaded with the weights, the
        same every timestep and every image): placed once, never freed."""
        c = value.shape[0]
        positions = int(np.prod(value.shape[1:]))
        self.constants[name] = np.asarray(value, dtype=np.int64)
        return self.place(name, "ints", positions, c, tuple(value.shape), timesteps=1)

    def need(self, cond: bool, layer: Layer, what: str) -> None:
        """Refuse ``layer`` with ``what`` unless ``cond``."""
        if not cond:
            raise CoreFitError(f"{layer.name} ({layer.kind}): {what}")

    def words(self, channels: int) -> int:
        return math.ceil(channels / self.lanes)

    def array(self, layer: Layer, role: str) -> np.ndarray:
        return self.arrays[layer.arrays[role]]

    def placed(self, layer: Layer) -> LayerPlacement:
        return self.placement.layers[layer.name]

    def place(self, name: str, memory: str, positions: int, channels: int, shape, timesteps: int | None = None) -> Region:
        """Allocate the region of tensor ``name`` in ``memory`` (``"ints"`` or ``"spikes"``)."""
        timesteps = self.T if timesteps is None else timesteps
        size = timesteps * positions * self.words(channels)
        group = self._groups.get(name, (name,))
        if name in self._reserved:
            base = self._reserved.pop(name)
        else:
            base = self.mems[memory].alloc(size * len(group), name)
            for k, member in enumerate(group[1:], 1):    # the rest of the group follows, in order
                self._reserved[member] = base + k * size
        self.regions[name] = Region(memory, base, timesteps, positions, self.words(channels), channels, tuple(shape),
                                    self.channel_maps.get(name))
        return self.regions[name]

    def tensor(self, name: str, layer: Layer) -> Region:
        """The region of an input tensor, placing it for preloading when a slice starts after it.
        Spike frames (the program's ``"input"`` read as spikes, one frame per timestep) get a
        spike-memory region the host writes with every image (:meth:`CoreImage.input_loads`)."""
        if name in self.regions:
            return self.regions[name]
        if name == INPUT:
            self.need(layer.attrs.get("input") == "spikes", layer,
                      "only the encoding conv of a spike-input program reads the input from the spike memory")
            shape = tuple(layer.attrs["in_shape"])
            return self.place(INPUT, "spikes", int(np.prod(shape[1:])), shape[0], shape, self.T)
        src = core_kind(self.layers[name].kind)
        shape = tuple(self.layers[name].shape)
        channels = shape[0]
        positions = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        self.preloaded.append(name)
        return self.place(name, src.memory, positions, channels, shape, self.T if src.per_timestep else 1)

    def release(self, name: str) -> None:
        r = self.regions[name]
        self.mems[r.memory].release(r.base, r.size)


def chained_lif(fields: dict) -> bool:
    """A LIF instruction that takes its currents from the CONV before it (:func:`chain_conv_lif`)."""
    return fields["op"] == Op.LIF and bool(fields.get("chain"))


def chain_conv_lif(instructions: list[dict]) -> int:
    """Mark every CONV whose next instruction is a LIF reading exactly its output (the same
    words, timestep after timestep, in drain order) and that LIF with ``chain``: the core runs
    the pair at once, the LIF core taking the drained sums as they are written (docs/core.md,
    "Overlap"). Returns the number of pairs."""
    pairs = 0
    for conv, lif in zip(instructions, instructions[1:]):
        if conv["op"] != Op.CONV or lif["op"] != Op.LIF or conv.get("chain"):
            continue
        D, T = conv["desc"]["drain_words"], conv["timesteps"]
        # the CONV reads its spike input until its last timestep while the LIF writes spikes
        spikes_in = range(0) if conv.get("pixels") else range(conv["a_base"], conv["a_base"] + T * conv["a_step"])
        spikes_out = range(lif["dst_base"], lif["dst_base"] + lif["count"])
        if (lif["a_base"] == conv["dst_base"] and lif["timesteps"] == T and conv.get("dst_step", 0) == D
                and lif["beats"] == D and not conv["desc"].get("x_lanes")
                and (spikes_in.stop <= spikes_out.start or spikes_out.stop <= spikes_in.start)):
            conv["chain"] = lif["chain"] = 1
            pairs += 1
    return pairs


def compile_program(program: Program, hw: HwConfig, *, layers: slice | None = None, chain: bool = True) -> CoreImage:
    """Compile ``program`` (or the ``layers`` slice of it: tensors it reads from earlier layers
    become preloaded inputs) for the core described by ``hw``: one instruction per layer, built
    by its kind (:mod:`hwgen.compiler.kinds`). ``chain``: run each CONV with the LIF that reads
    its output (:func:`chain_conv_lif`; off: one unit at a time, for comparison)."""
    if hw.core is None:
        raise CoreFitError(f"{hw.source}: no 'core' section: this configuration describes no core")
    # the semantics must agree; capacities are checked layer by layer below
    _same_section(program, hw, "lif", ["lanes", "current_width", "membrane_width", "frac_bits", "threshold_width",
                                       "leak_shift", "reset"])
    _same_section(program, hw, "accumulator", ["lanes", "weight_width", "accumulator_width", "bias_width",
                                               "input_bits"])
    L, T = hw.lif.lanes, program.T
    lif = hw.lif
    program, channel_maps = pad_heads(program, L, (1 << lif.threshold_width) - 1)
    by_name = {l.name: l for l in program.layers}
    if layers is not None:
        # a slice gets its own weight, bias and threshold memories: placed from offset 0
        program = Program(program.header, list(program.layers[layers]), program.arrays)
    # placed for the core's configuration (its capacities, the program header's semantics)
    placement = place_parameters(Program({**program.header, "hw": hw.to_dict()}, program.layers, program.arrays))
    for line in placement.shortfalls():
        raise CoreFitError(line.replace("the hardware has", "the core has"))
    todo = list(program.layers)
    if len(todo) + 1 > hw.core.program_depth:
        raise CoreFitError(f"program: {len(todo)} layers + END need {len(todo) + 1} instructions, the core holds "
                           f"{hw.core.program_depth}: {len(todo) + 1 - hw.core.program_depth} short (core.program_depth)")
    if T > lif.max_timesteps:
        raise CoreFitError(f"program: T = {T} > lif.max_timesteps = {lif.max_timesteps}")

    c = Compilation(hw, T, placement, by_name, channel_maps, program.arrays)
    for layer in todo:
        core_kind(layer.kind).arrange(c, layer)
    last_use = {}
    for i, layer in enumerate(todo):
        for n in layer.inputs:
            last_use[n] = i
    instructions, outputs = [], []
    held: list[str] = []    # a chained CONV's inputs: still read while its LIF writes
    for i, layer in enumerate(todo):
        instructions.append(core_kind(layer.kind).instruction(c, layer))
        outputs.append(layer.name)
        for n in held:
            c.release(n)
        done = [n for n in dict.fromkeys(layer.inputs) if last_use.get(n) == i and n in c.regions]
        # A CONV chained to the LIF after it still reads its inputs (every timestep's) while the
        # LIF writes spikes: the LIF's output must not be placed over them.
        after = todo[i + 1] if i + 1 < len(todo) else None
        chained = (chain and after is not None and core_kind(layer.kind).op == Op.CONV
                   and core_kind(after.kind).op == Op.LIF and after.inputs[0] == layer.name)
        held = done if chained else []
        for n in [] if chained else done:
            c.release(n)
    if chain:
        chain_conv_lif(instructions)
    return CoreImage(hw, program, instructions, c.regions, list(todo), outputs, c.preloaded,
                     {name: alloc.peak for name, alloc in c.mems.items()}, placement, c.constants)
