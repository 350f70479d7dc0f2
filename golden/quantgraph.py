"""The graph the quantizer's passes work on (:mod:`golden.passes`), and the arithmetic they share.

A :class:`QuantGraph` carries the folded steps, the options of one :func:`golden.quantize.quantize`
call and what each pass has computed so far: shapes, membrane streams, thresholds, integer
parameters, worst-case bounds, problems, and in the end the program's layers. Each field names
the pass that fills it; a pass reads only what earlier passes wrote.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from contract.config import HwConfig
from contract.program import Layer, Program
from golden.fold import Step

__all__ = ["QuantizationError", "Calibration", "Stream", "QuantGraph", "signed_bits", "shortfall"]


class QuantizationError(ValueError):
    """The model cannot be quantized for this hardware; ``problems`` lists each layer's issue."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        head = f"{len(problems)} layer(s) do not fit the hardware configuration:\n  "
        super().__init__(head + "\n  ".join(problems))


@dataclass
class Calibration:
    """What the quantizer learns from a few batches of real inputs."""

    input_min: float
    input_max: float
    batches: int


def signed_bits(lo: float, hi: float) -> int:
    """Smallest two's complement width holding every integer in [lo, hi]."""
    lo, hi = int(math.floor(lo)), int(math.ceil(hi))
    n = 1
    while not (-(1 << (n - 1)) <= lo and hi <= (1 << (n - 1)) - 1):
        n += 1
    return n


def shortfall(layer: str, what: str, lo, hi, width: int) -> str | None:
    """The problem line when the integers in ``[min(lo), max(hi)]`` need more than ``width``
    signed bits, else None."""
    need = signed_bits(np.min(lo), np.max(hi))
    if need <= width:
        return None
    return (f"{layer}: {what} needs {need} bits (worst case [{int(np.min(lo))}, {int(np.max(hi))}]), "
            f"the hardware has {width}: {need - width} bit(s) short")


@dataclass
class Stream:
    """One membrane stream: the convs whose outputs add up along a membrane shortcut, so they
    share one per-channel scale ``v_threshold / thresholds[c]``."""

    members: list[Step]                            # group_streams: in execution order
    v_threshold: float | None = None               # choose_thresholds: of every LIF that reads it
    tokens: int = 1                                # choose_thresholds: largest token sum over it (the head)
    thresholds: np.ndarray | None = None           # choose_thresholds: int64 [C]


@dataclass
class QuantGraph:
    """One folded model on its way to a program (see the module docstring)."""

    steps: list[Step]
    hw: HwConfig
    T: int
    weight_bits: int
    clip: str                                       # "max" or "mse"
    input_shape: list[int]
    model_name: str
    input_scale: float | None = None                # given, or set by encode_input
    calibration: Calibration | None = None
    spike_frames: bool = False                      # the input is spike frames, one per timestep (events)
    # encode_input
    signed_input: bool = False
    input_range: tuple[int, int] = (0, 0)           # integer pixels [lo, hi]
    # infer_shapes: tensor -> shape per timestep and image ("input" included)
    shapes: dict[str, list[int]] = field(default_factory=dict)
    # group_streams: stream root -> stream; membrane step -> its stream's root
    streams: dict[str, Stream] = field(default_factory=dict)
    stream_of: dict[str, str] = field(default_factory=dict)
    # choose_thresholds: the classifier's one scale (None without a linear layer)
    head_scale: float | None = None
    # quantize_parameters: "<layer>.<role>" -> integers as stored; per layer its scalar results
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, dict] = field(default_factory=dict)
    # propagate_bounds: tensor -> worst-case (lo, hi) per channel
    bounds: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    # check_fit
    problems: list[str] = field(default_factory=list)
    # emit_program
    layers: list[Layer] = field(default_factory=list)
    program: Program | None = None

    def __post_init__(self):
        self._by_name = {s.name: s for s in self.steps}

    @property
    def qmax(self) -> int:
        """Largest weight code."""
        return (1 << (self.weight_bits - 1)) - 1

    @property
    def threshold_max(self) -> int:
        return (1 << self.hw.lif.threshold_width) - 1

    @property
    def step_names(self):
        return self._by_name.keys()

    def step(self, name: str) -> Step:
        return self._by_name[name]

    def reads_spikes(self, s: Step) -> bool:
        """Whether conv ``s`` reads spikes: every conv but the encoding one, and that one too when
        the input is spike frames (:attr:`spike_frames`)."""
        return s.spike_input or self.spike_frames

    def readers(self, name: str) -> list[Step]:
        """The steps that read tensor ``name``, in execution order."""
        return [s for s in self.steps if name in s.inputs]

    def stream(self, name: str) -> Stream:
        """The stream the membrane ``name`` belongs to."""
        return self.streams[self.stream_of[name]]
