"""The program: what the quantizer emits and both the integer engine and the RTL execute.

A :class:`Program` is plain data: an ordered list of :class:`Layer` descriptors (kind, geometry,
inputs, residual source, integer thresholds and shifts, memory offsets), integer arrays
(weights, biases, thresholds) and a header (model, T, input encoding, hardware config). On disk
it is ``program.json`` (header and layers) plus ``arrays.npz`` (the integers); see
:func:`save_program` and :func:`load_program`. Layer kinds and their semantics are specified in
docs/arithmetic.md; ``docs/program.md`` lists every field.

Tensor names are the layer names (a layer produces the tensor of its own name); ``"input"`` is
the integer image.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from contract.fsutil import atomic_output_dir, read_document

__all__ = ["FORMAT", "VERSION", "KINDS", "KindFormat", "check_registry", "Layer", "Program", "save_program",
           "load_program", "ProgramError"]

FORMAT = "spikeforge-program"
VERSION = 1
INPUT = "input"


@dataclass(frozen=True)
class KindFormat:
    """What the program format fixes about the tensor a layer kind produces (docs/program.md)."""

    output: str                 # "spikes" (0/1, the spike memory) or "ints" (two's complement integers)
    per_timestep: bool = True   # [T, ...]; False: one value per image (the readout's logits)


#: The layer kinds a program may hold, in execution-engine order. Each side keys its own registry
#: by these names and checks it covers exactly them (:func:`check_registry`): ``golden.kinds``
#: (quantize rule, integer engine) and ``hwgen.compiler.kinds`` (instruction, unit, cycle
#: bound). docs/adding-a-layer-kind.md lists what a new kind needs.
KINDS: dict[str, KindFormat] = {
    "conv": KindFormat("ints"),
    "lif": KindFormat("spikes"),
    "sdsa": KindFormat("ints"),
    "mask": KindFormat("spikes"),
    "token_sum": KindFormat("ints"),
    "linear": KindFormat("ints"),
    "readout": KindFormat("ints", per_timestep=False),
}


def check_registry(registry: str, names) -> None:
    """Raise unless ``names`` (the keys of a per-kind registry) are exactly :data:`KINDS`."""
    missing, extra = [k for k in KINDS if k not in names], [k for k in names if k not in KINDS]
    if missing or extra:
        raise RuntimeError(f"{registry}: " + "; ".join(
            ([f"no entry for kind(s) {', '.join(missing)}"] if missing else [])
            + ([f"kind(s) {', '.join(extra)} are not in contract.program.KINDS"] if extra else [])))


class ProgramError(ValueError):
    """A program file is malformed; the message names the file, layer and field."""


@dataclass
class Layer:
    """One instruction of the program.

    ``shape`` is the output shape per timestep and image (``[C, H, W]``, or ``[C]`` after the
    token sum). ``attrs`` holds the kind's scalar fields; ``arrays`` maps a role
    (``"weight"``, ``"bias"``, ``"threshold"``) to a key of :attr:`Program.arrays`.
    """

    name: str
    kind: str
    inputs: list[str]
    shape: list[int]
    attrs: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ProgramError(f"layer {self.name!r}: kind must be one of {', '.join(KINDS)}, not {self.kind!r}")


@dataclass
class Program:
    header: dict[str, Any]
    layers: list[Layer]
    arrays: dict[str, np.ndarray]

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer named {name!r} in the program")

    def array(self, layer: Layer, role: str) -> np.ndarray:
        return self.arrays[layer.arrays[role]]

    @property
    def T(self) -> int:
        return int(self.header["T"])

    @property
    def output(self) -> str:
        return self.layers[-1].name

    def validate(self, source: str = "<program>") -> None:
        defined = {INPUT}
        for i, layer in enumerate(self.layers):
            missing = [n for n in layer.inputs if n not in defined]
            if missing:
                raise ProgramError(f"{source}: layer {i} {layer.name!r} reads {missing} before they are computed")
            for role, key in layer.arrays.items():
                if key not in self.arrays:
                    raise ProgramError(f"{source}: layer {layer.name!r} {role} array {key!r} is missing")
            defined.add(layer.name)


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"cannot serialise {type(o).__name__}")


def _narrow(a: np.ndarray) -> np.ndarray:
    """The smallest signed integer dtype that holds every value of ``a``."""
    if a.size == 0:
        return a.astype(np.int32)
    lo, hi = int(a.min()), int(a.max())
    for dt in (np.int8, np.int16, np.int32, np.int64):
        if np.iinfo(dt).min <= lo and hi <= np.iinfo(dt).max:
            return a.astype(dt)
    raise OverflowError(f"values [{lo}, {hi}] do not fit int64")


def write_program_files(program: Program, folder: Path) -> None:
    """Write ``program.json`` and ``arrays.npz`` into an existing folder."""
    doc = {"format": FORMAT, "version": VERSION, "header": program.header,
           "layers": [asdict(layer) for layer in program.layers]}
    (folder / "program.json").write_text(json.dumps(doc, indent=1, default=_json_default) + "\n")
    # uncompressed: weights are already dense small integers, and zlib on 30M of them takes 30 s
    np.savez(folder / "arrays.npz", **{k: _narrow(v) for k, v in program.arrays.items()})


def save_program(program: Program, out: str | Path) -> Path:
    """Write the program to a new folder atomically."""
    with atomic_output_dir(Path(out)) as tmp:
        write_program_files(program, tmp)
    return Path(out)


def load_program(folder: str | Path) -> Program:
    folder = Path(folder)
    path = folder / "program.json"
    doc = read_document(path, json.loads, ProgramError, (json.JSONDecodeError,), "JSON")
    if doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise ProgramError(f"{path}: format/version = {doc.get('format')!r}/{doc.get('version')!r}: "
                           f"expected {FORMAT!r}/{VERSION}")
    try:
        layers = [Layer(**entry) for entry in doc["layers"]]
    except TypeError as e:
        raise ProgramError(f"{path}: bad layer entry: {e}") from None
    with np.load(folder / "arrays.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    program = Program(header=doc["header"], layers=layers, arrays=arrays)
    program.validate(str(path))
    return program
