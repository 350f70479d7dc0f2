"""Memory layouts and run-time descriptors of the accumulator array (docs/accumulator.md).

One source of truth for where the hardware finds a weight, a bias and an accumulator: the
exporter, the testbenches and the benchmark all call these functions.

Weight memory (words of ``lanes`` signed weights), for a conv with ``groups`` groups,
``Cg_in = C_in / groups`` input and ``Cg_out = C_out / groups`` output channels per group and
``G = ceil(Cg_out / lanes)`` words per group::

    word(gi, ci_local, ky, kx, g) = w_offset + ((gi * Cg_in + ci_local) * k + ky) * k * G + kx * G + g
    lane l of that word = W[gi * Cg_out + g * lanes + l, ci_local, ky, kx]   (0 past Cg_out)

Accumulator memory (words of ``lanes`` accumulators), position-major::

    word(oy, ox, gi, g) = (oy * W_out + ox) * (groups * G) + gi * G + g

Bias memory: word ``b_offset + gi * G + g`` holds the biases of that word's lanes. The drain
streams accumulator words in address order, so output neuron ``(oy, ox, c)`` appears at
position ``oy * W_out + ox``, padded channel ``gi * G * lanes + g * lanes + l``.

**Lanes over x** (``x_lanes``; depthwise convs with stride 1): a depthwise conv has one output
channel per group, so lanes over channels would leave all but one idle. Instead the lanes run
over output columns, ``X = ceil(W_out / lanes)`` words per output row::

    accumulator word(c, oy, xb) = (c * H_out + oy) * X + xb,  lane l: ox = xb * lanes + l
    weight word(c, ky, o)       = w_offset + (c * k + ky) * (k + lanes - 1) + o,
                                  lane q = W[c, 0, ky, o - q]   (0 outside 0..k-1)
    bias word(c)                = b_offset + c, every lane bias[c]

An event issues one operation per kernel row and ``lanes`` output columns: lane l of the
operation covering columns ``ox_lo + j*lanes ..`` adds weight word ``o = kx_hi - j*lanes``, lane
``(l - ox_lo) mod lanes`` (the words are a row's windows, so every lane finds its kernel column in
the same word), into accumulator word ``.. + (ox_lo div lanes) + j + (l < ox_lo mod lanes)``.
The drain streams channel-major, ``unpad_accumulators(.., x_lanes=True)`` reads it back.

**Folded remainder** (``fold``; dense convs and linear layers whose last word per position has
``r = C_out - (G-1)*lanes <= lanes / 2`` active lanes, ``G >= 2``): with ``S`` slots (the
largest power of two <= FOLD_SLOTS with ``S*r <= lanes``), the last word of every weight row
holds each of its r weights S times, weight c in lanes ``c*S .. c*S + S-1``. The unit parks the
last words of S operations (any events, any positions) and issues them as one, slot j on lanes
``c*S + j``; each slot adds into its own lanes of its position's last accumulator word (padding
lanes otherwise), and the drain sums lanes ``c*S .. c*S + S-1`` into lane c. The bias of channel
c sits in lane ``c*S`` of the last bias word.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np

__all__ = ["ConvGeometry", "Descriptor", "descriptor_layout", "descriptor", "weight_words", "bias_words",
           "unpad_accumulators", "padded_channels", "x_lanes_suit"]


@dataclass(frozen=True)
class ConvGeometry:
    c_in: int
    c_out: int
    h: int
    w: int
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    groups: int = 1

    @property
    def out_h(self) -> int:
        return (self.h + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def out_w(self) -> int:
        return (self.w + 2 * self.padding - self.kernel) // self.stride + 1

    cg_in = property(lambda self: self.c_in // self.groups, doc="input channels per group")
    cg_out = property(lambda self: self.c_out // self.groups, doc="output channels per group")


def _word(limit, doc: str, default=dataclasses.MISSING):
    """A descriptor field: ``limit(cfg)`` is the largest value an ``AccumulatorConfig`` lets it
    take (the port's width follows from it), ``doc`` what it means."""
    return field(default=default, metadata={"limit": limit, "doc": doc})


def _flag(doc: str, default=dataclasses.MISSING):
    return _word(lambda cfg: 1, doc, default)


def _bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


def _weights(cfg) -> int:
    return cfg.weight_depth


def _accumulators(cfg) -> int:
    return cfg.accumulator_depth


@dataclass(frozen=True)
class Descriptor:
    """Run-time layer descriptor of the accumulator array: the fields of its ``desc`` port, in
    port order (field 0 in the least significant bits). Each field declares its meaning and the
    largest value a configuration allows; :func:`descriptor_layout` derives the port from them."""

    kernel: int = _word(lambda cfg: cfg.max_kernel, "k: kernel size (k x k)")
    stride2: int = _flag("stride 2 (else 1)")
    padding: int = _word(lambda cfg: cfg.max_kernel, "zero padding on each border")
    out_h: int = _word(lambda cfg: cfg.max_size, "output height")
    out_w: int = _word(lambda cfg: cfg.max_size, "output width")
    lim_y: int = _word(lambda cfg: 2 * cfg.max_size, "stride * (out_h - 1): largest reachable ty - ky")
    lim_x: int = _word(lambda cfg: 2 * cfg.max_size, "stride * (out_w - 1)")
    group_words: int = _word(_accumulators, "G: words per group and position")
    words: int = _word(_accumulators, "groups * G: words per position")
    last_lanes: int = _word(lambda cfg: cfg.lanes, "active lanes in a group's last word")
    grouped: int = _flag("depthwise/grouped: the group of input channel ci is ci >> cin_shift")
    cin_shift: int = _word(lambda cfg: _bits(cfg.max_channels), "log2(Cg_in) when grouped")
    w_offset: int = _word(_weights, "first weight word of the layer")
    w_stride_group: int = _word(_weights, "Cg_in * k * k * G")
    w_stride_ci: int = _word(_weights, "k * k * G")
    w_stride_ky: int = _word(_weights, "k * G")
    b_offset: int = _word(lambda cfg: cfg.bias_depth, "first bias word of the layer")
    row_stride: int = _word(lambda cfg: max(cfg.weight_depth, cfg.accumulator_depth, cfg.bias_depth),
                            "out_w * words: accumulator step for one output row")
    drain_words: int = _word(_accumulators, "out_h * out_w * words")
    signed_planes: int = _flag("encoding layer: the top pixel bit plane has weight -2^(bits-1)")
    fold_slots: int = _word(lambda cfg: FOLD_SLOTS, "S: last words folded into one operation (0: off)", 0)
    x_lanes: int = _flag("lanes over output columns (depthwise, stride 1): the layout above", 0)
    x_words: int = _word(lambda cfg: cfg.max_size // cfg.lanes + 1, "X = ceil(out_w / lanes) words per output row", 0)
    chan_words: int = _word(_accumulators, "out_h * X words per channel (x_lanes)", 0)
    bias_repeat: int = _word(_accumulators, "accumulator words that share one bias word, in drain order", 1)

    def as_dict(self) -> dict:
        return asdict(self)


def descriptor_layout(cfg) -> "data.StructLayout":
    """The ``desc`` port of an ``AccumulatorArray`` for ``cfg`` (an ``AccumulatorConfig``): one
    field per :class:`Descriptor` field, in its order, wide enough for the largest value."""
    from amaranth.lib import data

    return data.StructLayout({f.name: range(f.metadata["limit"](cfg) + 1) for f in fields(Descriptor)})


def padded_channels(geo: ConvGeometry, lanes: int) -> int:
    return geo.groups * math.ceil(geo.cg_out / lanes) * lanes


FOLD_SLOTS = 4   # most last words one folded operation carries (hwgen/units/accumulator.py)


def fold_slots(geo: ConvGeometry, lanes: int) -> int:
    """S for a layer whose last word per position can be folded, else 0: dense (one group), at
    least two words per position, the last one at most half full."""
    G = math.ceil(geo.cg_out / lanes)
    r = geo.cg_out - (G - 1) * lanes
    if geo.groups != 1 or G < 2 or 2 * r > lanes:
        return 0
    S = 2
    while 2 * S <= FOLD_SLOTS and 2 * S * r <= lanes:
        S *= 2
    return S


def x_lanes_suit(geo: ConvGeometry) -> bool:
    """Layers that run with lanes over output columns: depthwise convs with stride 1."""
    return geo.groups > 1 and geo.groups == geo.c_in == geo.c_out and geo.stride == 1


def _x_geometry(geo: ConvGeometry, lanes: int) -> tuple[int, int]:
    """(words per output row, words per kernel row) with lanes over x."""
    return math.ceil(geo.out_w / lanes), geo.kernel + lanes - 1


def descriptor(geo: ConvGeometry, lanes: int, *, w_offset: int = 0, b_offset: int = 0,
               signed_planes: bool = False, x_lanes: bool = False, fold: bool = False) -> Descriptor:
    if geo.stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, not {geo.stride}")
    if geo.c_in % geo.groups or geo.c_out % geo.groups:
        raise ValueError(f"groups ({geo.groups}) must divide c_in ({geo.c_in}) and c_out ({geo.c_out})")
    if geo.groups > 1 and geo.cg_in & (geo.cg_in - 1):
        raise ValueError(f"grouped convs need a power-of-two input channels per group, not {geo.cg_in}")
    G = math.ceil(geo.cg_out / lanes)
    k = geo.kernel
    words = geo.groups * G
    if x_lanes:
        if not x_lanes_suit(geo):
            raise ValueError(f"lanes over x need a depthwise conv with stride 1, not {geo}")
        X, row_words = _x_geometry(geo, lanes)
        return Descriptor(
            kernel=k, stride2=0, padding=geo.padding, out_h=geo.out_h, out_w=geo.out_w,
            lim_y=geo.out_h - 1, lim_x=geo.out_w - 1, group_words=1, words=geo.c_out, last_lanes=lanes,
            grouped=1, cin_shift=0, w_offset=w_offset, w_stride_group=k * row_words, w_stride_ci=0,
            w_stride_ky=row_words, b_offset=b_offset, row_stride=X, drain_words=geo.c_out * geo.out_h * X,
            signed_planes=int(signed_planes), x_lanes=1, x_words=X, chan_words=geo.out_h * X,
            bias_repeat=geo.out_h * X)
    return Descriptor(
        kernel=k, stride2=int(geo.stride == 2), padding=geo.padding,
        out_h=geo.out_h, out_w=geo.out_w,
        lim_y=geo.stride * (geo.out_h - 1), lim_x=geo.stride * (geo.out_w - 1),
        group_words=G, words=words, last_lanes=geo.cg_out - (G - 1) * lanes,
        grouped=int(geo.groups > 1), cin_shift=int(math.log2(geo.cg_in)) if geo.groups > 1 else 0,
        w_offset=w_offset, w_stride_group=geo.cg_in * k * k * G, w_stride_ci=k * k * G, w_stride_ky=k * G,
        b_offset=b_offset, row_stride=geo.out_w * words, drain_words=geo.out_h * geo.out_w * words,
        signed_planes=int(signed_planes), fold_slots=fold_slots(geo, lanes) if fold else 0,
    )


def weight_words(weight: np.ndarray, groups: int, lanes: int, *, x_lanes: bool = False, fold: int = 0) -> np.ndarray:
    """``weight[C_out, Cg_in, k, k]`` -> words ``[n, lanes]`` in the weight memory order."""
    c_out, cg_in, k, _ = weight.shape
    if x_lanes:
        # word (c, ky, o), lane q: W[c, 0, ky, o - q]
        row_words = k + lanes - 1
        o = np.arange(row_words)[:, None] - np.arange(lanes)[None, :]           # kernel column
        padded = np.concatenate([np.asarray(weight)[:, 0], np.zeros((c_out, k, 1), dtype=np.int64)], axis=2)
        words = padded[:, :, np.where((o >= 0) & (o < k), o, k)]               # [C, k, row_words, lanes]
        return words.reshape(-1, lanes).astype(np.int64)
    cg_out = c_out // groups
    G = math.ceil(cg_out / lanes)
    w = np.zeros((groups, G * lanes, cg_in, k, k), dtype=np.int64)
    w[:, :cg_out] = weight.reshape(groups, cg_out, cg_in, k, k)
    # [gi, g, l, ci, ky, kx] -> [gi, ci, ky, kx, g, l]
    w = w.reshape(groups, G, lanes, cg_in, k, k).transpose(0, 3, 4, 5, 1, 2)
    if fold:   # the last word's r weights, each once per slot: weight c in lanes c*S .. c*S + S-1
        r = cg_out - (G - 1) * lanes
        w[..., G - 1, :fold * r] = np.repeat(w[..., G - 1, :r], fold, axis=-1)
    return w.reshape(-1, lanes)


def bias_words(bias: np.ndarray, groups: int, lanes: int, *, x_lanes: bool = False, fold: int = 0) -> np.ndarray:
    if x_lanes:
        return np.repeat(np.asarray(bias, dtype=np.int64)[:, None], lanes, axis=1)
    cg_out = len(bias) // groups
    G = math.ceil(cg_out / lanes)
    b = np.zeros((groups, G * lanes), dtype=np.int64)
    b[:, :cg_out] = bias.reshape(groups, cg_out)
    if fold:   # folded last word: bias c in the first of its slots' lanes, c*S; the others start at 0
        r = cg_out - (G - 1) * lanes
        last = np.zeros((groups, lanes), dtype=np.int64)
        last[:, :fold * r:fold] = b[:, (G - 1) * lanes:(G - 1) * lanes + r]
        b[:, (G - 1) * lanes:] = last
    return b.reshape(-1, lanes)


def unpad_accumulators(words: np.ndarray, geo: ConvGeometry, lanes: int, *, x_lanes: bool = False) -> np.ndarray:
    """Drained words ``[drain_words, lanes]`` -> ``[C_out, out_h, out_w]``."""
    if x_lanes:
        X, _ = _x_geometry(geo, lanes)
        return words.reshape(geo.c_out, geo.out_h, X * lanes)[..., :geo.out_w]
    G = math.ceil(geo.cg_out / lanes)
    a = words.reshape(geo.out_h, geo.out_w, geo.groups, G * lanes)[..., :geo.cg_out]
    return a.reshape(geo.out_h, geo.out_w, geo.c_out).transpose(2, 0, 1)
