"""Where a program's parameters live in the hardware: weights, biases and thresholds placed in
their memories in the hardware's word layout (:mod:`hwgen.layout`), and the accumulator array's
run-time descriptor of every conv and linear layer.

:func:`place_parameters` is a pure function of the program: it returns a
:class:`ParameterPlacement` and never writes into the program's layers. The core compiler
(:mod:`hwgen.compiler.image`) reads offsets and descriptors from it; :func:`write_memory_images`
writes the ``memories/`` folder of an exported program (``$readmemh`` files and
``memory_map.json``, docs/program.md).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contract.program import Program
from hwgen.compiler.kinds import core_kind
from hwgen.hexfile import write_lanes
from hwgen.layout import ConvGeometry, bias_words, descriptor, fold_slots, weight_words

__all__ = ["MemoryFitError", "LayerPlacement", "ParameterPlacement", "place_parameters", "conv_geometry",
           "write_memory_images", "PARAMETER_MEMORIES"]

#: the parameter memories, in placement order, with the config keys of their width and depth
PARAMETER_MEMORIES = {
    "weights": (("accumulator", "weight_width"), ("accumulator", "weight_depth")),
    "biases": (("accumulator", "bias_width"), ("accumulator", "bias_depth")),
    "thresholds": (("lif", "threshold_width"), ("lif", "threshold_depth")),
}


class MemoryFitError(ValueError):
    """The program's weights, biases or thresholds do not fit the configured memories."""


@dataclass(frozen=True)
class LayerPlacement:
    """Offsets (in words of their memory) of one layer's parameters; the accumulator
    descriptor (``hwgen.layout.Descriptor.as_dict()``) for conv and linear layers."""

    weight_offset: int | None = None
    bias_offset: int | None = None
    threshold_offset: int | None = None
    descriptor: dict | None = None


@dataclass
class ParameterPlacement:
    """Every parameter memory's words (``[words, lanes]`` integers) and each layer's place."""

    layers: dict[str, LayerPlacement]
    images: dict[str, np.ndarray]
    hw: dict = field(repr=False, default_factory=dict)

    def words(self, memory: str) -> int:
        return len(self.images[memory])

    def depth(self, memory: str) -> int:
        section, key = PARAMETER_MEMORIES[memory][1]
        return int(self.hw[section][key])

    def width(self, memory: str) -> int:
        section, key = PARAMETER_MEMORIES[memory][0]
        return int(self.hw[section][key])

    def shortfalls(self) -> list[str]:
        """One line per memory the program overflows (empty when everything fits)."""
        out = []
        for name, ((_, _), (section, key)) in PARAMETER_MEMORIES.items():
            need, have = self.words(name), self.depth(name)
            if need > have:
                out.append(f"the {name} memory: the program needs {need} words, the hardware has {have}: "
                           f"{need - have} words short ({section}.{key})")
        return out


def conv_geometry(layer) -> ConvGeometry:
    """The accumulator geometry of a conv or linear layer (a linear layer is a 1x1 conv on one position)."""
    return core_kind(layer.kind).geometry(layer)


def place_parameters(program: Program) -> ParameterPlacement:
    """Place every weight, bias and threshold of ``program`` (for the hardware in its header),
    each memory filled from word 0 in layer order."""
    hw = program.header["hw"]
    acc_lanes, lif_lanes = hw["accumulator"]["lanes"], hw["lif"]["lanes"]
    th_max = (1 << hw["lif"]["threshold_width"]) - 1
    parts: dict[str, list[np.ndarray]] = {name: [] for name in PARAMETER_MEMORIES}
    lanes = {"weights": acc_lanes, "biases": acc_lanes, "thresholds": lif_lanes}
    used = dict.fromkeys(PARAMETER_MEMORIES, 0)

    def place(memory: str, words: np.ndarray) -> int:
        offset = used[memory]
        parts[memory].append(words)
        used[memory] += len(words)
        return offset

    layers: dict[str, LayerPlacement] = {}
    for layer in program.layers:
        kind = core_kind(layer.kind)
        if "weights" in kind.parameters:      # the accumulator array's layers
            geo = kind.geometry(layer)
            w = kind.weights(program.array(layer, "weight").astype(np.int64))
            pixels = kind.pixels(layer)
            # the folded remainder for spike inputs (docs/accumulator.md); not the encoding layer's bit planes
            slots = 0 if pixels else fold_slots(geo, acc_lanes)
            w_off = place("weights", weight_words(w, geo.groups, acc_lanes, fold=slots))
            b_off = place("biases", bias_words(program.array(layer, "bias").astype(np.int64), geo.groups,
                                               acc_lanes, fold=slots))
            signed = pixels and program.header["input"]["signed"]
            desc = descriptor(geo, acc_lanes, w_offset=w_off, b_offset=b_off, signed_planes=signed,
                              fold=slots > 0).as_dict()
            layers[layer.name] = LayerPlacement(weight_offset=w_off, bias_offset=b_off, descriptor=desc)
        elif "thresholds" in kind.parameters:
            th = program.array(layer, "threshold").astype(np.int64)
            rows = -(-len(th) // lif_lanes)
            padded = np.full(rows * lif_lanes, th_max, dtype=np.int64)  # padding neurons never fire
            padded[:len(th)] = th
            layers[layer.name] = LayerPlacement(threshold_offset=place("thresholds", padded.reshape(rows, lif_lanes)))
    images = {name: (np.concatenate(p) if p else np.zeros((0, lanes[name]), dtype=np.int64))
              for name, p in parts.items()}
    return ParameterPlacement(layers=layers, images=images, hw=hw)


def write_memory_images(program: Program, folder: str | Path) -> ParameterPlacement:
    """Write ``folder`` (which must not exist): one ``$readmemh`` file per parameter memory and
    ``memory_map.json`` (per memory: lanes, width, words, depth; per layer: its offsets and
    descriptor). Raises :class:`MemoryFitError` naming each memory that is too small, before
    writing anything."""
    placement = place_parameters(program)
    short = placement.shortfalls()
    if short:
        raise MemoryFitError("program does not fit: " + "; ".join(short))
    folder = Path(folder)
    folder.mkdir()
    memories = {}
    for name, values in placement.images.items():
        write_lanes(folder / f"{name}.hex", values, placement.width(name))
        memories[name] = {"lanes": int(values.shape[1]), "width": placement.width(name), "words": len(values),
                          "depth": placement.depth(name), "fits": True}
    layers = {name: {k: v for k, v in vars(p).items() if v is not None} for name, p in placement.layers.items()}
    (folder / "memory_map.json").write_text(json.dumps({**memories, "layers": layers}, indent=1) + "\n")
    return placement
