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
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["ConvGeometry", "Descriptor", "descriptor", "weight_words", "bias_words",
           "unpad_accumulators", "padded_channels"]


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

    @property
    def cg_in(self) -> int:
        return self.c_in // self.groups

    @property
    def cg_out(self) -> int:
        return self.c_out // self.groups


@dataclass(frozen=True)
class Descriptor:
    """Run-time layer descriptor of the accumulator array: the fields of its ``desc`` port."""

    kernel: int
    stride2: int
    padding: int
    out_h: int
    out_w: int
    lim_y: int          # stride * (out_h - 1): largest reachable ty - ky
    lim_x: int
    group_words: int    # G: words per group and position
    words: int          # groups * G: words per position
    last_lanes: int     # active lanes in a group's last word
    grouped: int        # 1 for depthwise/grouped convs: the group of input channel ci is ci >> cin_shift
    cin_shift: int      # log2(Cg_in) when grouped
    w_offset: int
    w_stride_group: int  # Cg_in * k * k * G
    w_stride_ci: int     # k * k * G
    w_stride_ky: int     # k * G
    b_offset: int
    row_stride: int      # out_w * words: accumulator step for one output row
    drain_words: int     # out_h * out_w * words
    signed_planes: int   # encoding layer: the top pixel bit plane has weight -2^(bits-1)

    def as_dict(self) -> dict:
        return asdict(self)


def padded_channels(geo: ConvGeometry, lanes: int) -> int:
    return geo.groups * math.ceil(geo.cg_out / lanes) * lanes


def descriptor(geo: ConvGeometry, lanes: int, *, w_offset: int = 0, b_offset: int = 0,
               signed_planes: bool = False) -> Descriptor:
    if geo.stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, not {geo.stride}")
    if geo.c_in % geo.groups or geo.c_out % geo.groups:
        raise ValueError(f"groups ({geo.groups}) must divide c_in ({geo.c_in}) and c_out ({geo.c_out})")
    if geo.groups > 1 and geo.cg_in & (geo.cg_in - 1):
        raise ValueError(f"grouped convs need a power-of-two input channels per group, not {geo.cg_in}")
    G = math.ceil(geo.cg_out / lanes)
    k = geo.kernel
    words = geo.groups * G
    return Descriptor(
        kernel=k, stride2=int(geo.stride == 2), padding=geo.padding,
        out_h=geo.out_h, out_w=geo.out_w,
        lim_y=geo.stride * (geo.out_h - 1), lim_x=geo.stride * (geo.out_w - 1),
        group_words=G, words=words, last_lanes=geo.cg_out - (G - 1) * lanes,
        grouped=int(geo.groups > 1), cin_shift=int(math.log2(geo.cg_in)) if geo.groups > 1 else 0,
        w_offset=w_offset, w_stride_group=geo.cg_in * k * k * G, w_stride_ci=k * k * G, w_stride_ky=k * G,
        b_offset=b_offset, row_stride=geo.out_w * words, drain_words=geo.out_h * geo.out_w * words,
        signed_planes=int(signed_planes),
    )


def weight_words(weight: np.ndarray, groups: int, lanes: int) -> np.ndarray:
    """``weight[C_out, Cg_in, k, k]`` -> words ``[n, lanes]`` in the weight memory order."""
    c_out, cg_in, k, _ = weight.shape
    cg_out = c_out // groups
    G = math.ceil(cg_out / lanes)
    w = np.zeros((groups, G * lanes, cg_in, k, k), dtype=np.int64)
    w[:, :cg_out] = weight.reshape(groups, cg_out, cg_in, k, k)
    # [gi, g, l, ci, ky, kx] -> [gi, ci, ky, kx, g, l]
    w = w.reshape(groups, G, lanes, cg_in, k, k).transpose(0, 3, 4, 5, 1, 2)
    return w.reshape(-1, lanes)


def bias_words(bias: np.ndarray, groups: int, lanes: int) -> np.ndarray:
    cg_out = len(bias) // groups
    G = math.ceil(cg_out / lanes)
    b = np.zeros((groups, G * lanes), dtype=np.int64)
    b[:, :cg_out] = bias.reshape(groups, cg_out)
    return b.reshape(-1, lanes)


def unpad_accumulators(words: np.ndarray, geo: ConvGeometry, lanes: int) -> np.ndarray:
    """Drained words ``[drain_words, lanes]`` -> ``[C_out, out_h, out_w]``."""
    G = math.ceil(geo.cg_out / lanes)
    a = words.reshape(geo.out_h, geo.out_w, geo.groups, G * lanes)[..., :geo.cg_out]
    return a.reshape(geo.out_h, geo.out_w, geo.c_out).transpose(2, 0, 1)
