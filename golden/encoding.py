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
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from golden.fold import INPUT, ConvStep, FoldedModel

__all__ = ["fold_input_normalization", "border_correction"]


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
