"""The layer kinds on the golden side: one class per kind, holding how the quantizer lowers its
folded step and which integer-engine function runs it.

This is the only place in ``golden`` that enumerates kinds (:data:`GOLDEN_KINDS`, keyed by the
names of ``contract.program.KINDS``; the hardware facts of the same kinds are in
``hwgen.compiler.kinds``). The passes (:mod:`golden.passes`) walk the folded steps and ask each
step's kind:

==================  ===========================================================================
``shape``           output shape per timestep and image (``infer_shapes``)
``reads_membrane``  what a reader of a membrane imposes on its stream's scale: the float
                    thresholds it compares the membrane with, and the tokens it sums first
                    (``choose_thresholds``); only LIFs, residual additions and the head's token
                    sum may read a membrane
``lif_threshold``   the integer threshold and input shift of a LIF reading this kind's output
                    (``quantize_parameters``, for the LIF)
``parameters``      integer arrays and scalar results (``quantize_parameters``)
``bound``           worst-case ``(lo, hi)`` per channel of the output (``propagate_bounds``)
``fit``             the problem lines of what does not fit the hardware (``check_fit``)
``layer``           the program's layer descriptor (``emit_program``)
==================  ===========================================================================

and the integer engine (:class:`golden.intsim.IntegerEngine`) runs a layer with the method
named by ``engine``. The arithmetic of each kind is docs/arithmetic.md; the attribute fields
are docs/program.md. docs/adding-a-layer-kind.md says what a new kind needs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from contract.program import KINDS, KindFormat, Layer, check_registry
from golden.fold import (
    AttentionStep,
    ConvStep,
    LIFStep,
    LinearStep,
    MaskStep,
    ReadoutStep,
    Step,
    TokenMeanStep,
)
from golden.quantgraph import QuantGraph, shortfall, signed_bits

__all__ = ["Kind", "GOLDEN_KINDS", "SDSA_VARIANTS", "SdsaVariant", "golden_kind", "kind_of_step",
           "sdsa_variant", "lif_shift_and_threshold"]


def lif_shift_and_threshold(v_th: float, unit: float, max_shift: int = 16, res_bits: int = 8):
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


@dataclass(frozen=True)
class SdsaVariant:
    """What the quantizer needs to know of one SDSA variant (docs/arithmetic.md, ``sdsa``)."""

    matrix: bool    # an attention value per token, ``scale * Q (K^T V)`` [C, H, W], whose unit is
                    # ``scale``; else a count per channel over the tokens [C, 1, 1], unit 1


#: SDSA-1 counts ``Q AND K``, SDSA-2 counts ``Q``, SDSA-3 and 4 compute ``Q (K^T V)`` (4 with a
#: learned threshold). The float op is golden.fold.AttentionStep, the integer one
#: golden.intsim.IntegerEngine._sdsa, the unit hwgen.units.sdsa.
SDSA_VARIANTS = {
    1: SdsaVariant(matrix=False),
    2: SdsaVariant(matrix=False),
    3: SdsaVariant(matrix=True),
    4: SdsaVariant(matrix=True),
}


def sdsa_variant(s: AttentionStep) -> SdsaVariant:
    try:
        return SDSA_VARIANTS[s.variant]
    except KeyError:
        raise ValueError(f"{s.name}: SDSA-{s.variant} is not one of {sorted(SDSA_VARIANTS)}") from None


class Kind:
    """One layer kind (see the module docstring for the hooks). The defaults say "this kind
    does not do that"."""

    name: str = ""                 # the program's kind (contract.program.KINDS)
    step: type[Step] = Step        # the folded step lowered to it
    engine: str = ""               # golden.intsim.IntegerEngine method that runs it
    membrane_output: bool = False  # the engine also returns the pre-spike membranes ("<name>.membrane")
    stream: bool = False           # its output is a membrane: in a stream's units, joined by residuals
    head: bool = False             # a classifier layer: all of them share one weight scale
    stored: dict = {}              # role -> dtype of its array in the program (quantized as int64)

    @property
    def format(self) -> KindFormat:
        return KINDS[self.name]

    def shape(self, g: QuantGraph, s) -> list[int]:
        raise NotImplementedError

    def reads_membrane(self, g: QuantGraph, s, membrane: str) -> tuple[list[float], int]:
        raise ValueError(f"membrane {membrane} is read by {s.name} ({s.kind}); only LIFs, "
                         "residual additions and the head's token mean may read a membrane")

    def lif_threshold(self, g: QuantGraph, s, lif: LIFStep) -> tuple[int, np.ndarray, bool]:
        raise ValueError(f"{lif.name}: a LIF must read a conv, the token mean or the attention, not {s.kind}")

    def parameters(self, g: QuantGraph, s) -> None:
        """Write the step's integer arrays (int64) into ``g.arrays`` as ``"<name>.<role>"`` and
        its scalar results into ``g.attrs[name]``."""

    def bound(self, g: QuantGraph, s) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def fit(self, g: QuantGraph, s) -> list[str | None]:
        return []

    def layer(self, g: QuantGraph, s) -> Layer:
        raise NotImplementedError


