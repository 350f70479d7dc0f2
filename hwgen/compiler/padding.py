"""Head padding: attention with a head dimension that is not a multiple of lanes, on the core.

The core gathers an SDSA token beat a memory word (``lanes`` channels) at a time, so every head
must start on a word. For a head dimension ``d`` that is not a multiple of lanes (the 15M
model's stage 4: 8 heads of 45 on 16 lanes), :func:`pad_heads` rewrites the program so that
head ``h``'s channel ``i`` sits at channel ``h * d' + i``, ``d' = ceil(d / lanes) * lanes``,
with zero channels between heads:

* the convs that produce q, k and v get zero output channels (weights and biases 0),
* their LIFs, and the attention LIF, get the largest threshold on the padding channels, so a
  padding neuron (current 0) never fires,
* the SDSA layer runs with ``head_dim = d'``: a padding channel of K or V is never 1, so it adds
  nothing to ``K^T V``, and the padding columns of A are 0,
* the conv that reads the attention output (the projection) gets zero input columns.

On the real channels every tensor equals the unpadded program's, exactly; the padding channels
are zero. ``channel_maps`` gives, per padded tensor, the padded index of each real channel.
"""
from __future__ import annotations

import copy

import numpy as np

from contract.program import Program
from hwgen.compiler.kinds import core_kind

__all__ = ["PaddingError", "Padder", "pad_heads"]


class PaddingError(ValueError):
    """The program's attention cannot be padded (a padded tensor has an unexpected reader)."""


def _index(heads: int, d: int, d_pad: int) -> np.ndarray:
    return np.array([h * d_pad + i for h in range(heads) for i in range(d)], dtype=np.int64)


class Padder:
    """What the per-kind padding rules (``CoreKind.pad`` in :mod:`hwgen.compiler.kinds`) use:
    the padded tensors' channel maps and widths, and the program's arrays, rewritten."""

    def __init__(self, program: Program, maps: dict[str, np.ndarray], widths: dict[str, int], threshold_max: int):
        self.program, self.maps, self.widths, self.threshold_max = program, maps, widths, threshold_max
        self.arrays = dict(program.arrays)

    def width(self, name: str) -> int:
        """Padded channel count of tensor ``name``."""
        return self.widths[name]

    def array(self, layer, role: str) -> np.ndarray:
        """The layer's array as the unpadded program has it."""
        return self.program.arrays[layer.arrays[role]]

    def current(self, layer, role: str) -> np.ndarray:
        """The layer's array as rewritten so far."""
        return self.arrays[layer.arrays[role]]

    @staticmethod
    def pad_rows(array: np.ndarray, index, width: int, fill=0) -> np.ndarray:
        out = np.full((width, *array.shape[1:]), fill, dtype=np.promote_types(array.dtype, np.min_scalar_type(fill)))
        out[index] = array
        return out

    def put(self, layer, role: str, value: np.ndarray) -> None:
        key = f"{layer.arrays[role]}#padded"
        self.arrays[key] = value
        layer.arrays[role] = key

    @staticmethod
    def refuse(message: str):
        raise PaddingError(message)


def pad_heads(program: Program, lanes: int, threshold_max: int) -> tuple[Program, dict[str, np.ndarray]]:
    """(padded program, {tensor: padded index of each real channel}); the program itself when
    every head dimension is a multiple of ``lanes``."""
    maps: dict[str, np.ndarray] = {}
    widths: dict[str, int] = {}
    for layer in program.layers:
        geometry = core_kind(layer.kind).heads(layer)
        if geometry is None or geometry[1] % lanes == 0:
            continue
        heads, d, tensors = geometry
        d_pad = -(-d // lanes) * lanes
        index = _index(heads, d, d_pad)
        for name in tensors:
            maps[name], widths[name] = index, heads * d_pad
    if not maps:
        return program, {}

    layers = [copy.deepcopy(layer) for layer in program.layers]
    by_name = {layer.name: layer for layer in layers}
    readers: dict[str, list] = {}
    for layer in layers:
        for n in layer.inputs:
            readers.setdefault(n, []).append(layer)
    # the currents of the q/k/v LIFs are padded too (a LIF's channel c reads current channel c);
    # so is whatever the attention output feeds up to the next conv (the attention LIF, the
    # SDSA-1/2 mask)
    for name in list(maps):
        producer = by_name[name]
        if core_kind(producer.kind).channelwise and len(producer.inputs) == 1:
            src = producer.inputs[0]
            if not core_kind(by_name[src].kind).zero_rows or len(readers[src]) != 1:
                raise PaddingError(f"{src}: feeds {name} and is not a conv read by it alone: cannot pad its heads")
            maps[src], widths[src] = maps[name], widths[name]
    frontier = [n for n, l in by_name.items() if core_kind(l.kind).heads(l) is not None and n in maps]
    while frontier:
        name = frontier.pop()
        for reader in readers.get(name, []):
            if core_kind(reader.kind).channelwise and reader.name not in maps:
                maps[reader.name], widths[reader.name] = maps[name], widths[name]
                frontier.append(reader.name)

    p = Padder(program, maps, widths, threshold_max)
    for layer in layers:
        out_map = maps.get(layer.name)
        core_kind(layer.kind).pad(p, layer, out_map, [n for n in layer.inputs if n in maps])
        if out_map is not None:
            layer.shape = [widths[layer.name], *layer.shape[1:]]
    return Program(program.header, layers, p.arrays), maps
