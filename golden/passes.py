"""The quantizer as small named passes over one :class:`~golden.quantgraph.QuantGraph`.

:data:`PASSES` is the flow :func:`golden.quantize.quantize` runs, in order; each pass reads what
the earlier ones wrote into the graph and adds its own (docs/arithmetic.md, "Quantization
scheme"):

1. :func:`encode_input`: the integer encoding of the pixels (LSB value, signedness, range).
2. :func:`infer_shapes`: every tensor's shape per timestep and image.
3. :func:`group_streams`: convs joined by residual additions form one membrane stream.
4. :func:`choose_thresholds`: per stream one float threshold and an integer threshold per
   channel (its scale); the classifier's one scale.
5. :func:`quantize_parameters`: integer weights, biases, thresholds and input shifts.
6. :func:`propagate_bounds`: worst-case integer [lo, hi] per channel of every tensor.
7. :func:`check_fit`: every accumulator, current, bias and threshold against the hardware's
   widths; raises :class:`~golden.quantgraph.QuantizationError` naming each layer that is short.
8. :func:`emit_program`: the layer descriptors, the header, the validated program.

What a pass does for one step is its kind's rule (:mod:`golden.kinds`); the passes themselves
know no kind.
"""
from __future__ import annotations

import numpy as np

from contract.program import INPUT, Program
from golden.kinds import kind_of_step
from golden.quantgraph import QuantGraph, QuantizationError, Stream

__all__ = ["PASSES", "encode_input", "infer_shapes", "group_streams", "choose_thresholds",
           "quantize_parameters", "propagate_bounds", "check_fit", "emit_program", "channel_thresholds"]


def encode_input(g: QuantGraph) -> None:
    """Pixels become ``round(x / input_scale)`` on ``accumulator.input_bits`` bits: the scale is
    given, or the calibrated ``max|x|`` maps to the top code; signed when the calibration saw a
    negative pixel. Spike frames (``g.spike_frames``) are their own integers: 0 or 1, scale 1."""
    if g.spike_frames:        # spike frames: 0/1 of value 1, no bit planes (golden.encoding)
        g.input_scale, g.signed_input, g.input_range = 1.0, False, (0, 1)
        return
    bits, calib = g.hw.accumulator.input_bits, g.calibration
    if g.input_scale is None:
        if calib is None:
            raise ValueError("pass input_scale or a calibration")
        g.signed_input = calib.input_min < 0
        top = (1 << (bits - 1)) - 1 if g.signed_input else (1 << bits) - 1
        g.input_scale = max(abs(calib.input_min), abs(calib.input_max)) / top
    else:
        g.signed_input = calib is not None and calib.input_min < 0
    g.input_range = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if g.signed_input else (0, (1 << bits) - 1)


def infer_shapes(g: QuantGraph) -> None:
    """``g.shapes``: every tensor's shape per timestep and image, from the input's."""
    g.shapes = {INPUT: list(g.input_shape)}
    for s in g.steps:
        g.shapes[s.name] = kind_of_step(s).shape(g, s)


def _union_find(names):
    parent = {n: n for n in names}

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def union(a, b):
        parent[find(a)] = find(b)

    return find, union


def group_streams(g: QuantGraph) -> None:
    """``g.streams``: the membrane tensors (conv outputs) joined by residual additions, which
    must share one scale; ``g.stream_of``: each membrane's stream root."""
    members = [s for s in g.steps if kind_of_step(s).stream]
    names = {m.name for m in members}
    find, union = _union_find(names)
    for m in members:
        if m.residual is not None:
            if m.residual not in names:
                raise ValueError(f"{m.name}: residual {m.residual!r} is not a conv output")
            union(m.name, m.residual)
    g.streams, g.stream_of = {}, {}
    for m in members:
        root = g.stream_of[m.name] = find(m.name)
        g.streams.setdefault(root, Stream([])).members.append(m)


def channel_thresholds(w: np.ndarray, qmax: int, cap: int, *, search: bool) -> np.ndarray:
    """Integer threshold per output channel for weights ``w[C, n]`` (in threshold units).

    ``th = floor(qmax / max|w|)`` maps the largest weight to the top code (no clipping). With
    ``search``, candidates up to 4x finer are tried per channel and the one with the least
    squared weight error (rounding plus clipping to the code range) wins: a few outliers then
    saturate so the bulk of the weights gets more codes. This matters at 6 and 4 bits."""
    amax = np.abs(w).max(axis=1)
    safe = np.where(amax > 0, amax, 1.0)
    base = np.clip(np.floor(qmax / safe), 1, cap)
    if search:
        best, best_err = base.copy(), np.full(len(w), np.inf)
        for f in np.geomspace(1.0, 4.0, 25):
            th = np.clip(np.floor(base * f), 1, cap)
            q = np.clip(np.rint(w * th[:, None]), -qmax - 1, qmax) / th[:, None]
            err = ((q - w) ** 2).sum(axis=1)
            better = err < best_err
            best, best_err = np.where(better, th, best), np.where(better, err, best_err)
        base = best
    return np.where(amax > 0, base, cap).astype(np.int64)


