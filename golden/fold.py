"""Folding BatchNorm, RepConv and SepConv, and the folded layer program of Meta-SpikeFormer.

Pure functions (they never modify their arguments; arithmetic is done in float64 and the result
is cast back to the weight's dtype):

- :func:`bn_scale_shift`: eval-mode BN as ``y = scale * x + shift`` per channel.
- :func:`fold_bn`: conv/linear (weight, bias) followed by BN -> one (weight, bias).
- :func:`fold_repconv`: RepConv (+ outer BN) -> one 3x3 conv with bias, padding 1.
- :func:`fuse_dw_pw`: depthwise kxk then pointwise 1x1 (+ BN), no neuron between ->
  one dense kxk conv, kernel ``pw[o, i] * dw[i]``.

:func:`fold_model` turns a :class:`golden.model.MetaSpikeFormer` into a :class:`FoldedModel`:
a float model in which every conv carries its BN (conv-with-bias everywhere), each RepConv is a
3x3 conv, each SepConv ``dwconv -> pwconv2 -> bn2`` is one dense 7x7 conv 2C -> C, and the MLP's
Conv1d 1x1 layers are Conv2d 1x1 layers. It computes what ``model.eval()`` computes: every
membrane agrees to float rounding (~1e-7 relative), so spikes and logits agree (exactly, unless a
membrane lies within rounding of its threshold, which flips that one spike).

The folded program
------------------
``FoldedModel.steps`` is a flat list of small modules in **execution order**. Every step has

- ``name``: unique; also the name of the tensor it produces. Names are the reference module
  paths (``"ConvBlock1_1.0.Conv.lif1"``, ``"block3.0.attn.q_conv"``, ``"head"``...), so they
  match :func:`golden.neuron.iter_lif_nodes` on the unfolded model for every LIF.
- ``kind``: one of ``"conv"``, ``"lif"``, ``"sdsa"``, ``"mask"``, ``"token_mean"``,
  ``"linear"``, ``"readout"``.
- ``inputs``: names of the tensors it reads (``"input"`` is the ``[T, B, C, H, W]`` image).
- ``sources``: the reference modules folded into it (e.g. ``("block3.0.attn.q_conv.0",
  "block3.0.attn.q_conv.1")``), to trace back to checkpoint keys.

Kinds and their extra fields (tensors ``[T, B, C, H, W]`` unless said otherwise):

``conv`` (:class:`ConvStep`)
    ``src`` (a LIF step's name: its spikes; or ``"input"`` for the encoding layer, which sees
    pixels), ``weight [C_out, C_in/groups, k, k]``, ``bias [C_out]`` (buffers), ``stride``,
    ``padding`` (zero padding), ``groups``, ``kernel_size``, ``in_channels``, ``out_channels``,
    ``residual`` (``None`` or the name of a membrane tensor added to the output: the membrane
    shortcut). Output: ``conv(src) + bias (+ residual)``, a membrane stream.
``lif`` (:class:`LIFStep`)
    ``src`` (a membrane/current tensor), ``v_threshold`` (float), ``tau``. Output: spikes
    (0/1 floats). With ``record = True`` (``FoldedModel.set_record()`` sets it on all of them)
    it keeps ``last_membrane`` (pre-spike ``H``) and ``last_spikes`` like
    :class:`golden.neuron.MultiStepLIFNode`.
``sdsa`` (:class:`AttentionStep`)
    ``q``, ``k`` (``None`` for variant 2), ``v`` (spike tensors), ``variant``, ``num_heads``,
    ``scale``. Output, the input current of ``attn_lif``: variants 3/4 ``scale * Q (K^T V)`` per
    head; variants 1/2 the per-channel count over tokens ``SUM_N(Q AND K)`` / ``SUM_N(Q)``,
    shape ``[T, B, C, 1, 1]``. (The quantizer folds ``scale`` into the threshold.)
``mask`` (:class:`MaskStep`, variants 1/2 only)
    ``mask`` (``attn_lif`` spikes ``[T, B, C, 1, 1]``), ``v``. Output ``v * mask`` (binary).
``token_mean`` (:class:`TokenMeanStep`)
    ``src``. Output: mean over ``H*W``, ``[T, B, C]``.
``linear`` (:class:`LinearStep`)
    ``src`` (``[T, B, C]`` spikes, or the token mean for ``head_input="membrane"``),
    ``weight [K, C]``, ``bias [K]``. Output ``[T, B, K]``.
``readout`` (:class:`ReadoutStep`)
    ``inputs`` = the head(s). Output logits ``[B, K]``: mean over T of each head, then their
    average (``(head + head_kd) / 2`` with distillation).

The structure of one transformer block (prefix ``p = "block3.0"``; ``x`` its input stream)::

    p.attn.head_lif   lif   x
    p.attn.q_conv     conv  p.attn.head_lif            -> p.attn.q_lif  lif
    p.attn.k_conv     conv  p.attn.head_lif            -> p.attn.k_lif  lif   (not for SDSA-2)
    p.attn.v_conv     conv  p.attn.head_lif            -> p.attn.v_lif  lif
    p.attn.sdsa       sdsa  q_lif, k_lif, v_lif        -> p.attn.attn_lif lif (-> p.attn.mask)
    p.attn.proj_conv  conv  attn_lif (or mask), residual = x
    p.mlp.fc1_lif     lif   p.attn.proj_conv
    p.mlp.fc1_conv    conv  p.mlp.fc1_lif              -> p.mlp.fc2_lif lif
    p.mlp.fc2_conv    conv  p.mlp.fc2_lif, residual = p.attn.proj_conv   (block output)

and of one conv block (``p = "ConvBlock1_1.0"``)::

    p.Conv.lif1, p.Conv.pwconv1 (+bn1), p.Conv.lif2,
    p.Conv.dwconv_pwconv2 (fused 7x7 + bn2, residual = x),
    p.lif1, p.conv1 (+bn1), p.lif2, p.conv2 (+bn2, residual = p.Conv.dwconv_pwconv2)

Downsamplers are ``<name>.encode_lif`` (not for the first) and ``<name>.encode_conv`` (+encode_bn);
the head is ``token_mean``, ``lif``, ``head`` (and ``head_kd``), ``logits``.

The architecture options (:mod:`golden.model`, Table 5) fold into the same kinds:

- no SepConv, the channel MLP, linear projections, no pyramid, fully conv / transformer: fewer
  or other convs (a linear projection is a 1x1 conv with its BN, ``<p>.q_conv``), same names.
- vanilla shortcut: each branch's last conv takes as its residual ``<branch>.shortcut``, a 1x1
  conv of the branch's input spikes with the identity matrix as weights (``branch`` in
  ``ConvBlock1_1.0.Conv``, ``ConvBlock1_1.0``, ``block3.0.attn``, ``block3.0.mlp``): the spikes'
  value in the membrane's units.
- SEW shortcut: the stream is the sum of the spike tensors since the stage began (the
  downsampler's ``encode_lif``, then each branch's neuron, now at its end); a conv reading it is
  a chain ``<conv>.plane0 .. <conv>.plane<m-1>, <conv>`` of convs with the same weights, one per
  spike tensor, each adding the previous one as its residual (only the first has the bias); the
  head reads ``stream_sum``, the same chain of identity 1x1 convs (docs/table5.md: the shortcut variants).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from golden.model import (
    MetaSpikeFormer,
    MSAttention,
    MSBlock,
    MSConvBlock,
    MSDownSampling,
    RepConv,
    direct_encoding,
)
from golden.neuron import multistep_lif

__all__ = [
    "bn_scale_shift",
    "fold_bn",
    "fold_repconv",
    "fuse_dw_pw",
    "Step",
    "ConvStep",
    "LIFStep",
    "AttentionStep",
    "MaskStep",
    "TokenMeanStep",
    "LinearStep",
    "ReadoutStep",
    "FoldedModel",
    "fold_model",
    "INPUT",
]

#: name of the program's input tensor (the image repeated T times, ``[T, B, C, H, W]``).
INPUT = "input"


# ----------------------------------------------------------------------------------------------
# Pure folding functions
# ----------------------------------------------------------------------------------------------


def bn_scale_shift(bn: _BatchNorm) -> tuple[Tensor, Tensor]:
    """Eval-mode BatchNorm as ``y = scale * x + shift``; both ``[C]``, float64.

    ``scale = weight / sqrt(running_var + eps)``, ``shift = bias - running_mean * scale``.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"BatchNorm must track running statistics to be folded: {bn}")
    var = bn.running_var.detach().double()
    mean = bn.running_mean.detach().double()
    inv_std = 1.0 / torch.sqrt(var + bn.eps)
    if bn.affine:
        scale = bn.weight.detach().double() * inv_std
        shift = bn.bias.detach().double() - mean * scale
    else:
        scale = inv_std
        shift = -mean * inv_std
    return scale, shift


