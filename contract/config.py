"""Typed, validated hardware configuration (``configs/hw/*.yaml``).

One ``HwConfig`` is read by both sides of the contract: the Amaranth generators take their
generation-time parameters from it, and the golden integer engine takes its widths and
semantics from it. Nothing else decides a width.

Every section is a frozen dataclass whose fields carry their own constraints (``_field``).
Loading rejects unknown keys, wrong types, out-of-range values and inconsistent combinations
with a :class:`ConfigError` that names the file, the key path, the value and what is allowed.

Example (``configs/hw/lif_small.yaml``)::

    name: lif_small
    lif:
      lanes: 4
      neurons: 1024
      ...
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ConfigError", "LifConfig", "AccumulatorConfig", "SdsaConfig", "CoreConfig", "HwConfig", "load_config",
           "COUNTER_WIDTH"]

#: Width of every performance counter: the units' ``counters`` and the core's layer report (bits).
#: 2^40 cycles is over an hour at 300 MHz: no run of a layer wraps one.
COUNTER_WIDTH = 40


class ConfigError(ValueError):
    """A configuration file is invalid. ``str()`` is a one-line message for the user."""

    def __init__(self, source: str, key: str, value: Any, allowed: str):
        self.source, self.key, self.value, self.allowed = source, key, value, allowed
        super().__init__(f"{source}: {key} = {value!r}: {allowed}")


def _field(*, default=dataclasses.MISSING, kind=int, min=None, max=None, choices=None, help=""):
    """A config field with its constraints kept in the dataclass metadata."""
    meta = dict(kind=kind, min=min, max=max, choices=choices, help=help)
    return dataclasses.field(default=default, metadata=meta)


def _check_value(source, key, value, meta):
    kind = meta["kind"]
    # bool is an int in Python; a YAML `true` must not pass as a width.
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(source, key, value, "must be an integer")
    if kind is str and not isinstance(value, str):
        raise ConfigError(source, key, value, "must be a string")
    if kind is tuple:
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(source, key, value, "must be a non-empty list")
        bad = [v for v in value if v not in meta["choices"]]
        if bad or len(set(value)) != len(value):
            allowed = ", ".join(repr(c) for c in meta["choices"])
            raise ConfigError(source, key, value, f"must list distinct items from {allowed}")
        return
    if meta["choices"] is not None and value not in meta["choices"]:
        allowed = ", ".join(repr(c) for c in meta["choices"])
        raise ConfigError(source, key, value, f"must be one of {allowed}")
    lo, hi = meta["min"], meta["max"]
    if lo is not None and value < lo:
        raise ConfigError(source, key, value, f"must be >= {lo}" + (f" and <= {hi}" if hi is not None else ""))
    if hi is not None and value > hi:
        raise ConfigError(source, key, value, f"must be <= {hi}" + (f" and >= {lo}" if lo is not None else ""))


def _parse_section(cls, raw, source: str, path: str):
    if not isinstance(raw, dict):
        raise ConfigError(source, path, raw, "must be a mapping of keys to values")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(source, f"{path}.{unknown[0]}", raw[unknown[0]],
                          f"unknown key; allowed keys: {', '.join(fields)}")
    values = {}
    for name, f in fields.items():
        key = f"{path}.{name}"
        if name not in raw:
            if f.default is dataclasses.MISSING:
                raise ConfigError(source, key, None, "is required: " + f.metadata["help"])
            values[name] = f.default
            continue
        _check_value(source, key, raw[name], f.metadata)
        values[name] = tuple(raw[name]) if f.metadata["kind"] is tuple else raw[name]
    obj = cls(**values)
    for key, value, allowed in obj.inconsistencies():
        raise ConfigError(source, f"{path}.{key}", value, allowed)
    return obj


@dataclass(frozen=True)
class LifConfig:
    """LIF neuron core: N neurons time-multiplexed over ``lanes``, membranes in on-chip memory.

    Fixed point: an input current is a signed integer of ``current_width`` bits in units of one
    current LSB. The membrane holds ``frac_bits`` more fractional bits than the current, so a
    membrane integer ``m`` means ``m / 2**frac_bits`` current LSBs. See docs/arithmetic.md.
    """

    lanes: int = _field(min=1, max=128, help="neurons updated in parallel per cycle")
    neurons: int = _field(min=1, max=1 << 22, help="largest layer, in neurons (membrane memory depth x lanes)")
    channels: int = _field(min=1, max=1 << 16, help="most per-channel thresholds (threshold memory depth x lanes)")
    current_width: int = _field(min=2, max=32, help="signed input current width, bits")
    membrane_width: int = _field(min=2, max=48, help="signed membrane width, bits")
    frac_bits: int = _field(min=0, max=16, help="membrane fractional bits below the current LSB")
    threshold_width: int = _field(min=1, max=32, help="unsigned threshold width, bits (current LSB units)")
    leak_shift: int = _field(default=1, min=1, max=8, help="tau = 2**leak_shift (decay_input LIF)")
    reset: str = _field(default="hard", kind=str, choices=("hard", "subtract"),
                        help="hard: to zero on a spike; subtract: subtract the threshold")
    max_timesteps: int = _field(default=16, min=1, max=1 << 12, help="largest T a run may use")
    threshold_depth: int = _field(default=1024, min=1, max=1 << 20,
                                  help="threshold memory rows of lanes thresholds, for every layer of a program")

    def inconsistencies(self):
        if self.threshold_depth < self.channels // self.lanes:
            yield ("threshold_depth", self.threshold_depth,
                   f"must be >= channels / lanes = {self.channels // self.lanes}: one layer's thresholds must fit")
        if self.neurons % self.lanes:
            yield ("neurons", self.neurons,
                   f"must be a multiple of lanes ({self.lanes}): lane l holds neurons l, l+lanes, ...")
        if self.channels % self.lanes:
            yield ("channels", self.channels,
                   f"must be a multiple of lanes ({self.lanes}): thresholds are read a row of lanes at a time")
        if self.channels > self.neurons:
            yield ("channels", self.channels, f"must be <= neurons ({self.neurons})")
        # H = V + ((X << F) - V) >> k lies between V and X << F, so a membrane as wide as the
        # scaled current can never overflow: the absence of overflow is proven here, once.
        need = self.current_width + self.frac_bits
        if self.membrane_width < need:
            yield ("membrane_width", self.membrane_width,
                   f"must be >= current_width + frac_bits = {need} so the membrane cannot overflow")

    @property
    def beats(self) -> int:
        """Membrane memory depth: neurons / lanes."""
        return self.neurons // self.lanes

    @property
    def threshold_rows(self) -> int:
        """Most threshold rows one layer uses: channels / lanes."""
        return self.channels // self.lanes


@dataclass(frozen=True)
class AccumulatorConfig:
    """Spike-addressed accumulator array: each input spike adds stored weights, selected by its
    address, into ``lanes`` output accumulators per cycle. Widths are what the quantizer must
    prove sufficient for every layer of a program (docs/arithmetic.md, "Accumulation")."""

    lanes: int = _field(min=1, max=128, help="accumulator additions per cycle")
    weight_width: int = _field(min=2, max=16, help="signed weight width, bits")
    accumulator_width: int = _field(min=4, max=48, help="signed accumulator width, bits")
    weight_depth: int = _field(min=1, max=1 << 24, help="weight memory words (one word = lanes weights)")
    accumulator_depth: int = _field(min=1, max=1 << 24, help="accumulator memory words (one word = lanes accumulators)")
    buffers: int = _field(default=1, choices=(1, 2),
                          help="accumulator memories per lane: 2 double-buffers them, so a timestep accumulates "
                               "while the previous one drains (docs/core.md, \"Overlap\")")
    bias_width: int = _field(default=24, min=2, max=48, help="signed bias width, bits")
    bias_depth: int = _field(default=4096, min=1, max=1 << 20, help="bias memory words (one word = lanes biases)")
    input_bits: int = _field(default=8, min=1, max=16, help="pixel bits of the encoding layer (bit planes)")
    max_kernel: int = _field(default=7, min=1, max=15, help="largest kernel size k (k x k)")
    max_channels: int = _field(default=1024, min=1, max=1 << 16, help="most input channels of a layer")
    max_size: int = _field(default=256, min=1, max=1 << 12, help="largest input height or width")
    weight_bank_depth: int = _field(default=0, min=0, max=1 << 24,
                                    help="words per weight memory bank, a power of two (0: banks only where one "
                                         "memory would exceed 2^29 bits, the most a Yosys memory cell holds)")
    kinds: tuple = _field(default=("conv", "grouped", "encoding"), kind=tuple,
                          choices=("conv", "grouped", "encoding"),
                          help="layer kinds in hardware: conv (dense kxk, pointwise, linear), "
                               "grouped (depthwise and grouped convs), encoding (multi-bit pixels as bit planes)")
    weights: str = _field(default="onchip", kind=str, choices=("onchip", "external"),
                          help="onchip: a weight memory of weight_depth words in the unit; external: weights read "
                               "from an outside memory through a request/response stream, with a prefetch buffer "
                               "(docs/accumulator.md, \"Weights from external memory\")")
    weight_buffer: int = _field(default=192, min=4, max=1 << 14,
                                help="external weights: prefetch buffer words (hides latency x words per cycle "
                                     "+ weight_burst + a few cycles of memory latency)")
    weight_burst: int = _field(default=16, min=2, max=1 << 10,
                               help="external weights: longest burst one request asks for, words (at least 2: "
                                    "an operation that parks a folded remainder takes two consecutive words)")
    weight_port_words: int = _field(default=1, choices=(1, 2),
                                    help="external weights: weight words one response beat can carry")

    def inconsistencies(self):
        if "conv" not in self.kinds:
            yield ("kinds", list(self.kinds), "must include 'conv'")
        if self.bias_width > self.accumulator_width:
            yield ("bias_width", self.bias_width, f"must be <= accumulator_width ({self.accumulator_width})")
        if self.weight_bank_depth & (self.weight_bank_depth - 1):
            yield ("weight_bank_depth", self.weight_bank_depth, "must be 0 or a power of two")
        if self.weight_burst > self.weight_buffer:
            yield ("weight_burst", self.weight_burst,
                   f"must be <= weight_buffer ({self.weight_buffer}): a burst's words are reserved in the buffer "
                   "before it is requested")
        if self.weight_buffer % 2:
            yield ("weight_buffer", self.weight_buffer, "must be even: the buffer is two banks of equal depth "
                   "(two words can enter and leave it in one cycle)")

    @property
    def external_weights(self) -> bool:
        """Weights come from an outside memory (``weights: external``)."""
        return self.weights == "external"

    @property
    def event_queue(self) -> int:
        """External weights: events the unit queues in front of its loop, so that the prefetcher
        sees them ahead of it. A non-empty kernel window needs at least one weight word, so this
        many events let the prefetcher fill the whole buffer; plus the two events its own window
        and loop hold."""
        return self.weight_buffer + 2

    #: the most bits one generated memory may hold: Yosys asserts below 2^30-bit cells
    MEMORY_BITS_LIMIT = 1 << 29

    @property
    def weight_bank_words(self) -> int:
        """Words per weight memory bank (the whole memory when one bank suffices)."""
        if self.weight_bank_depth:
            return min(self.weight_bank_depth, self.weight_depth)
        word_bits = self.lanes * self.weight_width
        if self.weight_depth * word_bits <= self.MEMORY_BITS_LIMIT:
            return self.weight_depth
        return 1 << ((self.MEMORY_BITS_LIMIT // word_bits).bit_length() - 1)


@dataclass(frozen=True)
class SdsaConfig:
    """Spike-driven self-attention unit (``sdsa:`` section; hwgen/units/sdsa.py, docs/sdsa.md).

    ``heads``, ``head_dim`` and ``max_tokens`` are the largest a layer may use; a layer sets its
    own (smaller or equal) values in the run-time registers. Widths are unsigned and proven
    sufficient here, once: no count can overflow (``inconsistencies``).
    """

    variant: int = _field(choices=(1, 2, 3, 4), help="SDSA variant (paper, appendix A); 3 is the default")
    lanes: int = _field(min=1, max=128, help="additions per cycle (one KV row block / counter block)")
    heads: int = _field(min=1, max=64, help="most attention heads of a layer")
    head_dim: int = _field(min=1, max=1024, help="largest head dimension d = C / heads")
    max_tokens: int = _field(min=1, max=1 << 16, help="most tokens N = H * W of a layer")
    count_width: int = _field(min=1, max=32, help="unsigned K^T V entry (SDSA-3/4) / token counter (SDSA-1/2) width, bits")
    acc_width: int = _field(min=1, max=48, help="unsigned attention value A width (output), bits")
    max_timesteps: int = _field(default=16, min=1, max=1 << 12, help="largest T a run may use")
    out_blocks: int = _field(default=1, min=1, max=16,
                             help="lane blocks per output beat: the output carries out_blocks * lanes values")

    @classmethod
    def from_dict(cls, raw, source: str = "<memory>") -> "SdsaConfig":
        """Validate a mapping like a YAML ``sdsa:`` section (ConfigError names key and value)."""
        return _parse_section(cls, raw, source, "sdsa")

    def inconsistencies(self):
        # A KV entry counts tokens where K[i] and V[j] both spike; an SDSA-1/2 counter counts
        # tokens: both are at most N.
        need = _ubits(self.max_tokens)
        if self.count_width < need:
            yield ("count_width", self.count_width,
                   f"must be >= {need} to count up to max_tokens ({self.max_tokens}) without overflow")
        # A[j, n] = sum_i Q[i, n] KV[i, j] <= d * N (SDSA-3/4); A[c] <= N (SDSA-1/2).
        top = self.max_tokens * self.head_dim if self.attention_matrix else self.max_tokens
        if self.acc_width < _ubits(top):
            yield ("acc_width", self.acc_width,
                   f"must be >= {_ubits(top)} to hold A <= {top} "
                   f"({'max_tokens * head_dim' if self.attention_matrix else 'max_tokens'}) without overflow")
        if self.heads * self.head_dim > 1 << 13:
            yield ("head_dim", self.head_dim,
                   f"heads * head_dim = {self.heads * self.head_dim} channels: at most {1 << 13} "
                   "(the input beat carries every channel)")

    @property
    def attention_matrix(self) -> bool:
        """SDSA-3/4 (Q (K^T V)); False for the per-channel counts of SDSA-1/2."""
        return self.variant in (3, 4)

    @property
    def blocks(self) -> int:
        """Lane blocks per head: ceil(head_dim / lanes) (generation time, largest head)."""
        return -(-self.head_dim // self.lanes)

    @property
    def out_lanes(self) -> int:
        """Attention values per output beat."""
        return self.lanes * self.out_blocks

    @property
    def memory_depth(self) -> int:
        """Words of ``lanes`` counts: K^T V rows x blocks (3/4) or channel blocks (1/2)."""
        rows = self.heads * self.head_dim if self.attention_matrix else self.heads
        return rows * self.blocks


@dataclass(frozen=True)
class CoreConfig:
    """The neuromorphic core (``core:`` section; hwgen/core/): the three units, the on-chip
    tensor memories and a sequencer that runs a compiled program (docs/core.md).

    Tensors live in two memories, both one word per ``lanes`` neurons of one position: integer
    tensors (currents, the membrane-shortcut residual stream, attention values, sums) in words of
    ``lanes`` signed accumulators, spike tensors in words of ``lanes`` bits. Every tensor keeps its
    T timesteps; a tensor's words are freed after its last reader (docs/core.md, "Memory")."""

    int_depth: int = _field(min=1, max=1 << 24, help="integer tensor memory words (lanes accumulators each)")
    spike_depth: int = _field(min=1, max=1 << 24, help="spike tensor memory words (lanes spikes each)")
    pixel_depth: int = _field(min=1, max=1 << 24, help="input image memory words (one pixel each)")
    program_depth: int = _field(default=256, min=2, max=1 << 16, help="instruction memory words (one per layer, plus the end)")

    def inconsistencies(self):
        return iter(())