def _accumulator(g: QuantGraph, s) -> str | None:
    lo, hi = g.bounds[s.name]
    return shortfall(s.name, "accumulator", lo, hi, g.hw.accumulator.accumulator_width)


def _bias(g: QuantGraph, s) -> str | None:
    b = g.arrays[f"{s.name}.bias"]
    return shortfall(s.name, "bias", b, b, g.hw.accumulator.bias_width)


def _acc_bits(g: QuantGraph, s) -> int:
    lo, hi = g.bounds[s.name]
    return signed_bits(np.min(lo), np.max(hi))


def _weighted_bounds(w_int: np.ndarray, b_int: np.ndarray, x_lo: int, x_hi: int):
    """Worst case of ``b + sum_i w_i x_i`` per output channel for every ``x_i`` in [x_lo, x_hi]."""
    flat = w_int.reshape(w_int.shape[0], -1)
    hi = b_int + np.maximum(flat * x_hi, flat * x_lo).sum(1)
    lo = b_int + np.minimum(flat * x_hi, flat * x_lo).sum(1)
    return lo, hi


class Conv(Kind):
    """A conv into a membrane stream (the encoding layer reads pixels, or spike frames; every
    other one spikes):
    weights and bias in the stream's per-channel threshold units."""

    name, step, engine, stream = "conv", ConvStep, "_conv", True
    stored = {"weight": np.int32, "bias": np.int32, "border": np.int32}

    def shape(self, g, s: ConvStep):
        c, h, w = g.shapes[s.src]
        k, st, p = s.kernel_size, s.stride, s.padding
        return [s.out_channels, (h + 2 * p - k) // st + 1, (w + 2 * p - k) // st + 1]

    def reads_membrane(self, g, s: ConvStep, membrane):
        if s.residual == membrane:
            return [], 1       # the membrane shortcut: same stream, same scale
        return super().reads_membrane(g, s, membrane)

    def lif_threshold(self, g, s: ConvStep, lif):
        return 0, g.stream(s.name).thresholds, True

    def parameters(self, g, s: ConvStep):
        th = g.stream(s.name).thresholds.astype(np.float64)
        unit = 1.0 if g.reads_spikes(s) else g.input_scale
        w = s.weight.double().numpy() * unit * th[:, None, None, None]
        b = s.bias.double().numpy() * th
        # clipped: with the MSE search a few outlier weights may saturate (docs/arithmetic.md)
        g.arrays[f"{s.name}.weight"] = np.clip(np.rint(w), -g.qmax - 1, g.qmax).astype(np.int64)
        g.arrays[f"{s.name}.bias"] = b_int = np.rint(b).astype(np.int64)
        if s.border is not None:
            # the encoding conv's border correction (golden.encoding): the whole per-position bias
            # rounded, minus the channel's bias (zero in the interior, where the two are one value)
            full = np.rint((s.bias.double().numpy()[:, None, None] + s.border.double().numpy()) * th[:, None, None])
            g.arrays[f"{s.name}.border"] = full.astype(np.int64) - b_int[:, None, None]

    def bound(self, g, s: ConvStep):
        x_lo, x_hi = (0, 1) if g.reads_spikes(s) else g.input_range
        lo, hi = _weighted_bounds(g.arrays[f"{s.name}.weight"], g.arrays[f"{s.name}.bias"], x_lo, x_hi)
        if s.border is not None:
            border = g.arrays[f"{s.name}.border"].reshape(len(lo), -1)
            lo, hi = lo + border.min(1), hi + border.max(1)
        if s.residual is not None:
            rlo, rhi = g.bounds[s.residual]
            lo, hi = lo + rlo, hi + rhi
        return lo, hi

    def fit(self, g, s):
        return [_accumulator(g, s), _bias(g, s)]

    def layer(self, g, s: ConvStep):
        stream = g.stream(s.name)
        lo, hi = g.bounds[s.name]
        return Layer(
            s.name, self.name, list(s.inputs), g.shapes[s.name],
            attrs=dict(in_shape=g.shapes[s.src], in_channels=s.in_channels, out_channels=s.out_channels,
                       kernel=s.kernel_size, stride=s.stride, padding=s.padding, groups=s.groups,
                       residual=s.residual, input="spikes" if g.reads_spikes(s) else "pixels",
                       scale=(stream.v_threshold / stream.thresholds.astype(np.float64)).tolist(),
                       acc_bits=_acc_bits(g, s), bound=[int(lo.min()), int(hi.max())], sources=list(s.sources)),
            arrays={"weight": f"{s.name}.weight", "bias": f"{s.name}.bias",
                    **({"border": f"{s.name}.border"} if s.border is not None else {})})


class Lif(Kind):
    """LIF neurons: the threshold comes from what they read (its ``lif_threshold``); the
    current may be shifted left so that a fractional threshold becomes an integer."""

    name, step, engine, membrane_output = "lif", LIFStep, "_lif", True
    stored = {"threshold": np.int64}

    def shape(self, g, s: LIFStep):
        return list(g.shapes[s.src])

    def reads_membrane(self, g, s: LIFStep, membrane):
        return [s.v_threshold], 1

    def parameters(self, g, s: LIFStep):
        src = g.step(s.src)
        q, th, exact = golden_kind(src).lif_threshold(g, src, s)
        g.arrays[f"{s.name}.threshold"] = th.astype(np.int64)
        g.attrs[s.name] = dict(input_shift=q, exact_threshold=exact)

    def bound(self, g, s):
        channels = len(g.arrays[f"{s.name}.threshold"])
        return np.zeros(channels), np.ones(channels)

    def fit(self, g, s: LIFStep):
        lo, hi = g.bounds[s.src]
        shift = 1 << g.attrs[s.name]["input_shift"]
        problems = [shortfall(s.name, "current", lo * shift, hi * shift, g.hw.lif.current_width)]
        th = g.arrays[f"{s.name}.threshold"]
        if np.max(th) > g.threshold_max or np.min(th) < 0:
            problems.append(f"{s.name}: threshold up to {int(np.max(th))} needs {int(np.max(th)).bit_length()} "
                            f"unsigned bits, the hardware has {g.hw.lif.threshold_width}")
        return problems

    def layer(self, g, s: LIFStep):
        a = g.attrs[s.name]
        return Layer(s.name, self.name, [s.src], g.shapes[s.name],
                     attrs=dict(channels=len(g.arrays[f"{s.name}.threshold"]), input_shift=a["input_shift"],
                                exact_threshold=a["exact_threshold"], v_threshold=s.v_threshold,
                                sources=list(s.sources)),
                     arrays={"threshold": f"{s.name}.threshold"})


class Sdsa(Kind):
    """Spike-driven self-attention (no weights): an integer attention value, or a count per
    channel (SDSA-1/2), whose value unit the attention LIF's threshold absorbs."""

    name, step, engine = "sdsa", AttentionStep, "_sdsa"

    @staticmethod
    def geometry(g, s: AttentionStep) -> tuple[int, int, int]:
        """(channels, tokens, head dimension) of the attention."""
        c, h, w = g.shapes[s.q]
        return c, h * w, c // s.num_heads

    def shape(self, g, s: AttentionStep):
        c, h, w = g.shapes[s.q]
        return [c, h, w] if sdsa_variant(s).matrix else [c, 1, 1]

    def lif_threshold(self, g, s: AttentionStep, lif):
        unit = s.scale if sdsa_variant(s).matrix else 1.0
        q, th0, exact = lif_shift_and_threshold(lif.v_threshold, unit)
        return q, np.full(g.shapes[s.name][0], th0, dtype=np.int64), exact

    def bound(self, g, s: AttentionStep):
        c, n, d = self.geometry(g, s)
        # binary Q, K, V: an entry of K^T V counts at most n tokens, A sums d of them; a count, n
        top = n * d if sdsa_variant(s).matrix else n
        return np.zeros(c), np.full(c, top)

    def fit(self, g, s):
        return [_accumulator(g, s)]

    def layer(self, g, s: AttentionStep):
        _, n, d = self.geometry(g, s)
        return Layer(s.name, self.name, list(s.inputs), g.shapes[s.name],
                     attrs=dict(variant=s.variant, heads=s.num_heads, tokens=n, head_dim=d,
                                q=s.q, k=s.k, v=s.v, scale=s.scale, sources=list(s.sources)))


class Mask(Kind):
    """SDSA-1/2's ``v AND mask``: spikes in, spikes out."""

    name, step, engine = "mask", MaskStep, "_mask"

    def shape(self, g, s: MaskStep):
        return list(g.shapes[s.inputs[-1]])

    def bound(self, g, s: MaskStep):
        return g.bounds[s.v]

    def layer(self, g, s: MaskStep):
        return Layer(s.name, self.name, list(s.inputs), g.shapes[s.name],
                     attrs=dict(mask=s.mask, v=s.v, sources=list(s.sources)))


class TokenSum(Kind):
    """The head's token mean as a token *sum*: its LIF's threshold is multiplied by the token
    count instead (exact: the LIF is homogeneous)."""

    name, step, engine = "token_sum", TokenMeanStep, "_token_sum"

    def shape(self, g, s: TokenMeanStep):
        return [g.shapes[s.src][0]]

    def reads_membrane(self, g, s: TokenMeanStep, membrane):
        thresholds = []
        for r in g.readers(s.name):
            if not isinstance(r, LIFStep):
                raise ValueError(f"{s.name} must feed a LIF (spike head); it feeds {r.name} "
                                 "(head_input='membrane' is a multiply, not spike-driven)")
            thresholds.append(r.v_threshold)
        return thresholds, int(np.prod(g.shapes[membrane][1:]))

    def lif_threshold(self, g, s: TokenMeanStep, lif):
        tokens = int(np.prod(g.shapes[s.src][1:]))
        return 0, g.stream(s.src).thresholds * tokens, True

    def bound(self, g, s: TokenMeanStep):
        _, h, w = g.shapes[s.src]
        lo, hi = g.bounds[s.src]
        return lo * h * w, hi * h * w

    def fit(self, g, s):
        return [_accumulator(g, s)]

    def layer(self, g, s: TokenMeanStep):
        _, h, w = g.shapes[s.src]
        return Layer(s.name, self.name, [s.src], g.shapes[s.name],
                     attrs=dict(tokens=h * w, replaces="token_mean", sources=list(s.sources)))


class Linear(Kind):
    """The classifier on spikes: one scale for every class and head (``g.head_scale``), so the
    argmax of the integer logits is comparable across them."""

    name, step, engine, head = "linear", LinearStep, "_linear", True
    stored = {"weight": np.int32, "bias": np.int32}

    def shape(self, g, s: LinearStep):
        return [s.weight.shape[0]]

    def parameters(self, g, s: LinearStep):
        if s.src not in g.step_names or kind_of_step(g.step(s.src)).format.output != "spikes":
            raise ValueError(f"{s.name} reads {s.src}, which is not a spike tensor")
        g.arrays[f"{s.name}.weight"] = np.rint(s.weight.double().numpy() / g.head_scale).astype(np.int64)
        g.arrays[f"{s.name}.bias"] = np.rint(s.bias.double().numpy() / g.head_scale).astype(np.int64)

    def bound(self, g, s: LinearStep):
        return _weighted_bounds(g.arrays[f"{s.name}.weight"], g.arrays[f"{s.name}.bias"], 0, 1)

    def fit(self, g, s):
        return [_accumulator(g, s), _bias(g, s)]

    def layer(self, g, s: LinearStep):
        return Layer(s.name, self.name, [s.src], g.shapes[s.name],
                     attrs=dict(in_features=s.weight.shape[1], out_features=s.weight.shape[0],
                                scale=g.head_scale, acc_bits=_acc_bits(g, s), sources=list(s.sources)),
                     arrays={"weight": f"{s.name}.weight", "bias": f"{s.name}.bias"})


class Readout(Kind):
    """Logits: each head summed over the timesteps, the heads summed (the float readout averages
    both, which the scale carries)."""

    name, step, engine = "readout", ReadoutStep, "_readout"

    def shape(self, g, s: ReadoutStep):
        return list(g.shapes[s.inputs[0]])

    def bound(self, g, s: ReadoutStep):
        return (sum(g.bounds[h][0] for h in s.inputs) * g.T, sum(g.bounds[h][1] for h in s.inputs) * g.T)

    def fit(self, g, s):
        return [_accumulator(g, s)]

    def layer(self, g, s: ReadoutStep):
        # real logits = integer * scale: the float readout averages over T and heads
        return Layer(s.name, self.name, list(s.inputs), g.shapes[s.name],
                     attrs=dict(scale=g.head_scale / (g.T * len(s.inputs)), sources=list(s.sources)))


#: program kind -> its golden rules, in the order of contract.program.KINDS
GOLDEN_KINDS: dict[str, Kind] = {k.name: k for k in (Conv(), Lif(), Sdsa(), Mask(), TokenSum(), Linear(), Readout())}
check_registry("golden.kinds.GOLDEN_KINDS", GOLDEN_KINDS)
_BY_STEP = {k.step: k for k in GOLDEN_KINDS.values()}


def golden_kind(x: str | Step) -> Kind:
    """The kind of a program kind name, or of a folded step."""
    if isinstance(x, str):
        try:
            return GOLDEN_KINDS[x]
        except KeyError:
            raise ValueError(f"unknown layer kind {x!r}: one of {', '.join(GOLDEN_KINDS)}") from None
    return kind_of_step(x)


def kind_of_step(s: Step) -> Kind:
    try:
        return _BY_STEP[type(s)]
    except KeyError:
        raise ValueError(f"{s.name}: cannot quantize a {type(s).__name__}") from None