def _fold_bn64(weight: Tensor, bias: Tensor | None, bn: _BatchNorm | None) -> tuple[Tensor, Tensor]:
    """Float64 core of :func:`fold_bn` (weight/bias already float64 or convertible)."""
    w = weight.detach().double()
    b = bias.detach().double() if bias is not None else torch.zeros(w.shape[0], dtype=torch.float64, device=w.device)
    if bn is None:
        return w, b
    if bn.num_features != w.shape[0]:
        raise ValueError(f"BatchNorm has {bn.num_features} channels, the layer before it {w.shape[0]}")
    scale, shift = bn_scale_shift(bn)
    return w * scale.view(-1, *([1] * (w.dim() - 1))), b * scale + shift


def fold_bn(weight: Tensor, bias: Tensor | None, bn: _BatchNorm) -> tuple[Tensor, Tensor]:
    """Fold an eval-mode BatchNorm (1d or 2d) into the conv/linear layer before it.

    Args:
        weight: ``[C_out, ...]`` (Conv1d ``[O, I, k]``, Conv2d ``[O, I, kh, kw]``, Linear ``[O, I]``).
        bias: ``[C_out]`` or ``None``.
        bn: BatchNorm with ``C_out`` features and running statistics.

    Returns:
        ``(weight', bias')`` in ``weight``'s dtype with ``layer'(x) == bn(layer(x))``.
    """
    w, b = _fold_bn64(weight, bias, bn)
    return w.to(weight.dtype), b.to(weight.dtype)


