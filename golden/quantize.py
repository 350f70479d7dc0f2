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
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from contract.config import HwConfig
from contract.program import INPUT, Layer, Program
from golden.fold import (
    AttentionStep,
    ConvStep,
    FoldedModel,
    LIFStep,
    LinearStep,
    MaskStep,
    ReadoutStep,
    TokenMeanStep,
)

__all__ = ["QuantizationError", "Calibration", "calibrate", "quantize", "signed_bits"]


class QuantizationError(ValueError):
    """The model cannot be quantized for this hardware; ``problems`` lists each layer's issue."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        head = f"{len(problems)} layer(s) do not fit the hardware configuration:\n  "
        super().__init__(head + "\n  ".join(problems))


def signed_bits(lo: float, hi: float) -> int:
    """Smallest two's complement width holding every integer in [lo, hi]."""
    lo, hi = int(math.floor(lo)), int(math.ceil(hi))
    n = 1
    while not (-(1 << (n - 1)) <= lo and hi <= (1 << (n - 1)) - 1):
        n += 1
    return n


@dataclass
class Calibration:
    """What the quantizer learns from a few batches of real inputs."""

    input_min: float
    input_max: float
    batches: int


def calibrate(folded: FoldedModel, batches) -> Calibration:
    lo, hi, n = math.inf, -math.inf, 0
    for x in batches:
        lo, hi, n = min(lo, float(x.min())), max(hi, float(x.max())), n + 1
    if n == 0:
        raise ValueError("calibration needs at least one batch")
    return Calibration(lo, hi, n)


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


def _lif_shift_and_threshold(v_th: float, unit: float, max_shift: int = 16, res_bits: int = 8):
    """Integer threshold for a LIF whose input integer has value ``unit`` each: fire when
    ``x * unit >= v_th``  <=>  ``(x << q) >= th``. Exact when ``v_th / unit * 2**q`` is an
    integer for some q <= max_shift; otherwise rounded with ``res_bits`` of resolution."""
    ratio = v_th / unit
    for q in range(max_shift + 1):
        r = ratio * (1 << q)
        if abs(r - round(r)) < 1e-9 * max(1.0, abs(r)):
            return q, int(round(r)), True
    q = max(0, res_bits - max(0, math.ceil(math.log2(max(ratio, 1e-30)))))
    return q, int(round(ratio * (1 << q))), False


def _channel_thresholds(w: np.ndarray, qmax: int, cap: int, *, search: bool) -> np.ndarray:
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


