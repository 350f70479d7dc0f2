"""The chip's input: 8-bit pixels, with the input normalization folded into the encoding layer.

A photo reaches the float model as ``x[c] = (p[c] / 255 - mean[c]) / std[c]`` (``ToTensor`` then
``Normalize``): an affine function ``x = scale[c] * p + offset[c]`` of the 8-bit pixel ``p``
(:attr:`golden.images.Preprocessing.scale`, ``offset``). The chip receives ``p`` itself (what a
camera delivers), and the encoding conv absorbs the affine map:

    conv(W, x) + b  =  conv(W * scale, p)  +  b  +  sum over the kernel taps that land inside the
                                                    image of  W[o, c, ky, kx] * offset[c]

The last term is the same at every position whose window lies inside the image (it joins the
bias) and smaller at the borders, where zero padding of ``x`` (not of ``p``) leaves taps out. So
the folded encoding conv is ``conv(W', p) + b' + border[o, y, x]`` with ``W' = W * scale``,
``b' = b + sum_taps W * offset`` (the interior value) and ``border`` the difference at each output
position (zero in the interior). This is exact in the reals: the folded float model on pixels
computes what the original computes on normalized inputs, including at the borders, and every
one of the 256 levels of a channel stays a distinct integer code (the pixel itself).

The digits model takes ``x = p / 16`` (offset 0): its encoding conv only scales, with no border.

**Spike input** (event cameras, :mod:`golden.events`; docs/events.md). A model whose input is
already spikes (binary frames, one per timestep: ``[T, B, C, H, W]`` of 0/1, e.g. the two
polarities of an event camera) has no normalization to fold and no bit planes: its encoding conv
is an ordinary spike conv (every input spike adds one weight column, no multiply; zero padding
of spikes is exact, so no border correction). The program says so in its header
(``input.encoding = "spikes"``, ``bits`` 1, ``scale`` 1, ``frames`` ``T``) and in the encoding
conv's ``input`` attribute (``"spikes"``); :func:`spike_input` reads it, and
:func:`input_over_time` turns what a host hands the engine (``[B, C, H, W]`` pixels, or
``[B, T, C, H, W]`` spike frames: images first, as an image source yields them) into the
engine's ``"input"`` tensor ``[T, B, C, H, W]``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from golden.fold import INPUT, ConvStep, FoldedModel

__all__ = ["fold_input_normalization", "border_correction", "SPIKES", "spike_input", "input_over_time",
           "input_per_image"]

#: ``header["input"]["encoding"]`` of a program whose input is spike frames, one per timestep
SPIKES = "spikes"


def spike_input(header: dict) -> bool:
    """Whether a program's input is spike frames (one binary ``[C, H, W]`` frame per timestep)."""
    return header.get("input", {}).get("encoding") == SPIKES


def input_over_time(header: dict, x: Tensor) -> Tensor:
    """The engine's ``"input"`` ``[T, B, C, H, W]`` (int64) from a host's batch: pixels
    ``[B, C, H, W]`` (the same image at every timestep: an ``expand``, no copy), or for a
    spike-input program frames ``[B, T, C, H, W]`` of 0/1. ValueError names a wrong shape or value."""
    T, shape = int(header["T"]), header.get("input", {}).get("shape")
    shape = list(x.shape[-3:]) if shape is None else list(shape)      # a hand-built program may not say
    if not spike_input(header):
        if x.dim() != 4 or list(x.shape[1:]) != shape:
            raise ValueError(f"the program takes pixels [B, {', '.join(map(str, shape))}], not {list(x.shape)}")
        x = x.to(torch.int64)
        return x.unsqueeze(0).expand(T, *x.shape)
    if x.dim() != 5 or list(x.shape[1:]) != [T, *shape]:
        raise ValueError(f"the program takes spike frames [B, T = {T}, {', '.join(map(str, shape))}] (one per "
                         f"timestep), not {list(x.shape)}")
    if x.numel() and not bool(((x == 0) | (x == 1)).all()):
        raise ValueError(f"spike frames must be 0 or 1; found values {int(x.min())}..{int(x.max())}")
    return x.to(torch.int64).transpose(0, 1)


def input_per_image(header: dict, x: Tensor) -> Tensor:
    """Inverse of :func:`input_over_time`: ``[T, B, C, H, W]`` -> the host's ``[B, ...]``."""
    return x.transpose(0, 1) if spike_input(header) else x[0]


def border_correction(weight: Tensor, offset: Tensor, *, height: int, width: int, stride: int,
                      padding: int) -> tuple[Tensor, Tensor]:
    """``sum`` over in-image taps of ``W * offset`` per output position, split into its interior
    value ``[O]`` and the difference from it ``[O, H_out, W_out]`` (float64)."""
    w = weight.double() * offset.double().view(1, -1, 1, 1)
    # the taps that fall on the zero padding, counted on an indicator of the padding ring: exactly
    # zero wherever the window lies inside the image
    outside = torch.ones(1, weight.shape[1], height + 2 * padding, width + 2 * padding, dtype=torch.float64)
    outside[..., padding:padding + height, padding:padding + width] = 0
    missing = F.conv2d(outside, w, None, stride, 0)[0]            # [O, H_out, W_out]
    return w.sum(dim=(1, 2, 3)), -missing


def fold_input_normalization(folded: FoldedModel, scale, offset, *, height: int, width: int) -> FoldedModel:
    """A copy of ``folded`` whose encoding conv reads pixels ``p`` where ``folded`` read
    ``x = scale[c] * p + offset[c]`` (``height`` x ``width`` images); ``folded`` is not modified."""
    steps = list(folded)
    enc = [i for i, s in enumerate(steps) if isinstance(s, ConvStep) and s.src == INPUT]
    if len(enc) != 1:
        raise ValueError(f"the folded model must have one encoding conv (reading {INPUT!r}), not {len(enc)}")
    i = enc[0]
    step = steps[i]
    if step.groups != 1 or step.border is not None:
        raise ValueError(f"{step.name}: can fold the input normalization into a plain conv only")
    scale_t = torch.as_tensor(scale, dtype=torch.float64)
    offset_t = torch.as_tensor(offset, dtype=torch.float64)
    if scale_t.shape != (step.in_channels,) or offset_t.shape != (step.in_channels,):
        raise ValueError(f"{step.name}: scale and offset need {step.in_channels} values, not "
                         f"{list(scale_t.shape)} and {list(offset_t.shape)}")
    w64 = step.weight.double()
    interior, border = border_correction(w64, offset_t, height=height, width=width, stride=step.stride,
                                         padding=step.padding)
    weight = (w64 * scale_t.view(1, -1, 1, 1)).to(step.weight.dtype)
    bias = (step.bias.double() + interior).to(step.bias.dtype)
    border = border.to(step.weight.dtype) if bool(border.abs().max() > 0) else None
    steps[i] = ConvStep(step.name, step.src, weight, bias, stride=step.stride, padding=step.padding,
                        groups=step.groups, residual=step.residual, sources=step.sources, border=border)
    return FoldedModel(steps, T=folded.T, output=folded.output)