def fold_repconv(repconv: RepConv, bn: _BatchNorm | None = None) -> tuple[Tensor, Tensor]:
    """Fold a :class:`golden.model.RepConv` (and the BN after it) into one 3x3 conv, padding 1.

    RepConv is ``conv1x1 W1 [I, I] -> BNAndPad (scale s1, shift h1, pad 1 with the value h1)
    -> depthwise 3x3 Wd [I, 3, 3] (pad 0) -> conv1x1 W2 [O, I] -> BN``. Padding with ``h1`` (the
    BN image of zero) equals BN applied to a zero-padded ``W1 x``, and ``W1`` commutes with zero
    padding, so the whole chain is a zero-padded 3x3 conv::

        K[o, j, u, v] = sum_i W2[o, i] * Wd[i, u, v] * s1[i] * W1[i, j]
        b[o]          = sum_i W2[o, i] * h1[i] * sum_uv Wd[i, u, v]

    followed by the inner BN and then ``bn``.

    Returns:
        ``(weight [O, I, 3, 3], bias [O])`` in the RepConv's dtype.
    """
    conv1, bnpad, tail = repconv.body[0], repconv.body[1], repconv.body[2]
    dw, conv2, bn_inner = tail[0], tail[1], tail[2]
    if bnpad.pad_pixels != 1 or dw.kernel_size != (3, 3) or dw.padding != (0, 0):
        raise ValueError("RepConv must be conv1x1 -> BNAndPad(pad 1) -> dw 3x3 pad 0 -> conv1x1 -> BN, "
                         f"not pad {bnpad.pad_pixels}, kernel {dw.kernel_size}, padding {dw.padding}")
    if any(c.bias is not None for c in (conv1, dw, conv2)):
        raise ValueError("RepConv convs must have no bias (reference bias=False)")
    w1 = conv1.weight.detach().double()[:, :, 0, 0]  # [I, I]
    wd = dw.weight.detach().double()[:, 0]  # [I, 3, 3]
    w2 = conv2.weight.detach().double()[:, :, 0, 0]  # [O, I]
    s1, h1 = bn_scale_shift(bnpad.bn)
    kernel = torch.einsum("oi,iuv,i,ij->ojuv", w2, wd, s1, w1)
    bias = w2 @ (h1 * wd.sum(dim=(1, 2)))
    kernel, bias = _fold_bn64(kernel, bias, bn_inner)
    kernel, bias = _fold_bn64(kernel, bias, bn)
    dtype = conv1.weight.dtype
    return kernel.to(dtype), bias.to(dtype)


