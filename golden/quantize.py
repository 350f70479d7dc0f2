"""Post-training quantization: a folded float model -> an integer :class:`~contract.program.Program`.

The scheme (docs/arithmetic.md, "Quantization scheme"):

* **Threshold-anchored scales.** Every membrane tensor (a conv's output, with its residual
  additions) is an integer in units of ``s[c] = v_th / th[c]`` per channel, where ``th[c]`` is
  the *integer* threshold of the LIF neurons that read it. The threshold is therefore exact, and
  the float LIF's membrane is ``H_int * s / 2**frac_bits`` exactly while the fixed point lasts.
* **Per-channel where a layer feeds only a neuron**: ``th[c] = floor(qmax / max|W[c]|)``
  (capped by the threshold width), so each output channel uses its whole weight range.
* **Shared where values meet in a membrane shortcut**: all convs that add into one residual
  stream share its per-channel ``th[c]``, chosen from the largest weight of any contributor.
* **Encoding layer**: pixels become integers ``x_int = round(x / s_x)`` (``input_bits`` bits);
  its weights are quantized as ``W * s_x`` so the conv of integer pixels lands in stream units.
* **Attention neuron**: SDSA-3 fires when ``0.125 * A >= 0.5``, i.e. on the integer ``A`` with
  threshold 4 (exact). SDSA-4's learned threshold is ``round(v_th / scale * 2**q)`` on ``A << q``.
  SDSA-1/2: threshold 0.5 on a count becomes threshold 1 on ``count << 1`` (exact).
* **Head**: the token mean feeding the classifier LIF becomes a token *sum* with the threshold
  multiplied by the token count (exact); the linear head uses one scale for all classes (and the
  distillation head) so the argmax is comparable.

The quantizer then propagates worst-case integer bounds through the program and proves every
accumulator, current, weight, bias and threshold fits the hardware configuration, or raises
:class:`QuantizationError` naming each layer that does not and by how many bits.

:func:`quantize` is the ordered list of small passes in :mod:`golden.passes` over one
:class:`~golden.quantgraph.QuantGraph`; what a pass does for one layer is its kind's rule in
:mod:`golden.kinds`.
"""
from __future__ import annotations

import math

import torch

from contract.config import HwConfig
from contract.program import Program
from golden.fold import FoldedModel
from golden.passes import PASSES
from golden.passes import channel_thresholds as _channel_thresholds  # noqa: F401  (tests use the old name)
from golden.quantgraph import Calibration, QuantGraph, QuantizationError, signed_bits

__all__ = ["QuantizationError", "Calibration", "calibrate", "quantize", "quantize_input", "signed_bits",
           "PASSES"]


def calibrate(folded: FoldedModel, batches) -> Calibration:
    lo, hi, n = math.inf, -math.inf, 0
    for x in batches:
        lo, hi, n = min(lo, float(x.min())), max(hi, float(x.max())), n + 1
    if n == 0:
        raise ValueError("calibration needs at least one batch")
    return Calibration(lo, hi, n)


def quantize(folded: FoldedModel, hw: HwConfig, *, weight_bits: int = 8, input_scale: float | None = None,
             calibration: Calibration | None = None, input_shape=None, model_name: str = "model",
             clip: str | None = None, spike_frames: bool = False) -> Program:
    """Quantize ``folded`` for ``hw``: the passes of :data:`golden.passes.PASSES` in order.

    ``input_scale`` (value of one pixel LSB) wins over the calibration; one of them is needed.
    ``input_shape`` is ``[C, H, W]`` of one image. ``clip``: ``"max"`` (no weight clipping) or
    ``"mse"`` (per-channel search, see :func:`golden.passes.channel_thresholds`); default
    ``"max"`` at 8 bits and more, ``"mse"`` below. ``spike_frames``: the input is binary frames,
    one per timestep (``[T, B, C, H, W]``, an event camera's): the encoding conv is a spike conv
    (``golden.encoding``; no input scale or calibration needed)."""
    clip = clip or ("max" if weight_bits >= 8 else "mse")
    if clip not in ("max", "mse"):
        raise ValueError(f"clip must be 'max' or 'mse', not {clip!r}")
    if hw.lif is None or hw.accumulator is None:
        raise ValueError(f"{hw.source}: quantizing needs both a 'lif' and an 'accumulator' section")
    acc_cfg, lif_cfg = hw.accumulator, hw.lif
    if not 2 <= weight_bits <= acc_cfg.weight_width:
        raise ValueError(f"weight_bits must be in [2, accumulator.weight_width = {acc_cfg.weight_width}], not {weight_bits}")
    if lif_cfg.reset != "hard" or lif_cfg.leak_shift != 1:
        raise ValueError(f"{hw.source}: Meta-SpikeFormer's neurons are tau = 2 with a hard reset; "
                         f"lif.reset = {lif_cfg.reset!r}, lif.leak_shift = {lif_cfg.leak_shift} do not match")
    if input_shape is None:
        raise ValueError("input_shape [C, H, W] is required")
    graph = QuantGraph(list(folded), hw, folded.T, weight_bits, clip, list(input_shape), model_name,
                       input_scale=input_scale, calibration=calibration, spike_frames=spike_frames)
    for quantize_pass in PASSES:
        quantize_pass(graph)
    return graph.program


def quantize_input(x: torch.Tensor, header: dict) -> torch.Tensor:
    """Float image(s) -> integer pixels as the program's input encoding says (round, clamp)."""
    spec = header["input"]
    bits, signed = spec["bits"], spec["signed"]
    lo, hi = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1))
    return torch.clamp(torch.round(x.double() / spec["scale"]), lo, hi).to(torch.int64)