def _ubits(n: int) -> int:
    """Bits of an unsigned integer that holds ``n``."""
    return max(1, int(n).bit_length())


_SECTIONS = {"lif": LifConfig, "accumulator": AccumulatorConfig, "sdsa": SdsaConfig, "core": CoreConfig}


@dataclass(frozen=True)
class HwConfig:
    """The whole hardware configuration: a name and one section per unit it builds."""

    name: str
    lif: LifConfig | None = None
    accumulator: AccumulatorConfig | None = None
    sdsa: SdsaConfig | None = None
    core: CoreConfig | None = None
    source: str = "<memory>"

    @classmethod
    def from_dict(cls, raw: Any, source: str = "<memory>") -> "HwConfig":
        if not isinstance(raw, dict):
            raise ConfigError(source, "<top>", raw, "must be a mapping with 'name' and unit sections")
        allowed = ["name", *_SECTIONS]
        for key in raw:
            if key not in allowed:
                raise ConfigError(source, key, raw[key], f"unknown key; allowed keys: {', '.join(allowed)}")
        name = raw.get("name")
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(source, "name", name, "must be an identifier (letters, digits, _)")
        sections = {k: _parse_section(c, raw[k], source, k) for k, c in _SECTIONS.items() if k in raw}
        if not sections:
            raise ConfigError(source, "<top>", sorted(raw), f"needs at least one unit section: {', '.join(_SECTIONS)}")
        lif, acc = sections.get("lif"), sections.get("accumulator")
        if lif is not None and acc is not None and lif.current_width < acc.accumulator_width:
            raise ConfigError(source, "lif.current_width", lif.current_width,
                              f"must be >= accumulator.accumulator_width ({acc.accumulator_width}): "
                              "the LIF core takes the accumulators as its currents")
        if "core" in sections:
            _check_core(sections, source)
        return cls(name=name, source=source, **sections)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"name": self.name}
        for key in _SECTIONS:
            section = getattr(self, key)
            if section is not None:
                out[key] = {k: list(v) if isinstance(v, tuple) else v
                            for k, v in dataclasses.asdict(section).items()}
        return out

    @property
    def hash(self) -> str:
        """Content hash of the configuration (not of the file's spelling)."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _check_core(sections: dict, source: str) -> None:
    """The core joins the units through shared tensor memories: their lanes must agree."""
    missing = [k for k in ("lif", "accumulator", "sdsa") if k not in sections]
    if missing:
        raise ConfigError(source, "core", "...", f"needs the sections {', '.join(missing)} as well: "
                          "the core holds a LIF core, an accumulator array and an SDSA unit")
    lif, acc, sdsa = sections["lif"], sections["accumulator"], sections["sdsa"]
    for key, section in (("accumulator.lanes", acc), ("sdsa.lanes", sdsa)):
        if section.lanes != lif.lanes:
            raise ConfigError(source, key, section.lanes, f"must equal lif.lanes ({lif.lanes}) in a core: "
                              "one tensor memory word holds lanes neurons for every unit")
    if sdsa.head_dim % lif.lanes:
        raise ConfigError(source, "sdsa.head_dim", sdsa.head_dim, f"must be a multiple of lanes ({lif.lanes}) "
                          "in a core: the token beat is gathered a memory word at a time")
    if sdsa.out_blocks != 1:
        raise ConfigError(source, "sdsa.out_blocks", sdsa.out_blocks, "must be 1 in a core: attention values are "
                          "written to the int memory one lanes-wide word per beat")
    if sdsa.acc_width >= acc.accumulator_width:
        raise ConfigError(source, "sdsa.acc_width", sdsa.acc_width, f"must be < accumulator.accumulator_width "
                          f"({acc.accumulator_width}): attention values are stored as signed integers")
    if sdsa.max_timesteps < lif.max_timesteps:
        raise ConfigError(source, "sdsa.max_timesteps", sdsa.max_timesteps,
                          f"must be >= lif.max_timesteps ({lif.max_timesteps}) in a core")


def load_config(path: str | Path) -> HwConfig:
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(source, "<file>", None, f"cannot be read: {e.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "<file>"
        raise ConfigError(source, where, None, f"is not valid YAML: {getattr(e, 'problem', e)}") from None
    return HwConfig.from_dict(raw, source)