def fuse_dw_pw(
    dw_weight: Tensor,
    pw_weight: Tensor,
    bn: _BatchNorm | None = None,
    *,
    dw_bias: Tensor | None = None,
    pw_bias: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Fuse a depthwise kxk conv and the pointwise conv after it (no neuron between) into one conv.

    ``pw(dw(x))`` with ``dw_weight [M, 1, k, k]`` and ``pw_weight [O, M, 1, 1]`` is one dense
    kxk conv ``M -> O`` (same stride/padding as the depthwise conv) with kernel
    ``K[o, i] = pw[o, i] * dw[i]`` and bias ``pw @ dw_bias + pw_bias``; ``bn`` (SepConv's
    ``bn2``) is folded in after. Dense form = spike-driven: each input spike adds ``k*k*O``
    weights; unfused, the pointwise conv would multiply real-valued depthwise outputs.

    Returns:
        ``(weight [O, M, k, k], bias [O])`` in ``dw_weight``'s dtype.
    """
    if dw_weight.dim() != 4 or dw_weight.shape[1] != 1:
        raise ValueError(f"dw_weight must be depthwise [M, 1, k, k], not {tuple(dw_weight.shape)}")
    if pw_weight.dim() != 4 or pw_weight.shape[2:] != (1, 1) or pw_weight.shape[1] != dw_weight.shape[0]:
        raise ValueError(f"pw_weight must be [O, {dw_weight.shape[0]}, 1, 1], not {tuple(pw_weight.shape)}")
    dw = dw_weight.detach().double()[:, 0]  # [M, k, k]
    pw = pw_weight.detach().double()[:, :, 0, 0]  # [O, M]
    kernel = pw[:, :, None, None] * dw[None]
    bias = torch.zeros(pw.shape[0], dtype=torch.float64, device=pw.device)
    if dw_bias is not None:
        bias = bias + pw @ dw_bias.detach().double()
    if pw_bias is not None:
        bias = bias + pw_bias.detach().double()
    kernel, bias = _fold_bn64(kernel, bias, bn)
    return kernel.to(dw_weight.dtype), bias.to(dw_weight.dtype)


# ----------------------------------------------------------------------------------------------
# Program steps
# ----------------------------------------------------------------------------------------------


class Step(nn.Module):
    """One step of the folded program; see the module docstring for the fields of each kind."""

    kind: ClassVar[str] = ""

    def __init__(self, name: str, inputs: Sequence[str], sources: Sequence[str] = ()):
        super().__init__()
        self.name = name
        self.inputs = tuple(inputs)
        self.sources = tuple(sources)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, inputs={self.inputs}"


class ConvStep(Step):
    """2-D conv applied per timestep: ``[T, B, C_in, H, W] -> [T, B, C_out, H', W']`` (+ residual)."""

    kind = "conv"

    def __init__(self, name: str, src: str, weight: Tensor, bias: Tensor, *, stride: int = 1,
                 padding: int = 0, groups: int = 1, residual: str | None = None,
                 sources: Sequence[str] = (), border: Tensor | None = None):
        super().__init__(name, (src,) if residual is None else (src, residual), sources)
        if weight.dim() != 4 or bias.shape != (weight.shape[0],):
            raise ValueError(f"{name}: weight must be [O, I, k, k] and bias [O], "
                             f"not {tuple(weight.shape)} and {tuple(bias.shape)}")
        if border is not None and (border.dim() != 3 or border.shape[0] != weight.shape[0]):
            raise ValueError(f"{name}: border must be [O, H_out, W_out], not {tuple(border.shape)}")
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("bias", bias.detach().clone())
        #: added to every output at its position on top of ``bias`` (``None``: nothing): the
        #: encoding conv's correction at the image borders when the input normalization's offset
        #: is folded into it (:func:`golden.encoding.fold_input_normalization`)
        self.register_buffer("border", None if border is None else border.detach().clone())
        self.src = src
        self.residual = residual
        self.stride = int(stride)
        self.padding = int(padding)
        self.groups = int(groups)

    @property
    def kernel_size(self) -> int:
        return self.weight.shape[-1]

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1] * self.groups

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    @property
    def spike_input(self) -> bool:
        """False only for the encoding layer, which reads real-valued pixels."""
        return self.src != INPUT

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        t, b = x.shape[:2]
        y = F.conv2d(x.flatten(0, 1), self.weight, self.bias, self.stride, self.padding, 1, self.groups)
        if self.border is not None:
            y = y + self.border
        y = y.reshape(t, b, *y.shape[1:])
        return y if residual is None else y + residual

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, {self.in_channels}->{self.out_channels}, "
                f"k={self.kernel_size}, stride={self.stride}, padding={self.padding}, groups={self.groups}")


class LIFStep(Step):
    """LIF neuron over time (:func:`golden.neuron.multistep_lif`): current ``[T, ...]`` -> spikes."""

    kind = "lif"

    def __init__(self, name: str, src: str, *, v_threshold: float, tau: float = 2.0,
                 sources: Sequence[str] = ()):
        super().__init__(name, (src,), sources)
        self.src = src
        self.v_threshold = float(v_threshold)
        self.tau = float(tau)
        self.record = False
        self.last_membrane = self.last_spikes = None        # Tensor, kept by forward while record is set

    def forward(self, x: Tensor) -> Tensor:
        spikes, membrane = multistep_lif(x, v_threshold=self.v_threshold, tau=self.tau, return_membrane=True)
        if self.record:
            self.last_membrane, self.last_spikes = membrane.detach(), spikes.detach()
        return spikes

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, v_threshold={self.v_threshold:g}, tau={self.tau:g}"


class AttentionStep(Step):
    """The SDSA operator between the Q/K/V spikes and ``attn_lif`` (no weights)."""

    kind = "sdsa"

    def __init__(self, name: str, q: str, k: str | None, v: str, *, variant: int, num_heads: int,
                 scale: float, sources: Sequence[str] = ()):
        if (k is None) != (variant == 2):
            raise ValueError(f"{name}: SDSA-{variant} {'has no' if variant == 2 else 'needs a'} K input")
        super().__init__(name, (q, v) if k is None else (q, k, v), sources)
        self.q, self.k, self.v = q, k, v
        self.variant = int(variant)
        self.num_heads = int(num_heads)
        self.scale = float(scale)

    def forward(self, *xs: Tensor) -> Tensor:
        q, k, v = (xs[0], None, xs[1]) if self.k is None else xs
        t, b, c, h, w = q.shape
        q, v = q.flatten(3), v.flatten(3)  # [T, B, C, N]
        if self.variant in (3, 4):
            d = c // self.num_heads

            def heads(s: Tensor) -> Tensor:  # [T, B, C, N] -> [T, B, heads, N, d]
                return s.transpose(-1, -2).reshape(t, b, h * w, self.num_heads, d).permute(0, 1, 3, 2, 4)

            kv = heads(k.flatten(3)).transpose(-2, -1) @ heads(v)
            a = (heads(q) @ kv) * self.scale
            return a.transpose(3, 4).reshape(t, b, c, h, w)
        qk = q * k.flatten(3) if self.variant == 1 else q
        return qk.sum(dim=-1).reshape(t, b, c, 1, 1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, variant={self.variant}, num_heads={self.num_heads}, scale={self.scale:g}"


class MaskStep(Step):
    """SDSA-1/2: ``v * mask``, mask ``[T, B, C, 1, 1]`` broadcast over tokens."""

    kind = "mask"

    def __init__(self, name: str, mask: str, v: str, sources: Sequence[str] = ()):
        super().__init__(name, (mask, v), sources)
        self.mask, self.v = mask, v

    def forward(self, mask: Tensor, v: Tensor) -> Tensor:
        return v * mask


class TokenMeanStep(Step):
    """Mean over tokens: ``[T, B, C, H, W] -> [T, B, C]``."""

    kind = "token_mean"

    def __init__(self, name: str, src: str, sources: Sequence[str] = ()):
        super().__init__(name, (src,), sources)
        self.src = src

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(3).mean(3)


class LinearStep(Step):
    """Classifier layer: ``[T, B, C] -> [T, B, K]``."""

    kind = "linear"

    def __init__(self, name: str, src: str, weight: Tensor, bias: Tensor, sources: Sequence[str] = ()):
        super().__init__(name, (src,), sources)
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("bias", bias.detach().clone())
        self.src = src

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


class ReadoutStep(Step):
    """Logits ``[B, K]``: mean over T of each head, then their average."""

    kind = "readout"

    def forward(self, *heads: Tensor) -> Tensor:
        out = heads[0].mean(0)
        for extra in heads[1:]:
            out = out + extra.mean(0)
        return out / len(heads) if len(heads) > 1 else out


# ----------------------------------------------------------------------------------------------
# Folded model
# ----------------------------------------------------------------------------------------------


class FoldedModel(nn.Module):
    """A folded Meta-SpikeFormer: an ordered list of :class:`Step` s (see the module docstring).

    Args:
        steps: in execution order; each reads tensors named by earlier steps (or ``"input"``).
        T: timesteps; ``forward`` repeats a ``[B, C, H, W]`` image ``T`` times.
        output: name of the step whose result ``forward`` returns (the readout).
    """

    def __init__(self, steps: Sequence[Step], *, T: int, output: str):
        super().__init__()
        self.steps = nn.ModuleList(steps)
        self.T = int(T)
        self.output = output
        defined = {INPUT}
        self._last_use: dict[str, int] = {}
        for i, step in enumerate(self.steps):
            missing = [n for n in step.inputs if n not in defined]
            if missing:
                raise ValueError(f"step {i} {step.name!r} ({step.kind}) reads {missing} before they are computed")
            if step.name in defined:
                raise ValueError(f"step {i} name {step.name!r} is not unique")
            defined.add(step.name)
            for n in step.inputs:
                self._last_use[n] = i
        if output not in defined:
            raise ValueError(f"output must be a step name, not {output!r}")
        self._by_name = {s.name: s for s in self.steps}

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def step(self, name: str) -> Step:
        """The step called ``name`` (KeyError if there is none)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no step named {name!r} in the folded program") from None

    def set_record(self, enabled: bool = True) -> None:
        """Make every LIF step keep (or drop) its last pre-spike membrane and spikes."""
        for step in self.steps:
            if isinstance(step, LIFStep):
                step.record = enabled
                if not enabled:
                    step.last_membrane = step.last_spikes = None

    def consumers(self, name: str) -> list[Step]:
        """Steps that read tensor ``name`` (e.g. the LIFs fed by a conv's membrane output)."""
        return [s for s in self.steps if name in s.inputs]

    def encode_input(self, x: Tensor) -> Tensor:
        return direct_encoding(x, self.T)

    def trace(self, x: Tensor) -> dict[str, Tensor]:
        """Run the program and return every tensor by name (``"input"`` first, then each step)."""
        env = {INPUT: self.encode_input(x)}
        for step in self.steps:
            env[step.name] = step(*(env[n] for n in step.inputs))
        return env

    def forward(self, x: Tensor) -> Tensor:
        """Image ``[B, C, H, W]`` (or ``[T, B, C, H, W]``) -> logits ``[B, K]``."""
        env = {INPUT: self.encode_input(x)}
        for i, step in enumerate(self.steps):
            env[step.name] = step(*(env[n] for n in step.inputs))
            for n in step.inputs:  # free tensors nobody reads any more
                if self._last_use[n] == i and n != self.output:
                    del env[n]
        return env[self.output]


Stream = "str | tuple[str, ...]"   # a membrane tensor's name, or (SEW) the spike planes summing to the stream


class _ProgramBuilder:
    """Walks a MetaSpikeFormer in execution order and emits folded steps.

    The stream between residual branches is a tensor name (a membrane), or with the SEW shortcut
    the tuple of spike tensors whose sum it is (see :meth:`conv` and :meth:`branch`)."""

    def __init__(self, shortcut: str = "membrane") -> None:
        self.steps: list[Step] = []
        self.shortcut = shortcut

    def lif(self, name: str, node, src: str) -> str:
        self.steps.append(LIFStep(name, src, v_threshold=node.threshold_value(), tau=node.tau, sources=(name,)))
        return name

    def conv(self, name: str, src: Stream, wb: tuple[Tensor, Tensor], conv: nn.Conv2d | None = None, *,
             sources: Sequence[str], residual: str | None = None, stride: int = 1, padding: int = 0) -> str:
        """A conv of ``src`` named ``name``. On SEW planes ``(s_0, .., s_m)`` it is the chain
        ``name.plane0 = conv(s_0) + b``, ``name.plane<j> = conv(s_j) + name.plane<j-1>``, ..., the
        last one called ``name``: the conv of the integer stream, summed plane by plane with the
        same weights (a conv is linear; its zero padding and bias are added once)."""
        if conv is not None:  # geometry taken from the module itself
            stride, padding = conv.stride[0], conv.padding[0]
        if isinstance(src, tuple):
            if residual is not None:
                raise ValueError(f"{name}: a conv of SEW planes has no membrane residual")
            weight, bias = wb
            for j, plane in enumerate(src):
                last = j == len(src) - 1
                self.steps.append(ConvStep(name if last else f"{name}.plane{j}", plane, weight,
                                           bias if j == 0 else torch.zeros_like(bias), stride=stride,
                                           padding=padding, residual=residual, sources=sources))
                residual = name if last else f"{name}.plane{j}"
            return name
        self.steps.append(ConvStep(name, src, *wb, stride=stride, padding=padding, residual=residual,
                                   sources=sources))
        return name

    def identity(self, name: str, src: Stream, channels: int) -> str:
        """The integer value of spikes (or the sum of SEW planes) as a stream: a 1x1 conv with
        the identity matrix as its weights and no bias (the quantizer turns the 1.0 into the
        stream's threshold ``th[c]``). The core runs it as any conv (docs/arithmetic.md)."""
        eye = torch.eye(channels).view(channels, channels, 1, 1)
        return self.conv(name, src, (eye, torch.zeros(channels)), sources=())

    def branch(self, prefix: str, lif_name: str, node, x: Stream, body, channels: int) -> Stream:
        """One residual branch on the stream ``x`` under the model's shortcut
        (:func:`golden.model.residual_branch`). ``body(src, residual)`` emits the branch's steps
        from its input ``src`` and returns its last conv, to which it adds ``residual()`` (called
        just before that conv, so a shortcut's tensor is made where it is used)."""
        if self.shortcut == "membrane":           # x + body(lif(x))
            return body(self.lif(lif_name, node, x), lambda: x)
        if self.shortcut == "vanilla":            # lif(x) + body(lif(x)): the spikes join the membrane
            s = self.lif(lif_name, node, x)
            return body(s, lambda: self.identity(f"{prefix}.shortcut", s, channels))
        u = body(x, lambda: None)                 # sew: x + lif(body(x)), one spike plane more
        return (*x, self.lif(lif_name, node, u))

    def downsample(self, p: str, m: MSDownSampling, x: Stream) -> Stream:
        wb = fold_bn(m.encode_conv.weight, m.encode_conv.bias, m.encode_bn)
        sources = (f"{p}.encode_conv", f"{p}.encode_bn")
        if m.spike_output:                        # sew: conv of the integers, then the neuron
            y = self.conv(f"{p}.encode_conv", x, wb, m.encode_conv, sources=sources)
            return (self.lif(f"{p}.encode_lif", m.encode_lif, y),)
        if not m.first_layer:
            x = self.lif(f"{p}.encode_lif", m.encode_lif, x)
        return self.conv(f"{p}.encode_conv", x, wb, m.encode_conv, sources=sources)

    def conv_block(self, p: str, m: MSConvBlock, x: Stream) -> Stream:
        c = m.conv2.out_channels
        if m.sepconv:
            sep = m.Conv

            def sepconv(src, residual):
                y = self.conv(f"{p}.Conv.pwconv1", src, fold_bn(sep.pwconv1.weight, sep.pwconv1.bias, sep.bn1),
                              sep.pwconv1, sources=(f"{p}.Conv.pwconv1", f"{p}.Conv.bn1"))
                s = self.lif(f"{p}.Conv.lif2", sep.lif2, y)
                wb = fuse_dw_pw(sep.dwconv.weight, sep.pwconv2.weight, sep.bn2,
                                dw_bias=sep.dwconv.bias, pw_bias=sep.pwconv2.bias)
                return self.conv(f"{p}.Conv.dwconv_pwconv2", s, wb, sep.dwconv, residual=residual(),
                                 sources=(f"{p}.Conv.dwconv", f"{p}.Conv.pwconv2", f"{p}.Conv.bn2"))

            x = self.branch(f"{p}.Conv", f"{p}.Conv.lif1", sep.lif1, x, sepconv, c)

        def channel(src, residual):
            y = self.conv(f"{p}.conv1", src, fold_bn(m.conv1.weight, m.conv1.bias, m.bn1), m.conv1,
                          sources=(f"{p}.conv1", f"{p}.bn1"))
            s = self.lif(f"{p}.lif2", m.lif2, y)
            return self.conv(f"{p}.conv2", s, fold_bn(m.conv2.weight, m.conv2.bias, m.bn2), m.conv2,
                             residual=residual(), sources=(f"{p}.conv2", f"{p}.bn2"))

        return self.branch(p, f"{p}.lif1", m.lif1, x, channel, c)

    def projection(self, name: str, seq: nn.Sequential, src: Stream, residual: str | None = None) -> str:
        """Q, K, V or the output projection: a RepConv folded into one 3x3 conv, or a linear
        layer (1x1 conv) with its BN."""
        sources = (f"{name}.0", f"{name}.1")
        if isinstance(seq[0], RepConv):
            return self.conv(name, src, fold_repconv(seq[0], seq[1]), residual=residual, stride=1, padding=1,
                             sources=sources)
        return self.conv(name, src, fold_bn(seq[0].weight, seq[0].bias, seq[1]), seq[0], residual=residual,
                         sources=sources)

    def attention(self, p: str, m: MSAttention, x: Stream) -> Stream:
        def body(src, residual):
            q = self.lif(f"{p}.q_lif", m.q_lif, self.projection(f"{p}.q_conv", m.q_conv, src))
            k = self.lif(f"{p}.k_lif", m.k_lif, self.projection(f"{p}.k_conv", m.k_conv, src)) if m.has_k else None
            v = self.lif(f"{p}.v_lif", m.v_lif, self.projection(f"{p}.v_conv", m.v_conv, src))
            self.steps.append(AttentionStep(f"{p}.sdsa", q, k, v, variant=m.sdsa_variant,
                                            num_heads=m.num_heads, scale=m.scale, sources=(p,)))
            a = self.lif(f"{p}.attn_lif", m.attn_lif, f"{p}.sdsa")
            if m.sdsa_variant in (1, 2):
                self.steps.append(MaskStep(f"{p}.mask", a, v, sources=(p,)))
                a = f"{p}.mask"
            return self.projection(f"{p}.proj_conv", m.proj_conv, a, residual=residual())

        return self.branch(p, f"{p}.head_lif", m.head_lif, x, body, m.dim)

    def ms_block(self, p: str, m: MSBlock, x: Stream) -> Stream:
        x = self.attention(f"{p}.attn", m.attn, x)
        mlp = m.mlp

        def body(src, residual):
            w, b = fold_bn(mlp.fc1_conv.weight, mlp.fc1_conv.bias, mlp.fc1_bn)  # Conv1d 1x1 == Conv2d 1x1
            y = self.conv(f"{p}.mlp.fc1_conv", src, (w[..., None], b),
                          sources=(f"{p}.mlp.fc1_conv", f"{p}.mlp.fc1_bn"))
            s = self.lif(f"{p}.mlp.fc2_lif", mlp.fc2_lif, y)
            w, b = fold_bn(mlp.fc2_conv.weight, mlp.fc2_conv.bias, mlp.fc2_bn)
            return self.conv(f"{p}.mlp.fc2_conv", s, (w[..., None], b), residual=residual(),
                             sources=(f"{p}.mlp.fc2_conv", f"{p}.mlp.fc2_bn"))

        return self.branch(f"{p}.mlp", f"{p}.mlp.fc1_lif", mlp.fc1_lif, x, body, mlp.c_output)


def fold_model(model: MetaSpikeFormer) -> FoldedModel:
    """Fold every BN, RepConv and SepConv of ``model`` (eval statistics); see the module docstring.

    The model is not modified (nor its train/eval mode). The folded model computes what
    ``model.eval()`` computes, up to float rounding.
    """
    if not isinstance(model, MetaSpikeFormer):
        raise TypeError(f"model must be a MetaSpikeFormer, not {type(model).__name__}")
    if not isinstance(model.head, nn.Linear):
        raise ValueError("model must have a classifier head (num_classes > 0) to be folded")
    pb = _ProgramBuilder(model.shortcut)
    x: Stream = INPUT
    for name, stage in model.stages():
        if isinstance(stage, MSDownSampling):
            x = pb.downsample(name, stage, x)
            continue
        for i, blk in enumerate(stage):
            if isinstance(blk, MSConvBlock):
                x = pb.conv_block(f"{name}.{i}", blk, x)
            elif isinstance(blk, MSBlock):
                x = pb.ms_block(f"{name}.{i}", blk, x)
            else:
                raise TypeError(f"{name}.{i}: cannot fold a {type(blk).__name__}")
    if isinstance(x, tuple):   # SEW: the head reads the integers themselves, summed into one tensor
        x = pb.identity("stream_sum", x, model.head.in_features)
    pb.steps.append(TokenMeanStep("token_mean", x))
    s = pb.lif("lif", model.lif, "token_mean")
    head_src = s if model.head_input == "spike" else "token_mean"
    heads = [LinearStep("head", head_src, model.head.weight, model.head.bias, sources=("head",))]
    if model.kd:
        heads.append(LinearStep("head_kd", s, model.head_kd.weight, model.head_kd.bias, sources=("head_kd",)))
    pb.steps.extend(heads)
    pb.steps.append(ReadoutStep("logits", [h.name for h in heads]))
    return FoldedModel(pb.steps, T=model.T, output="logits")
