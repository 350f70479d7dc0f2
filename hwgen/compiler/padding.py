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

__all__ = ["PaddingError", "pad_heads"]


class PaddingError(ValueError):
    """The program's attention cannot be padded (a padded tensor has an unexpected reader)."""


def _index(heads: int, d: int, d_pad: int) -> np.ndarray:
    return np.array([h * d_pad + i for h in range(heads) for i in range(d)], dtype=np.int64)


def pad_heads(program: Program, lanes: int, threshold_max: int) -> tuple[Program, dict[str, np.ndarray]]:
    """(padded program, {tensor: padded index of each real channel}); the program itself when
    every head dimension is a multiple of ``lanes``."""
    maps: dict[str, np.ndarray] = {}
    widths: dict[str, int] = {}
    for layer in program.layers:
        a = layer.attrs
        if layer.kind != "sdsa" or a["head_dim"] % lanes == 0:
            continue
        heads, d = a["heads"], a["head_dim"]
        d_pad = -(-d // lanes) * lanes
        index = _index(heads, d, d_pad)
        for name in (a["q"], a["k"], a["v"], layer.name):
            if name:
                maps[name], widths[name] = index, heads * d_pad
    if not maps:
        return program, {}

    layers = [copy.deepcopy(layer) for layer in program.layers]
    by_name = {layer.name: layer for layer in layers}
    readers: dict[str, list] = {}
    for layer in layers:
        for n in layer.inputs:
            readers.setdefault(n, []).append(layer)
    # the currents of the q/k/v LIFs are padded too; so is whatever the attention output feeds
    # up to the next conv (the attention LIF, the SDSA-1/2 mask)
    for name in list(maps):
        producer = by_name[name]
        if producer.kind == "lif":
            src = producer.inputs[0]
            if by_name[src].kind != "conv" or len(readers[src]) != 1:
                raise PaddingError(f"{src}: feeds {name} and is not a conv read by it alone: cannot pad its heads")
            maps[src], widths[src] = maps[name], widths[name]
    frontier = [n for n, l in by_name.items() if l.kind == "sdsa" and n in maps]
    while frontier:
        name = frontier.pop()
        for reader in readers.get(name, []):
            if reader.kind in ("lif", "mask") and reader.name not in maps:
                maps[reader.name], widths[reader.name] = maps[name], widths[name]
                frontier.append(reader.name)

    arrays = dict(program.arrays)

    def pad_rows(array: np.ndarray, index, width: int, fill=0) -> np.ndarray:
        out = np.full((width, *array.shape[1:]), fill, dtype=np.promote_types(array.dtype, np.min_scalar_type(fill)))
        out[index] = array
        return out

    def put(layer, role: str, value: np.ndarray) -> None:
        key = f"{layer.arrays[role]}#padded"
        arrays[key] = value
        layer.arrays[role] = key

    for layer in layers:
        a = layer.attrs
        out_map = maps.get(layer.name)
        padded_inputs = [n for n in layer.inputs if n in maps]
        if layer.kind == "conv":
            if out_map is not None:
                put(layer, "weight", pad_rows(program.arrays[layer.arrays["weight"]], out_map, widths[layer.name]))
                put(layer, "bias", pad_rows(program.arrays[layer.arrays["bias"]], out_map, widths[layer.name]))
                a["out_channels"] = widths[layer.name]
            if padded_inputs:
                src = layer.inputs[0]
                other = [n for n in padded_inputs if n != src]
                if other or a["groups"] != 1:
                    raise PaddingError(f"{layer.name}: reads the padded {(other or [src])[0]} other than as the "
                                       "spike input of a dense conv")
                w = arrays[layer.arrays["weight"]]
                cols = np.zeros((w.shape[0], widths[src], *w.shape[2:]), dtype=w.dtype)
                cols[:, maps[src]] = w
                put(layer, "weight", cols)
                a["in_channels"] = widths[src]
                a["in_shape"] = [widths[src], *a["in_shape"][1:]]
        elif layer.kind == "lif" and out_map is not None:
            put(layer, "threshold", pad_rows(program.arrays[layer.arrays["threshold"]], out_map,
                                             widths[layer.name], fill=threshold_max))
            a["channels"] = widths[layer.name]
        elif layer.kind == "sdsa" and out_map is not None:
            a["head_dim"] = widths[layer.name] // a["heads"]
        elif layer.kind in ("mask",) and out_map is not None:
            pass
        elif padded_inputs:
            raise PaddingError(f"{layer.name} ({layer.kind}): reads the padded {padded_inputs[0]}")
        if out_map is not None:
            layer.shape = [widths[layer.name], *layer.shape[1:]]
    return Program(program.header, layers, arrays), maps
