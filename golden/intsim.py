"""The integer engine: executes a :class:`~contract.program.Program` with integer arithmetic only.

This is the executable form of docs/arithmetic.md and the specification the RTL is held to.
Tensors are ``[T, B, ...]`` integers. For speed, sums of integer products run through float
convolutions and matmuls: that is exact because the quantizer proved every partial sum's bound,
and :func:`_exact_float` asserts that bound is below 2**24 (float32) or 2**53 (float64) before
choosing the type. Everything else (LIF, token sums, readout) is int64.

Each layer is a pure function of its input tensors (:meth:`IntegerEngine.run_layer`), so a run
can be replayed layer by layer from exported traces.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from contract.config import HwConfig
from contract.program import INPUT, Layer, Program
from golden.kinds import golden_kind
from golden.lif import lif_integer
from golden.quantize import quantize_input

__all__ = ["IntegerEngine", "conv_integer", "wrap"]


def _exact_float(bound: float) -> torch.dtype:
    if bound < 2 ** 24:
        return torch.float32
    if bound < 2 ** 53:
        return torch.float64
    raise OverflowError(f"bound {bound} cannot be computed exactly in floating point")


def wrap(x: torch.Tensor, width: int) -> torch.Tensor:
    """Two's complement wrap to ``width`` bits: what an accumulator does past its range
    (never reached by a quantized program: the quantizer proves the bound)."""
    half = 1 << (width - 1)
    return ((x + half) % (1 << width)) - half


def conv_integer(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, *, stride: int = 1, padding: int = 0,
                 groups: int = 1, bound: float | None = None) -> torch.Tensor:
    """``conv(x) + bias`` on integers, ``x`` ``[T, B, C, H, W]`` -> int64 ``[T, B, O, H', W']``.
    ``bound`` (largest |partial sum|) picks an exact float type; default: computed from the
    weights and the input range."""
    t, b = x.shape[:2]
    if bound is None:
        xmax = max(1, int(x.abs().max().item()) if x.numel() else 1)
        bound = float(weight.abs().flatten(1).sum(1).max().item() * xmax + bias.abs().max().item())
    dt = _exact_float(bound)
    y = F.conv2d(x.reshape(t * b, *x.shape[2:]).to(dt), weight.to(dt), None, stride, padding, 1, groups)
    return y.to(torch.int64).reshape(t, b, *y.shape[1:]) + bias.to(torch.int64)[:, None, None]


class IntegerEngine:
    """Run a program on integer images. ``run`` returns every tensor by name (the trace)."""

    def __init__(self, program: Program, hw: HwConfig | None = None):
        self.program = program
        self.hw = hw or HwConfig.from_dict(program.header["hw"], "program header")
        self.lif_cfg = self.hw.lif
        self._cache: dict[str, torch.Tensor] = {}

    # -- helpers ------------------------------------------------------------------------
    def _param(self, layer: Layer, role: str, dtype=torch.int64) -> torch.Tensor:
        key = (layer.arrays[role], dtype)
        if key not in self._cache:
            self._cache[key] = torch.from_numpy(np.asarray(self.program.array(layer, role))).to(dtype)
        return self._cache[key]

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Float images ``[B, C, H, W]`` -> integer pixels ``[B, C, H, W]`` (program's encoding)."""
        return quantize_input(images, self.program.header)

    # -- layers -------------------------------------------------------------------------
    def run_layer(self, layer: Layer, *xs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """One layer on its integer inputs (``[T, B, ...]``), by the engine method its kind names
        (``golden.kinds``). LIF layers return (spikes, membranes)."""
        return getattr(self, golden_kind(layer.kind).engine)(layer, *xs)

    def _conv(self, layer: Layer, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        a = layer.attrs
        bound = max(abs(a["bound"][0]), abs(a["bound"][1]))
        y = conv_integer(x, self._param(layer, "weight"), self._param(layer, "bias"), stride=a["stride"],
                         padding=a["padding"], groups=a["groups"], bound=bound)
        if "border" in layer.arrays:    # the encoding conv's per-position correction at the borders
            y = y + self._param(layer, "border")
        if a["residual"] is not None:
            y = y + residual
        return y

    def _lif(self, layer: Layer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cur = x << layer.attrs["input_shift"]
        th = self._param(layer, "threshold")
        th = th.reshape(-1, *([1] * (cur.dim() - 3)))  # channel axis is 2
        spikes, membranes = lif_integer(cur, th, self.lif_cfg)
        return spikes.to(torch.int8), membranes

    def _mask(self, layer: Layer, mask: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (v * mask).to(torch.int8)

    def _token_sum(self, layer: Layer, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(3).sum(3)

    def _linear(self, layer: Layer, x: torch.Tensor) -> torch.Tensor:
        dt = _exact_float(self._param(layer, "weight").abs().sum(1).max().item())
        y = x.to(dt) @ self._param(layer, "weight", dt).T
        return y.to(torch.int64) + self._param(layer, "bias")

    def _readout(self, layer: Layer, *heads: torch.Tensor) -> torch.Tensor:
        return sum(h.sum(0) for h in heads)

    def _sdsa(self, layer: Layer, *xs: torch.Tensor) -> torch.Tensor:
        a = layer.attrs
        if a["variant"] == 2:
            q, v = xs
            k = None
        else:
            q, k, v = xs
        t, b, c, h, w = q.shape
        n = h * w
        if a["variant"] in (3, 4):
            heads, d = a["heads"], a["head_dim"]
            dt = _exact_float(n * d)

            def split(s):  # [T, B, C, H, W] -> [T, B, heads, N, d]
                return s.reshape(t, b, heads, d, n).transpose(-1, -2).to(dt)

            kv = split(k).transpose(-1, -2) @ split(v)          # [T, B, heads, d, d]: K^T V
            att = split(q) @ kv                                  # [T, B, heads, N, d]
            return att.transpose(-1, -2).reshape(t, b, c, h, w).to(torch.int64)
        qk = q * k if a["variant"] == 1 else q
        return qk.to(torch.int64).flatten(3).sum(3).reshape(t, b, c, 1, 1)

    # -- whole program --------------------------------------------------------------------
    def run(self, pixels: torch.Tensor, *, keep: bool = True) -> dict[str, torch.Tensor]:
        """Integer pixels ``[B, C, H, W]`` -> every tensor by name (``keep=False``: only the
        logits and the input). LIF membranes are under ``"<name>.membrane"``."""
        T = self.program.T
        if pixels.dtype.is_floating_point:
            raise TypeError("run() takes integer pixels; use encode() on float images first")
        env: dict[str, torch.Tensor] = {INPUT: pixels.to(torch.int64).unsqueeze(0).expand(T, *pixels.shape)}
        last_use = {}
        for i, layer in enumerate(self.program.layers):
            for n in layer.inputs:
                last_use[n] = i
        for i, layer in enumerate(self.program.layers):
            out = self.run_layer(layer, *(env[n] for n in layer.inputs))
            if golden_kind(layer.kind).membrane_output:
                env[layer.name], env[f"{layer.name}.membrane"] = out
            else:
                env[layer.name] = out
            if not keep:
                for n in layer.inputs:
                    if last_use[n] == i and n != INPUT:
                        env.pop(n, None)
                        env.pop(f"{n}.membrane", None)
        return env

    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.run(pixels, keep=False)[self.program.output]

    def classify(self, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
        """Float images -> predicted classes, in batches."""
        preds = [self.logits(self.encode(images[i:i + batch])).argmax(1) for i in range(0, len(images), batch)]
        return torch.cat(preds)
