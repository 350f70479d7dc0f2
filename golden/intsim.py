"""The integer engine: executes a :class:`~contract.program.Program` with integer arithmetic only.

This is the executable form of docs/arithmetic.md and the specification the RTL is held to.
Tensors are ``[T, B, ...]`` integers. Each layer is a pure function of its input tensors
(:meth:`IntegerEngine.run_layer`), so a run can be replayed layer by layer from exported traces.

**Exact, in fast types.** Every value is an integer, but it need not be held in int64:

- Sums of integer products (conv, linear, SDSA) run through float convolutions and matmuls.
  That is exact because each one's partial sums are bounded: a conv's by
  ``max_o (sum |W[o]| * max|x| + |B[o]| + max|D[o]|)`` plus the proven bound of its residual
  (``attrs["bound"]`` of the residual layer), so :func:`_exact_float` picks float32 below 2**24
  (float64 below 2**53, else an error). The result stays in that float type: it *is* the
  integer, and the next layer reads it as such.
- A conv of a spike map with 8-bit weights runs through oneDNN's u8 x s8 -> s32 convolution
  (``_conv_int8``; exact by construction, and checked ``==`` against the float conv the first
  time each layer runs).
- The LIF runs in int32 when its measured currents prove every membrane fits (``golden.lif``),
  and writes its spikes as bool, the byte the int8 convolution reads as uint8 without a copy.
  Channels-last conv outputs stay channels last through the LIF.
- A tensor that is the same at every timestep (the image, and so the encoding conv's current)
  is an ``expand`` over T: the encoding conv is computed once, not T times.

What callers see does not change: :meth:`IntegerEngine.run_layer`, :meth:`IntegerEngine.run`
and the ``observe`` callback give spikes as int8 and every other tensor as int64 (the types
of docs/program.md's traces); the conversion happens only for tensors that are handed out.
tests/golden/test_intsim_fast.py holds all of it to a plain int64 reference with ``==``.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from contract.config import HwConfig
from contract.program import INPUT, KINDS, Layer, Program
from golden.encoding import input_over_time
from golden.kinds import golden_kind
from golden.lif import constant_over_t, lif_run
from golden.quantize import quantize_input

__all__ = ["IntegerEngine", "conv_integer", "wrap"]

#: ``observe(layer, output)`` of :meth:`IntegerEngine.run`; a LIF's output is (spikes, membranes)
Observer = Callable[[Layer, "torch.Tensor | tuple[torch.Tensor, torch.Tensor]"], None]


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


#: oneDNN's int8 convolution (the x86 quantization backend's op), when this torch build has it
_HAS_ONEDNN_INT8 = torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qconv2d_pointwise")


def _int8_prepack(weight: torch.Tensor, layer: Layer, x_shape) -> torch.Tensor:
    """int8 ``[O, C / groups, k, k]`` weights in oneDNN's blocked layout for inputs of ``x_shape``."""
    a = layer.attrs
    return torch.ops.onednn.qconv_prepack(weight, torch.ones(weight.shape[0]), 1.0, 0, [a["stride"]] * 2,
                                          [a["padding"]] * 2, [1, 1], a["groups"], list(x_shape))


def _int8_conv(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor, layer: Layer) -> torch.Tensor:
    """``conv(x) + bias`` for uint8 ``x`` (channels last) and prepacked int8 weights: the s32 sums
    plus the float32 bias, as float32 (every scale 1, every zero point 0)."""
    a, n = layer.attrs, bias.shape[0]
    return torch.ops.onednn.qconv2d_pointwise(x, 1.0, 0, packed, torch.ones(n), torch.zeros(n, dtype=torch.int64),
                                              bias, [a["stride"]] * 2, [a["padding"]] * 2, [1, 1], a["groups"],
                                              1.0, 0, torch.float32, "none", [], "")


def _integer_valued(method):
    """Mark an engine method that takes its inputs in any type holding integers exactly (bool or
    int8 spikes, int32 or int64 integers, float32 or float64 sums). Methods without the mark (a
    new kind's, say) get the types callers see: int8 spikes, int64 otherwise."""
    method.integer_valued = True
    return method