def choose_thresholds(g: QuantGraph) -> None:
    """Per stream: the one float threshold of its readers and the integer threshold per channel
    from the largest weight of any contributor (capped so that a token sum's ``tokens * th``
    still fits the threshold width); ``g.head_scale`` from the largest classifier weight."""
    for stream in g.streams.values():
        v_thresholds, tokens = set(), 1
        for m in stream.members:
            for r in g.readers(m.name):
                vths, t = kind_of_step(r).reads_membrane(g, r, m.name)
                v_thresholds.update(vths)
                tokens = max(tokens, t)
        first = stream.members[0]
        if len(v_thresholds) != 1:
            raise ValueError(f"stream of {first.name}: its readers have thresholds {sorted(v_thresholds)}; "
                             "one shared threshold is needed for one shared scale")
        stream.v_threshold, stream.tokens = v_thresholds.pop(), tokens
        # the encoding layer's weights act on pixels of value input_scale: in the same units
        w = np.concatenate([m.weight.double().numpy().reshape(first.out_channels, -1)
                            * (1.0 if g.reads_spikes(m) else g.input_scale) for m in stream.members], axis=1)
        cap = max(1, g.threshold_max // tokens)
        stream.thresholds = channel_thresholds(w, g.qmax, cap, search=g.clip == "mse")
    heads = [s for s in g.steps if kind_of_step(s).head]
    g.head_scale = max(float(s.weight.abs().max()) for s in heads) / g.qmax if heads else None


def quantize_parameters(g: QuantGraph) -> None:
    """``g.arrays``: every step's integer weights, biases and thresholds (int64), ``g.attrs``
    their scalar companions (a LIF's input shift)."""
    for s in g.steps:
        kind_of_step(s).parameters(g, s)


def propagate_bounds(g: QuantGraph) -> None:
    """``g.bounds``: worst-case integer (lo, hi) per channel of every tensor, over every input
    the encoding allows (pixels in their range, spikes 0 or 1)."""
    for s in g.steps:
        g.bounds[s.name] = kind_of_step(s).bound(g, s)


def check_fit(g: QuantGraph) -> None:
    """``g.problems``: each accumulator, current, bias or threshold that the hardware's widths
    cannot hold, by layer and by how many bits; raises QuantizationError listing them all."""
    g.problems = [p for s in g.steps for p in kind_of_step(s).fit(g, s) if p is not None]
    if g.problems:
        raise QuantizationError(g.problems)


def emit_program(g: QuantGraph) -> None:
    """``g.layers`` and ``g.program``: one layer descriptor per step, its arrays as stored, and
    the header (model, T, input encoding, hardware configuration, classes)."""
    arrays: dict[str, np.ndarray] = {}
    g.layers = []
    for s in g.steps:
        kind = kind_of_step(s)
        layer = kind.layer(g, s)
        for role, key in layer.arrays.items():
            arrays[key] = g.arrays[key].astype(kind.stored[role])
        g.layers.append(layer)
    acc = g.hw.accumulator
    if g.spike_frames:
        from golden.encoding import SPIKES

        encoding = dict(shape=list(g.input_shape), bits=1, signed=False, scale=1.0, encoding=SPIKES, frames=g.T)
    else:
        encoding = dict(shape=list(g.input_shape), bits=acc.input_bits, signed=bool(g.signed_input),
                        scale=float(g.input_scale),
                        encoding="bit planes, two's complement" if g.signed_input else "bit planes, unsigned")
    header = dict(
        model=g.model_name, T=g.T, weight_bits=g.weight_bits,
        input=encoding,
        hw=g.hw.to_dict(), hw_hash=g.hw.hash,
        classes=g.shapes[g.steps[-1].name][0],
    )
    g.program = Program(header=header, layers=g.layers, arrays=arrays)
    g.program.validate()


#: the quantizer's flow, in order
PASSES = (encode_input, infer_shapes, group_streams, choose_thresholds, quantize_parameters,
          propagate_bounds, check_fit, emit_program)
