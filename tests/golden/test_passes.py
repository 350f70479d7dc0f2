"""Each pass of the quantizer (golden/passes.py) on small hand-built folded models whose answers
are worked out below from the scheme (docs/arithmetic.md, "Quantization scheme"), not from the
code: the weights are short binary fractions, so every product and rounding is exact.

Model A (1 x 4 x 4 pixels, input_scale 1/16, 8-bit unsigned pixels, T = 2)::

    enc   conv 1->2, 3x3, pad 1   (pixels)          stream A
    lif_a lif(enc)
    res   conv 2->2, 1x1, residual enc               stream A
    lif_b lif(res)
    down  conv 2->3, 3x3, stride 2, pad 1            stream B, 2 x 2 = 4 tokens
    tm    token mean(down) -> lif_h -> head (linear 3->5) -> logits (readout)

Stream A's thresholds per channel, from the largest weight of any contributor in units of the
threshold (the encoding layer's weights act on pixels of 1/16):

    ch 0: max(0.5 / 16, 0.25) = 0.25   -> th = floor(127 / 0.25) = 508
    ch 1: max(8.0 / 16, 0.125) = 0.5   -> th = floor(127 / 0.5)  = 254

Stream B feeds the head's token sum over 4 tokens, so its thresholds are capped at
floor(65535 / 4) = 16383: ch 0 (weights 1/1024) would want 130048 -> 16383; ch 1 (max 0.5) 254;
ch 2 (all zero) takes the cap.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from contract.config import load_config
from contract.program import INPUT
from golden import passes
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
from golden.quantgraph import Calibration, QuantGraph, QuantizationError

HW = load_config("configs/hw/digits.yaml")


def t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


def model_a() -> FoldedModel:
    enc_w = torch.zeros(2, 1, 3, 3)
    enc_w[0, 0, 1, 1], enc_w[0, 0, 0, 0], enc_w[1, 0, 1, 1] = 0.5, -0.25, 8.0
    res_w = t([[0.25, -0.1875], [0.125, 0.0625]])[:, :, None, None]
    down_w = torch.zeros(3, 2, 3, 3)
    down_w[0] = 1 / 1024
    down_w[1] = 0.125
    down_w[1, :, 1, 1] = 0.5
    head_w = t([[1.0, -1.0, 0.0], [0.25, 0.0, -0.75], [0.0, 0.25, 0.25], [-0.75, 0.0, 1.0], [0.0, 0.0, 0.0]])
    steps = [
        ConvStep("enc", INPUT, enc_w, t([0.5, -1.0]), padding=1),
        LIFStep("lif_a", "enc", v_threshold=1.0),
        ConvStep("res", "lif_a", res_w, t([0.25, 0.0]), residual="enc"),
        LIFStep("lif_b", "res", v_threshold=1.0),
        ConvStep("down", "lif_b", down_w, torch.zeros(3), stride=2, padding=1),
        TokenMeanStep("tm", "down"),
        LIFStep("lif_h", "tm", v_threshold=1.0),
        LinearStep("head", "lif_h", head_w, t([0.125, 0.0, -0.25, 0.0, 0.0])),
        ReadoutStep("logits", ["head"]),
    ]
    return FoldedModel(steps, T=2, output="logits")


def model_b(variant: int, attn_threshold: float = 0.5) -> FoldedModel:
    """Attention on 2 x 2 = 4 tokens, 4 channels in 2 heads of 2."""
    eye = torch.eye(4)[:, :, None, None]
    steps = [ConvStep("enc", INPUT, torch.ones(4, 1, 1, 1), torch.zeros(4)),
             LIFStep("lif_in", "enc", v_threshold=1.0)]
    names = {}
    for x in ("q", "k", "v"):
        if x == "k" and variant == 2:
            names[x] = None
            continue
        steps += [ConvStep(f"{x}_conv", "lif_in", eye, torch.zeros(4)), LIFStep(f"{x}_lif", f"{x}_conv", v_threshold=1.0)]
        names[x] = f"{x}_lif"
    steps += [AttentionStep("sdsa", names["q"], names["k"], names["v"], variant=variant, num_heads=2, scale=0.125),
              LIFStep("attn_lif", "sdsa", v_threshold=attn_threshold)]
    a = "attn_lif"
    if variant in (1, 2):
        steps.append(MaskStep("mask", "attn_lif", "v_lif"))
        a = "mask"
    steps += [ConvStep("proj", a, eye, torch.zeros(4), residual="enc"),
              TokenMeanStep("tm", "proj"), LIFStep("lif_h", "tm", v_threshold=1.0),
              LinearStep("head", "lif_h", torch.ones(3, 4), torch.zeros(3)), ReadoutStep("logits", ["head"])]
    return FoldedModel(steps, T=1, output="logits")


def graph(folded: FoldedModel, *, shape=(1, 4, 4), hw=HW, upto: str | None = None, **options) -> QuantGraph:
    """The graph of ``folded`` after the passes up to and including ``upto``."""
    options = {"weight_bits": 8, "clip": "max", "input_scale": 1 / 16, **options}
    g = QuantGraph(list(folded), hw, folded.T, options.pop("weight_bits"), options.pop("clip"), list(shape), "test",
                   **options)
    for p in passes.PASSES:
        p(g)
        if p.__name__ == upto:
            break
    return g


def with_widths(*, accumulator=None, bias=None, current=None, threshold=None):
    acc, lif = HW.accumulator, HW.lif
    acc = dataclasses.replace(acc, accumulator_width=accumulator or acc.accumulator_width,
                              bias_width=bias or acc.bias_width)
    lif = dataclasses.replace(lif, current_width=current or lif.current_width,
                              threshold_width=threshold or lif.threshold_width)
    return dataclasses.replace(HW, accumulator=acc, lif=lif)


# ---- 1. encode_input ----------------------------------------------------------------------


def test_encode_input_given_scale_is_unsigned_8_bit():
    g = graph(model_a(), upto="encode_input")
    assert (g.input_scale, g.signed_input, g.input_range) == (1 / 16, False, (0, 255))


def test_encode_input_from_a_signed_calibration():
    # max |x| = 2.0 maps to the top signed 8-bit code, 127
    g = graph(model_a(), upto="encode_input", input_scale=None, calibration=Calibration(-0.5, 2.0, 1))
    assert (g.input_scale, g.signed_input, g.input_range) == (2.0 / 127, True, (-128, 127))


def test_encode_input_needs_a_scale_or_a_calibration():
    with pytest.raises(ValueError, match="pass input_scale or a calibration"):
        graph(model_a(), upto="encode_input", input_scale=None)


# ---- 2. infer_shapes ----------------------------------------------------------------------


def test_infer_shapes_conv_arithmetic_and_head():
    g = graph(model_a(), upto="infer_shapes")
    # 3x3 pad 1 keeps 4x4; stride 2: (4 + 2 - 3) // 2 + 1 = 2
    assert g.shapes == {"input": [1, 4, 4], "enc": [2, 4, 4], "lif_a": [2, 4, 4], "res": [2, 4, 4],
                        "lif_b": [2, 4, 4], "down": [3, 2, 2], "tm": [3], "lif_h": [3], "head": [5], "logits": [5]}


@pytest.mark.parametrize("variant, shape", [(1, [4, 1, 1]), (2, [4, 1, 1]), (3, [4, 2, 2]), (4, [4, 2, 2])])
def test_infer_shapes_attention_matrix_or_count(variant, shape):
    g = graph(model_b(variant), shape=(1, 2, 2), upto="infer_shapes")
    assert g.shapes["sdsa"] == shape and g.shapes["attn_lif"] == shape


# ---- 3. group_streams ---------------------------------------------------------------------


def test_group_streams_joins_residual_additions():
    g = graph(model_a(), upto="group_streams")
    assert {root: [m.name for m in s.members] for root, s in g.streams.items()} == {
        g.stream_of["enc"]: ["enc", "res"], g.stream_of["down"]: ["down"]}
    assert g.stream_of["enc"] == g.stream_of["res"] != g.stream_of["down"]


def test_group_streams_residual_must_be_a_membrane():
    folded = model_a()
    folded.steps[2].residual = "lif_a"      # a spike tensor, not a conv output
    with pytest.raises(ValueError, match="res: residual 'lif_a' is not a conv output"):
        graph(folded, upto="group_streams")


# ---- 4. choose_thresholds -----------------------------------------------------------------


def test_choose_thresholds_per_stream_channel_and_head_cap():
    g = graph(model_a(), upto="choose_thresholds")
    a, b = g.stream("enc"), g.stream("down")
    assert a.thresholds.tolist() == [508, 254] and a.v_threshold == 1.0 and a.tokens == 1
    assert b.thresholds.tolist() == [16383, 254, 16383] and b.tokens == 4
    assert g.head_scale == 1.0 / 127          # the largest head weight is 1.0


def test_choose_thresholds_needs_one_threshold_per_stream():
    folded = model_a()
    folded.steps[3].v_threshold = 0.5        # lif_b reads res, in stream A with lif_a (1.0)
    with pytest.raises(ValueError, match=r"stream of enc: its readers have thresholds \[0.5, 1.0\]"):
        graph(folded, upto="choose_thresholds")


def test_choose_thresholds_membrane_read_by_a_linear_is_refused():
    folded = model_a()
    folded.steps[7] = LinearStep("head", "tm", folded.steps[7].weight, folded.steps[7].bias)
    with pytest.raises(ValueError, match=r"tm must feed a LIF \(spike head\); it feeds head"):
        graph(folded, upto="choose_thresholds")


# ---- 5. quantize_parameters ---------------------------------------------------------------


def test_quantize_parameters_in_threshold_units():
    g = graph(model_a(), upto="quantize_parameters")
    enc = g.arrays["enc.weight"]
    # 0.5/16*508 = 15.875 -> 16; -0.25/16*508 = -7.9375 -> -8; 8/16*254 = 127
    assert (enc[0, 0, 1, 1], enc[0, 0, 0, 0], enc[1, 0, 1, 1], np.count_nonzero(enc)) == (16, -8, 127, 3)
    assert g.arrays["enc.bias"].tolist() == [254, -254]                  # 0.5 * 508, -1 * 254
    # 0.25*508 = 127, -0.1875*508 = -95.25; 0.125*254 = 31.75, 0.0625*254 = 15.875
    assert g.arrays["res.weight"][:, :, 0, 0].tolist() == [[127, -95], [32, 16]]
    assert g.arrays["res.bias"].tolist() == [127, 0]
    # 1/1024 * 16383 = 15.999 -> 16; 0.125 * 254 = 31.75 -> 32, 0.5 * 254 = 127
    down = g.arrays["down.weight"]
    assert set(down[0].flat) == {16} and set(down[1].flat) == {32, 127} and not down[2].any()
    assert g.arrays["lif_a.threshold"].tolist() == g.arrays["lif_b.threshold"].tolist() == [508, 254]
    assert g.arrays["lif_h.threshold"].tolist() == [4 * 16383, 4 * 254, 4 * 16383]    # token sum over 4
    assert all(g.attrs[n] == {"input_shift": 0, "exact_threshold": True} for n in ("lif_a", "lif_b", "lif_h"))
    # head scale 1/127: 0.25 * 127 = 31.75 -> 32, -0.75 * 127 = -95.25 -> -95; bias 0.125 * 127 -> 16
    assert g.arrays["head.weight"].tolist()[:2] == [[127, -127, 0], [32, 0, -95]]
    assert g.arrays["head.bias"].tolist() == [16, 0, -32, 0, 0]


@pytest.mark.parametrize("variant, v_th, shift, threshold, exact", [
    (3, 0.5, 0, 4, True),       # 0.125 * A >= 0.5  <=>  A >= 4
    (1, 0.5, 1, 1, True),       # count >= 0.5  <=>  (count << 1) >= 1
    (2, 0.5, 1, 1, True),
    (4, 0.3, 6, 154, False),    # 0.3 / 0.125 = 2.4, not dyadic: 8 bits of resolution, 2.4 * 64 = 153.6
])
def test_quantize_parameters_attention_neuron(variant, v_th, shift, threshold, exact):
    g = graph(model_b(variant, v_th), shape=(1, 2, 2), upto="quantize_parameters")
    assert g.arrays["attn_lif.threshold"].tolist() == [threshold] * 4
    assert g.attrs["attn_lif"] == {"input_shift": shift, "exact_threshold": exact}


def test_quantize_parameters_lif_must_read_a_current():
    folded = model_b(1)
    steps = list(folded)
    steps.insert(steps.index(folded.step("proj")), LIFStep("bad_lif", "mask", v_threshold=1.0))
    with pytest.raises(ValueError, match="bad_lif: a LIF must read a conv, the token mean or the attention, not mask"):
        graph(FoldedModel(steps, T=1, output="logits"), shape=(1, 2, 2), upto="quantize_parameters")


# ---- 6. propagate_bounds ------------------------------------------------------------------


def test_propagate_bounds_worst_case_per_channel():
    g = graph(model_a(), upto="propagate_bounds")

    def b(name):
        lo, hi = g.bounds[name]
        return [int(x) for x in lo], [int(x) for x in hi]

    # pixels 0..255: ch 0 = 254 + 16 p - 8 p', ch 1 = -254 + 127 p
    assert b("enc") == ([254 - 8 * 255, -254], [254 + 16 * 255, -254 + 127 * 255])
    # spikes 0/1 plus the residual enc: ch 0 = 127 + {0, 127} + {0, -95}, ch 1 = {0, 32} + {0, 16}
    assert b("res") == ([127 - 95 + 254 - 8 * 255, -254], [127 + 127 + 254 + 16 * 255, 48 - 254 + 127 * 255])
    assert b("lif_b") == ([0, 0], [1, 1])
    # 18 inputs (2 channels x 3 x 3): ch 0 = 18 x 16; ch 1 = 2 x (127 + 8 x 32)
    assert b("down") == ([0, 0, 0], [288, 766, 0])
    assert b("tm") == ([0, 0, 0], [4 * 288, 4 * 766, 0])
    # head: bias + the positive (or negative) weights of the 3 spike inputs; rows
    # [127, -127, 0] + 16, [32, 0, -95] + 0, [0, 32, 32] - 32, [-95, 0, 127] + 0, zeros
    assert b("head") == ([16 - 127, -95, -32, -95, 0], [16 + 127, 32, -32 + 64, 127, 0])
    assert b("logits") == ([2 * -111, 2 * -95, 2 * -32, 2 * -95, 0],
                           [2 * 143, 2 * 32, 2 * 32, 2 * 127, 0])      # summed over T = 2


@pytest.mark.parametrize("variant, top", [(3, 4 * 2), (1, 4)])
def test_propagate_bounds_attention(variant, top):
    # SDSA-3: A sums K^T V over 4 tokens times q over a head of 2: 4 x 2; SDSA-1 counts 4 tokens
    g = graph(model_b(variant), shape=(1, 2, 2), upto="propagate_bounds")
    lo, hi = g.bounds["sdsa"]
    assert lo.tolist() == [0] * 4 and hi.tolist() == [top] * 4


# ---- 7. check_fit -------------------------------------------------------------------------


def test_check_fit_names_each_layer_and_the_shortfall():
    # enc needs 16 bits ([-1786, 4334] and [-254, 32131]), res 16, biases 254 need 9
    narrow = with_widths(accumulator=15, bias=8, current=15)
    with pytest.raises(QuantizationError) as info:
        graph(model_a(), hw=narrow, upto="check_fit")
    assert info.value.problems == [
        "enc: accumulator needs 16 bits (worst case [-1786, 32131]), the hardware has 15: 1 bit(s) short",
        "enc: bias needs 9 bits (worst case [-254, 254]), the hardware has 8: 1 bit(s) short",
        "lif_a: current needs 16 bits (worst case [-1786, 32131]), the hardware has 15: 1 bit(s) short",
        "res: accumulator needs 16 bits (worst case [-1754, 32179]), the hardware has 15: 1 bit(s) short",
        "lif_b: current needs 16 bits (worst case [-1754, 32179]), the hardware has 15: 1 bit(s) short",
    ]
    assert str(info.value).startswith("5 layer(s) do not fit the hardware configuration:\n  enc: accumulator")


def test_check_fit_threshold_width():
    g = graph(model_a(), upto="propagate_bounds")
    g.hw = with_widths(threshold=10)          # the head's 4 x 16383 = 65532 needs 16 unsigned bits
    with pytest.raises(QuantizationError) as info:
        passes.check_fit(g)
    assert info.value.problems == ["lif_h: threshold up to 65532 needs 16 unsigned bits, the hardware has 10"]


def test_check_fit_passes_what_fits():
    g = graph(model_a(), upto="check_fit")
    assert g.problems == []


# ---- 8. emit_program ----------------------------------------------------------------------


def test_emit_program_descriptors_arrays_and_header():
    g = graph(model_a())
    p = g.program
    assert [(layer.name, layer.kind) for layer in p.layers] == [
        ("enc", "conv"), ("lif_a", "lif"), ("res", "conv"), ("lif_b", "lif"), ("down", "conv"),
        ("tm", "token_sum"), ("lif_h", "lif"), ("head", "linear"), ("logits", "readout")]
    enc = p.layer("enc").attrs
    assert (enc["input"], enc["acc_bits"], enc["bound"], enc["scale"]) == ("pixels", 16, [-1786, 32131],
                                                                           [1 / 508, 1 / 254])
    assert p.layer("res").attrs["residual"] == "enc" and p.layer("res").attrs["input"] == "spikes"
    assert p.layer("tm").attrs["tokens"] == 4 and p.layer("lif_h").attrs["channels"] == 3
    assert p.layer("logits").attrs["scale"] == (1 / 127) / 2          # head scale / (T x heads)
    assert list(p.arrays) == ["enc.weight", "enc.bias", "lif_a.threshold", "res.weight", "res.bias",
                              "lif_b.threshold", "down.weight", "down.bias", "lif_h.threshold", "head.weight",
                              "head.bias"]
    assert {k: v.dtype for k, v in p.arrays.items()} == {
        k: np.dtype(np.int64 if k.endswith("threshold") else np.int32) for k in p.arrays}
    assert p.array(p.layer("lif_h"), "threshold").tolist() == [65532, 1016, 65532]
    h = p.header
    assert (h["classes"], h["T"], h["input"]["signed"], h["input"]["scale"]) == (5, 2, False, 1 / 16)
    assert h["input"]["encoding"] == "bit planes, unsigned" and h["hw_hash"] == HW.hash


def test_quantize_is_the_passes_in_order():
    assert [p.__name__ for p in passes.PASSES] == [
        "encode_input", "infer_shapes", "group_streams", "choose_thresholds", "quantize_parameters",
        "propagate_bounds", "check_fit", "emit_program"]
    from golden.quantize import quantize
    via_quantize = quantize(model_a(), HW, input_scale=1 / 16, input_shape=[1, 4, 4], model_name="test")
    direct = graph(model_a()).program
    assert [vars(a) for a in via_quantize.layers] == [vars(b) for b in direct.layers]
    assert via_quantize.header == direct.header