class IntegerEngine:
    """Run a program on integer pixels. ``run`` returns every tensor by name (the trace), or hands
    each layer's output to a callback as soon as it is computed (``observe``)."""

    def __init__(self, program: Program, hw: HwConfig | None = None):
        self.program = program
        self.hw = hw or HwConfig.from_dict(program.header["hw"], "program header")
        self.lif_cfg = self.hw.lif
        self._cache: dict = {}
        self._layers = {layer.name: layer for layer in program.layers}

    # -- helpers ------------------------------------------------------------------------
    def _param(self, layer: Layer, role: str, dtype=torch.int64) -> torch.Tensor:
        """A parameter array in ``dtype``, converted once per engine."""
        key = (layer.arrays[role], dtype)
        if key not in self._cache:
            self._cache[key] = torch.from_numpy(np.asarray(self.program.array(layer, role))).to(dtype)
        return self._cache[key]

    def _cached(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def _layer_bound(self, name: str) -> int | None:
        """Largest |value| of a layer's output proven by the quantizer (``attrs["bound"]``)."""
        layer = self._layers.get(name)
        if layer is None or "bound" not in layer.attrs:
            return None
        lo, hi = layer.attrs["bound"]
        return max(abs(int(lo)), abs(int(hi)))

    @staticmethod
    def _public(kind: str, x: torch.Tensor) -> torch.Tensor:
        """The type callers see: int8 for spikes, int64 for everything else, materialized."""
        dt = torch.int8 if KINDS[kind].output == "spikes" else torch.int64
        return x.to(dt).contiguous()

    def _public_output(self, layer: Layer, out):
        if golden_kind(layer.kind).membrane_output:
            spikes, membranes = out
            return self._public(layer.kind, spikes), membranes.to(torch.int64).contiguous()
        return self._public(layer.kind, out)

    def _public_input(self, produced_by: dict[str, Layer], name: str, x: torch.Tensor) -> torch.Tensor:
        if name in produced_by:
            return self._public(produced_by[name].kind, x)
        return x.to(torch.int64)            # the pixels, or a membrane

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Float images ``[B, C, H, W]`` -> integer pixels ``[B, C, H, W]`` (program's encoding)."""
        return quantize_input(images, self.program.header)

    # -- layers -------------------------------------------------------------------------
    def run_layer(self, layer: Layer, *xs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """One layer on its integer inputs (``[T, B, ...]``, any integer type), by the engine
        method its kind names (``golden.kinds``). Returns int8 spikes or int64 integers; LIF
        layers return (spikes, membranes)."""
        return self._public_output(layer, getattr(self, golden_kind(layer.kind).engine)(layer, *xs))

    def _conv_dtype(self, layer: Layer, x: torch.Tensor, residual: torch.Tensor | None) -> torch.dtype:
        """The float type in which every partial sum of this conv (bias, border correction and
        residual included, in any order) is an exact integer."""
        def static():  # (largest sum_i |W[o, i]|, largest |B[o]| + max |D[o]|)
            w = np.abs(np.asarray(self.program.array(layer, "weight"), dtype=np.float64))
            fixed = np.abs(np.asarray(self.program.array(layer, "bias"), dtype=np.float64))
            if "border" in layer.arrays:
                border = np.abs(np.asarray(self.program.array(layer, "border"), dtype=np.float64))
                fixed = fixed + border.reshape(len(fixed), -1).max(1)
            return float(w.reshape(len(w), -1).sum(1).max()), float(fixed.max())

        wsum, fixed = self._cached(("conv_bound", layer.name), static)
        # spikes are 0/1 by the program's contract; pixels are measured (one small pass)
        xmax = 1 if layer.attrs["input"] == "spikes" else (int(x.abs().max()) if x.numel() else 0)
        bound = wsum * xmax + fixed
        if residual is not None:
            proven = self._layer_bound(layer.attrs["residual"])
            bound += proven if proven is not None else (float(residual.abs().max()) if residual.numel() else 0.0)
        return _exact_float(bound)

    @_integer_valued
    def _conv(self, layer: Layer, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """``B + conv(W, x) (+ D) (+ R)`` as float32 (or float64) integers ``[T, B, O, H', W']``;
        an ``expand`` over T (computed once) when ``x`` and ``R`` are the same at every timestep."""
        a = layer.attrs
        T = x.shape[0]
        once = constant_over_t(x)           # the image: the same conv at every timestep
        if once:
            x = x[:1]
        dt = self._conv_dtype(layer, x, residual)
        t, b = x.shape[:2]
        x = x.reshape(t * b, *x.shape[2:])
        y = self._conv_int8(layer, x) if dt == torch.float32 and a["input"] == "spikes" else None
        if y is None:
            y = self._conv_float(layer, x, dt)
        y = y.reshape(t, b, *y.shape[1:])
        if "border" in layer.arrays:         # the encoding conv's per-position correction at the borders
            y += self._param(layer, "border", dt)
        if residual is not None:
            if once and not constant_over_t(residual):
                y, once = y + residual.to(dt), False
            else:
                y += residual[:1].to(dt) if once else residual.to(dt)
        return y.expand(T, *y.shape[1:]) if once else y

    def _conv_float(self, layer: Layer, x: torch.Tensor, dt: torch.dtype) -> torch.Tensor:
        a = layer.attrs
        return F.conv2d(x.to(dt), self._param(layer, "weight", dt), self._param(layer, "bias", dt),
                        a["stride"], a["padding"], 1, a["groups"])

    def _conv_int8(self, layer: Layer, x: torch.Tensor) -> torch.Tensor | None:
        """The conv of a spike map through oneDNN's u8 x s8 -> s32 convolution (VNNI), or None
        where that is not available or not exact here.

        Exact by construction: spikes are u8 0/1, weights s8, the accumulator s32, and the result
        plus the bias, bounded below 2**24 (the caller's ``_conv_dtype``), comes back as float32
        with all scales 1. oneDNN's int8 kernels for CPUs without VNNI halve the weights
        (7-bit weights), which would not be exact: so the first call of each layer is also run
        through the float convolution and compared with ``==`` (per input shape, since oneDNN
        picks its kernel by shape); a layer that differs stays on the float path."""
        if not _HAS_ONEDNN_INT8:
            return None
        if ("int8 weights", layer.name) not in self._cache:     # s8 weights only (weight_width <= 8)
            w = np.asarray(self.program.array(layer, "weight"))
            self._cache[("int8 weights", layer.name)] = bool(w.min() >= -128 and w.max() <= 127)
        key = ("int8", layer.name, tuple(x.shape))       # prepacked for this input shape, and checked
        if not self._cache[("int8 weights", layer.name)] or self._cache.get(key) is False:
            return None
        if key not in self._cache:
            packed = _int8_prepack(self._param(layer, "weight", torch.int8), layer, x.shape)
        else:
            packed = self._cache[key]
        xq = x.view(torch.uint8) if x.dtype == torch.bool else x.to(torch.uint8)   # bool is a 0/1 byte
        y = _int8_conv(xq.contiguous(memory_format=torch.channels_last), packed,
                       self._param(layer, "bias", torch.float32), layer)
        if key not in self._cache:                        # first call: the same integers as the float conv?
            exact = torch.equal(y, self._conv_float(layer, x, torch.float32))
            self._cache[key] = packed if exact else False
            if not exact:
                return None
            self._cache.pop((layer.arrays["weight"], torch.float32))    # 4 bytes a weight: not needed now
        return y

    @_integer_valued
    def _lif(self, layer: Layer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        th = self._param(layer, "threshold")
        th = th.reshape(-1, *([1] * (x.dim() - 3)))  # channel axis is 2
        return lif_run(x, th, self.lif_cfg, input_shift=layer.attrs["input_shift"])

    @_integer_valued
    def _mask(self, layer: Layer, mask: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return v * mask.to(v.dtype)

    @_integer_valued
    def _token_sum(self, layer: Layer, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.int64).flatten(3).sum(3)

    @_integer_valued
    def _linear(self, layer: Layer, x: torch.Tensor) -> torch.Tensor:
        dt = self._cached(("linear_dtype", layer.name),
                          lambda: _exact_float(self._param(layer, "weight").abs().sum(1).max().item()))
        y = x.to(dt) @ self._param(layer, "weight", dt).T
        return y.to(torch.int64) + self._param(layer, "bias")

    @_integer_valued
    def _readout(self, layer: Layer, *heads: torch.Tensor) -> torch.Tensor:
        return sum(h.to(torch.int64).sum(0) for h in heads)

    @_integer_valued
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
            return att.transpose(-1, -2).reshape(t, b, c, h, w)
        dt = _exact_float(n)
        qk = q.to(dt) * k.to(dt) if a["variant"] == 1 else q.to(dt)
        return qk.flatten(3).sum(3).reshape(t, b, c, 1, 1)

    # -- whole program --------------------------------------------------------------------
    def run(self, pixels: torch.Tensor, *, keep: bool = True, observe: Observer | None = None) -> dict[str, torch.Tensor]:
        """Integer pixels ``[B, C, H, W]`` -> every tensor by name. LIF membranes are under
        ``"<name>.membrane"``; spikes are int8, everything else int64; ``"input"`` is the pixels
        repeated over T (a view). A spike-input program takes spike frames ``[B, T, C, H, W]``
        instead (:func:`golden.encoding.input_over_time`) and its ``"input"`` is them, time first.

        ``keep=False`` returns only the input and the logits, and frees each tensor after its
        last reader. ``observe(layer, output)`` is called right after each layer is computed,
        before anything is freed, with the output as ``run(keep=True)`` would return it (a LIF's
        as ``(spikes, membranes)``), so a caller can consume every layer without the engine
        keeping them all: ``run(pixels, keep=False, observe=callback)``.
        """
        if pixels.dtype.is_floating_point:
            raise TypeError("run() takes integer pixels; use encode() on float images first")
        image = input_over_time(self.program.header, pixels)   # pixels: the same every timestep (a view)
        work: dict[str, torch.Tensor] = {INPUT: image}      # every live tensor, in its compute type
        trace: dict[str, torch.Tensor] = {INPUT: image}     # what is returned, in the callers' types
        produced_by: dict[str, Layer] = {}
        last_use = {}
        for i, layer in enumerate(self.program.layers):
            for n in layer.inputs:
                last_use[n] = i
        for i, layer in enumerate(self.program.layers):
            kind = golden_kind(layer.kind)
            method = getattr(self, kind.engine)
            xs = [work[n] for n in layer.inputs]
            if not getattr(method, "integer_valued", False):
                xs = [self._public_input(produced_by, n, x) for n, x in zip(layer.inputs, xs)]
            out = method(layer, *xs)
            membrane = f"{layer.name}.membrane"
            work[layer.name] = out[0] if kind.membrane_output else out
            produced_by[layer.name] = layer
            if kind.membrane_output and membrane in last_use:     # a membrane read by a later layer
                work[membrane] = out[1]
            if keep or observe is not None:
                public = self._public_output(layer, out)
                if observe is not None:
                    observe(layer, public)
                if keep:
                    if kind.membrane_output:
                        trace[layer.name], trace[membrane] = public
                    else:
                        trace[layer.name] = public
            del out
            for n in set(layer.inputs):
                if last_use[n] == i and n != INPUT:
                    work.pop(n, None)
        output = self.program.output
        if output not in trace:
            trace[output] = self._public(self._layers[output].kind, work[output])
        return trace

    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.run(pixels, keep=False)[self.program.output]

    def classify(self, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
        """Float images -> predicted classes, in batches."""
        preds = [self.logits(self.encode(images[i:i + batch])).argmax(1) for i in range(0, len(images), batch)]
        return torch.cat(preds)