def quantize(folded: FoldedModel, hw: HwConfig, *, weight_bits: int = 8, input_scale: float | None = None,
             calibration: Calibration | None = None, input_shape=None, model_name: str = "model",
             clip: str | None = None) -> Program:
    """Quantize ``folded`` for ``hw``. ``input_scale`` (value of one pixel LSB) wins over the
    calibration; one of them is needed. ``input_shape`` is ``[C, H, W]`` of one image.
    ``clip``: ``"max"`` (no weight clipping) or ``"mse"`` (per-channel search, see
    :func:`_channel_thresholds`); default ``"max"`` at 8 bits and more, ``"mse"`` below."""
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
    qmax = (1 << (weight_bits - 1)) - 1
    th_max = (1 << lif_cfg.threshold_width) - 1
    in_bits = acc_cfg.input_bits

    # --- input encoding -------------------------------------------------------------------
    if input_scale is None:
        if calibration is None:
            raise ValueError("pass input_scale or a calibration")
        signed_in = calibration.input_min < 0
        top = (1 << (in_bits - 1)) - 1 if signed_in else (1 << in_bits) - 1
        input_scale = max(abs(calibration.input_min), abs(calibration.input_max)) / top
    else:
        signed_in = calibration is not None and calibration.input_min < 0
    in_lo, in_hi = ((-(1 << (in_bits - 1)), (1 << (in_bits - 1)) - 1) if signed_in else (0, (1 << in_bits) - 1))

    steps = list(folded)
    by_name = {s.name: s for s in steps}
    convs = [s for s in steps if isinstance(s, ConvStep)]
    problems: list[str] = []

    # --- membrane streams: convs joined by residual additions share their scale ----------
    conv_names = {c.name for c in convs}
    find, union = _union_find(conv_names)
    for c in convs:
        if c.residual is not None:
            if c.residual not in conv_names:
                raise ValueError(f"{c.name}: residual {c.residual!r} is not a conv output")
            union(c.name, c.residual)
    streams: dict[str, list[ConvStep]] = {}
    for c in convs:
        streams.setdefault(find(c.name), []).append(c)

    def readers(name):
        return [s for s in steps if name in s.inputs]

    stream_w: dict[str, np.ndarray] = {}       # stream root -> every contributor's weights [C, n]
    stream_vth: dict[str, float] = {}
    tokens_of: dict[str, int] = {}              # stream root -> tokens, if it feeds the head
    for root, members in streams.items():
        vths, head_tokens = set(), None
        for m in members:
            for r in readers(m.name):
                if isinstance(r, LIFStep):
                    vths.add(r.v_threshold)
                elif isinstance(r, TokenMeanStep):
                    for rr in readers(r.name):
                        if not isinstance(rr, LIFStep):
                            raise ValueError(f"{r.name} must feed a LIF (spike head); it feeds {rr.name} "
                                             "(head_input='membrane' is a multiply, not spike-driven)")
                        vths.add(rr.v_threshold)
                    head_tokens = m.name
                elif isinstance(r, ConvStep) and r.residual == m.name:
                    pass
                else:
                    raise ValueError(f"membrane {m.name} is read by {r.name} ({r.kind}); only LIFs, "
                                     "residual additions and the head's token mean may read a membrane")
        if len(vths) != 1:
            raise ValueError(f"stream of {members[0].name}: its readers have thresholds {sorted(vths)}; "
                             "one shared threshold is needed for one shared scale")
        stream_vth[root] = vths.pop()
        c_out = members[0].out_channels
        stream_w[root] = np.concatenate(
            [m.weight.double().numpy().reshape(c_out, -1) * (1.0 if m.spike_input else input_scale)
             for m in members], axis=1)
        if head_tokens is not None:
            tokens_of[root] = head_tokens

    # spatial shapes, for the head's token count and for descriptors
    shapes: dict[str, list[int]] = {INPUT: list(input_shape)}
    for s in steps:
        if isinstance(s, ConvStep):
            c, h, w = shapes[s.src]
            k, st, p = s.kernel_size, s.stride, s.padding
            shapes[s.name] = [s.out_channels, (h + 2 * p - k) // st + 1, (w + 2 * p - k) // st + 1]
        elif isinstance(s, (LIFStep, MaskStep)):
            shapes[s.name] = list(shapes[s.inputs[-1]])
        elif isinstance(s, AttentionStep):
            c, h, w = shapes[s.q]
            shapes[s.name] = [c, h, w] if s.variant in (3, 4) else [c, 1, 1]
        elif isinstance(s, TokenMeanStep):
            shapes[s.name] = [shapes[s.src][0]]
        elif isinstance(s, LinearStep):
            shapes[s.name] = [s.weight.shape[0]]
        elif isinstance(s, ReadoutStep):
            shapes[s.name] = list(shapes[s.inputs[0]])

    stream_th: dict[str, np.ndarray] = {}      # stream root -> integer threshold per channel
    for root, w in stream_w.items():
        cap = th_max
        if root in tokens_of:
            _, h, wd = shapes[tokens_of[root]]
            cap = max(1, th_max // (h * wd))  # the head LIF's threshold is tokens x th
        stream_th[root] = _channel_thresholds(w, qmax, cap, search=clip == "mse")

    # --- emit layers with integer arrays and worst-case bounds ----------------------------
    layers: list[Layer] = []
    arrays: dict[str, np.ndarray] = {}
    bounds: dict[str, tuple[np.ndarray, np.ndarray]] = {}   # per-channel [lo, hi] of integer tensors
    spike_names = set()
    stream_of = {c.name: find(c.name) for c in convs}
    T = folded.T
    acc_w, bias_w, cur_w = acc_cfg.accumulator_width, acc_cfg.bias_width, lif_cfg.current_width

    def check(layer, what, lo, hi, width):
        need = signed_bits(np.min(lo), np.max(hi))
        if need > width:
            problems.append(f"{layer}: {what} needs {need} bits (worst case [{int(np.min(lo))}, {int(np.max(hi))}]), "
                            f"the hardware has {width}: {need - width} bit(s) short")
        return need

    head_scale = None
    for s in steps:
        if isinstance(s, ConvStep):
            root = stream_of[s.name]
            th = stream_th[root].astype(np.float64)
            unit = 1.0 if s.spike_input else input_scale
            w = s.weight.double().numpy() * unit * th[:, None, None, None]
            b = s.bias.double().numpy() * th
            # clipped: with the MSE search a few outlier weights may saturate (docs/arithmetic.md)
            w_int = np.clip(np.rint(w), -qmax - 1, qmax).astype(np.int64)
            b_int = np.rint(b).astype(np.int64)
            x_lo, x_hi = (0, 1) if s.spike_input else (in_lo, in_hi)
            flat = w_int.reshape(w_int.shape[0], -1)
            hi = b_int + np.maximum(flat * x_hi, flat * x_lo).sum(1)
            lo = b_int + np.minimum(flat * x_hi, flat * x_lo).sum(1)
            if s.residual is not None:
                rlo, rhi = bounds[s.residual]
                lo, hi = lo + rlo, hi + rhi
            bounds[s.name] = (lo, hi)
            need = check(s.name, "accumulator", lo, hi, acc_w)
            check(s.name, "bias", b_int, b_int, bias_w)
            arrays[f"{s.name}.weight"] = w_int.astype(np.int32)
            arrays[f"{s.name}.bias"] = b_int.astype(np.int32)
            layers.append(Layer(
                s.name, "conv", list(s.inputs), shapes[s.name],
                attrs=dict(in_shape=shapes[s.src], in_channels=s.in_channels, out_channels=s.out_channels,
                           kernel=s.kernel_size, stride=s.stride, padding=s.padding, groups=s.groups,
                           residual=s.residual, input="spikes" if s.spike_input else "pixels",
                           scale=(stream_vth[root] / th).tolist(), acc_bits=need,
                           bound=[int(lo.min()), int(hi.max())], sources=list(s.sources)),
                arrays={"weight": f"{s.name}.weight", "bias": f"{s.name}.bias"}))
        elif isinstance(s, LIFStep):
            src = by_name[s.src]
            if isinstance(src, ConvStep):
                root = stream_of[src.name]
                th, q, exact = stream_th[root], 0, True
            elif isinstance(src, TokenMeanStep):
                root = stream_of[src.src]
                tokens = int(np.prod(shapes[src.src][1:]))
                th, q, exact = stream_th[root] * tokens, 0, True
            elif isinstance(src, AttentionStep):
                unit = src.scale if src.variant in (3, 4) else 1.0
                q, th0, exact = _lif_shift_and_threshold(s.v_threshold, unit)
                th = np.full(shapes[src.name][0], th0, dtype=np.int64)
            else:
                raise ValueError(f"{s.name}: a LIF must read a conv, the token mean or the attention, not {src.kind}")
            lo, hi = bounds[s.src]
            lo, hi = lo * (1 << q), hi * (1 << q)
            check(s.name, "current", lo, hi, cur_w)
            if np.max(th) > th_max or np.min(th) < 0:
                problems.append(f"{s.name}: threshold up to {int(np.max(th))} needs "
                                f"{int(np.max(th)).bit_length()} unsigned bits, the hardware has {lif_cfg.threshold_width}")
            arrays[f"{s.name}.threshold"] = th.astype(np.int64)
            spike_names.add(s.name)
            layers.append(Layer(s.name, "lif", [s.src], shapes[s.name],
                                attrs=dict(channels=len(th), input_shift=q, exact_threshold=exact,
                                           v_threshold=s.v_threshold, sources=list(s.sources)),
                                arrays={"threshold": f"{s.name}.threshold"}))
            bounds[s.name] = (np.zeros(len(th)), np.ones(len(th)))
        elif isinstance(s, AttentionStep):
            c, h, w = shapes[s.q]
            n = h * w
            d = c // s.num_heads
            top = n * d if s.variant in (3, 4) else n
            bounds[s.name] = (np.zeros(c), np.full(c, top))
            check(s.name, "accumulator", 0, top, acc_w)
            layers.append(Layer(s.name, "sdsa", list(s.inputs), shapes[s.name],
                                attrs=dict(variant=s.variant, heads=s.num_heads, tokens=n, head_dim=d,
                                           q=s.q, k=s.k, v=s.v, scale=s.scale, sources=list(s.sources))))
        elif isinstance(s, MaskStep):
            bounds[s.name] = bounds[s.v]
            spike_names.add(s.name)
            layers.append(Layer(s.name, "mask", list(s.inputs), shapes[s.name],
                                attrs=dict(mask=s.mask, v=s.v, sources=list(s.sources))))
        elif isinstance(s, TokenMeanStep):
            c, h, w = shapes[s.src]
            lo, hi = bounds[s.src]
            bounds[s.name] = (lo * h * w, hi * h * w)
            check(s.name, "accumulator", lo * h * w, hi * h * w, acc_w)
            layers.append(Layer(s.name, "token_sum", [s.src], shapes[s.name],
                                attrs=dict(tokens=h * w, replaces="token_mean", sources=list(s.sources))))
        elif isinstance(s, LinearStep):
            if s.src not in spike_names:
                raise ValueError(f"{s.name} reads {s.src}, which is not a spike tensor")
            if head_scale is None:
                heads = [x for x in steps if isinstance(x, LinearStep)]
                head_scale = max(float(x.weight.abs().max()) for x in heads) / qmax
            w_int = np.rint(s.weight.double().numpy() / head_scale).astype(np.int64)
            b_int = np.rint(s.bias.double().numpy() / head_scale).astype(np.int64)
            hi = b_int + np.maximum(w_int, 0).sum(1)
            lo = b_int + np.minimum(w_int, 0).sum(1)
            bounds[s.name] = (lo, hi)
            need = check(s.name, "accumulator", lo, hi, acc_w)
            check(s.name, "bias", b_int, b_int, bias_w)
            arrays[f"{s.name}.weight"] = w_int.astype(np.int32)
            arrays[f"{s.name}.bias"] = b_int.astype(np.int32)
            layers.append(Layer(s.name, "linear", [s.src], shapes[s.name],
                                attrs=dict(in_features=s.weight.shape[1], out_features=s.weight.shape[0],
                                           scale=head_scale, acc_bits=need, sources=list(s.sources)),
                                arrays={"weight": f"{s.name}.weight", "bias": f"{s.name}.bias"}))
        elif isinstance(s, ReadoutStep):
            lo = sum(bounds[h][0] for h in s.inputs) * T
            hi = sum(bounds[h][1] for h in s.inputs) * T
            bounds[s.name] = (lo, hi)
            check(s.name, "accumulator", lo, hi, acc_w)
            # real logits = integer * scale: the float readout averages over T and heads
            layers.append(Layer(s.name, "readout", list(s.inputs), shapes[s.name],
                                attrs=dict(scale=head_scale / (T * len(s.inputs)), sources=list(s.sources))))
        else:
            raise ValueError(f"{s.name}: cannot quantize a {type(s).__name__}")

    if problems:
        raise QuantizationError(problems)

    header = dict(
        model=model_name, T=T, weight_bits=weight_bits,
        input=dict(shape=list(input_shape), bits=in_bits, signed=bool(signed_in), scale=float(input_scale),
                   encoding="bit planes, two's complement" if signed_in else "bit planes, unsigned"),
        hw=hw.to_dict(), hw_hash=hw.hash,
        classes=shapes[steps[-1].name][0],
    )
    program = Program(header=header, layers=layers, arrays=arrays)
    program.validate()
    return program


def quantize_input(x: torch.Tensor, header: dict) -> torch.Tensor:
    """Float image(s) -> integer pixels as the program's input encoding says (round, clamp)."""
    spec = header["input"]
    bits, signed = spec["bits"], spec["signed"]
    lo, hi = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1))
    return torch.clamp(torch.round(x.double() / spec["scale"]), lo, hi).to(torch.int64)
